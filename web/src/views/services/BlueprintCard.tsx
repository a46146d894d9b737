/** One deployed blueprint: its name, who applied it and when, ACTIVE of wanted, and its slices. */
import type { Blueprint, BlueprintStatus } from '../../api/services.ts';
import { dateTime } from '../../lib/format.ts';
import { SliceCard } from './SliceCard.tsx';

interface BlueprintCardProps {
  blueprint: BlueprintStatus;
  applied: Blueprint | undefined;
  sliceErrors: ReadonlyMap<string, string>;
}

export function BlueprintCard({ blueprint, applied, sliceErrors }: BlueprintCardProps) {
  return (
    <li className="card blueprint" data-testid="blueprint" data-name={blueprint.name} data-wanted={blueprint.wanted} data-active={blueprint.active}>
      <div className="job-head">
        <h2>{blueprint.name}</h2>
        <span className="muted">{blueprint.slices.length} {blueprint.slices.length === 1 ? 'slice' : 'slices'}</span>
        <span className="spacer" />
        <span className={blueprint.active >= blueprint.wanted ? 'ok-text' : 'warn-text'}>{blueprint.active} of {blueprint.wanted} ACTIVE</span>
        <span className="muted">applied {blueprint.appliedBy ? `by ${blueprint.appliedBy} ` : ''}{dateTime(new Date(blueprint.timestamp).toISOString())}</span>
      </div>
      <ul className="service-slices">
        {blueprint.slices.map((slice) => (
          <SliceCard key={slice.artifact} slice={slice} spec={applied?.slices.find((s) => s.artifact === slice.artifact)} detailError={sliceErrors.get(slice.artifact)} />
        ))}
      </ul>
    </li>
  );
}

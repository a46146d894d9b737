/**
 * One slice of a blueprint: its artifact, the router path it is served under, how it runs and where
 * it may run (required tags), how many instances are ACTIVE of those wanted, each instance per node
 * with its lifecycle state and reason, and the leader's "unplaced" line when it could not place them
 * all.
 */
import type { SliceSpec, SliceStatus } from '../../api/services.ts';
import { InstanceTable } from './InstanceTable.tsx';
import { stateSummary } from './lifecycle.ts';
import { UnplacedLine } from './UnplacedLine.tsx';

interface SliceCardProps {
  slice: SliceStatus;
  /** The slice as applied (absent when the blueprint list and the status were read a change apart). */
  spec: SliceSpec | undefined;
  /** Why its detail (endpoints) could not be read this round. */
  detailError: string | undefined;
}

export function SliceCard({ slice, spec, detailError }: SliceCardProps) {
  const summary = stateSummary(slice.states);
  const tags = spec?.requiredTags ?? [];
  return (
    <li className="service-slice" data-testid="service-slice" data-artifact={slice.artifact} data-service={slice.service} data-wanted={slice.wanted} data-active={slice.active}>
      <div className="job-head">
        <strong>{slice.artifact}</strong>
        <code title="the server's router forwards this path to an ACTIVE instance">/{slice.service}/…</code>
        {spec && <span className="badge">{spec.run.kind}</span>}
        <span className="spacer" />
        <span className={slice.active >= slice.wanted ? 'ok-text' : 'warn-text'} data-testid="slice-active">{slice.active} of {slice.wanted} ACTIVE</span>
        {summary && <span className="muted">{summary}</span>}
      </div>
      {tags.length > 0 && (
        <div className="muted slice-tags">requires <ul className="chips">{tags.map((tag) => <li key={tag}>{tag}</li>)}</ul></div>
      )}
      {slice.instances.length > 0
        ? <InstanceTable instances={slice.instances} label={`instances of ${slice.artifact}`} />
        : <p className="muted">No instance placed yet.</p>}
      {slice.unplaced && <UnplacedLine unplaced={slice.unplaced} />}
      {detailError !== undefined && <p role="alert" className="error-text">Endpoints of {slice.artifact}: {detailError}</p>}
    </li>
  );
}

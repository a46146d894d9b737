/**
 * What the leader could not place for a slice, in its own words ("…: 1 node already holding an
 * instance of the slice"), with how many nodes each placement filter removed.
 */
import type { Unplaced } from '../../api/services.ts';

export function UnplacedLine({ unplaced }: { unplaced: Unplaced }) {
  const filters = Object.entries(unplaced.rejectedBy ?? {}).filter(([, n]) => n > 0);
  return (
    <p className="unplaced" role="status" data-testid="unplaced" data-wanted={unplaced.wanted} data-placed={unplaced.placed}>
      <strong className="warn-text">Unplaced: {unplaced.placed} of {unplaced.wanted} placed.</strong>{' '}
      <span data-testid="unplaced-reason">{unplaced.reason}</span>
      {filters.length > 0 && (
        <span className="muted unplaced-filters">
          {' '}(filters: {filters.map(([name, n], i) => <span key={name} data-filter={name} data-removed={n}>{i > 0 ? ', ' : ''}{name} removed {n}</span>)})
        </span>
      )}
    </p>
  );
}

/** A lifecycle state as a badge, coloured by its phase (starting, active, stopping, failed). */
import type { SliceState } from '../../api/services.ts';
import { phaseOf } from './lifecycle.ts';

export function StateBadge({ state }: { state: SliceState }) {
  return <span className={`badge lifecycle-${phaseOf(state)}`} data-testid="lifecycle-state">{state}</span>;
}

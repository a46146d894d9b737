/**
 * Seed 003's lifecycle states grouped the way an operator reads them: on the way up (the leader's
 * LOAD/ACTIVATE and the node's progress towards ACTIVE), serving, on the way down, or failed.
 */
import type { SliceState, StateCounts } from '../../api/services.ts';

export type Phase = 'starting' | 'active' | 'stopping' | 'failed';

const PHASES: Readonly<Record<SliceState, Phase>> = {
  LOAD: 'starting',
  LOADING: 'starting',
  LOADED: 'starting',
  ACTIVATE: 'starting',
  ACTIVATING: 'starting',
  ACTIVE: 'active',
  DEACTIVATE: 'stopping',
  DEACTIVATING: 'stopping',
  UNLOAD: 'stopping',
  UNLOADING: 'stopping',
  FAILED: 'failed',
};

export const phaseOf = (state: SliceState): Phase => PHASES[state];

/** `1 ACTIVE · 1 LOADING`, in the server's (lifecycle) order; empty when there are none. */
export function stateSummary(states: StateCounts): string {
  return Object.entries(states).map(([state, n]) => `${n} ${state}`).join(' · ');
}

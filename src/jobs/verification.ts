/**
 * The k-of-n verifier as a pure function: given a job's executions, decide whether a result has
 * consensus, whether to wait, whether extra executions can still reach consensus, or whether it is
 * out of reach. No I/O, no clock, no randomness: the same executions always give the same decision,
 * and the decision never depends on the order they are listed in.
 *
 * Soundness rules (DESIGN §4, fixing seed 004):
 * - hashes are the coordinator's own SHA-256 of the returned bytes, never the worker's claim;
 * - consensus must be a strict majority of redundancy (2k > n), so two different results can never
 *   both reach k among the first round, and whichever order results arrive in, the same one wins;
 * - an execution that failed, timed out or disagreed is replaced by an extra one only while k is
 *   still reachable within `max_executions`; once it is not, the job fails with the reason.
 */
import type { ExecutionStatus } from './model.ts';

export interface TallyExecution {
  readonly id: string;
  readonly node_id: string;
  readonly status: ExecutionStatus;
  readonly result_hash: string | null;
}

export interface TallyRules {
  readonly redundancy: number;
  readonly consensus: number;
  readonly max_executions: number;
}

export type Tally =
  | {
      readonly kind: 'consensus';
      readonly hash: string;
      readonly votes: number;
      /** Completed executions whose result is the consensus, and those whose result is not. */
      readonly agreeing: readonly string[];
      readonly disagreeing: readonly string[];
      /** Executions still scheduled or running: the decision supersedes them. */
      readonly supersede: readonly string[];
    }
  | { readonly kind: 'waiting'; readonly outstanding: number; readonly leadingVotes: number }
  | { readonly kind: 'extend'; readonly extra: number; readonly reason: string }
  | { readonly kind: 'unreachable'; readonly reason: string };

/** Why a set of rules cannot work, or undefined when it can. */
export function rulesProblem(rules: TallyRules, maxRedundancy: number): string | undefined {
  const { redundancy: n, consensus: k, max_executions: max } = rules;
  if (!Number.isInteger(n) || n < 1) return `redundancy must be an integer ≥ 1, got ${n}`;
  if (n > maxRedundancy) return `redundancy ${n} is above this coordinator's maximum of ${maxRedundancy}`;
  if (!Number.isInteger(k) || k < 1) return `consensus must be an integer ≥ 1, got ${k}`;
  if (k > n) return `consensus ${k} is more than redundancy ${n}: ${k} results can never agree among ${n} executions`;
  if (2 * k <= n) return `consensus ${k} of redundancy ${n} is not a majority: two different results could both reach ${k}; use consensus ≥ ${Math.floor(n / 2) + 1}`;
  if (!Number.isInteger(max) || max < n) return `max_executions must be an integer ≥ redundancy ${n}, got ${max}`;
  return undefined;
}

const ACTIVE: ReadonlySet<ExecutionStatus> = new Set(['scheduled', 'running']);

/**
 * Slots the coordinator wants but has no execution record for: `unplaced` are waiting for a worker
 * (counted as outstanding), `abandoned` waited too long and count as failures, so that a job with no
 * eligible worker still ends.
 */
export interface TallySlots {
  readonly unplaced: number;
  readonly abandoned: number;
}

export function tally(rules: TallyRules, executions: readonly TallyExecution[], slots: TallySlots = { unplaced: 0, abandoned: 0 }): Tally {
  const votes = new Map<string, number>();
  let active = slots.unplaced;
  let failed = 0;
  for (const execution of executions) {
    if (ACTIVE.has(execution.status)) active++;
    else if (execution.status === 'completed' && execution.result_hash !== null) votes.set(execution.result_hash, (votes.get(execution.result_hash) ?? 0) + 1);
    else failed++;
  }
  // The leader is the most-voted hash, ties to the smaller hash: never Map insertion order.
  let leader: string | undefined;
  let leadingVotes = 0;
  for (const [hash, count] of votes) {
    if (count > leadingVotes || (count === leadingVotes && leader !== undefined && hash < leader)) {
      leader = hash;
      leadingVotes = count;
    }
  }
  const k = rules.consensus;
  if (leader !== undefined && leadingVotes >= k) {
    const agreeing: string[] = [];
    const disagreeing: string[] = [];
    const supersede: string[] = [];
    for (const execution of executions) {
      if (ACTIVE.has(execution.status)) supersede.push(execution.id);
      else if (execution.status === 'completed' && execution.result_hash !== null) (execution.result_hash === leader ? agreeing : disagreeing).push(execution.id);
    }
    return { kind: 'consensus', hash: leader, votes: leadingVotes, agreeing: agreeing.sort(), disagreeing: disagreeing.sort(), supersede: supersede.sort() };
  }
  if (leadingVotes + active >= k) return { kind: 'waiting', outstanding: active, leadingVotes };
  const need = k - leadingVotes - active;
  const room = rules.max_executions - executions.length - slots.unplaced - slots.abandoned;
  const situation = describe(votes, failed, active, slots);
  if (need <= room) return { kind: 'extend', extra: need, reason: `${situation}; ${need} more ${need === 1 ? 'execution' : 'executions'} can still reach ${k} agreeing` };
  return {
    kind: 'unreachable',
    reason: `consensus ${k} of ${rules.redundancy} is out of reach: ${situation}, and the limit of ${rules.max_executions} executions leaves room for ${room} more (${need} needed)`,
  };
}

function describe(votes: ReadonlyMap<string, number>, failed: number, active: number, slots: TallySlots): string {
  const counts = [...votes.values()].sort((a, b) => b - a);
  const parts: string[] = [];
  if (counts.length === 0) parts.push('no results yet');
  else if (counts.length === 1) parts.push(`${counts[0]} matching ${counts[0] === 1 ? 'result' : 'results'}`);
  else parts.push(`results split ${counts.join('–')}`);
  if (failed > 0) parts.push(`${failed} failed or timed out`);
  if (slots.abandoned > 0) parts.push(`${slots.abandoned} never found a worker`);
  const running = active - slots.unplaced;
  if (running > 0) parts.push(`${running} still running`);
  if (slots.unplaced > 0) parts.push(`${slots.unplaced} waiting for a worker`);
  return parts.join(', ');
}

/** How a result that arrives after the decision is judged: against the consensus hash, if there is one. */
export function judgeLate(consensusHash: string | null, resultHash: string): 'agree' | 'disagree' | null {
  if (consensusHash === null) return null;
  return resultHash === consensusHash ? 'agree' : 'disagree';
}

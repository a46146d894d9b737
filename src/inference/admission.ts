/**
 * Admission of inference requests (issue 15), a pure core the scheduler asks before it places a
 * request: has it waited past its deadline (seed 000's `maxLatencyMs`, counted from when the bus
 * accepted it), or past what its priority may wait while the scheduler is saturated? Either way it
 * is rejected at once with the reason, never dispatched late, so past capacity the queue drains at
 * the cost of a rejection instead of growing until throughput collapses.
 *
 * Priorities shed in order: a background request may queue the least, a normal one longer, and a
 * critical one has no queue budget (only its deadline): it is never shed to serve others. Under
 * pressure the lower priorities go first even when fresh: once a request of some priority has
 * waited its `pressureMs`, `AdmissionController` sheds every request below that priority for a while
 * (a shed floor, stepping down one level per quiet `holdMs`), so the backlog drains for the ones that
 * stay. The queue budgets
 * apply only to a backlog (a full batch): with a few requests in hand, a wait that only looks long
 * (another host's clock stamped the record) is no reason to shed. A record with no timestamp (0 or
 * less, as Kafka reports one it does not know) has no known wait and is admitted.
 */
import type { InferenceRequest, Priority } from '../contracts/messages.ts';

export interface AdmissionPolicy {
  /** How long a request of each priority may have waited for the scheduler while it is backlogged; none: only its deadline. */
  readonly queueBudgetMs: Readonly<Partial<Record<Priority, number>>>;
  /**
   * Past this wait of a request of a priority, every lower priority is shed under a backlog for a
   * while (AdmissionController): the queue drains faster for the ones that must not be shed.
   */
  readonly pressureMs?: Readonly<Partial<Record<Priority, number>>>;
  /**
   * How long batches must have been full before the budgets and the floor apply (default 1 s): a
   * backlog that drains within it (a replica taking over, a broker back) is catching up, not overload.
   */
  readonly sustainMs?: number;
}

export const DEFAULT_ADMISSION_POLICY: AdmissionPolicy = {
  queueBudgetMs: { background: 2, normal: 4 },
  pressureMs: { normal: 2, critical: 3 },
};

/** Why a request was turned away without being placed: the code travels on the rejection event. */
export type RejectionCode = 'expired' | 'overloaded';

export type Admission = { readonly admit: true } | { readonly admit: false; readonly code: RejectionCode; readonly reason: string };

const ADMIT: Admission = { admit: true };

/**
 * `arrivedAt`: when the bus accepted the request (ms; 0 or less: unknown); `backlogged`: the
 * scheduler took a full batch, so more are waiting behind this one.
 */
export function admit(request: Pick<InferenceRequest, 'maxLatencyMs' | 'priority'>, arrivedAt: number, now: number, backlogged: boolean, policy: AdmissionPolicy = DEFAULT_ADMISSION_POLICY): Admission {
  if (!(arrivedAt > 0)) return ADMIT;
  const waited = Math.max(0, Math.round(now - arrivedAt));
  if (waited >= request.maxLatencyMs) {
    return { admit: false, code: 'expired', reason: `expired: waited ${waited} ms for a scheduler, past its maxLatencyMs of ${request.maxLatencyMs} ms; not dispatched late` };
  }
  const budget = policy.queueBudgetMs[request.priority];
  if (budget !== undefined && backlogged && waited > budget) {
    return {
      admit: false,
      code: 'overloaded',
      reason: `overloaded: the scheduler is saturated and this ${request.priority} request waited ${waited} ms, more than the ${budget} ms a ${request.priority} request may queue; retry later`,
    };
  }
  return ADMIT;
}

const RANK: Readonly<Record<Priority, number>> = { background: 0, normal: 1, critical: 2 };
const BY_RANK: readonly Priority[] = ['background', 'normal', 'critical'];

/**
 * `admit` with a shed floor: the state is one level and when it was last raised, and `now` is the
 * only clock, so a replica's decisions follow from what it has seen.
 */
export class AdmissionController {
  private readonly policy: AdmissionPolicy;
  private readonly holdMs: number;
  private readonly sustainMs: number;
  private floor = 0;
  private raisedAt = Number.NEGATIVE_INFINITY;
  /** Since when every batch has been full; undefined when the last one was not. */
  private backlogSince: number | undefined;

  constructor(policy: AdmissionPolicy = DEFAULT_ADMISSION_POLICY, holdMs = 100) {
    this.policy = policy;
    this.holdMs = holdMs;
    this.sustainMs = policy.sustainMs ?? 1_000;
  }

  /** The lowest priority admitted under a backlog now. */
  get admitsFrom(): Priority {
    return BY_RANK[this.floor]!;
  }

  judge(request: Pick<InferenceRequest, 'maxLatencyMs' | 'priority'>, arrivedAt: number, now: number, fullBatch: boolean): Admission {
    if (!fullBatch) this.backlogSince = undefined;
    else this.backlogSince ??= now;
    const backlogged = this.backlogSince !== undefined && now - this.backlogSince >= this.sustainMs;
    while (this.floor > 0 && now - this.raisedAt > this.holdMs) {
      this.floor--;
      this.raisedAt += this.holdMs;
    }
    const verdict = admit(request, arrivedAt, now, backlogged, this.policy);
    if (!verdict.admit || !backlogged || !(arrivedAt > 0)) return verdict;
    const rank = RANK[request.priority];
    const pressure = this.policy.pressureMs?.[request.priority];
    if (pressure !== undefined && now - arrivedAt > pressure && rank >= this.floor) {
      this.floor = rank;
      this.raisedAt = now;
    }
    if (rank < this.floor) {
      return {
        admit: false,
        code: 'overloaded',
        reason: `overloaded: the scheduler is saturated and sheds ${request.priority} requests while ${BY_RANK[this.floor]} requests wait; retry later`,
      };
    }
    return verdict;
  }
}

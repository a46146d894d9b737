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
 * stay. The queue budgets apply only to a backlog (a full batch): with a few requests in hand, a
 * wait that only looks long (another host's clock stamped the record) is no reason to shed. A backlog
 * that begins long (a takeover's, a broker restart's) is caught up within the deadlines first. A
 * record with no timestamp (0 or less, as Kafka reports one it does not know) has no known wait and
 * is admitted.
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
   * A backlog whose first full batch starts with a request that waited at least this long (default
   * 250 ms) is a catch-up, not overload: a replica took the partition over, or the broker is back.
   * Overload starts with a queue that grows from nothing; a catch-up starts long.
   */
  readonly catchUpAfterMs?: number;
  /**
   * How long a catch-up is routed without budgets or floor (default 10 s): it ends sooner once a
   * request has waited no longer than the largest budget (caught up), or longer than the first one
   * (the queue grows: overload after all), or the batches are not full.
   */
  readonly catchUpMs?: number;
  /**
   * How long a backlog outlasts its last full batch (default 0: a batch that is not full is judged
   * as no backlog). Holding it sheds more of what would have been served between full batches.
   */
  readonly backlogHoldMs?: number;
  /**
   * How long full batches must keep coming (none further apart) before they are overload rather than
   * a burst (default 20 ms): overload routes the most urgent and latest requests and turns the rest
   * away at once (chooseUnderBacklog); a burst is routed in order within the budgets.
   */
  readonly overloadAfterMs?: number;
}

/** Tuned for the in-process bus, where a batch costs no round trip and a request waits for nothing but the scheduler. */
export const DEFAULT_ADMISSION_POLICY: AdmissionPolicy = {
  queueBudgetMs: { background: 2, normal: 4 },
  pressureMs: { normal: 2, critical: 3 },
};

/**
 * For a scheduler on Kafka. There a request reaches the scheduler a produce and a fetch after it was
 * stamped, and each batch is a transaction of four round trips, so a request waits a few batch cycles
 * (tens of ms on a loaded 2-core machine) however idle the scheduler is. The in-process budgets
 * counted that wait as saturation and shed most of every full batch, batches the next commits would
 * have served (bench section 5: 28–36 % dispatched at 10,000 req/s with the scheduler at 60–77 % of a
 * core). These allow a few cycles, so what is shed is what a backlog holds back (ADR 0017).
 */
export const KAFKA_ADMISSION_POLICY: AdmissionPolicy = {
  queueBudgetMs: { background: 50, normal: 100 },
  pressureMs: { normal: 50, critical: 75 },
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
  const turnaway = classify(request, arrivedAt, now, backlogged, policy);
  return turnaway === undefined ? ADMIT : explain(turnaway, request, Math.max(0, Math.round(now - arrivedAt)), policy);
}

/**
 * Why a request is turned away, without the words: past capacity most requests are, and building
 * a reason for each would cost a good part of what routing one does. `explain` gives the words.
 */
export type Turnaway = 'expired' | 'over-budget' | 'displaced' | `below-floor:${Priority}`;

function classify(request: Pick<InferenceRequest, 'maxLatencyMs' | 'priority'>, arrivedAt: number, now: number, backlogged: boolean, policy: AdmissionPolicy): Turnaway | undefined {
  if (!(arrivedAt > 0)) return undefined;
  const waited = now - arrivedAt;
  if (waited >= request.maxLatencyMs) return 'expired';
  const budget = policy.queueBudgetMs[request.priority];
  if (budget !== undefined && backlogged && waited > budget) return 'over-budget';
  return undefined;
}

export function rejectionCode(turnaway: Turnaway): RejectionCode {
  return turnaway === 'expired' ? 'expired' : 'overloaded';
}

/** The rejection of a request turned away, with the reason in words; `waited`: ms, or undefined to leave it out. */
export function explain(turnaway: Turnaway, request: Pick<InferenceRequest, 'maxLatencyMs' | 'priority'>, waited: number | undefined, policy: AdmissionPolicy = DEFAULT_ADMISSION_POLICY): Admission & { admit: false } {
  const { priority } = request;
  if (turnaway === 'expired') {
    const how = waited === undefined ? 'waited' : `waited ${waited} ms`;
    return { admit: false, code: 'expired', reason: `expired: ${how} for a scheduler, past its maxLatencyMs of ${request.maxLatencyMs} ms; not dispatched late` };
  }
  if (turnaway === 'over-budget') {
    const budget = policy.queueBudgetMs[priority];
    const how = waited === undefined ? 'waited' : `waited ${waited} ms,`;
    return { admit: false, code: 'overloaded', reason: `overloaded: the scheduler is saturated and this ${priority} request ${how} more than the ${budget} ms a ${priority} request may queue; retry later` };
  }
  if (turnaway === 'displaced') {
    return { admit: false, code: 'overloaded', reason: `overloaded: the scheduler is saturated and routed more urgent or fresher requests than this ${priority} one in its place; retry later` };
  }
  const floor = turnaway.slice('below-floor:'.length);
  return { admit: false, code: 'overloaded', reason: `overloaded: the scheduler is saturated and sheds ${priority} requests while ${floor} requests wait; retry later` };
}

const URGENT_FIRST: readonly Priority[] = ['critical', 'normal', 'background'];

/** What an overloaded batch routes: `chosen` per request, of the first `taken` (the rest open the next batch). */
export interface BacklogChoice {
  readonly chosen: readonly boolean[];
  readonly taken: number;
}

/**
 * Which requests of an overloaded batch to route, given `slots` of them and the requests' priorities
 * in partition order. A request of a priority with no queue budget (`kept`: critical, by default) is
 * never turned away to serve others: those are routed in order, and when there are more than the
 * slots the batch ends after the last that fits (the rest are routed next). The slots left go to the
 * others, the most urgent first and within a priority the latest, since under overload every request
 * waits for a slot and the latest can still be served soonest (the oldest would be dispatched
 * latest, or not in time). So the slots stay full while the overload lasts, and what is dispatched
 * has waited least.
 */
export function chooseUnderBacklog(priorities: readonly Priority[], slots: number, kept: (priority: Priority) => boolean): BacklogChoice {
  const n = priorities.length;
  const chosen = new Array<boolean>(n).fill(n <= slots);
  if (n <= slots) return { chosen, taken: n };
  let taken = n;
  let left = slots;
  for (let i = 0; i < n && left > 0; i++) {
    if (!kept(priorities[i]!)) continue;
    chosen[i] = true;
    if (--left === 0) taken = i + 1;
  }
  // Slots filled by kept requests alone end the batch at the last of them only if more of them follow.
  if (left === 0 && !priorities.slice(taken).some(kept)) taken = n;
  for (const priority of URGENT_FIRST) {
    if (kept(priority)) continue;
    for (let i = taken - 1; i >= 0 && left > 0; i--) {
      if (priorities[i] === priority) {
        chosen[i] = true;
        left--;
      }
    }
  }
  return { chosen, taken };
}

/** No full batch for this long before a backlog that begins long: a takeover or a broker back, not the same overload again. */
const CATCH_UP_QUIET_MS = 1_000;

const RANK: Readonly<Record<Priority, number>> = { background: 0, normal: 1, critical: 2 };
const BY_RANK: readonly Priority[] = ['background', 'normal', 'critical'];
const BELOW_FLOOR: readonly Turnaway[] = BY_RANK.map((p): Turnaway => `below-floor:${p}`);

/**
 * `admit` with a shed floor: the state is one level and when it was last raised, and `now` is the
 * only clock, so a replica's decisions follow from what it has seen.
 */
export class AdmissionController {
  private readonly policy: AdmissionPolicy;
  private readonly holdMs: number;
  private readonly catchUpAfterMs: number;
  private readonly catchUpMs: number;
  private readonly caughtUpMs: number;
  private readonly backlogHoldMs: number;
  private floor = 0;
  private lastFullAt = Number.NEGATIVE_INFINITY;
  /** When the current run of full batches began (none apart by more than sustainedMs). */
  private fullSince = Number.POSITIVE_INFINITY;
  private readonly sustainedMs: number;
  private raisedAt = Number.NEGATIVE_INFINITY;
  /** None: the last batch was not full; since when a catch-up runs; or a backlog (overload). */
  private state: { readonly kind: 'none' } | { readonly kind: 'catching-up'; readonly since: number; readonly waited: number } | { readonly kind: 'backlog' } = { kind: 'none' };

  constructor(policy: AdmissionPolicy = DEFAULT_ADMISSION_POLICY, holdMs = 100) {
    this.policy = policy;
    this.holdMs = holdMs;
    this.catchUpAfterMs = policy.catchUpAfterMs ?? 250;
    this.catchUpMs = policy.catchUpMs ?? 10_000;
    this.backlogHoldMs = policy.backlogHoldMs ?? 0;
    this.sustainedMs = policy.overloadAfterMs ?? 20;
    this.caughtUpMs = Math.max(0, ...Object.values(policy.queueBudgetMs));
  }

  /** Whether budgets and floor apply to this full or not full batch's request. */
  private backlogged(arrivedAt: number, now: number, fullBatch: boolean): boolean {
    if (!fullBatch) {
      if (this.state.kind !== 'none' && now - this.lastFullAt > this.backlogHoldMs) this.state = { kind: 'none' };
      return this.state.kind === 'backlog';
    }
    // Only a scheduler that had no backlog for a while catches up: one that is overloaded takes
    // batches that are not full between full ones, and a new backlog of it is the same overload.
    const quietBefore = now - this.lastFullAt >= CATCH_UP_QUIET_MS;
    this.lastFullAt = now;
    const waited = arrivedAt > 0 ? now - arrivedAt : 0;
    if (this.state.kind === 'none') this.state = waited >= this.catchUpAfterMs && quietBefore ? { kind: 'catching-up', since: now, waited } : { kind: 'backlog' };
    // A catch-up drains: its first request waited the longest. A longer wait means the queue grows (a
    // stall at the start of an overload), and so does one that has not caught up within catchUpMs.
    if (this.state.kind === 'catching-up' && (waited <= this.caughtUpMs || waited > this.state.waited || now - this.state.since >= this.catchUpMs)) this.state = { kind: 'backlog' };
    return this.state.kind === 'backlog';
  }

  /**
   * Whether a batch with more requests than it routes, the first of which arrived at `arrivedAt`, is
   * overload: true once such batches have come for `sustainedMs` with no gap as long between them
   * (route the most urgent and latest, see chooseUnderBacklog). False for a burst (a pause of the
   * process, a spike), which batches in order drain within the budgets, and for a catch-up (in order,
   * without budgets, within the deadlines).
   */
  overloaded(arrivedAt: number, now: number): boolean {
    if (now - this.lastFullAt > this.sustainedMs) this.fullSince = now;
    return this.backlogged(arrivedAt, now, true) && now - this.fullSince >= this.sustainedMs;
  }

  /** A priority with no queue budget: never turned away to serve others, only past its deadline. */
  unbudgeted(priority: Priority): boolean {
    return this.policy.queueBudgetMs[priority] === undefined;
  }

  /** Under overload, why a request is turned away before the choice of what to route: past its deadline or its budget. */
  beyondWait(request: Pick<InferenceRequest, 'maxLatencyMs' | 'priority'>, arrivedAt: number, now: number): Turnaway | undefined {
    return classify(request, arrivedAt, now, true, this.policy);
  }

  /** The lowest priority admitted under a backlog now. */
  get admitsFrom(): Priority {
    return BY_RANK[this.floor]!;
  }

  judge(request: Pick<InferenceRequest, 'maxLatencyMs' | 'priority'>, arrivedAt: number, now: number, fullBatch: boolean): Admission {
    const turnaway = this.turnaway(request, arrivedAt, now, fullBatch);
    return turnaway === undefined ? ADMIT : explain(turnaway, request, Math.max(0, Math.round(now - arrivedAt)), this.policy);
  }

  /** `judge` without the words (see `explain`): undefined admits. */
  turnaway(request: Pick<InferenceRequest, 'maxLatencyMs' | 'priority'>, arrivedAt: number, now: number, fullBatch: boolean): Turnaway | undefined {
    const backlogged = this.backlogged(arrivedAt, now, fullBatch);
    while (this.floor > 0 && now - this.raisedAt > this.holdMs) {
      this.floor--;
      this.raisedAt += this.holdMs;
    }
    const turnaway = classify(request, arrivedAt, now, backlogged, this.policy);
    if (turnaway !== undefined || !backlogged || !(arrivedAt > 0)) return turnaway;
    const rank = RANK[request.priority];
    const pressure = this.policy.pressureMs?.[request.priority];
    if (pressure !== undefined && now - arrivedAt > pressure && rank >= this.floor) {
      this.floor = rank;
      this.raisedAt = now;
    }
    return rank < this.floor ? BELOW_FLOOR[this.floor]! : undefined;
  }

  get policyInUse(): AdmissionPolicy {
    return this.policy;
  }
}

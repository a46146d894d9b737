/**
 * Requests waiting for a node of their model to free up (issue 15). When every node that fits a
 * request is reserved, a caller would rather wait a little than be turned away: the scheduler parks
 * the request on `arc.request.inference.waiting` in the same transaction as the batch's other
 * decisions, and a second routing step on that topic tries it again whenever a node with its model
 * is released, until it is dispatched or its deadline passes (then it is rejected as expired, never
 * dispatched late). Parking goes through the bus, not memory, so a scheduler that dies loses
 * nothing it parked: the waiting record goes to whichever replica takes the partition over.
 *
 * This file keeps the bookkeeping: the queue bound per model (by priority), and the signal that a
 * node of a model was freed, which paces the waiting step instead of a busy loop over the topic.
 */
import type { InferenceRequest, Priority } from '../contracts/messages.ts';
import { explain, type Admission, type AdmissionPolicy } from './admission.ts';

/** When the request first reached a scheduler (ms since the epoch): its deadline counts from there across every wait. */
export const HEADER_WAITING_SINCE = 'arc-waiting-since';

export interface WaitingPolicy {
  /** Requests that may wait for one model at once, per scheduler. */
  readonly perModel: number;
  /** The share of that a priority may fill: a queue full of background requests still takes a critical one. */
  readonly share: Readonly<Record<Priority, number>>;
  /** Longest pause of the waiting step with no release in sight (a release elsewhere, a node that came back, a clock). */
  readonly pollMs: number;
}

export const DEFAULT_WAITING_POLICY: WaitingPolicy = {
  perModel: 1_000,
  share: { critical: 1, normal: 0.75, background: 0.25 },
  pollMs: 50,
};

export type Seat = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const OK: Seat = { ok: true };
const ADMIT: Admission = { admit: true };

interface Waiter {
  readonly modelId: string;
  readonly priority: Priority;
  /** When its deadline passes: after that the entry is stale whatever happened to it (another replica decided it). */
  readonly until: number;
  /** How many releases of its model this scheduler had seen when it was parked. */
  readonly mark: number;
}

/** Parked requests of this scheduler, per model; release counts per model; wakers of the waiting step. */
export class WaitingRoom {
  private readonly policy: WaitingPolicy;
  private readonly waiters = new Map<string, Waiter>();
  private readonly byModel = new Map<string, Map<Priority, number>>();
  private readonly freed = new Map<string, number>();
  private wakers: (() => void)[] = [];

  constructor(policy: WaitingPolicy = DEFAULT_WAITING_POLICY) {
    this.policy = policy;
  }

  get size(): number {
    return this.waiters.size;
  }

  has(requestId: string): boolean {
    return this.waiters.has(requestId);
  }

  /**
   * May this request wait for its model (again)? One already waiting keeps its seat. `seatedInBatch`:
   * requests for the model given a seat earlier in the same batch, not parked until it commits.
   */
  seat(request: Pick<InferenceRequest, 'id' | 'modelId' | 'priority'>, now: number, seatedInBatch = 0): Seat {
    if (this.waiters.has(request.id)) return OK;
    const room = Math.floor(this.policy.perModel * this.policy.share[request.priority]);
    if (this.waitingFor(request.modelId) + seatedInBatch < room) return OK;
    this.sweep(request.modelId, now);
    const waiting = this.waitingFor(request.modelId) + seatedInBatch;
    if (waiting < room) return OK;
    return { ok: false, reason: `the wait for a free node of ${request.modelId} is full (${waiting} waiting; a ${request.priority} request may wait while fewer than ${room} do)` };
  }

  private waitingFor(modelId: string): number {
    let waiting = 0;
    for (const n of this.byModel.get(modelId)?.values() ?? []) waiting += n;
    return waiting;
  }

  /** After the park committed. */
  parked(request: Pick<InferenceRequest, 'id' | 'modelId' | 'priority'>, until: number): void {
    if (this.waiters.has(request.id)) return;
    this.waiters.set(request.id, { modelId: request.modelId, priority: request.priority, until, mark: this.freed.get(request.modelId) ?? 0 });
    const counts = this.byModel.get(request.modelId) ?? new Map<Priority, number>();
    counts.set(request.priority, (counts.get(request.priority) ?? 0) + 1);
    this.byModel.set(request.modelId, counts);
  }

  /** After its decision (dispatched, rejected) committed. */
  left(requestId: string): void {
    const waiter = this.waiters.get(requestId);
    if (!waiter) return;
    this.waiters.delete(requestId);
    const counts = this.byModel.get(waiter.modelId)!;
    const n = counts.get(waiter.priority)! - 1;
    if (n > 0) counts.set(waiter.priority, n);
    else counts.delete(waiter.priority);
    if (counts.size === 0) this.byModel.delete(waiter.modelId);
  }

  /** A node holding these models was released. */
  nodeFreed(models: readonly string[]): void {
    if (this.waiters.size > 0) for (const model of models) this.freed.set(model, (this.freed.get(model) ?? 0) + 1);
    if (this.wakers.length === 0) return;
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  }

  /**
   * Resolves once trying these requests again could succeed: a node of one of their models was
   * released since they were parked (at once if so already, or if this scheduler did not park them:
   * it took their partition over), or `pollMs` passed, or the earliest deadline came.
   */
  async ready(requests: readonly Pick<InferenceRequest, 'id' | 'modelId'>[], earliestDeadline: number, now: number): Promise<void> {
    const changed = (): boolean => requests.some((r) => {
      const waiter = this.waiters.get(r.id);
      return waiter === undefined || (this.freed.get(r.modelId) ?? 0) > waiter.mark;
    });
    if (changed()) return;
    const until = Math.min(now + this.policy.pollMs, earliestDeadline);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, until - now));
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      const listen = (): void => {
        if (changed()) done();
        else this.wakers.push(listen);
      };
      this.wakers.push(listen);
    });
  }

  /** Entries whose deadline passed long enough ago are another replica's or lost: they no longer hold a seat. */
  private sweep(modelId: string, now: number): void {
    if (!this.byModel.has(modelId)) return;
    for (const [id, waiter] of this.waiters) {
      if (waiter.modelId === modelId && waiter.until < now - 1_000) this.left(id);
    }
  }
}

/** The deadline check of a request that has been waiting for a node: past it, it is rejected as expired, never dispatched late. */
export function waitedOut(request: Pick<InferenceRequest, 'modelId' | 'maxLatencyMs'>, since: number, now: number): Admission {
  const waited = Math.max(0, Math.round(now - since));
  if (waited < request.maxLatencyMs) return ADMIT;
  return {
    admit: false,
    code: 'expired',
    reason: `expired: waited ${waited} ms for a node of ${request.modelId} to free up and none did within its maxLatencyMs of ${request.maxLatencyMs} ms; not dispatched late`,
  };
}

/**
 * Whether a request that would wait for a node to free up is past its deadline at `now` (the last
 * clock reading of its decision, later than the admission's): expired then, with the reason a
 * parked one (`waiting`) or a fresh one gets, never "no candidate".
 */
export function pastDeadline(request: Pick<InferenceRequest, 'modelId' | 'maxLatencyMs' | 'priority'>, since: number, now: number, waiting: boolean, policy: AdmissionPolicy): { readonly code: 'expired'; readonly reason: string } | undefined {
  if (since + request.maxLatencyMs > now) return undefined;
  const verdict = waiting ? waitedOut(request, since, now) : explain('expired', request, Math.max(0, Math.round(now - since)), policy);
  return verdict.admit ? undefined : { code: 'expired', reason: verdict.reason };
}

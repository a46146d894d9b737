/**
 * What happened to each inference request, read back from the bus (dispatches, results and
 * rejection events), so the API can answer "where did my request go" in any mode. Recent requests
 * only: the tracker keeps a bounded window, the bus keeps the history (and the decision records,
 * src/inference/decision-log.ts, explain a decision for the bus's retention).
 *
 * The window is bounded by count and by age, so the memory a burst took comes back once it is over:
 * - a settled request (completed, failed or rejected) is forgotten `SETTLED_RETENTION_MS` after it
 *   settled, except the newest `RECENT_RING` requests, which stay listable whatever their age (a quiet
 *   mesh keeps its last requests on show);
 * - an unsettled one (pending a decision, or dispatched and awaiting its result) is kept until it
 *   settles, but no longer than `UNSETTLED_RETENTION_MS` since it was first seen: past the longest
 *   deadline a request may carry no scheduler decides it and no node's answer is waited for;
 * - at most `TRACKER_CAPACITY` requests whatever their state: past it the oldest is forgotten.
 * Ages are this process's clock. A sweep every `SWEEP_MS` forgets what is due, a chunk of
 * `SWEEP_CHUNK` at a time with the event loop free between chunks (routing shares it).
 */
import { MAX_LATENCY_MS, type InferenceDispatch, type InferenceRequest, type InferenceResult, type Priority, type SystemEvent } from '../contracts/messages.ts';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { topics } from '../contracts/topics.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { Consumer } from '../bus/ports.ts';

export type RequestStatus = 'pending' | 'dispatched' | 'completed' | 'failed' | 'rejected';

export interface RequestRecord {
  readonly id: string;
  modelId: string | undefined;
  requesterGeozone: string | undefined;
  priority: Priority | undefined;
  status: RequestStatus;
  submittedAt: number | undefined;
  nodeId?: string;
  geozone?: string;
  score?: number;
  fencingToken?: number;
  forwarded?: boolean;
  dispatchedAt?: number;
  completedAt?: number;
  latencyMs?: number;
  reason?: string;
  rejectedBy?: Record<string, number>;
  outputTokens?: number;
  /** It never reached the bus (the publish threw): failed with the reason, and the same id may be submitted again. */
  unpublished?: boolean;
}

export type Decision =
  | { readonly kind: 'dispatched'; readonly record: RequestRecord }
  | { readonly kind: 'rejected'; readonly record: RequestRecord }
  | { readonly kind: 'timeout' };

export interface TrackerListener {
  dispatched?(record: RequestRecord, dispatch: InferenceDispatch): void;
  finished?(record: RequestRecord, result: InferenceResult): void;
  rejected?(record: RequestRecord): void;
  event?(event: SystemEvent): void;
}

/** Requests held at most, whatever their state or age (about 20 s of history at 10,000 req/s). */
export const TRACKER_CAPACITY = 200_000;
/**
 * How long a completed, failed or rejected request stays readable after it settled: long enough for
 * a client polling its status to see the outcome, short enough that a burst's records are gone
 * before V8's memory reducer runs (about 10-20 s after the load stops), so their memory comes back.
 */
export const SETTLED_RETENTION_MS = 10_000;
/** How long a request nothing settles is kept: the longest deadline a request may carry, and 5 minutes more. */
export const UNSETTLED_RETENTION_MS = MAX_LATENCY_MS + 5 * 60_000;
/** GET /api/v1/inference lists at most this many; these newest requests are kept whatever their age. */
export const RECENT_RING = 1_000;
/** How often the tracker forgets what is due, and how many it forgets per turn of the event loop. */
export const SWEEP_MS = 1_000;
export const SWEEP_CHUNK = 2_000;

export interface TrackerOptions {
  readonly capacity?: number;
  readonly settledRetentionMs?: number;
  readonly unsettledRetentionMs?: number;
  readonly sweepMs?: number;
  /** The clock ages are taken from (tests pass their own). */
  readonly now?: () => number;
}

/** A record with what the tracker alone needs to know of it. */
interface Held extends RequestRecord {
  /** Its place in creation order: the newest `RECENT_RING` are kept whatever their age. */
  seq: number;
  /** This tracker's clock when it settled; undefined while unsettled. */
  settledAt?: number | undefined;
}

export class InferenceTracker {
  private readonly records = new Map<string, Held>();
  private readonly waiters = new Map<string, ((decision: Decision) => void)[]>();
  private readonly listeners: TrackerListener[] = [];
  private readonly consumers: Consumer[] = [];
  private readonly capacity: number;
  private readonly settledRetentionMs: number;
  private readonly unsettledRetentionMs: number;
  private readonly sweepMs: number;
  private readonly now: () => number;
  private readonly recentIds: string[] = [];
  private recentNext = 0;
  private created = 0;
  /** Settled records in the order they settled, with when: a queue without shifting (`settledHead` is its front). */
  private settledQueue: Held[] = [];
  private settledTimes: number[] = [];
  private settledHead = 0;
  /** Unsettled records by id with when they were first seen, oldest first. */
  private readonly unsettled = new Map<string, number>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;
  private stopped = false;
  /** Records forgotten by age since start (the count bound's are not counted). */
  forgotten = 0;

  constructor(options: TrackerOptions = {}) {
    this.capacity = options.capacity ?? TRACKER_CAPACITY;
    this.settledRetentionMs = options.settledRetentionMs ?? SETTLED_RETENTION_MS;
    this.unsettledRetentionMs = options.unsettledRetentionMs ?? UNSETTLED_RETENTION_MS;
    this.sweepMs = options.sweepMs ?? SWEEP_MS;
    this.now = options.now ?? Date.now;
  }

  /** Requests held now. */
  get size(): number {
    return this.records.size;
  }

  addListener(listener: TrackerListener): void {
    this.listeners.push(listener);
  }

  async start(bus: MessageBus, geozones: readonly string[], instanceId: string): Promise<void> {
    // Each tracker sees everything (its own group) but only what happens from now on.
    const options = { startAt: 'latest' as const };
    this.consumers.push(await bus.subscribe(`${instanceId}-tracker-dispatch`, geozones.map((z) => topics.dispatch(z)), 'InferenceDispatch', (d) => this.onDispatch(d), options));
    this.consumers.push(await bus.subscribe(`${instanceId}-tracker-results`, [topics.inferenceResult], 'InferenceResult', (r) => this.onResult(r), options));
    this.consumers.push(await bus.subscribe(`${instanceId}-tracker-events`, [topics.systemEvent], 'SystemEvent', (e) => this.onEvent(e), options));
    this.stopped = false;
    this.sweepTimer ??= setInterval(() => void this.sweep(), this.sweepMs);
    this.sweepTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    await Promise.all(this.consumers.splice(0).map((c) => c.close()));
    await this.sweeping;
  }

  /**
   * Forgets the settled records past their retention and the unsettled ones past theirs, a chunk at a
   * time with the event loop free between chunks; resolves to how many. A sweep under way is joined.
   */
  sweep(): Promise<number> {
    if (this.sweeping) return this.sweeping;
    // The first chunk runs now; a promise is kept only while more chunks follow (one that never
    // awaited would clear itself before it was set, and block every later sweep).
    const first = this.sweepChunk(SWEEP_CHUNK);
    this.forgotten += first.count;
    if (!first.more) return Promise.resolve(first.count);
    this.sweeping = (async () => {
      let removed = first.count;
      try {
        for (let more = true; more && !this.stopped; ) {
          await yieldToLoop();
          const chunk = this.sweepChunk(SWEEP_CHUNK);
          removed += chunk.count;
          this.forgotten += chunk.count;
          more = chunk.more;
        }
      } finally {
        this.sweeping = undefined;
      }
      return removed;
    })();
    return this.sweeping;
  }

  /** One chunk of a sweep: at most `limit` records looked at. */
  private sweepChunk(limit: number): { count: number; more: boolean } {
    const now = this.now();
    let count = 0;
    let looked = 0;
    const settledBefore = now - this.settledRetentionMs;
    const requeued: Held[] = [];
    while (this.settledHead < this.settledQueue.length && looked < limit) {
      const at = this.settledTimes[this.settledHead]!;
      if (at > settledBefore) break;
      const record = this.settledQueue[this.settledHead]!;
      this.settledHead++;
      looked++;
      // Gone already (the count bound), or reopened and settled again since: not this entry's to forget.
      if (this.records.get(record.id) !== record || record.settledAt !== at) continue;
      if (this.created - record.seq < RECENT_RING) {
        // Among the newest: listed whatever its age, looked at again one retention later.
        requeued.push(record);
        continue;
      }
      this.records.delete(record.id);
      count++;
    }
    this.compactSettled();
    for (const record of requeued) this.queueSettled(record, now);
    const unsettledBefore = now - this.unsettledRetentionMs;
    for (const [id, seen] of this.unsettled) {
      if (seen > unsettledBefore || looked >= limit) break;
      looked++;
      this.unsettled.delete(id);
      if (this.records.delete(id)) count++;
    }
    return { count, more: looked >= limit };
  }

  private queueSettled(record: Held, at: number): void {
    record.settledAt = at;
    this.settledQueue.push(record);
    this.settledTimes.push(at);
  }

  private compactSettled(): void {
    if (this.settledHead === this.settledQueue.length) {
      this.settledQueue = [];
      this.settledTimes = [];
      this.settledHead = 0;
    } else if (this.settledHead > 10_000 && this.settledHead * 2 > this.settledQueue.length) {
      this.settledQueue = this.settledQueue.slice(this.settledHead);
      this.settledTimes = this.settledTimes.slice(this.settledHead);
      this.settledHead = 0;
    }
  }

  /** A record reached a final state: it is forgotten a retention from now. */
  private settled(record: Held): void {
    this.unsettled.delete(record.id);
    this.queueSettled(record, this.now());
  }

  get(id: string): RequestRecord | undefined {
    return this.records.get(id);
  }

  /** The newest requests first, from a small ring of recent ids (not a copy of the whole window). */
  recent(limit: number): RequestRecord[] {
    const out: RequestRecord[] = [];
    const size = this.recentIds.length;
    for (let i = 0; i < size && out.length < limit; i++) {
      const id = this.recentIds[(this.recentNext - 1 - i + size) % size];
      const record = id === undefined ? undefined : this.records.get(id);
      if (record) out.push(record);
    }
    return out;
  }

  submitted(request: InferenceRequest, at: number): void {
    const record = this.record(request.id);
    if (record.unpublished === true) {
      // A retry of a request whose publish failed: nothing was scheduled, so it starts again.
      record.status = 'pending';
      delete record.unpublished;
      delete record.reason;
      delete record.completedAt;
      record.settledAt = undefined;
      this.unsettled.set(record.id, this.now());
    }
    record.modelId = request.modelId;
    record.requesterGeozone = request.requesterGeozone;
    record.priority = request.priority;
    record.submittedAt = at;
  }

  /**
   * The publish of a submitted request threw, so no scheduler will ever decide it: it is failed with
   * the reason rather than left pending, and whoever waits for its decision is answered now.
   */
  notPublished(id: string, reason: string, at: number): RequestRecord {
    const record = this.record(id);
    if (record.status === 'pending') {
      record.status = 'failed';
      record.reason = reason;
      record.completedAt = at;
      record.unpublished = true;
      this.settled(record);
    }
    this.decide(id, { kind: 'rejected', record });
    return record;
  }

  /** Requests whose submitter is waiting for a decision right now. */
  get awaitingDecision(): number {
    return this.waiters.size;
  }

  /** Resolves with the scheduler's decision for the request, or `timeout` if none arrives in time. */
  waitForDecision(id: string, timeoutMs: number): Promise<Decision> {
    const known = this.records.get(id);
    if (known && known.status !== 'pending') {
      return Promise.resolve(known.status === 'rejected' ? { kind: 'rejected', record: known } : { kind: 'dispatched', record: known });
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const list = this.waiters.get(id) ?? [];
        const index = list.indexOf(done);
        if (index >= 0) list.splice(index, 1);
        if (list.length === 0) this.waiters.delete(id);
        resolve({ kind: 'timeout' });
      }, timeoutMs);
      const done = (decision: Decision): void => {
        clearTimeout(timer);
        resolve(decision);
      };
      const list = this.waiters.get(id);
      if (list) list.push(done);
      else this.waiters.set(id, [done]);
    });
  }

  private record(id: string): Held {
    let record = this.records.get(id);
    if (!record) {
      record = { id, modelId: undefined, requesterGeozone: undefined, priority: undefined, status: 'pending', submittedAt: undefined, seq: ++this.created };
      this.records.set(id, record);
      // A key set again keeps its old place in a Map: deleted first, so the oldest unsettled stays in front.
      this.unsettled.delete(id);
      this.unsettled.set(id, this.now());
      if (this.recentIds.length < RECENT_RING) this.recentIds.push(id);
      else this.recentIds[this.recentNext] = id;
      this.recentNext = (this.recentNext + 1) % RECENT_RING;
      if (this.records.size > this.capacity) {
        const oldest = this.records.keys().next().value;
        if (oldest !== undefined) {
          this.records.delete(oldest);
          this.unsettled.delete(oldest);
        }
      }
    }
    return record;
  }

  private decide(id: string, decision: Decision): void {
    const list = this.waiters.get(id);
    if (!list) return;
    this.waiters.delete(id);
    for (const resolve of list) resolve(decision);
  }

  private onDispatch(dispatch: InferenceDispatch): void {
    const record = this.record(dispatch.requestId);
    if (record.status !== 'pending') return;
    record.status = 'dispatched';
    record.modelId = dispatch.modelId;
    record.requesterGeozone ??= dispatch.requesterGeozone;
    record.priority ??= dispatch.priority;
    record.nodeId = dispatch.nodeId;
    record.geozone = dispatch.geozone;
    record.score = dispatch.score;
    record.fencingToken = dispatch.fencingToken;
    record.forwarded = dispatch.geozone !== undefined && dispatch.requesterGeozone !== undefined && dispatch.geozone !== dispatch.requesterGeozone;
    record.dispatchedAt = Date.parse(dispatch.dispatchedAt);
    for (const listener of this.listeners) listener.dispatched?.(record, dispatch);
    this.decide(dispatch.requestId, { kind: 'dispatched', record });
  }

  private onResult(result: InferenceResult): void {
    const record = this.record(result.requestId);
    // The first outcome stands: a result arriving after its reservation timed out does not reopen it.
    if (record.status === 'completed' || record.status === 'failed' || record.status === 'rejected') return;
    record.status = result.status;
    record.nodeId ??= result.nodeId;
    record.completedAt = Date.parse(result.completedAt);
    record.latencyMs = result.latencyMs;
    if (result.error !== undefined) record.reason = result.error;
    if (result.outputTokens !== undefined) record.outputTokens = result.outputTokens;
    this.settled(record);
    for (const listener of this.listeners) listener.finished?.(record, result);
  }

  private onEvent(event: SystemEvent): void {
    for (const listener of this.listeners) listener.event?.(event);
    const details = event.details ?? {};
    const reason = typeof details['reason'] === 'string' ? details['reason'] : event.message;
    if (event.kind === 'inference.shed') {
      // Turned away from their headers before decoding, many to an event (src/inference/scheduler.ts).
      const ids = Array.isArray(details['requestIds']) ? details['requestIds'] : [];
      for (const id of ids) if (typeof id === 'string') this.reject(id, reason, {}, undefined, event.geozone);
      return;
    }
    if (event.kind !== 'inference.rejected' || !event.subjectId) return;
    const rejectedBy = (details['rejectedBy'] as Record<string, number> | undefined) ?? {};
    this.reject(event.subjectId, reason, rejectedBy, typeof details['modelId'] === 'string' ? details['modelId'] : undefined, event.geozone);
  }

  private reject(id: string, reason: string, rejectedBy: Record<string, number>, modelId: string | undefined, geozone: string | undefined): void {
    const record = this.record(id);
    if (record.status !== 'pending') return;
    record.status = 'rejected';
    record.reason = reason;
    record.rejectedBy = rejectedBy;
    record.modelId ??= modelId;
    record.requesterGeozone ??= geozone;
    this.settled(record);
    for (const listener of this.listeners) listener.rejected?.(record);
    this.decide(id, { kind: 'rejected', record });
  }
}

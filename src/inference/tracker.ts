/**
 * What happened to each inference request, read back from the bus (dispatches, results and
 * rejection events), so the API can answer "where did my request go" in any mode. Recent requests
 * only: the tracker keeps a bounded window, the bus keeps the history.
 */
import type { InferenceDispatch, InferenceRequest, InferenceResult, Priority, SystemEvent } from '../contracts/messages.ts';
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

const DEFAULT_CAPACITY = 200_000;
/** GET /api/v1/inference lists at most this many. */
const RECENT_RING = 1_000;

export class InferenceTracker {
  private readonly records = new Map<string, RequestRecord>();
  private readonly waiters = new Map<string, ((decision: Decision) => void)[]>();
  private readonly listeners: TrackerListener[] = [];
  private readonly consumers: Consumer[] = [];
  private readonly capacity: number;
  private readonly recentIds: string[] = [];
  private recentNext = 0;

  constructor(capacity = DEFAULT_CAPACITY) {
    this.capacity = capacity;
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
  }

  async stop(): Promise<void> {
    await Promise.all(this.consumers.splice(0).map((c) => c.close()));
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

  private record(id: string): RequestRecord {
    let record = this.records.get(id);
    if (!record) {
      record = { id, modelId: undefined, requesterGeozone: undefined, priority: undefined, status: 'pending', submittedAt: undefined };
      this.records.set(id, record);
      if (this.recentIds.length < RECENT_RING) this.recentIds.push(id);
      else this.recentIds[this.recentNext] = id;
      this.recentNext = (this.recentNext + 1) % RECENT_RING;
      if (this.records.size > this.capacity) {
        const oldest = this.records.keys().next().value;
        if (oldest !== undefined) this.records.delete(oldest);
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
    for (const listener of this.listeners) listener.rejected?.(record);
    this.decide(id, { kind: 'rejected', record });
  }
}

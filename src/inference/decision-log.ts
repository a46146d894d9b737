/**
 * A compact record of every routing decision the tracker sees (dispatched or rejected), kept as a
 * write-once record (RecordStore, ADR 0014) in the collection `inference_decisions`, so "why this
 * node" (`src/inference/explain.ts`) still answers after a restart. Off the hot path: records queue in
 * memory and go to the store in one `insertMany` of up to 100 every 250 ms (or sooner when that many
 * wait). On SQLite a write runs on the event loop routing shares (about 6-13 µs a record, a third of
 * what a document version cost: bench section 7), so writing gets a time budget: after a batch that
 * took d ms the next waits d / WRITE_BUDGET at least, and a batch stays around a millisecond. What
 * does not fit waits in a bounded queue; past its bound the oldest unwritten records are dropped and
 * counted (`arcnet_decision_records_dropped_total`), never routing held up.
 *
 * One record per request, whoever writes it: every `arcnet server` runs a tracker and sees the same
 * dispatches, and insertMany keeps the first body of an id, so the first writer wins and the others'
 * writes of that id are no-ops; no lease to hold, and no gap while one would change hands.
 *
 * Expiry: records live as long as the requests they explain are on the bus (arc.request.inference's
 * retention, 24 h). A sweep every minute removes older ones in chunks, yielding between them. Every
 * server sweeps and needs no lease for it: the sweeps are deletes by age, so two at once remove each
 * record once (PostgreSQL skips rows another sweep holds) and a sweep that dies leaves the rest to the
 * next.
 *
 * Reservations: the scheduler's own reservation book is not on the bus, so the record carries the
 * nodes other requests held as this tracker saw it (dispatched, no result yet, within the
 * reservation TTL), at most `MAX_RESERVED` of them; the explanation says it is this view.
 */
import type { InferenceDispatch, Priority } from '../contracts/messages.ts';
import type { Logger } from '../core/logging.ts';
import { errorMessage } from '../core/errors.ts';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { topicSpecFor, topics } from '../contracts/topics.ts';
import type { RecordStore } from '../store/ports.ts';
import type { RequestRecord, TrackerListener } from './tracker.ts';

export const DECISIONS_COLLECTION = 'inference_decisions';
/** Nodes listed as held by others in one record; past it the record says `reservedTruncated`. */
export const MAX_RESERVED = 32;
/** The share of wall time writes may take. */
export const WRITE_BUDGET = 0.08;
/** How long a record is kept: as long as its request is kept on the bus. */
export const DECISION_RETENTION_MS = topicSpecFor(topics.inferenceRequest)?.retentionMs ?? 24 * 60 * 60 * 1000;

export interface DecisionRecord {
  readonly id: string;
  readonly modelId: string;
  readonly requesterGeozone: string;
  readonly priority: Priority;
  /** Epoch ms: the dispatch's `dispatchedAt`, or the rejection event's time. */
  readonly decidedAt: number;
  readonly outcome: 'dispatched' | 'rejected';
  readonly nodeId?: string;
  readonly geozone?: string;
  readonly score?: number;
  readonly forwarded?: boolean;
  readonly fencingToken?: number;
  readonly reason?: string;
  readonly rejectedBy?: Readonly<Record<string, number>>;
  /** Nodes held by other requests when this one was decided, as the recording tracker saw them. */
  readonly reserved: readonly string[];
  readonly reservedTruncated?: boolean;
  /** The instance whose tracker wrote it. */
  readonly recordedBy: string;
}

export interface DecisionLogOptions {
  readonly records: RecordStore;
  readonly logger: Logger;
  readonly instanceId: string;
  /** How long a dispatch counts as holding its node without a result (the scheduler's reservation TTL). */
  readonly reservationTtlMs?: number;
  readonly flushMs?: number;
  readonly batchSize?: number;
  /** Unwritten records kept at most; older ones are dropped past it. */
  readonly maxQueued?: number;
  /** Called with how many records were dropped (a metric). */
  readonly onDropped?: (count: number) => void;
  /** Records older than this are removed (default DECISION_RETENTION_MS). */
  readonly retentionMs?: number;
  readonly sweepMs?: number;
  /** Records removed per expire call: one short write each on SQLite's event loop. */
  readonly sweepChunk?: number;
  /** The clock the cutoff is taken from (the store stamps records with its own, the same in production). */
  readonly now?: () => number;
}

interface Held {
  readonly requestId: string;
  readonly at: number;
}

export class DecisionLog {
  private readonly options: DecisionLogOptions;
  private readonly flushMs: number;
  private readonly batchSize: number;
  private readonly maxQueued: number;
  private readonly ttlMs: number;
  /** Unwritten records in arrival order; `head` is the first not yet taken (a queue without shifting). */
  private queue: DecisionRecord[] = [];
  private head = 0;
  /** Unwritten and being-written records by id, so an explanation can be asked before the flush. */
  private readonly unwritten = new Map<string, DecisionRecord>();
  private readonly held = new Map<string, Held>();
  private timer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private firstSweep: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private sweeping: Promise<number> | undefined;
  private stopped = false;
  private lastWarning = 0;
  private rejectionAt: { readonly id: string; readonly at: number } | undefined;
  /** performance.now() before which no batch starts (the write budget). */
  private nextWriteAt = 0;
  written = 0;
  dropped = 0;
  expired = 0;

  constructor(options: DecisionLogOptions) {
    this.options = options;
    this.flushMs = options.flushMs ?? 250;
    this.batchSize = options.batchSize ?? 100;
    this.maxQueued = options.maxQueued ?? 20_000;
    this.ttlMs = options.reservationTtlMs ?? 30_000;
  }

  start(): void {
    this.stopped = false;
    this.timer ??= setInterval(() => void this.flush(), this.flushMs);
    this.timer.unref();
    this.sweepTimer ??= setInterval(() => void this.sweep(), this.options.sweepMs ?? 60_000);
    this.sweepTimer.unref();
    // Soon after start as well: a process restarted more often than the sweep interval would otherwise never sweep.
    this.firstSweep ??= setTimeout(() => void this.sweep(), Math.min(5_000, this.options.sweepMs ?? 60_000));
    this.firstSweep.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.firstSweep) clearTimeout(this.firstSweep);
    this.firstSweep = undefined;
    this.timer = undefined;
    this.sweepTimer = undefined;
    await this.sweeping;
    await this.writing;
    // What is still queued is written before the store closes.
    await this.flush(true);
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  listener(): TrackerListener {
    return {
      dispatched: (record, dispatch) => this.onDispatched(record, dispatch),
      finished: (record) => {
        if (record.nodeId !== undefined && this.held.get(record.nodeId)?.requestId === record.id) this.held.delete(record.nodeId);
      },
      // The rejection's own event comes first (the tracker hands it to listeners before it records the
      // rejection): its time is the scheduler's decision time.
      event: (event) => {
        if (event.kind === 'inference.rejected' && event.subjectId !== undefined) this.rejectionAt = { id: event.subjectId, at: Date.parse(event.timestamp) };
      },
      rejected: (record) => this.onRejected(record),
    };
  }

  /** The record of a request: unwritten ones from memory, the rest from the store. */
  async get(id: string): Promise<DecisionRecord | undefined> {
    const pending = this.unwritten.get(id);
    if (pending) return pending;
    return (await this.options.records.get<DecisionRecord>(DECISIONS_COLLECTION, id))?.body;
  }

  /**
   * Removes the records older than the retention, a chunk per store call with the event loop free
   * between chunks; resolves to how many. A sweep already running is joined.
   */
  sweep(): Promise<number> {
    // Checked here, not only in the loop: a body that never awaits would clear `sweeping` before it is set.
    if (this.stopped) return Promise.resolve(0);
    this.sweeping ??= (async () => {
      const chunk = this.options.sweepChunk ?? 200;
      const before = (this.options.now ?? Date.now)() - (this.options.retentionMs ?? DECISION_RETENTION_MS);
      let removed = 0;
      try {
        for (let n = chunk; n === chunk && !this.stopped; removed += n) {
          n = await this.options.records.expire(DECISIONS_COLLECTION, before, chunk);
          if (n === chunk) await yieldToLoop();
        }
      } catch (error) {
        this.warn(`expired decision records not removed (the next sweep tries again): ${errorMessage(error)}`);
      } finally {
        this.expired += removed;
        this.sweeping = undefined;
      }
      return removed;
    })();
    return this.sweeping;
  }

  private reservedAt(now: number, except: string | undefined): { reserved: string[]; truncated: boolean } {
    const reserved: string[] = [];
    let truncated = false;
    for (const [nodeId, held] of this.held) {
      if (now - held.at > this.ttlMs) {
        // The scheduler's lease has run out by now whatever became of the request.
        this.held.delete(nodeId);
        continue;
      }
      if (nodeId === except) continue;
      if (reserved.length === MAX_RESERVED) {
        truncated = true;
        break;
      }
      reserved.push(nodeId);
    }
    return { reserved, truncated };
  }

  private onDispatched(record: RequestRecord, dispatch: InferenceDispatch): void {
    const decidedAt = Date.parse(dispatch.dispatchedAt);
    // The chosen node was free for the scheduler, whatever this tracker last heard of it.
    const { reserved, truncated } = this.reservedAt(decidedAt, dispatch.nodeId);
    this.held.set(dispatch.nodeId, { requestId: dispatch.requestId, at: decidedAt });
    this.enqueue({
      id: dispatch.requestId,
      modelId: dispatch.modelId,
      requesterGeozone: record.requesterGeozone ?? dispatch.requesterGeozone ?? 'unknown',
      priority: record.priority ?? dispatch.priority ?? 'normal',
      decidedAt,
      outcome: 'dispatched',
      nodeId: dispatch.nodeId,
      ...(dispatch.geozone === undefined ? {} : { geozone: dispatch.geozone }),
      ...(dispatch.score === undefined ? {} : { score: dispatch.score }),
      forwarded: record.forwarded === true,
      ...(dispatch.fencingToken === undefined ? {} : { fencingToken: dispatch.fencingToken }),
      reserved,
      ...(truncated ? { reservedTruncated: true } : {}),
      recordedBy: this.options.instanceId,
    });
  }

  private onRejected(record: RequestRecord): void {
    const decidedAt = this.rejectionAt?.id === record.id ? this.rejectionAt.at : Date.now();
    const { reserved, truncated } = this.reservedAt(decidedAt, undefined);
    this.enqueue({
      id: record.id,
      modelId: record.modelId ?? 'unknown',
      requesterGeozone: record.requesterGeozone ?? 'unknown',
      priority: record.priority ?? 'normal',
      decidedAt,
      outcome: 'rejected',
      ...(record.reason === undefined ? {} : { reason: record.reason }),
      rejectedBy: record.rejectedBy ?? {},
      reserved,
      ...(truncated ? { reservedTruncated: true } : {}),
      recordedBy: this.options.instanceId,
    });
  }

  private enqueue(record: DecisionRecord): void {
    this.queue.push(record);
    this.unwritten.set(record.id, record);
    const over = this.queued - this.maxQueued;
    if (over > 0) {
      for (let i = 0; i < over; i++) this.unwritten.delete(this.queue[this.head + i]!.id);
      this.head += over;
      this.dropped += over;
      this.options.onDropped?.(over);
    }
    if (this.queued >= this.batchSize) void this.flush();
  }

  private take(): DecisionRecord[] {
    const batch = this.queue.slice(this.head, this.head + this.batchSize);
    this.head += batch.length;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 10_000) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return batch;
  }

  /**
   * Writes one batch of what is queued, within the write budget; `all` (at stop) writes everything
   * regardless. A flush already running is joined, not doubled.
   */
  flush(all = false): Promise<void> {
    if (this.writing) return this.writing;
    if (this.queued === 0 || (!all && performance.now() < this.nextWriteAt)) return Promise.resolve();
    this.writing = (async () => {
      try {
        do {
          const batch = this.take();
          const started = performance.now();
          try {
            await this.write(batch);
            this.written += batch.length;
          } catch (error) {
            // The store is away: these go back to the front (the bound drops the oldest if it stays away).
            this.queue = [...batch, ...this.queue.slice(this.head)];
            this.head = 0;
            this.warn(`decision records not written (${batch.length} kept for the next try): ${errorMessage(error)}`);
            return;
          } finally {
            for (const record of batch) if (this.unwritten.get(record.id) === record) this.unwritten.delete(record.id);
            const took = performance.now() - started;
            this.nextWriteAt = started + took / WRITE_BUDGET;
          }
        } while (all && this.queued > 0);
      } finally {
        this.writing = undefined;
      }
    })();
    return this.writing;
  }

  /** First writer wins: an id another tracker already wrote is left as it is. */
  private async write(records: readonly DecisionRecord[]): Promise<void> {
    await this.options.records.insertMany(records.map((record) => ({ collection: DECISIONS_COLLECTION, id: record.id, body: record })));
  }

  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarning < 10_000) return;
    this.lastWarning = now;
    this.options.logger.warn({ component: 'decision-log', queued: this.queued, dropped: this.dropped }, message);
  }
}

/**
 * KV watch delivery, shared by the SQLite and PostgreSQL adapters: both keep an event log ordered by
 * revision, so a watch is the same loop on either engine. Each watcher remembers the last revision it
 * delivered and, when woken, reads the log past it in revision order. Replay and live delivery are
 * therefore one path, with no gap or overlap between them, and a duplicate wake-up costs one empty
 * read. Wake-ups come from the adapter's own commits (`wake`), from whatever else the engine offers
 * (PostgreSQL's NOTIFY), and from a poll of the store revision, which catches commits made through
 * other connections to the same store.
 *
 * What stays with each engine is how to read: `EventLog` is its log, in its SQL.
 */
import type { Logger } from '../core/logging.ts';
import { errorMessage } from '../core/errors.ts';
import { decode, prefixUpperBound, requireExpected } from './input.ts';
import type { KvEvent, KvWatch } from './ports.ts';
import { UNMETERED, type QueryMeter } from './query-metrics.ts';

/** How many events one read of the log returns at most. */
export const WATCH_BATCH = 500;

/** One event as the log stores it: the value is still JSON text (NULL for deletes). */
export interface StoredEvent {
  readonly revision: number;
  readonly key: string;
  readonly type: 'put' | 'delete';
  readonly value: string | null;
}

export interface EventLog {
  /** At most WATCH_BATCH events with revision > `after` and `lower` <= key < `upper` (no bound when undefined), in revision order. */
  readEvents(after: number, lower: string, upper: string | undefined): Promise<readonly StoredEvent[]> | readonly StoredEvent[];
  /** The store revision now. */
  revision(): Promise<number> | number;
  /** Once true, no watcher reads again. */
  readonly closed: boolean;
}

export interface KvWatchersOptions {
  /** How often open watches check the store revision. */
  readonly pollMs: number;
  /** Where callback exceptions and read failures are reported. */
  readonly logger: Logger | undefined;
  /** Called on every poll tick before the revision is read (PostgreSQL re-issues a lost LISTEN here). */
  readonly onPoll?: () => void;
  /** Observes each read of the log (`kv_watch_read`) and of the revision (`kv_watch_poll`). */
  readonly meter?: QueryMeter;
}

interface Watcher {
  readonly lower: string;
  readonly upper: string | undefined;
  readonly onEvent: (event: KvEvent<unknown>) => void;
  /** Highest revision delivered (or skipped as before fromRevision). */
  last: number;
  /** Another read is due: set by every wake-up, cleared when a read starts. */
  wanted: boolean;
  /** A read loop is in progress: at most one per watcher, so delivery stays in order. */
  running: boolean;
  closed: boolean;
}

export class KvWatchers {
  private readonly log: EventLog;
  private readonly options: KvWatchersOptions;
  private readonly meter: QueryMeter;
  private readonly watchers = new Set<Watcher>();
  private poll: NodeJS.Timeout | undefined;
  private polling = false;
  private failing = false;

  constructor(log: EventLog, options: KvWatchersOptions) {
    this.log = log;
    this.options = options;
    this.meter = options.meter ?? UNMETERED;
  }

  /** The port's watch(): the caller has checked that the store is open and the prefix is acceptable. */
  watch<T>(prefix: string, fromRevision: number, onEvent: (event: KvEvent<T>) => void): KvWatch {
    requireExpected(fromRevision, 'fromRevision');
    const watcher: Watcher = {
      lower: prefix,
      upper: prefixUpperBound(prefix),
      onEvent: onEvent as (event: KvEvent<unknown>) => void,
      last: fromRevision,
      wanted: false,
      running: false,
      closed: false,
    };
    this.watchers.add(watcher);
    if (this.poll === undefined) {
      this.poll = setInterval(() => void this.pollRevision(), this.options.pollMs);
      this.poll.unref();
    }
    this.schedule(watcher);
    return {
      close: () => {
        watcher.closed = true;
        this.watchers.delete(watcher);
        if (this.watchers.size === 0) this.stopPolling();
      },
    };
  }

  /** Every watcher that has not yet delivered `revision` reads again. */
  wake(revision: number): void {
    for (const watcher of this.watchers) if (watcher.last < revision) this.schedule(watcher);
  }

  /** Reports a failure to read (once per outage, not once per poll tick). */
  reportReadFailure(error: unknown): void {
    if (this.log.closed || this.failing) return;
    this.failing = true;
    this.options.logger?.warn({ err: error }, 'kv watch cannot read the event log; retrying on the next poll');
  }

  close(): void {
    for (const watcher of this.watchers) watcher.closed = true;
    this.watchers.clear();
    this.stopPolling();
  }

  private stopPolling(): void {
    if (this.poll !== undefined) clearInterval(this.poll);
    this.poll = undefined;
  }

  private async pollRevision(): Promise<void> {
    if (this.polling || this.log.closed) return;
    this.polling = true;
    try {
      this.options.onPoll?.();
      this.wake(await this.meter.time('kv_watch_poll', async () => this.log.revision()));
    } catch (error) {
      this.reportReadFailure(error);
    } finally {
      this.polling = false;
    }
  }

  /** setImmediate so a burst of wake-ups is one read, and no callback ever runs inside watch() or put(). */
  private schedule(watcher: Watcher): void {
    if (watcher.closed) return;
    watcher.wanted = true;
    if (watcher.running) return;
    watcher.running = true;
    setImmediate(() => void this.drain(watcher));
  }

  private async drain(watcher: Watcher): Promise<void> {
    try {
      while (watcher.wanted && !watcher.closed && !this.log.closed) {
        watcher.wanted = false;
        for (;;) {
          const rows = await this.meter.time('kv_watch_read', async () => this.log.readEvents(watcher.last, watcher.lower, watcher.upper));
          for (const row of rows) {
            if (watcher.closed) return;
            const event: KvEvent<unknown> = { type: row.type, key: row.key, revision: row.revision, value: decode(row.value) };
            // Advanced before the call so a throwing callback still sees each event exactly once.
            watcher.last = event.revision;
            try {
              watcher.onEvent(event);
            } catch (error) {
              this.reportCallbackError(error, event);
            }
          }
          if (rows.length < WATCH_BATCH) break;
        }
      }
      this.failing = false;
    } catch (error) {
      // The poll sees this watcher is behind and wakes it again.
      this.reportReadFailure(error);
    } finally {
      watcher.running = false;
    }
  }

  private reportCallbackError(error: unknown, event: KvEvent<unknown>): void {
    if (this.options.logger !== undefined) {
      this.options.logger.error({ err: error, key: event.key, revision: event.revision }, 'kv watch callback threw');
    } else {
      process.emitWarning(`kv watch callback threw at revision ${event.revision} (${event.key}): ${errorMessage(error)}`);
    }
  }
}

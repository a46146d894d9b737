/** The KvStore port on SQLite: a revision counter row, the current keys, and an event log watches read. */
import type { Logger } from '../core/logging.ts';
import { decode, encode, prefixUpperBound, requireExpected } from './input.ts';
import { KvWatchers, WATCH_BATCH, type EventLog, type StoredEvent } from './kv-watch.ts';
import type { KvEntry, KvEvent, KvPutOptions, KvStore, KvWatch, KvWriteOutcome } from './ports.ts';
import type { QueryMeter } from './query-metrics.ts';
import type { Row, Sqlite } from './sqlite-client.ts';

const KV_EVENTS = `
  SELECT revision, key, type, value FROM kv_events
  WHERE revision > ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
  ORDER BY revision LIMIT ?4`;

function toEntry<T>(row: Row): KvEntry<T> {
  return {
    key: row['key'] as string,
    value: decode<T>(row['value'] ?? null) as T,
    modRevision: row['mod_revision'] as number,
    createRevision: row['create_revision'] as number,
    version: row['version'] as number,
  };
}

export class SqliteKvStore implements KvStore {
  private readonly s: Sqlite;
  private readonly watchers: KvWatchers;

  /** `pollMs`: how often open watches look for events written through other connections to the same file. */
  constructor(s: Sqlite, pollMs: number, logger: Logger | undefined, meter: QueryMeter) {
    this.s = s;
    const log: EventLog = {
      readEvents: (after, lower, upper) => s.stmt(KV_EVENTS).all(after, lower, upper ?? null, WATCH_BATCH) as unknown as StoredEvent[],
      revision: () => this.currentRevision(),
      get closed() {
        return s.isClosed;
      },
    };
    this.watchers = new KvWatchers(log, { pollMs, logger, meter });
  }

  private currentRevision(): number {
    return this.s.stmt('SELECT revision FROM kv_revision WHERE id = 0').get()?.['revision'] as number;
  }

  /** Inside a write transaction. */
  private bump(): number {
    return this.s.stmt('UPDATE kv_revision SET revision = revision + 1 WHERE id = 0 RETURNING revision').get()?.[
      'revision'
    ] as number;
  }

  private row(key: string): Row | undefined {
    return this.s.stmt('SELECT key, value, create_revision, mod_revision, version FROM kv WHERE key = ?').get(key);
  }

  async get<T>(key: string): Promise<KvEntry<T> | undefined> {
    this.s.ensureOpen();
    const row = this.row(key);
    return row === undefined ? undefined : toEntry<T>(row);
  }

  /** Inside a write transaction: the fence, then compare-and-set on the key's modRevision. */
  private checkWrite(key: string, options: KvPutOptions | undefined): (KvWriteOutcome & { ok: false }) | { existing: Row | undefined } {
    this.s.checkFence(options?.fence);
    const existing = this.row(key);
    const current = existing === undefined ? 0 : (existing['mod_revision'] as number);
    if (options?.expectedRevision !== undefined && options.expectedRevision !== current) {
      return { ok: false, reason: 'revision-mismatch', currentRevision: current };
    }
    return { existing };
  }

  async put<T>(key: string, value: T, options?: KvPutOptions): Promise<KvWriteOutcome> {
    this.s.ensureOpen();
    requireExpected(options?.expectedRevision, 'expectedRevision');
    const text = encode(value, `value for key "${key}"`);
    const outcome = this.s.write((): KvWriteOutcome => {
      const checked = this.checkWrite(key, options);
      if ('ok' in checked) return checked;
      const revision = this.bump();
      this.s
        .stmt(
          `INSERT INTO kv (key, value, create_revision, mod_revision, version) VALUES (?1, ?2, ?3, ?3, 1)
           ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision, version = version + 1`,
        )
        .run(key, text, revision);
      this.s.stmt(`INSERT INTO kv_events (revision, key, type, value) VALUES (?, ?, 'put', ?)`).run(revision, key, text);
      return { ok: true, revision };
    });
    if (outcome.ok) this.watchers.wake(outcome.revision);
    return outcome;
  }

  async delete(key: string, options?: KvPutOptions): Promise<KvWriteOutcome> {
    this.s.ensureOpen();
    requireExpected(options?.expectedRevision, 'expectedRevision');
    let changed = false;
    const outcome = this.s.write((): KvWriteOutcome => {
      const checked = this.checkWrite(key, options);
      if ('ok' in checked) return checked;
      const { existing } = checked;
      // Deleting a missing key changes nothing, so it consumes no revision and emits no event.
      if (existing === undefined) return { ok: true, revision: this.currentRevision() };
      const revision = this.bump();
      this.s.stmt('DELETE FROM kv WHERE key = ?').run(key);
      this.s.stmt(`INSERT INTO kv_events (revision, key, type, value) VALUES (?, ?, 'delete', NULL)`).run(revision, key);
      changed = true;
      return { ok: true, revision };
    });
    if (changed && outcome.ok) this.watchers.wake(outcome.revision);
    return outcome;
  }

  async list<T>(prefix: string): Promise<{ entries: KvEntry<T>[]; revision: number }> {
    this.s.ensureOpen();
    const upper = prefixUpperBound(prefix);
    return this.s.read(() => {
      const rows =
        upper === undefined
          ? this.s.stmt('SELECT key, value, create_revision, mod_revision, version FROM kv WHERE key >= ? ORDER BY key').all(prefix)
          : this.s
              .stmt('SELECT key, value, create_revision, mod_revision, version FROM kv WHERE key >= ? AND key < ? ORDER BY key')
              .all(prefix, upper);
      return { entries: rows.map((row) => toEntry<T>(row)), revision: this.currentRevision() };
    });
  }

  async revision(): Promise<number> {
    this.s.ensureOpen();
    return this.currentRevision();
  }

  /** Replay and live delivery are one loop (src/store/kv-watch.ts); commits through other connections are found by its poll. */
  watch<T>(prefix: string, fromRevision: number, onEvent: (event: KvEvent<T>) => void): KvWatch {
    this.s.ensureOpen();
    return this.watchers.watch(prefix, fromRevision, onEvent);
  }

  close(): void {
    this.watchers.close();
  }
}

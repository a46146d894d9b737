/**
 * Embedded adapter for the state ports on node:sqlite (one DatabaseSync connection per opened store).
 *
 * Every call runs synchronously inside the returned promise: SQLite work here takes microseconds, so
 * hopping to a worker would cost more than it saves, and holding no transaction across an await means
 * two stores on one file (two processes) only ever contend inside a single synchronous call, which
 * busy_timeout resolves.
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLInputValue, type SQLOutputValue, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../core/logging.ts';
import { ArcError, StaleFencingTokenError, errorMessage } from '../core/errors.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { decode, encode, prefixUpperBound, requireAcquireBatch, requireExpected, requireTime, requireTtl } from './input.ts';
import type {
  AcquireOutcome,
  AcquireRequest,
  DocumentPut,
  DocumentStore,
  DocumentVersion,
  Fence,
  KvEntry,
  KvEvent,
  KvPutOptions,
  KvStore,
  KvWatch,
  KvWriteOutcome,
  LeaseGrant,
  LeaseStore,
  PutOptions,
  ReadOptions,
  StateStores,
  WriteOutcome,
} from './ports.ts';

export interface SqliteStoreOptions {
  /** A file path, or ':memory:' for a private in-memory database. */
  readonly path: string;
  readonly clock?: Clock;
  /** How long a write waits for another connection's lock before failing UNAVAILABLE. */
  readonly busyTimeoutMs?: number;
  /** How often an open watch looks for events written through other connections to the same file. */
  readonly watchPollMs?: number;
  /** Where exceptions thrown by watch callbacks are reported; they never stop delivery. */
  readonly logger?: Logger;
  /**
   * Size past which the WAL is folded back and rewound on the writing connection (default 64 MB).
   * Under sustained writes the background PASSIVE checkpoint never finds the WAL fully copied when a
   * transaction starts, so without this the file grows without bound (hundreds of MB a minute).
   */
  readonly walLimitBytes?: number;
}

interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Append-only: a released build must be able to open every database an older build wrote. */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'documents, kv, leases',
    sql: `
      CREATE TABLE documents (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT    NOT NULL,
        id         TEXT    NOT NULL,
        version    INTEGER NOT NULL,
        valid_from INTEGER NOT NULL,
        tx_time    INTEGER NOT NULL,
        body       TEXT,
        deleted    INTEGER NOT NULL CHECK (deleted IN (0, 1)),
        UNIQUE (collection, id, version)
      );
      -- Serves both the point as-of read (seek to id, walk valid_from backwards) and list's window,
      -- whose partition/order keys it matches so SQLite needs no sort for the ranking.
      CREATE INDEX documents_as_of ON documents (collection, id, valid_from, tx_time, seq);

      CREATE TABLE kv (
        key             TEXT    PRIMARY KEY,
        value           TEXT    NOT NULL,
        create_revision INTEGER NOT NULL,
        mod_revision    INTEGER NOT NULL,
        version         INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE kv_events (
        revision INTEGER PRIMARY KEY,
        key      TEXT    NOT NULL,
        type     TEXT    NOT NULL CHECK (type IN ('put', 'delete')),
        value    TEXT
      );
      -- A counter rather than MAX(kv_events.revision) so compacting the event log later cannot make
      -- the store revision go backwards.
      CREATE TABLE kv_revision (
        id       INTEGER PRIMARY KEY CHECK (id = 0),
        revision INTEGER NOT NULL
      );
      INSERT INTO kv_revision (id, revision) VALUES (0, 0);

      -- Rows outlive release and expiry (holder NULL) because the token is the high-water mark that
      -- fencing depends on: deleting the row would restart tokens at 1.
      CREATE TABLE leases (
        name       TEXT    PRIMARY KEY,
        holder     TEXT,
        token      INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
];

const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const WATCH_BATCH = 500;

type Row = Record<string, SQLOutputValue>;

/** Lets a transaction body roll back while still returning a result (putMany's all-or-nothing). */
class Rollback<R> {
  readonly result: R;
  constructor(result: R) {
    this.result = result;
  }
}

class Sqlite {
  readonly db: DatabaseSync;
  readonly clock: Clock;
  private closed = false;
  private readonly beginImmediate: StatementSync;
  private readonly beginDeferred: StatementSync;
  private readonly commit: StatementSync;
  private readonly rollback: StatementSync;
  private readonly cache = new Map<string, StatementSync>();
  private checkpointer: Worker | undefined;
  private readonly walPath: string | undefined;
  private readonly walLimitBytes: number;
  private commitsSinceWalCheck = 0;

  constructor(path: string, clock: Clock, busyTimeoutMs: number, walLimitBytes = 64 << 20) {
    this.walLimitBytes = walLimitBytes;
    this.walPath = path !== ':memory:' && path !== '' ? `${path}-wal` : undefined;
    if (path !== ':memory:' && path !== '') mkdirSync(dirname(path), { recursive: true });
    this.clock = clock;
    this.db = new DatabaseSync(path, { timeout: busyTimeoutMs });
    try {
      // WAL lets readers proceed during a write and makes a commit one sequential append; NORMAL
      // skips the fsync per commit (a power loss may drop the last commits but never corrupts).
      this.db.exec('PRAGMA journal_mode = WAL');
      this.db.exec('PRAGMA synchronous = NORMAL');
      this.db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(busyTimeoutMs))}`);
      // After a rewind, SQLite truncates the WAL file to this size rather than keeping its high-water mark.
      this.db.exec(`PRAGMA journal_size_limit = ${Math.trunc(walLimitBytes / 2)}`);
      if (path !== ':memory:' && path !== '') this.checkpointer = startCheckpointer(this.db, path);
      this.beginImmediate = this.db.prepare('BEGIN IMMEDIATE');
      this.beginDeferred = this.db.prepare('BEGIN');
      this.commit = this.db.prepare('COMMIT');
      this.rollback = this.db.prepare('ROLLBACK');
      this.migrate();
    } catch (error) {
      this.db.close();
      throw translate(error);
    }
  }

  private migrate(): void {
    this.db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    INTEGER PRIMARY KEY,
      name       TEXT    NOT NULL,
      applied_at INTEGER NOT NULL
    )`);
    // IMMEDIATE so two processes opening a fresh file at once apply each migration exactly once.
    this.write(() => {
      const row = this.db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get();
      const applied = Number(row?.['v'] ?? 0);
      const known = MIGRATIONS.at(-1)?.version ?? 0;
      if (applied > known) {
        throw new ArcError(
          'INTERNAL',
          `database schema version ${applied} is newer than this build understands (${known}); upgrade arcnet`,
          { retryable: false },
        );
      }
      const record = this.db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
      for (const migration of MIGRATIONS) {
        if (migration.version <= applied) continue;
        this.db.exec(migration.sql);
        record.run(migration.version, migration.name, Date.now());
      }
    });
  }

  /** Prepared once per connection: statement compilation costs far more than the hot-path queries. */
  stmt(sql: string): StatementSync {
    let statement = this.cache.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.cache.set(sql, statement);
    }
    return statement;
  }

  ensureOpen(): void {
    if (this.closed) throw new ArcError('CLOSED', 'the SQLite state store is closed', { retryable: false });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** A read-check-write: IMMEDIATE takes the write lock up front so the check cannot go stale. */
  write<R>(body: () => R | Rollback<R>): R {
    return this.transaction(this.beginImmediate, body);
  }

  /** Several reads from one snapshot. */
  read<R>(body: () => R): R {
    return this.transaction(this.beginDeferred, body);
  }

  private transaction<R>(begin: StatementSync, body: () => R | Rollback<R>): R {
    try {
      begin.run();
    } catch (error) {
      throw translate(error);
    }
    let result: R | Rollback<R>;
    try {
      result = body();
    } catch (error) {
      if (this.db.isTransaction) this.rollback.run();
      throw translate(error);
    }
    if (result instanceof Rollback) {
      this.rollback.run();
      return result.result;
    }
    try {
      this.commit.run();
    } catch (error) {
      if (this.db.isTransaction) this.rollback.run();
      throw translate(error);
    }
    if (begin === this.beginImmediate) this.boundWal();
    return result;
  }

  /** Checks the WAL's size every 64 commits; past the limit, a RESTART checkpoint rewinds it (most pages are already copied by the background checkpoint, so this is brief). */
  private boundWal(): void {
    if (this.walPath === undefined || ++this.commitsSinceWalCheck < 64) return;
    this.commitsSinceWalCheck = 0;
    let size = 0;
    try {
      size = statSync(this.walPath).size;
    } catch {
      return;
    }
    if (size <= this.walLimitBytes) return;
    try {
      this.db.exec('PRAGMA wal_checkpoint(RESTART)');
    } catch {
      // Another connection is busy: the next check tries again.
    }
  }

  /** Inside a write transaction: the brief's rule is an exact token match, so both older and never-granted tokens fail. */
  checkFence(fence: Fence | undefined): void {
    if (fence === undefined) return;
    const row = this.stmt('SELECT token FROM leases WHERE name = ?').get(fence.lease);
    const current = row === undefined ? undefined : (row['token'] as number);
    if (current !== fence.token) throw new StaleFencingTokenError(fence.lease, fence.token, current);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cache.clear();
    if (this.checkpointer) {
      void this.checkpointer.terminate();
      // Leave the file whole on disk: fold the WAL back in before closing.
      this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    }
    this.db.close();
  }
}

/**
 * WAL checkpoints copy pages into the database and fsync it: milliseconds, which the automatic
 * checkpoint would spend inside whichever commit crossed the threshold, on the event loop. A worker
 * thread with its own connection checkpoints instead (PASSIVE: it never blocks writers), so the
 * routing hot path only ever appends to the WAL.
 */
function startCheckpointer(db: DatabaseSync, path: string): Worker {
  db.exec('PRAGMA wal_autocheckpoint = 0');
  const worker = new Worker(
    `const { DatabaseSync } = require('node:sqlite');
     const { workerData } = require('node:worker_threads');
     const db = new DatabaseSync(workerData.path, { timeout: 1000 });
     setInterval(() => { try { db.exec('PRAGMA wal_checkpoint(PASSIVE)'); } catch {} }, workerData.intervalMs);`,
    { eval: true, workerData: { path, intervalMs: 500 } },
  );
  worker.unref();
  worker.on('error', () => {
    // Without the worker, fall back to SQLite's own checkpoints so the WAL cannot grow without bound.
    if (db.isOpen) db.exec('PRAGMA wal_autocheckpoint = 1000');
  });
  return worker;
}

function translate(error: unknown): unknown {
  if (error instanceof ArcError) return error;
  const errcode = (error as { errcode?: unknown } | null)?.errcode;
  if (errcode === SQLITE_BUSY || errcode === SQLITE_LOCKED) {
    return new ArcError('UNAVAILABLE', `SQLite state store is locked by another connection: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  return error;
}

// ---------------------------------------------------------------------------------------------------
// Documents

const DOC_COLUMNS = 'collection, id, version, valid_from, tx_time, body, deleted';

function toVersion<T>(row: Row): DocumentVersion<T> {
  return {
    collection: row['collection'] as string,
    id: row['id'] as string,
    version: row['version'] as number,
    validFrom: row['valid_from'] as number,
    txTime: row['tx_time'] as number,
    body: decode<T>(row['body'] ?? null),
    deleted: row['deleted'] === 1,
  };
}

class SqliteDocumentStore implements DocumentStore {
  private readonly s: Sqlite;
  constructor(s: Sqlite) {
    this.s = s;
  }

  private latestVersion(collection: string, id: string): { version: number; deleted: boolean } {
    const row = this.s
      .stmt('SELECT version, deleted FROM documents WHERE collection = ? AND id = ? ORDER BY version DESC LIMIT 1')
      .get(collection, id);
    return row === undefined ? { version: 0, deleted: true } : { version: row['version'] as number, deleted: row['deleted'] === 1 };
  }

  /**
   * expectedVersion 0 means "no live document": it matches an id never written and one whose latest
   * version is a deletion, so create-if-absent works after a delete. Any other value must equal the
   * latest version exactly (by version number, whatever its valid time).
   */
  private static casHolds(expected: number | undefined, latest: { version: number; deleted: boolean }): boolean {
    if (expected === undefined) return true;
    if (expected === 0) return latest.deleted;
    return expected === latest.version;
  }

  /** Runs inside a write transaction. */
  private append(collection: string, id: string, version: number, validFrom: number, now: number, body: string | null): Row {
    this.s
      .stmt(
        'INSERT INTO documents (collection, id, version, valid_from, tx_time, body, deleted) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(collection, id, version, validFrom, now, body, body === null ? 1 : 0);
    return { collection, id, version, valid_from: validFrom, tx_time: now, body, deleted: body === null ? 1 : 0 };
  }

  private writeOne<T>(collection: string, id: string, body: string | null, options: PutOptions | undefined): WriteOutcome<T> {
    this.s.ensureOpen();
    requireExpected(options?.expectedVersion, 'expectedVersion');
    const now = this.s.clock.now();
    const validFrom = requireTime(options?.validFrom ?? now, 'validFrom');
    return this.s.write(() => {
      this.s.checkFence(options?.fence);
      const latest = this.latestVersion(collection, id);
      if (!SqliteDocumentStore.casHolds(options?.expectedVersion, latest)) {
        return { ok: false, reason: 'version-mismatch', currentVersion: latest.version } as const;
      }
      const row = this.append(collection, id, latest.version + 1, validFrom, now, body);
      return { ok: true, version: toVersion<T>(row) } as const;
    });
  }

  async put<T>(collection: string, id: string, body: T, options?: PutOptions): Promise<WriteOutcome<T>> {
    return this.writeOne<T>(collection, id, encode(body, 'document body'), options);
  }

  async delete(collection: string, id: string, options?: PutOptions): Promise<WriteOutcome<never>> {
    // A delete always appends a tombstone, even for an id with no live version: in a bitemporal store a
    // (possibly retroactive) "this did not exist from validFrom" is itself a fact worth recording.
    return this.writeOne<never>(collection, id, null, options);
  }

  /**
   * On any version mismatch nothing lands, and every outcome is ok:false 'version-mismatch' carrying
   * the id's latest committed version: reporting ok:true for puts that were rolled back would lie, and
   * the current versions let the caller rebuild the whole batch in one read. A stale fence throws.
   */
  async putMany<T>(puts: readonly DocumentPut<T>[]): Promise<WriteOutcome<T>[]> {
    this.s.ensureOpen();
    if (puts.length === 0) return [];
    const now = this.s.clock.now();
    const prepared = puts.map((p) => {
      requireExpected(p.options?.expectedVersion, 'expectedVersion');
      return { put: p, body: encode(p.body, 'document body'), validFrom: requireTime(p.options?.validFrom ?? now, 'validFrom') };
    });
    return this.s.write(() => {
      // Versions as committed before this batch, for the mismatch report (a later put of the same id in
      // the batch sees the earlier one's uncommitted row).
      const before = new Map<string, number>();
      const outcomes: WriteOutcome<T>[] = [];
      let failed = false;
      for (const { put, body, validFrom } of prepared) {
        this.s.checkFence(put.options?.fence);
        const latest = this.latestVersion(put.collection, put.id);
        const key = `${put.collection}\u0000${put.id}`;
        if (!before.has(key)) before.set(key, latest.version);
        if (!SqliteDocumentStore.casHolds(put.options?.expectedVersion, latest)) {
          failed = true;
          outcomes.push({ ok: false, reason: 'version-mismatch', currentVersion: latest.version });
          continue;
        }
        const row = this.append(put.collection, put.id, latest.version + 1, validFrom, now, body);
        outcomes.push({ ok: true, version: toVersion<T>(row) });
      }
      if (!failed) return outcomes;
      return new Rollback(
        prepared.map(({ put }): WriteOutcome<T> => ({
          ok: false,
          reason: 'version-mismatch',
          currentVersion: before.get(`${put.collection}\u0000${put.id}`) ?? 0,
        })),
      );
    });
  }

  async get<T>(collection: string, id: string, options?: ReadOptions): Promise<DocumentVersion<T> | undefined> {
    this.s.ensureOpen();
    const now = this.s.clock.now();
    const row = this.s
      .stmt(
        `SELECT ${DOC_COLUMNS} FROM documents
         WHERE collection = ? AND id = ? AND valid_from <= ? AND tx_time <= ?
         ORDER BY valid_from DESC, tx_time DESC, seq DESC LIMIT 1`,
      )
      .get(collection, id, options?.asOf ?? now, options?.knownAt ?? now);
    if (row === undefined || row['deleted'] === 1) return undefined;
    return toVersion<T>(row);
  }

  async list<T>(collection: string, options?: ReadOptions): Promise<DocumentVersion<T>[]> {
    this.s.ensureOpen();
    const now = this.s.clock.now();
    // One pass over the collection's index range: rank each id's visible rows and keep the winner.
    const rows = this.s
      .stmt(
        `SELECT ${DOC_COLUMNS} FROM (
           SELECT ${DOC_COLUMNS}, ROW_NUMBER() OVER (
             PARTITION BY id ORDER BY valid_from DESC, tx_time DESC, seq DESC
           ) AS rank
           FROM documents
           WHERE collection = ? AND valid_from <= ? AND tx_time <= ?
         )
         WHERE rank = 1 AND deleted = 0
         ORDER BY id`,
      )
      .all(collection, options?.asOf ?? now, options?.knownAt ?? now);
    return rows.map((row) => toVersion<T>(row));
  }

  async history<T>(collection: string, id: string): Promise<DocumentVersion<T>[]> {
    this.s.ensureOpen();
    // seq is commit order even if the clock stepped backwards between writes.
    const rows = this.s.stmt(`SELECT ${DOC_COLUMNS} FROM documents WHERE collection = ? AND id = ? ORDER BY seq`).all(collection, id);
    return rows.map((row) => toVersion<T>(row));
  }
}

// ---------------------------------------------------------------------------------------------------
// KV

interface Watcher {
  readonly lower: string;
  readonly upper: string | null;
  readonly onEvent: (event: KvEvent<unknown>) => void;
  /** Highest revision delivered (or skipped as before fromRevision). */
  last: number;
  scheduled: boolean;
  closed: boolean;
}

function toEntry<T>(row: Row): KvEntry<T> {
  return {
    key: row['key'] as string,
    value: decode<T>(row['value'] ?? null) as T,
    modRevision: row['mod_revision'] as number,
    createRevision: row['create_revision'] as number,
    version: row['version'] as number,
  };
}

class SqliteKvStore implements KvStore {
  private readonly s: Sqlite;
  private readonly watchers = new Set<Watcher>();
  private readonly pollMs: number;
  private readonly logger: Logger | undefined;
  private poll: NodeJS.Timeout | undefined;

  constructor(s: Sqlite, pollMs: number, logger: Logger | undefined) {
    this.s = s;
    this.pollMs = pollMs;
    this.logger = logger;
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
    if (outcome.ok) this.notify();
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
    if (changed) this.notify();
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

  /**
   * Replay and live delivery are the same loop: each watcher remembers the last revision it delivered
   * and, when woken (after a local commit, or by the poll for other connections' commits), reads the
   * event log past it. So there is no gap or overlap between history and live, and order is the log's.
   */
  watch<T>(prefix: string, fromRevision: number, onEvent: (event: KvEvent<T>) => void): KvWatch {
    this.s.ensureOpen();
    requireExpected(fromRevision, 'fromRevision');
    const watcher: Watcher = {
      lower: prefix,
      upper: prefixUpperBound(prefix) ?? null,
      onEvent: onEvent as (event: KvEvent<unknown>) => void,
      last: fromRevision,
      scheduled: false,
      closed: false,
    };
    this.watchers.add(watcher);
    if (this.poll === undefined) {
      this.poll = setInterval(() => this.pollOtherConnections(), this.pollMs);
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

  private stopPolling(): void {
    if (this.poll !== undefined) clearInterval(this.poll);
    this.poll = undefined;
  }

  private notify(): void {
    for (const watcher of this.watchers) this.schedule(watcher);
  }

  private pollOtherConnections(): void {
    if (this.s.isClosed) return;
    let revision: number;
    try {
      revision = this.currentRevision();
    } catch {
      return; // Locked or closing: the next tick retries.
    }
    for (const watcher of this.watchers) if (watcher.last < revision) this.schedule(watcher);
  }

  /** setImmediate rather than a microtask so a burst of writes wakes each watcher once. */
  private schedule(watcher: Watcher): void {
    if (watcher.scheduled || watcher.closed) return;
    watcher.scheduled = true;
    setImmediate(() => {
      watcher.scheduled = false;
      this.drain(watcher);
    });
  }

  private drain(watcher: Watcher): void {
    const select = this.s.stmt(
      `SELECT revision, key, type, value FROM kv_events
       WHERE revision > ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
       ORDER BY revision LIMIT ?4`,
    );
    while (!watcher.closed && !this.s.isClosed) {
      let rows: Row[];
      try {
        rows = select.all(watcher.last, watcher.lower, watcher.upper as SQLInputValue, WATCH_BATCH);
      } catch {
        // Another connection holds an exclusive lock (checkpoint): the next poll tick retries.
        return;
      }
      for (const row of rows) {
        if (watcher.closed) return;
        const event: KvEvent<unknown> = {
          type: row['type'] as 'put' | 'delete',
          key: row['key'] as string,
          revision: row['revision'] as number,
          value: decode(row['value'] ?? null),
        };
        // Advanced before the call so a throwing callback still sees each event exactly once.
        watcher.last = event.revision;
        try {
          watcher.onEvent(event);
        } catch (error) {
          this.reportCallbackError(error, event);
        }
      }
      if (rows.length < WATCH_BATCH) return;
    }
  }

  private reportCallbackError(error: unknown, event: KvEvent<unknown>): void {
    if (this.logger !== undefined) {
      this.logger.error({ err: error, key: event.key, revision: event.revision }, 'kv watch callback threw');
    } else {
      process.emitWarning(`kv watch callback threw at revision ${event.revision} (${event.key}): ${errorMessage(error)}`);
    }
  }

  close(): void {
    for (const watcher of this.watchers) watcher.closed = true;
    this.watchers.clear();
    this.stopPolling();
  }
}

// ---------------------------------------------------------------------------------------------------
// Leases

class SqliteLeaseStore implements LeaseStore {
  private readonly s: Sqlite;
  private readonly acquireStmt: StatementSync;
  private readonly heldStmt: StatementSync;
  private readonly renewStmt: StatementSync;
  private readonly releaseStmt: StatementSync;
  private readonly currentStmt: StatementSync;
  private queue: { run: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }[] = [];

  constructor(s: Sqlite) {
    this.s = s;
    // One upsert instead of SELECT then UPDATE (it runs inside the group-commit transaction below).
    // SET and WHERE see the old row, so a live same-holder row keeps its token and everything else (free, released,
    // expired, even for the same holder) gets token + 1.
    this.acquireStmt = s.db.prepare(
      `INSERT INTO leases (name, holder, token, expires_at) VALUES (?1, ?2, 1, ?4)
       ON CONFLICT (name) DO UPDATE SET
         token = CASE WHEN holder = excluded.holder AND expires_at > ?3 THEN token ELSE token + 1 END,
         holder = excluded.holder,
         expires_at = excluded.expires_at
       WHERE holder IS NULL OR expires_at <= ?3 OR holder = excluded.holder
       RETURNING token`,
    );
    this.heldStmt = s.db.prepare('SELECT holder, expires_at FROM leases WHERE name = ? AND holder IS NOT NULL AND expires_at > ?');
    // Renewal needs the grant still live: once it expired, anyone observing current() saw the lease
    // free, so the holder must acquire again (and get a new token) rather than silently resume.
    this.renewStmt = s.db.prepare(
      `UPDATE leases SET expires_at = ?4
       WHERE name = ?1 AND token = ?2 AND holder IS NOT NULL AND expires_at > ?3
       RETURNING holder`,
    );
    // Release succeeds while the token is still the latest grant, even past expiry: no one else can
    // have been granted meanwhile (that would have bumped the token), so "true" means "never deposed".
    this.releaseStmt = s.db.prepare('UPDATE leases SET holder = NULL, expires_at = ?3 WHERE name = ?1 AND token = ?2 AND holder IS NOT NULL');
    this.currentStmt = s.db.prepare('SELECT holder, token, expires_at FROM leases WHERE name = ? AND holder IS NOT NULL AND expires_at > ?');
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireOutcome> {
    this.s.ensureOpen();
    requireTtl(ttlMs);
    return this.enqueue(() => this.acquireNow(name, holder, ttlMs));
  }

  async acquireMany(requests: readonly AcquireRequest[]): Promise<AcquireOutcome[]> {
    this.s.ensureOpen();
    requireAcquireBatch(requests);
    if (requests.length === 0) return [];
    // One queued operation: the whole batch lands in one write transaction, and nothing else in the
    // group commit runs between its grants.
    return this.enqueue(() => requests.map((r) => this.acquireNow(r.name, r.holder, r.ttlMs)));
  }

  private acquireNow(name: string, holder: string, ttlMs: number): AcquireOutcome {
    // The held-row read is a separate statement, so another connection may free the lease in
    // between; retrying then is correct and converges because a free lease is granted next time.
    for (let attempt = 0; attempt < 8; attempt++) {
      const now = this.s.clock.now();
      const expiresAt = now + ttlMs;
      const granted = this.acquireStmt.get(name, holder, now, expiresAt);
      if (granted !== undefined) return { ok: true, grant: { name, holder, token: granted['token'] as number, expiresAt } };
      const held = this.heldStmt.get(name, now);
      if (held !== undefined) return { ok: false, reason: 'held', holder: held['holder'] as string, expiresAt: held['expires_at'] as number };
    }
    throw new ArcError('CONFLICT', `lease "${name}" changed hands 8 times while being acquired; retry`, { retryable: true });
  }

  /**
   * Group commit: acquires and releases issued in the same turn of the event loop (the scheduler's
   * partitions routing side by side) share one write transaction, flushed in a microtask, so no
   * caller waits for a timer. Each operation still sees the ones before it, so they stay atomic and
   * ordered; a failed transaction fails every operation in it and writes nothing.
   */
  private enqueue<R>(operation: () => R): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ run: operation, resolve: resolve as (value: unknown) => void, reject });
      if (this.queue.length === 1) queueMicrotask(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    let results: unknown[];
    try {
      this.s.ensureOpen();
      results = this.s.write(() => batch.map((operation) => operation.run()));
    } catch (error) {
      const failure = translate(error);
      for (const operation of batch) operation.reject(failure);
      return;
    }
    batch.forEach((operation, i) => operation.resolve(results[i]));
  }

  async renew(grant: LeaseGrant, ttlMs: number): Promise<LeaseGrant | undefined> {
    this.s.ensureOpen();
    requireTtl(ttlMs);
    const now = this.s.clock.now();
    const expiresAt = now + ttlMs;
    try {
      const row = this.renewStmt.get(grant.name, grant.token, now, expiresAt);
      return row === undefined ? undefined : { name: grant.name, holder: row['holder'] as string, token: grant.token, expiresAt };
    } catch (error) {
      throw translate(error);
    }
  }

  async release(grant: Pick<LeaseGrant, 'name' | 'token'>): Promise<boolean> {
    this.s.ensureOpen();
    return this.enqueue(() => this.releaseStmt.run(grant.name, grant.token, this.s.clock.now()).changes === 1);
  }

  async releaseMany(grants: readonly Pick<LeaseGrant, 'name' | 'token'>[]): Promise<boolean[]> {
    this.s.ensureOpen();
    if (grants.length === 0) return [];
    return this.enqueue(() => {
      const now = this.s.clock.now();
      return grants.map((grant) => this.releaseStmt.run(grant.name, grant.token, now).changes === 1);
    });
  }

  async current(name: string): Promise<LeaseGrant | undefined> {
    this.s.ensureOpen();
    const row = this.currentStmt.get(name, this.s.clock.now());
    if (row === undefined) return undefined;
    return { name, holder: row['holder'] as string, token: row['token'] as number, expiresAt: row['expires_at'] as number };
  }
}

// ---------------------------------------------------------------------------------------------------

export function openSqliteStores(options: SqliteStoreOptions): StateStores {
  const sqlite = new Sqlite(options.path, options.clock ?? systemClock, options.busyTimeoutMs ?? 5_000, options.walLimitBytes);
  const kv = new SqliteKvStore(sqlite, options.watchPollMs ?? 250, options.logger);
  return {
    documents: new SqliteDocumentStore(sqlite),
    kv,
    leases: new SqliteLeaseStore(sqlite),
    close: async () => {
      kv.close();
      sqlite.close();
    },
  };
}

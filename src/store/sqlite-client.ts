/**
 * One node:sqlite connection (DatabaseSync) per opened store, shared by the three port adapters: its
 * pragmas, its transactions, its statement cache, the fence check every fenced write makes, and the
 * background checkpointer that keeps WAL work off the event loop.
 *
 * Every call runs synchronously inside the returned promise: SQLite work here takes microseconds, so
 * hopping to a worker would cost more than it saves, and holding no transaction across an await means
 * two stores on one file (two processes) only ever contend inside a single synchronous call, which
 * busy_timeout resolves.
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLOutputValue, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { ArcError, StaleFencingTokenError, errorMessage } from '../core/errors.ts';
import type { Clock } from '../core/clock.ts';
import type { Fence } from './ports.ts';
import { migrate } from './sqlite-schema.ts';

const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

export type Row = Record<string, SQLOutputValue>;

/** Lets a transaction body roll back while still returning a result (putMany's all-or-nothing). */
export class Rollback<R> {
  readonly result: R;
  constructor(result: R) {
    this.result = result;
  }
}

export class Sqlite {
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
      // IMMEDIATE so two processes opening a fresh file at once apply each migration exactly once.
      migrate(this.db, (body) => this.write(body));
    } catch (error) {
      this.db.close();
      throw translate(error);
    }
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
    let rewound = false;
    try {
      // busy = 1 when a reader (the background checkpointer, another connection) kept it from rewinding.
      const row = this.db.prepare('PRAGMA wal_checkpoint(RESTART)').get() as { busy?: number } | undefined;
      rewound = row?.busy === 0;
    } catch {
      rewound = false;
    }
    // Not rewound: try again at the next commit rather than 64 commits later, or a busy moment lets
    // the WAL run far past its bound.
    if (!rewound) this.commitsSinceWalCheck = 63;
  }

  /** Runs a statement not worth caching (schema changes). */
  run(sql: string): void {
    this.db.exec(sql);
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

export function translate(error: unknown): unknown {
  if (error instanceof ArcError) return error;
  const errcode = (error as { errcode?: unknown } | null)?.errcode;
  if (errcode === SQLITE_BUSY || errcode === SQLITE_LOCKED) {
    return new ArcError('UNAVAILABLE', `SQLite state store is locked by another connection: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  return error;
}

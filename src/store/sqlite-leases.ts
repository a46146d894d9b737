/** The LeaseStore port on SQLite: one row per lease name, kept forever for its token high-water mark. */
import type { StatementSync } from 'node:sqlite';
import { ArcError } from '../core/errors.ts';
import { requireAcquireBatch, requireTtl } from './input.ts';
import type { AcquireOutcome, AcquireRequest, LeaseGrant, LeaseStore } from './ports.ts';
import { translate, type Sqlite } from './sqlite-client.ts';

export class SqliteLeaseStore implements LeaseStore {
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

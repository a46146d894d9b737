/** The LeaseStore port on PostgreSQL: one row per lease name, kept forever for its token high-water mark. */
import { ArcError } from '../core/errors.ts';
import { requireAcquireBatch, requireTtl } from './input.ts';
import type { AcquireOutcome, AcquireRequest, LeaseGrant, LeaseStore } from './ports.ts';
import { requireText, type Pg, type Row } from './postgres-client.ts';

const ACQUIRE_ATTEMPTS = 8;

/**
 * One statement, so one round trip and atomic across processes. The upsert grants when the lease is
 * free, expired or already this holder's (SET and WHERE see the existing row: a live same-holder row
 * keeps its token, any other grant gets token + 1, and the row is never deleted, so tokens never
 * restart). When it does not grant, ON CONFLICT has locked the row and `cur`, a locking read, returns
 * that row's latest version: who holds it now, not as of the statement's snapshot. A row inserted by
 * another process after the snapshot is invisible to `cur`, giving no row at all: the caller retries.
 */
const ACQUIRE = `
  WITH up AS (
    INSERT INTO leases AS l (name, holder, token, expires_at) VALUES ($1, $2, 1, $4)
    ON CONFLICT (name) DO UPDATE SET
      token = CASE WHEN l.holder = excluded.holder AND l.expires_at > $3 THEN l.token ELSE l.token + 1 END,
      holder = excluded.holder,
      expires_at = excluded.expires_at
    WHERE l.holder IS NULL OR l.expires_at <= $3 OR l.holder = excluded.holder
    RETURNING token
  ),
  cur AS (
    SELECT holder, token, expires_at FROM leases WHERE name = $1 FOR UPDATE
  )
  SELECT true AS granted, token, NULL::text AS holder, NULL::int8 AS expires_at FROM up
  UNION ALL
  SELECT false, token, holder, expires_at FROM cur WHERE NOT EXISTS (SELECT 1 FROM up)`;

/**
 * ACQUIRE for a whole batch in one statement. The upsert takes the requests in name order (COLLATE "C",
 * the column's order, which document fences also lock leases in), so two batches over overlapping
 * names wait for each other's rows in one order and cannot deadlock. `cur` reads only the rows the
 * upsert did not grant, which makes it run after the upsert: every row it locks, ON CONFLICT has
 * already locked, so it adds no lock of its own and returns each row's latest version. A name missing
 * from both (inserted by another process after the snapshot) is for the caller to retry, as in ACQUIRE.
 */
const ACQUIRE_MANY = `
  WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) AS t(name, holder, expires_at)
  ),
  up AS (
    INSERT INTO leases AS l (name, holder, token, expires_at)
    SELECT name, holder, 1, expires_at FROM input ORDER BY name COLLATE "C"
    ON CONFLICT (name) DO UPDATE SET
      token = CASE WHEN l.holder = excluded.holder AND l.expires_at > $4 THEN l.token ELSE l.token + 1 END,
      holder = excluded.holder,
      expires_at = excluded.expires_at
    WHERE l.holder IS NULL OR l.expires_at <= $4 OR l.holder = excluded.holder
    RETURNING name, token
  ),
  cur AS (
    SELECT name, holder, expires_at FROM leases
    WHERE name = ANY($1::text[]) AND name NOT IN (SELECT name FROM up)
    ORDER BY name
    FOR UPDATE
  )
  SELECT name, true AS granted, token, NULL::text AS holder, NULL::int8 AS expires_at FROM up
  UNION ALL
  SELECT name, false, NULL::int8, holder, expires_at FROM cur`;

/**
 * Taken before RELEASE_MANY in the same transaction: an UPDATE … FROM locks rows in whatever order its
 * join produces, which against a concurrent ACQUIRE_MANY could deadlock (and a deadlock is only
 * detected after deadlock_timeout, a second by default). Name order here matches ACQUIRE_MANY's.
 */
const LOCK_LEASES = 'SELECT 1 FROM leases WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE';

// RELEASE for a batch. Its snapshot is taken after LOCK_LEASES, so it sees the rows as they are locked.
const RELEASE_MANY = `
  UPDATE leases AS l SET holder = NULL, expires_at = $3
  FROM unnest($1::text[], $2::int8[]) AS r(name, token)
  WHERE l.name = r.name AND l.token = r.token AND l.holder IS NOT NULL
  RETURNING l.name, l.token`;

// Renewal needs the grant still live: once it expired, anyone observing current() saw the lease free,
// so the holder must acquire again (and get a new token) rather than silently resume.
const RENEW = `
  UPDATE leases SET expires_at = $4
  WHERE name = $1 AND token = $2 AND holder IS NOT NULL AND expires_at > $3
  RETURNING holder`;

// Release succeeds while the token is still the latest grant, even past expiry: no one else can have
// been granted meanwhile (that would have bumped the token), so "true" means "never deposed".
const RELEASE = 'UPDATE leases SET holder = NULL, expires_at = $3 WHERE name = $1 AND token = $2 AND holder IS NOT NULL';

const CURRENT = 'SELECT holder, token, expires_at FROM leases WHERE name = $1 AND holder IS NOT NULL AND expires_at > $2';

interface LeaseRow extends Row {
  granted: boolean;
  token: number;
  holder: string | null;
  expires_at: number | null;
}

interface LeaseBatchRow extends Row {
  name: string;
  granted: boolean;
  token: number | null;
  holder: string | null;
  expires_at: number | null;
}

export class PgLeaseStore implements LeaseStore {
  private readonly pg: Pg;
  constructor(pg: Pg) {
    this.pg = pg;
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireOutcome> {
    this.pg.ensureOpen();
    requireText(name, 'lease name');
    requireText(holder, 'holder');
    requireTtl(ttlMs);
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
      const now = this.pg.clock.now();
      const expiresAt = now + ttlMs;
      const [row] = await this.pg.query<LeaseRow>(ACQUIRE, [name, holder, now, expiresAt]);
      if (row === undefined) continue;
      if (row.granted) return { ok: true, grant: { name, holder, token: row.token, expiresAt } };
      if (row.holder !== null && row.expires_at !== null && row.expires_at > now && row.holder !== holder) {
        return { ok: false, reason: 'held', holder: row.holder, expiresAt: row.expires_at };
      }
    }
    throw new ArcError('CONFLICT', `lease "${name}" changed hands ${ACQUIRE_ATTEMPTS} times while being acquired; retry`, { retryable: true });
  }

  /**
   * One flight per attempt; Pg.flight reruns it after a deadlock or serialization failure. Requests
   * whose rows the statement could not read (see ACQUIRE_MANY) are sent again on their own, as
   * acquire() retries; every other outcome is final after the first flight.
   */
  async acquireMany(requests: readonly AcquireRequest[]): Promise<AcquireOutcome[]> {
    this.pg.ensureOpen();
    for (const r of requests) {
      requireText(r.name, 'lease name');
      requireText(r.holder, 'holder');
    }
    requireAcquireBatch(requests);
    const outcomes: (AcquireOutcome | undefined)[] = requests.map(() => undefined);
    let pending = requests.map((_, i) => i);
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS && pending.length > 0; attempt++) {
      const now = this.pg.clock.now();
      const batch = pending.map((i) => requests[i] as AcquireRequest);
      const [rows] = await this.pg.flight([
        {
          text: ACQUIRE_MANY,
          params: [batch.map((r) => r.name), batch.map((r) => r.holder), batch.map((r) => now + r.ttlMs), now],
        },
      ]);
      const byName = new Map(((rows ?? []) as LeaseBatchRow[]).map((row) => [row.name, row]));
      const unsettled: number[] = [];
      for (const i of pending) {
        const { name, holder, ttlMs } = requests[i] as AcquireRequest;
        const row = byName.get(name);
        if (row?.granted === true && row.token !== null) {
          outcomes[i] = { ok: true, grant: { name, holder, token: row.token, expiresAt: now + ttlMs } };
        } else if (row !== undefined && row.holder !== null && row.expires_at !== null && row.expires_at > now && row.holder !== holder) {
          outcomes[i] = { ok: false, reason: 'held', holder: row.holder, expiresAt: row.expires_at };
        } else {
          unsettled.push(i);
        }
      }
      pending = unsettled;
    }
    if (pending.length > 0) {
      const named = pending.slice(0, 5).map((i) => `"${requests[i]?.name}"`).join(', ');
      const more = pending.length > 5 ? ` and ${pending.length - 5} more` : '';
      throw new ArcError('CONFLICT', `leases ${named}${more} changed hands ${ACQUIRE_ATTEMPTS} times while being acquired; retry`, { retryable: true });
    }
    return outcomes as AcquireOutcome[];
  }

  async renew(grant: LeaseGrant, ttlMs: number): Promise<LeaseGrant | undefined> {
    this.pg.ensureOpen();
    requireTtl(ttlMs);
    const now = this.pg.clock.now();
    const expiresAt = now + ttlMs;
    const [row] = await this.pg.query<{ holder: string }>(RENEW, [requireText(grant.name, 'lease name'), grant.token, now, expiresAt]);
    return row === undefined ? undefined : { name: grant.name, holder: row.holder, token: grant.token, expiresAt };
  }

  async release(grant: Pick<LeaseGrant, 'name' | 'token'>): Promise<boolean> {
    this.pg.ensureOpen();
    return (await this.pg.execute(RELEASE, [requireText(grant.name, 'lease name'), grant.token, this.pg.clock.now()])) === 1;
  }

  async releaseMany(grants: readonly Pick<LeaseGrant, 'name' | 'token'>[]): Promise<boolean[]> {
    this.pg.ensureOpen();
    if (grants.length === 0) return [];
    for (const grant of grants) requireText(grant.name, 'lease name');
    const names = grants.map((g) => g.name);
    const [, rows] = await this.pg.flight([
      { text: LOCK_LEASES, params: [names] },
      { text: RELEASE_MANY, params: [names, grants.map((g) => g.token), this.pg.clock.now()] },
    ]);
    // A row is released once however often the batch names it; like release() called in turn, only
    // the first mention of that grant reports true.
    const released = new Map<string, Set<number>>();
    for (const row of (rows ?? []) as { name: string; token: number }[]) {
      const tokens = released.get(row.name) ?? new Set<number>();
      tokens.add(row.token);
      released.set(row.name, tokens);
    }
    return grants.map((grant) => released.get(grant.name)?.delete(grant.token) ?? false);
  }

  async current(name: string): Promise<LeaseGrant | undefined> {
    this.pg.ensureOpen();
    const [row] = await this.pg.query<{ holder: string; token: number; expires_at: number }>(CURRENT, [
      requireText(name, 'lease name'),
      this.pg.clock.now(),
    ]);
    return row === undefined ? undefined : { name, holder: row.holder, token: row.token, expiresAt: row.expires_at };
  }
}

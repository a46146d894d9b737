/**
 * Leases held in this process's memory. For short-lived leases whose holders all live in one process
 * (inference reservations in embedded mode, ADR 0005): a grant costs a map lookup instead of a
 * durable commit. Tokens start above `tokenFloor`, so a floor taken from a durable epoch (one SQLite
 * lease grant per start) keeps them increasing across restarts and no stale result can fence-match.
 */
import { ArcError } from '../core/errors.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { requireAcquireBatch, requireTtl } from './input.ts';
import type { AcquireOutcome, AcquireRequest, LeaseGrant, LeaseStore } from './ports.ts';

interface Row {
  holder: string | undefined;
  token: number;
  expiresAt: number;
}

export interface MemoryLeaseStoreOptions {
  readonly clock?: Clock;
  /** Every token granted is greater than this. */
  readonly tokenFloor?: number;
}

export class MemoryLeaseStore implements LeaseStore {
  private readonly rows = new Map<string, Row>();
  private readonly clock: Clock;
  private readonly floor: number;

  constructor(options: MemoryLeaseStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.floor = options.tokenFloor ?? 0;
    if (!Number.isSafeInteger(this.floor) || this.floor < 0) throw new ArcError('INVALID_INPUT', `tokenFloor must be a non-negative safe integer, got ${this.floor}`);
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireOutcome> {
    requireTtl(ttlMs);
    return this.grant(name, holder, ttlMs);
  }

  async acquireMany(requests: readonly AcquireRequest[]): Promise<AcquireOutcome[]> {
    requireAcquireBatch(requests);
    // Synchronous throughout, so no other call interleaves with the batch.
    return requests.map((r) => this.grant(r.name, r.holder, r.ttlMs));
  }

  private grant(name: string, holder: string, ttlMs: number): AcquireOutcome {
    const now = this.clock.now();
    const expiresAt = now + ttlMs;
    const row = this.rows.get(name);
    if (!row) {
      const token = this.floor + 1;
      this.rows.set(name, { holder, token, expiresAt });
      return { ok: true, grant: { name, holder, token, expiresAt } };
    }
    const live = row.holder !== undefined && row.expiresAt > now;
    if (live && row.holder !== holder) return { ok: false, reason: 'held', holder: row.holder!, expiresAt: row.expiresAt };
    // The same holder renewing a live grant keeps its token; every other grant is a new one.
    if (!live) row.token++;
    row.holder = holder;
    row.expiresAt = expiresAt;
    return { ok: true, grant: { name, holder, token: row.token, expiresAt } };
  }

  async renew(grant: LeaseGrant, ttlMs: number): Promise<LeaseGrant | undefined> {
    requireTtl(ttlMs);
    const now = this.clock.now();
    const row = this.rows.get(grant.name);
    if (!row || row.token !== grant.token || row.holder === undefined || row.expiresAt <= now) return undefined;
    row.expiresAt = now + ttlMs;
    return { name: grant.name, holder: row.holder, token: row.token, expiresAt: row.expiresAt };
  }

  async release(grant: Pick<LeaseGrant, 'name' | 'token'>): Promise<boolean> {
    return this.releaseNow(grant);
  }

  async releaseMany(grants: readonly Pick<LeaseGrant, 'name' | 'token'>[]): Promise<boolean[]> {
    return grants.map((grant) => this.releaseNow(grant));
  }

  private releaseNow(grant: Pick<LeaseGrant, 'name' | 'token'>): boolean {
    const row = this.rows.get(grant.name);
    if (!row || row.token !== grant.token || row.holder === undefined) return false;
    row.holder = undefined;
    row.expiresAt = this.clock.now();
    return true;
  }

  async current(name: string): Promise<LeaseGrant | undefined> {
    const row = this.rows.get(name);
    if (!row || row.holder === undefined || row.expiresAt <= this.clock.now()) return undefined;
    return { name, holder: row.holder, token: row.token, expiresAt: row.expiresAt };
  }
}

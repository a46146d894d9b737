/**
 * Behaviour every LeaseStore adapter must show: TTL grants, renewal, release, fencing tokens that
 * strictly increase per lease across every grant ever made, and batches that behave as the single calls.
 */
import { seededRandom } from '../../src/sim/random.ts';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.ts';
import type { AcquireOutcome, AcquireRequest, LeaseGrant, LeaseStore } from '../../src/store/ports.ts';

export interface LeaseStoreFixture {
  readonly leases: LeaseStore;
  close(): Promise<void>;
}


function shuffle<T>(items: T[], rng: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

function grantOf(outcome: AcquireOutcome): LeaseGrant {
  if (!outcome.ok) throw new Error(`expected a grant, but ${outcome.holder} holds the lease`);
  return outcome.grant;
}

export function leaseStoreContract(name: string, open: (clock: ManualClock) => Promise<LeaseStoreFixture>): void {
  describe(`LeaseStore contract: ${name}`, () => {
    let clock: ManualClock;
    let fixture: LeaseStoreFixture;
    let leases: LeaseStore;

    beforeEach(async () => {
      clock = new ManualClock();
      fixture = await open(clock);
      leases = fixture.leases;
    });

    afterEach(async () => {
      await fixture.close();
    });

    async function grant(name: string, holder: string, ttlMs: number): Promise<LeaseGrant> {
      const outcome = await leases.acquire(name, holder, ttlMs);
      if (!outcome.ok) throw new Error(`expected ${holder} to get ${name}, but ${outcome.holder} holds it`);
      return outcome.grant;
    }

    describe('acquire', () => {
      it('grants a free lease with token 1 and reports it as current', async () => {
        const outcome = await leases.acquire('gpu-1', 'A', 1000);
        const expected: LeaseGrant = { name: 'gpu-1', holder: 'A', token: 1, expiresAt: clock.now() + 1000 };
        expect(outcome).toEqual({ ok: true, grant: expected });
        expect(await leases.current('gpu-1')).toEqual(expected);
        expect(await leases.current('gpu-2')).toBeUndefined();
      });

      it('refuses another holder while the grant is live and reports who holds it until when', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        clock.advance(999);
        expect(await leases.acquire('gpu-1', 'B', 1000)).toEqual({ ok: false, reason: 'held', holder: 'A', expiresAt: a.expiresAt });
        expect(await leases.current('gpu-1')).toEqual(a);
      });

      it('re-acquiring by the live holder extends the grant and keeps the token', async () => {
        const first = await grant('gpu-1', 'A', 1000);
        clock.advance(500);
        const again = await grant('gpu-1', 'A', 1000);
        expect(again).toEqual({ ...first, expiresAt: clock.now() + 1000 });
        expect(await leases.current('gpu-1')).toEqual(again);
      });

      it('expires at expiresAt exactly, after which another holder gets a higher token', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        clock.advance(1000);
        expect(await leases.current('gpu-1')).toBeUndefined();
        const b = await grant('gpu-1', 'B', 1000);
        expect(b.token).toBe(a.token + 1);
        expect(b.holder).toBe('B');
        expect(await leases.current('gpu-1')).toEqual(b);
      });

      it('re-acquiring after one own expiry is a new grant with a new token', async () => {
        const first = await grant('gpu-1', 'A', 100);
        clock.advance(150);
        const second = await grant('gpu-1', 'A', 100);
        expect(second.token).toBe(first.token + 1);
      });

      it('keeps tokens per lease name', async () => {
        const a1 = await grant('gpu-1', 'A', 100);
        clock.advance(100);
        const a2 = await grant('gpu-1', 'B', 100);
        const other = await grant('gpu-2', 'A', 100);
        expect([a1.token, a2.token, other.token]).toEqual([1, 2, 1]);
      });

      it('of concurrent acquires by different holders, exactly one wins', async () => {
        const outcomes = await Promise.all(['A', 'B', 'C', 'D', 'E'].map((holder) => leases.acquire('gpu-1', holder, 1000)));
        const winners = outcomes.filter((o) => o.ok);
        expect(winners).toHaveLength(1);
        const winner = winners[0]?.ok ? winners[0].grant : undefined;
        for (const o of outcomes) if (!o.ok) expect(o.holder).toBe(winner?.holder);
        expect(await leases.current('gpu-1')).toEqual(winner);
      });

      it('rejects a non-positive TTL', async () => {
        await expect(leases.acquire('gpu-1', 'A', 0)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
        await expect(leases.acquire('gpu-1', 'A', -5)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      });
    });

    describe('renew', () => {
      it('extends a live grant keeping its token', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        clock.advance(900);
        const renewed = await leases.renew(a, 1000);
        expect(renewed).toEqual({ ...a, expiresAt: clock.now() + 1000 });
        clock.advance(900);
        expect(await leases.current('gpu-1')).toEqual(renewed);
        expect((await leases.acquire('gpu-1', 'B', 1000)).ok).toBe(false);
      });

      it('fails once the grant expired, even if nobody took it: the holder must acquire again', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        clock.advance(1000);
        expect(await leases.renew(a, 1000)).toBeUndefined();
        expect(await leases.current('gpu-1')).toBeUndefined();
      });

      it('fails after another holder took the lease, and leaves that holder alone', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        clock.advance(1000);
        const b = await grant('gpu-1', 'B', 1000);
        expect(await leases.renew(a, 5000)).toBeUndefined();
        expect(await leases.current('gpu-1')).toEqual(b);
      });

      it('fails after release', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        expect(await leases.release(a)).toBe(true);
        expect(await leases.renew(a, 1000)).toBeUndefined();
        expect(await leases.current('gpu-1')).toBeUndefined();
      });
    });

    describe('release', () => {
      it('frees the lease at once; the next grant gets a higher token', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        expect(await leases.release(a)).toBe(true);
        expect(await leases.current('gpu-1')).toBeUndefined();
        const b = await grant('gpu-1', 'B', 1000);
        expect(b.token).toBe(a.token + 1);
        const a2 = await leases.acquire('gpu-1', 'A', 1000);
        expect(a2.ok).toBe(false);
      });

      it('is false the second time and for a stale token, without disturbing the current holder', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        expect(await leases.release(a)).toBe(true);
        expect(await leases.release(a)).toBe(false);
        const b = await grant('gpu-1', 'B', 1000);
        expect(await leases.release({ name: 'gpu-1', token: a.token })).toBe(false);
        expect(await leases.release({ name: 'gpu-1', token: b.token + 1 })).toBe(false);
        expect(await leases.current('gpu-1')).toEqual(b);
      });

      it('is false for a lease never granted', async () => {
        expect(await leases.release({ name: 'nothing', token: 1 })).toBe(false);
      });

      it('is false after the lease expired and another holder took it', async () => {
        const a = await grant('gpu-1', 'A', 100);
        clock.advance(100);
        await grant('gpu-1', 'B', 100);
        expect(await leases.release(a)).toBe(false);
      });

      it('same holder re-acquiring after release gets a new token', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        await leases.release(a);
        const again = await grant('gpu-1', 'A', 1000);
        expect(again.token).toBe(a.token + 1);
      });
    });

    describe('acquireMany', () => {
      it('grants each lease as acquire would: fresh, renewed keeping the token, held by another, taken after expiry', async () => {
        const renewed = await grant('renew', 'A', 1000);
        const held = await grant('held', 'B', 1000);
        const expired = await grant('expired', 'B', 100);
        const ownExpired = await grant('own-expired', 'A', 100);
        const released = await grant('released', 'B', 1000);
        expect(await leases.release(released)).toBe(true);
        clock.advance(500);
        const now = clock.now();
        // Not in name order, and with a TTL each, so an adapter that sorts or shares one TTL shows it.
        const outcomes = await leases.acquireMany([
          { name: 'renew', holder: 'A', ttlMs: 1000 },
          { name: 'held', holder: 'A', ttlMs: 2000 },
          { name: 'fresh', holder: 'A', ttlMs: 3000 },
          { name: 'expired', holder: 'A', ttlMs: 4000 },
          { name: 'own-expired', holder: 'A', ttlMs: 5000 },
          { name: 'released', holder: 'A', ttlMs: 6000 },
        ]);
        expect(outcomes).toEqual([
          { ok: true, grant: { name: 'renew', holder: 'A', token: renewed.token, expiresAt: now + 1000 } },
          { ok: false, reason: 'held', holder: 'B', expiresAt: held.expiresAt },
          { ok: true, grant: { name: 'fresh', holder: 'A', token: 1, expiresAt: now + 3000 } },
          { ok: true, grant: { name: 'expired', holder: 'A', token: expired.token + 1, expiresAt: now + 4000 } },
          { ok: true, grant: { name: 'own-expired', holder: 'A', token: ownExpired.token + 1, expiresAt: now + 5000 } },
          { ok: true, grant: { name: 'released', holder: 'A', token: released.token + 1, expiresAt: now + 6000 } },
        ]);
        for (const outcome of outcomes) if (outcome.ok) expect(await leases.current(outcome.grant.name)).toEqual(outcome.grant);
        expect(await leases.current('held')).toEqual(held);
      });

      it('returns outcomes in request order, whatever order the names sort in', async () => {
        const names = Array.from({ length: 40 }, (_, i) => `node-${String(i).padStart(2, '0')}`);
        shuffle(names, seededRandom(7));
        // Every third lease is already someone else's, so granted and held outcomes interleave.
        for (const [i, name] of names.entries()) if (i % 3 === 0) await grant(name, `other-${i}`, 10_000 + i);
        const outcomes = await leases.acquireMany(names.map((name, i) => ({ name, holder: `mine-${i}`, ttlMs: 1000 + i })));
        expect(outcomes).toHaveLength(names.length);
        for (const [i, outcome] of outcomes.entries()) {
          if (i % 3 === 0) {
            expect(outcome).toEqual({ ok: false, reason: 'held', holder: `other-${i}`, expiresAt: clock.now() + 10_000 + i });
          } else {
            expect(outcome).toEqual({ ok: true, grant: { name: names[i], holder: `mine-${i}`, token: 1, expiresAt: clock.now() + 1000 + i } });
          }
        }
      });

      it('returns [] for no requests', async () => {
        expect(await leases.acquireMany([])).toEqual([]);
        expect(await leases.releaseMany([])).toEqual([]);
      });

      it('rejects a batch naming a lease twice, naming it, and acquires nothing', async () => {
        const batch: AcquireRequest[] = [
          { name: 'gpu-1', holder: 'A', ttlMs: 1000 },
          { name: 'gpu-2', holder: 'A', ttlMs: 1000 },
          { name: 'gpu-1', holder: 'B', ttlMs: 1000 },
        ];
        const failure = leases.acquireMany(batch);
        await expect(failure).rejects.toMatchObject({ code: 'INVALID_INPUT', retryable: false });
        await expect(failure).rejects.toThrow(/"gpu-1"/);
        expect(await leases.current('gpu-1')).toBeUndefined();
        expect(await leases.current('gpu-2')).toBeUndefined();
      });

      it('rejects a batch with a bad TTL anywhere in it, and acquires nothing', async () => {
        const batch: AcquireRequest[] = [
          { name: 'gpu-1', holder: 'A', ttlMs: 1000 },
          { name: 'gpu-2', holder: 'A', ttlMs: 0 },
        ];
        await expect(leases.acquireMany(batch)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
        expect(await leases.current('gpu-1')).toBeUndefined();
      });

      it('handles a batch of 500: grants all, reports all held to another holder, releases all', async () => {
        const names = Array.from({ length: 500 }, (_, i) => `node-${i}`);
        const first = await leases.acquireMany(names.map((name) => ({ name, holder: 'A', ttlMs: 1000 })));
        const grants = first.map((outcome) => grantOf(outcome));
        expect(grants.map((g) => [g.name, g.token])).toEqual(names.map((name) => [name, 1]));
        const refused = await leases.acquireMany(names.map((name) => ({ name, holder: 'B', ttlMs: 2000 })));
        expect(refused.every((o) => !o.ok && o.holder === 'A' && o.expiresAt === clock.now() + 1000)).toBe(true);
        expect(await leases.releaseMany(grants)).toEqual(names.map(() => true));
        const taken = await leases.acquireMany(names.map((name) => ({ name, holder: 'B', ttlMs: 1000 })));
        expect(taken.map((o) => grantOf(o).token)).toEqual(names.map(() => 2));
      });

      it('of two concurrent batches over overlapping leases, each lease goes to exactly one of them', async () => {
        const rng = seededRandom(42);
        for (let round = 0; round < 20; round++) {
          const pool = Array.from({ length: 30 }, (_, i) => `r${round}-node-${i}`);
          // Two overlapping subsets, each in its own random order: the interleaving a deadlock needs.
          const mine = shuffle(pool.filter(() => rng() < 0.7), rng);
          const theirs = shuffle(pool.filter(() => rng() < 0.7), rng);
          const [a, b] = await Promise.all([
            leases.acquireMany(mine.map((name) => ({ name, holder: 'A', ttlMs: 1000 }))),
            leases.acquireMany(theirs.map((name) => ({ name, holder: 'B', ttlMs: 1000 }))),
          ]);
          const outcomes = new Map<string, AcquireOutcome[]>();
          for (const [names, results] of [
            [mine, a],
            [theirs, b],
          ] as const) {
            expect(results).toHaveLength(names.length);
            names.forEach((name, i) => outcomes.set(name, [...(outcomes.get(name) ?? []), results[i] as AcquireOutcome]));
          }
          for (const [name, results] of outcomes) {
            const winners = results.filter((o) => o.ok);
            expect(winners, `${name} in round ${round}`).toHaveLength(1);
            const winner = grantOf(winners[0] as AcquireOutcome);
            expect(winner).toMatchObject({ name, token: 1 });
            for (const o of results) if (!o.ok) expect(o).toEqual({ ok: false, reason: 'held', holder: winner.holder, expiresAt: winner.expiresAt });
            expect(await leases.current(name)).toEqual(winner);
          }
        }
      });
    });

    describe('releaseMany', () => {
      it('releases each grant as release would: false for a stale or unknown token, true otherwise, in input order', async () => {
        const a = await grant('gpu-a', 'A', 1000);
        expect(await leases.release(a)).toBe(true);
        const b = await grant('gpu-a', 'B', 1000);
        const live = await grant('gpu-live', 'A', 1000);
        const lapsed = await grant('gpu-lapsed', 'A', 100);
        clock.advance(200);
        const results = await leases.releaseMany([
          live,
          { name: 'gpu-a', token: a.token },
          lapsed,
          { name: 'never', token: 1 },
          { name: 'gpu-live', token: live.token + 1 },
        ]);
        // Released even past expiry: nobody took it, so the holder was never deposed (as with release()).
        expect(results).toEqual([true, false, true, false, false]);
        expect(await leases.current('gpu-a')).toEqual(b);
        expect(await leases.current('gpu-live')).toBeUndefined();
        const next = await grant('gpu-live', 'C', 1000);
        expect(next.token).toBe(live.token + 1);
      });

      it('reports a grant named twice as released once, like two release calls in turn', async () => {
        const a = await grant('gpu-1', 'A', 1000);
        expect(await leases.releaseMany([a, a])).toEqual([true, false]);
        expect(await leases.current('gpu-1')).toBeUndefined();
      });
    });

    describe('properties', () => {
      type Op =
        | { readonly kind: 'acquire'; readonly holder: number; readonly ttl: number }
        | { readonly kind: 'renew'; readonly holder: number; readonly ttl: number }
        | { readonly kind: 'release'; readonly holder: number }
        | { readonly kind: 'advance'; readonly ms: number };

      const holderArb = fc.integer({ min: 0, max: 3 });
      const opArb: fc.Arbitrary<Op> = fc.oneof(
        fc.record({ kind: fc.constant('acquire' as const), holder: holderArb, ttl: fc.integer({ min: 1, max: 50 }) }),
        fc.record({ kind: fc.constant('renew' as const), holder: holderArb, ttl: fc.integer({ min: 1, max: 50 }) }),
        fc.record({ kind: fc.constant('release' as const), holder: holderArb }),
        fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 60 }) }),
      );

      it('successive grants have strictly increasing tokens and at most one holder is live at any time', async () => {
        let run = 0;
        await fc.assert(
          fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), async (ops) => {
            const lease = `prop-${run++}`;
            // What each holder last believes it holds; a belief may be stale (that is the point).
            const held = new Map<number, LeaseGrant>();
            let highestToken = 0;
            // The one grant that can legitimately be live: the latest one handed out.
            let latest: LeaseGrant | undefined;
            let released = false;

            for (const op of ops) {
              if (op.kind === 'advance') {
                clock.advance(op.ms);
              } else if (op.kind === 'acquire') {
                const outcome = await leases.acquire(lease, `h${op.holder}`, op.ttl);
                const liveBefore = latest !== undefined && !released && latest.expiresAt > clock.now() ? latest : undefined;
                if (outcome.ok) {
                  const g = outcome.grant;
                  expect(liveBefore === undefined || liveBefore.holder === g.holder).toBe(true);
                  if (liveBefore !== undefined) {
                    expect(g.token).toBe(liveBefore.token);
                  } else {
                    expect(g.token).toBeGreaterThan(highestToken);
                  }
                  highestToken = Math.max(highestToken, g.token);
                  latest = g;
                  released = false;
                  held.set(op.holder, g);
                } else {
                  expect(liveBefore?.holder).toBe(outcome.holder);
                  expect(outcome.holder).not.toBe(`h${op.holder}`);
                }
              } else if (op.kind === 'renew') {
                const mine = held.get(op.holder);
                if (mine === undefined) continue;
                const renewed = await leases.renew(mine, op.ttl);
                const stillLive = latest !== undefined && latest.token === mine.token && !released && latest.expiresAt > clock.now();
                expect(renewed !== undefined).toBe(stillLive);
                if (renewed !== undefined) {
                  expect(renewed.token).toBe(mine.token);
                  latest = renewed;
                  held.set(op.holder, renewed);
                }
              } else {
                const mine = held.get(op.holder);
                if (mine === undefined) continue;
                const ok = await leases.release(mine);
                expect(ok).toBe(latest?.token === mine.token && !released);
                if (ok) released = true;
              }

              // The store agrees with the model about who, if anyone, is live right now.
              const current = await leases.current(lease);
              const expected = latest !== undefined && !released && latest.expiresAt > clock.now() ? latest : undefined;
              expect(current).toEqual(expected);
            }
          }),
          { numRuns: 100 },
        );
      });
    });
  });
}

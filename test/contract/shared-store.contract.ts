/**
 * What two stores over one backing store (two processes on one SQLite file, two pools on one
 * PostgreSQL schema) must show each other: one lease holder at a time with tokens increasing across
 * both, and a deposed writer's fenced writes rejected where they land.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { StaleFencingTokenError } from '../../src/core/errors.ts';
import type { LeaseGrant, StateStores } from '../../src/store/ports.ts';

export async function granted(stores: StateStores, name: string, holder: string, ttlMs: number): Promise<LeaseGrant> {
  const outcome = await stores.leases.acquire(name, holder, ttlMs);
  if (!outcome.ok) throw new Error(`expected a grant, ${outcome.holder} holds ${name}`);
  return outcome.grant;
}

/** `openPair` opens two independent stores over one fresh backing store, both on `clock`. */
export function sharedStoreContract(name: string, openPair: (clock: ManualClock) => Promise<readonly [StateStores, StateStores]>): void {
  describe(`two stores on one backing store: ${name}`, () => {
    it('never both hold one lease, and tokens stay strictly increasing across them', async () => {
      const clock = new ManualClock();
      const [p1, p2] = await openPair(clock);
      try {
        const tokens: number[] = [];
        for (let round = 0; round < 20; round++) {
          const [o1, o2] = await Promise.all([p1.leases.acquire('leader', 'p1', 100), p2.leases.acquire('leader', 'p2', 100)]);
          const winners = [o1, o2].filter((o) => o.ok);
          expect(winners).toHaveLength(1);
          const grant = winners[0]?.ok ? winners[0].grant : undefined;
          if (grant === undefined) throw new Error('no winner');
          for (const loser of [o1, o2]) if (!loser.ok) expect(loser).toMatchObject({ holder: grant.holder, expiresAt: grant.expiresAt });
          tokens.push(grant.token);
          expect(await p1.leases.current('leader')).toEqual(grant);
          expect(await p2.leases.current('leader')).toEqual(grant);
          // Alternate how the lease is lost so both paths to a new token are covered.
          if (round % 2 === 0) clock.advance(100);
          else expect(await (grant.holder === 'p1' ? p1 : p2).leases.release(grant)).toBe(true);
        }
        expect(tokens).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      } finally {
        await p1.close();
        await p2.close();
      }
    });

    it("see each other's writes, and a deposed store's fenced writes are rejected", async () => {
      const clock = new ManualClock();
      const [p1, p2] = await openPair(clock);
      try {
        const old = await granted(p1, 'writer', 'p1', 100);
        expect((await p1.documents.put('c', 'x', 'by p1', { fence: { lease: 'writer', token: old.token } })).ok).toBe(true);
        expect((await p2.documents.get('c', 'x'))?.body).toBe('by p1');
        clock.advance(100);
        const fresh = await granted(p2, 'writer', 'p2', 100);
        const stale = { lease: 'writer', token: old.token };
        await expect(p1.documents.put('c', 'x', 'stale', { fence: stale })).rejects.toBeInstanceOf(StaleFencingTokenError);
        await expect(p1.kv.put('k', 'stale', { fence: stale })).rejects.toBeInstanceOf(StaleFencingTokenError);
        expect((await p2.documents.put('c', 'x', 'by p2', { fence: { lease: 'writer', token: fresh.token } })).ok).toBe(true);
        expect((await p1.documents.get('c', 'x'))?.body).toBe('by p2');
        expect((await p1.documents.history('c', 'x')).map((v) => v.body)).toEqual(['by p1', 'by p2']);
        expect(await p1.kv.revision()).toBe(0);
        expect(await p1.leases.renew(old, 100)).toBeUndefined();
        expect(await p1.leases.release(old)).toBe(false);
      } finally {
        await p1.close();
        await p2.close();
      }
    });
  });
}

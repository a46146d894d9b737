/**
 * Behaviour every DocumentStore adapter must show. Fencing needs the lease store of the same backing
 * store, so the factory hands both over.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.ts';
import { StaleFencingTokenError } from '../../src/core/errors.ts';
import type { DocumentStore, DocumentVersion, LeaseStore } from '../../src/store/ports.ts';

export interface DocumentStoreFixture {
  readonly documents: DocumentStore;
  readonly leases: LeaseStore;
  close(): Promise<void>;
}

interface Doc {
  readonly name: string;
  readonly n: number;
}

export function documentStoreContract(name: string, open: (clock: ManualClock) => Promise<DocumentStoreFixture>): void {
  describe(`DocumentStore contract: ${name}`, () => {
    let clock: ManualClock;
    let fixture: DocumentStoreFixture;
    let docs: DocumentStore;
    let t0: number;

    beforeEach(async () => {
      clock = new ManualClock();
      t0 = clock.now();
      fixture = await open(clock);
      docs = fixture.documents;
    });

    afterEach(async () => {
      await fixture.close();
    });

    describe('put and get', () => {
      it('returns undefined for an id never written', async () => {
        expect(await docs.get('nodes', 'missing')).toBeUndefined();
        expect(await docs.history('nodes', 'missing')).toEqual([]);
      });

      it('stores a body and stamps version 1 with valid and transaction time = now', async () => {
        const outcome = await docs.put<Doc>('nodes', 'n1', { name: 'alpha', n: 1 });
        const expected: DocumentVersion<Doc> = {
          collection: 'nodes',
          id: 'n1',
          version: 1,
          validFrom: t0,
          txTime: t0,
          body: { name: 'alpha', n: 1 },
          deleted: false,
        };
        expect(outcome).toEqual({ ok: true, version: expected });
        expect(await docs.get<Doc>('nodes', 'n1')).toEqual(expected);
      });

      it('round-trips nested JSON bodies, null and scalars', async () => {
        const body = { a: [1, 'two', { three: null }], b: { c: true, d: -1.5 }, e: '\u00e9\u{1f600}' };
        await docs.put('misc', 'nested', body);
        await docs.put('misc', 'null', null);
        await docs.put('misc', 'number', 42);
        expect((await docs.get('misc', 'nested'))?.body).toEqual(body);
        expect((await docs.get('misc', 'null'))?.body).toBeNull();
        expect((await docs.get('misc', 'number'))?.body).toBe(42);
      });

      it('keeps collections apart even for the same id', async () => {
        await docs.put('a', 'x', { name: 'in a', n: 1 });
        await docs.put('b', 'x', { name: 'in b', n: 2 });
        expect((await docs.get<Doc>('a', 'x'))?.body?.name).toBe('in a');
        expect((await docs.get<Doc>('b', 'x'))?.body?.name).toBe('in b');
        expect((await docs.get<Doc>('b', 'x'))?.version).toBe(1);
      });

      it('counts versions across puts and deletes, and history lists them in transaction order', async () => {
        await docs.put<Doc>('nodes', 'n1', { name: 'v1', n: 1 });
        clock.advance(10);
        await docs.put<Doc>('nodes', 'n1', { name: 'v2', n: 2 });
        clock.advance(10);
        const deleted = await docs.delete('nodes', 'n1');
        clock.advance(10);
        const revived = await docs.put<Doc>('nodes', 'n1', { name: 'v4', n: 4 });

        expect(deleted.ok && deleted.version.version).toBe(3);
        expect(deleted.ok && deleted.version.deleted).toBe(true);
        expect(deleted.ok && deleted.version.body).toBeUndefined();
        expect(revived.ok && revived.version.version).toBe(4);

        const history = await docs.history<Doc>('nodes', 'n1');
        expect(history.map((v) => [v.version, v.txTime, v.deleted, v.body?.name])).toEqual([
          [1, t0, false, 'v1'],
          [2, t0 + 10, false, 'v2'],
          [3, t0 + 20, true, undefined],
          [4, t0 + 30, false, 'v4'],
        ]);
      });

      it('history is in transaction order even when valid times were backdated', async () => {
        clock.advance(100);
        await docs.put('nodes', 'n1', 'now');
        clock.advance(1);
        await docs.put('nodes', 'n1', 'backdated', { validFrom: t0 });
        expect((await docs.history('nodes', 'n1')).map((v) => v.body)).toEqual(['now', 'backdated']);
      });
    });

    describe('deletes', () => {
      it('hides the document from get and list from then on, but not from earlier reads', async () => {
        await docs.put('nodes', 'n1', 'hello');
        clock.advance(10);
        await docs.delete('nodes', 'n1');
        expect(await docs.get('nodes', 'n1')).toBeUndefined();
        expect(await docs.list('nodes')).toEqual([]);
        expect((await docs.get('nodes', 'n1', { asOf: t0, knownAt: t0 }))?.body).toBe('hello');
        expect((await docs.list('nodes', { asOf: t0, knownAt: t0 })).map((v) => v.id)).toEqual(['n1']);
      });

      it('a retroactive delete removes the document from that valid time on, only for reads that know of it', async () => {
        await docs.put('nodes', 'n1', 'hello');
        clock.advance(100);
        const deleteTx = clock.now();
        await docs.delete('nodes', 'n1', { validFrom: t0 + 50 });
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 10 }))?.body).toBe('hello');
        expect(await docs.get('nodes', 'n1', { asOf: t0 + 50 })).toBeUndefined();
        expect(await docs.get('nodes', 'n1')).toBeUndefined();
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 60, knownAt: deleteTx - 1 }))?.body).toBe('hello');
      });
    });

    describe('valid time and transaction time', () => {
      it('reads the version valid at asOf', async () => {
        await docs.put('nodes', 'n1', 'first');
        clock.advance(100);
        await docs.put('nodes', 'n1', 'second');
        expect(await docs.get('nodes', 'n1', { asOf: t0 - 1 })).toBeUndefined();
        expect((await docs.get('nodes', 'n1', { asOf: t0 }))?.body).toBe('first');
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 99 }))?.body).toBe('first');
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 100 }))?.body).toBe('second');
        expect((await docs.get('nodes', 'n1'))?.body).toBe('second');
      });

      it('reads what was known at knownAt', async () => {
        await docs.put('nodes', 'n1', 'first');
        clock.advance(100);
        await docs.put('nodes', 'n1', 'second');
        clock.advance(100);
        expect(await docs.get('nodes', 'n1', { knownAt: t0 - 1 })).toBeUndefined();
        expect((await docs.get('nodes', 'n1', { knownAt: t0 + 50 }))?.body).toBe('first');
        expect((await docs.get('nodes', 'n1', { knownAt: t0 + 100 }))?.body).toBe('second');
      });

      it('a retroactive correction changes later reads of the past but not reads of what was known before it', async () => {
        await docs.put('nodes', 'n1', 'original');
        clock.advance(1000);
        const correctionTx = clock.now();
        const corrected = await docs.put('nodes', 'n1', 'corrected', { validFrom: t0 + 500 });
        expect(corrected.ok && corrected.version).toMatchObject({ version: 2, validFrom: t0 + 500, txTime: correctionTx });

        // Now we know the value changed at t0+500.
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 499 }))?.body).toBe('original');
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 500 }))?.body).toBe('corrected');
        expect((await docs.get('nodes', 'n1'))?.body).toBe('corrected');
        // Before the correction was recorded, the store believed the original held throughout.
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 700, knownAt: correctionTx - 1 }))?.body).toBe('original');
        expect((await docs.list('nodes', { asOf: t0 + 700, knownAt: correctionTx - 1 })).map((v) => v.body)).toEqual(['original']);
        expect((await docs.list('nodes', { asOf: t0 + 700 })).map((v) => v.body)).toEqual(['corrected']);
      });

      it('a correction of an older period does not override a newer valid-time version', async () => {
        await docs.put('nodes', 'n1', 'A'); // valid from t0
        clock.advance(200);
        await docs.put('nodes', 'n1', 'B'); // valid from t0+200
        clock.advance(200);
        await docs.put('nodes', 'n1', 'A-fixed', { validFrom: t0 + 100 });
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 50 }))?.body).toBe('A');
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 150 }))?.body).toBe('A-fixed');
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 250 }))?.body).toBe('B');
        expect((await docs.get('nodes', 'n1'))?.body).toBe('B');
      });

      it('a later transaction with the same valid time supersedes the earlier one', async () => {
        await docs.put('nodes', 'n1', 'A');
        clock.advance(50);
        await docs.put('nodes', 'n1', 'A-fixed', { validFrom: t0 });
        expect((await docs.get('nodes', 'n1', { asOf: t0 }))?.body).toBe('A-fixed');
        expect((await docs.get('nodes', 'n1', { asOf: t0, knownAt: t0 + 49 }))?.body).toBe('A');
      });

      it('writes in the same millisecond keep their commit order', async () => {
        await docs.put('nodes', 'n1', 'one');
        await docs.put('nodes', 'n1', 'two');
        await docs.put('nodes', 'n1', 'three');
        const latest = await docs.get('nodes', 'n1');
        expect(latest?.body).toBe('three');
        expect(latest?.version).toBe(3);
        expect((await docs.list('nodes')).map((v) => v.body)).toEqual(['three']);
      });

      it('a put valid only in the future is not visible now', async () => {
        await docs.put('nodes', 'n1', 'now');
        await docs.put('nodes', 'n1', 'later', { validFrom: t0 + 1000 });
        expect((await docs.get('nodes', 'n1'))?.body).toBe('now');
        expect((await docs.get('nodes', 'n1', { asOf: t0 + 1000 }))?.body).toBe('later');
        clock.advance(1000);
        expect((await docs.get('nodes', 'n1'))?.body).toBe('later');
      });
    });

    describe('compare-and-set', () => {
      it('accepts the latest version and rejects anything else, leaving the document unchanged', async () => {
        await docs.put('nodes', 'n1', 'v1');
        const ok = await docs.put('nodes', 'n1', 'v2', { expectedVersion: 1 });
        expect(ok.ok && ok.version.version).toBe(2);

        const stale = await docs.put('nodes', 'n1', 'v3?', { expectedVersion: 1 });
        expect(stale).toEqual({ ok: false, reason: 'version-mismatch', currentVersion: 2 });
        const ahead = await docs.put('nodes', 'n1', 'v3?', { expectedVersion: 7 });
        expect(ahead).toEqual({ ok: false, reason: 'version-mismatch', currentVersion: 2 });

        expect((await docs.get('nodes', 'n1'))?.body).toBe('v2');
        expect(await docs.history('nodes', 'n1')).toHaveLength(2);
      });

      it('expectedVersion 0 creates only when no live document exists', async () => {
        const created = await docs.put('nodes', 'n1', 'first', { expectedVersion: 0 });
        expect(created.ok).toBe(true);
        const again = await docs.put('nodes', 'n1', 'second', { expectedVersion: 0 });
        expect(again).toEqual({ ok: false, reason: 'version-mismatch', currentVersion: 1 });
        expect((await docs.get('nodes', 'n1'))?.body).toBe('first');

        await docs.delete('nodes', 'n1');
        const recreated = await docs.put('nodes', 'n1', 'reborn', { expectedVersion: 0 });
        expect(recreated.ok && recreated.version.version).toBe(3);
      });

      it('compares with the highest version even when a backdated write is not the one visible now', async () => {
        clock.advance(100);
        await docs.put('nodes', 'n1', 'current');
        await docs.put('nodes', 'n1', 'old fact', { validFrom: t0 });
        expect((await docs.get('nodes', 'n1'))?.version).toBe(1);
        expect((await docs.put('nodes', 'n1', 'x', { expectedVersion: 1 })).ok).toBe(false);
        expect((await docs.put('nodes', 'n1', 'x', { expectedVersion: 2 })).ok).toBe(true);
      });

      it('a delete honours expectedVersion', async () => {
        await docs.put('nodes', 'n1', 'v1');
        expect(await docs.delete('nodes', 'n1', { expectedVersion: 5 })).toEqual({
          ok: false,
          reason: 'version-mismatch',
          currentVersion: 1,
        });
        expect((await docs.get('nodes', 'n1'))?.body).toBe('v1');
        expect((await docs.delete('nodes', 'n1', { expectedVersion: 1 })).ok).toBe(true);
        expect(await docs.get('nodes', 'n1')).toBeUndefined();
      });

      it('of concurrent writers expecting the same version, exactly one wins', async () => {
        await docs.put('nodes', 'n1', 0);
        const outcomes = await Promise.all(
          Array.from({ length: 8 }, (_, i) => docs.put('nodes', 'n1', i + 1, { expectedVersion: 1 })),
        );
        expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
        expect(await docs.history('nodes', 'n1')).toHaveLength(2);
      });
    });

    describe('putMany', () => {
      it('lands every put in one go', async () => {
        const outcomes = await docs.putMany([
          { collection: 'nodes', id: 'a', body: 1 },
          { collection: 'nodes', id: 'b', body: 2 },
          { collection: 'jobs', id: 'a', body: 3, options: { validFrom: t0 - 10 } },
        ]);
        expect(outcomes.map((o) => o.ok && [o.version.collection, o.version.id, o.version.version, o.version.validFrom])).toEqual([
          ['nodes', 'a', 1, t0],
          ['nodes', 'b', 1, t0],
          ['jobs', 'a', 1, t0 - 10],
        ]);
        expect((await docs.list('nodes')).map((v) => v.body)).toEqual([1, 2]);
        expect((await docs.get('jobs', 'a'))?.body).toBe(3);
      });

      it('numbers repeated ids in batch order', async () => {
        const outcomes = await docs.putMany([
          { collection: 'nodes', id: 'a', body: 'first', options: { expectedVersion: 0 } },
          { collection: 'nodes', id: 'a', body: 'second', options: { expectedVersion: 1 } },
        ]);
        expect(outcomes.map((o) => o.ok && o.version.version)).toEqual([1, 2]);
        expect((await docs.get('nodes', 'a'))?.body).toBe('second');
      });

      it('lands nothing when any put has a version mismatch, and reports every put as failed', async () => {
        await docs.put('nodes', 'a', 'a1');
        await docs.put('nodes', 'b', 'b1');
        await docs.put('nodes', 'b', 'b2');
        const outcomes = await docs.putMany([
          { collection: 'nodes', id: 'a', body: 'a2', options: { expectedVersion: 1 } },
          { collection: 'nodes', id: 'new', body: 'fresh' },
          { collection: 'nodes', id: 'b', body: 'b3', options: { expectedVersion: 1 } },
        ]);
        expect(outcomes).toHaveLength(3);
        expect(outcomes.every((o) => !o.ok)).toBe(true);
        expect(outcomes[2]).toEqual({ ok: false, reason: 'version-mismatch', currentVersion: 2 });

        expect((await docs.get('nodes', 'a'))?.body).toBe('a1');
        expect(await docs.get('nodes', 'new')).toBeUndefined();
        expect(await docs.history('nodes', 'a')).toHaveLength(1);
        expect(await docs.history('nodes', 'new')).toHaveLength(0);
        expect((await docs.get('nodes', 'b'))?.body).toBe('b2');
      });

      it('accepts an empty batch', async () => {
        expect(await docs.putMany([])).toEqual([]);
      });
    });

    describe('list', () => {
      it('returns live documents of one collection ordered by id', async () => {
        for (const id of ['m', 'b', 'z', 'a']) await docs.put('nodes', id, id.toUpperCase());
        await docs.put('other', 'c', 'not mine');
        await docs.delete('nodes', 'z');
        const listed = await docs.list<string>('nodes');
        expect(listed.map((v) => [v.id, v.body])).toEqual([
          ['a', 'A'],
          ['b', 'B'],
          ['m', 'M'],
        ]);
        expect(listed.every((v) => v.collection === 'nodes' && !v.deleted)).toBe(true);
      });

      it('resolves each id independently as of the given times', async () => {
        await docs.put('nodes', 'a', 'a@0');
        await docs.put('nodes', 'b', 'b@0');
        clock.advance(100);
        await docs.put('nodes', 'a', 'a@100');
        await docs.delete('nodes', 'b');
        await docs.put('nodes', 'c', 'c@100');
        clock.advance(100);
        await docs.put('nodes', 'b', 'b@50-fixed', { validFrom: t0 + 50 });

        const body = (vs: DocumentVersion<string>[]): (string | undefined)[] => vs.map((v) => v.body);
        expect(body(await docs.list<string>('nodes', { asOf: t0 }))).toEqual(['a@0', 'b@0']);
        expect(body(await docs.list<string>('nodes', { asOf: t0 + 60 }))).toEqual(['a@0', 'b@50-fixed']);
        expect(body(await docs.list<string>('nodes', { asOf: t0 + 60, knownAt: t0 + 150 }))).toEqual(['a@0', 'b@0']);
        expect(body(await docs.list<string>('nodes'))).toEqual(['a@100', 'c@100']);
      });

      it('handles thousands of ids', async () => {
        const count = 3000;
        const ids = Array.from({ length: count }, (_, i) => `node-${String(i).padStart(5, '0')}`);
        for (let i = 0; i < count; i += 500) {
          await docs.putMany(ids.slice(i, i + 500).map((id, j) => ({ collection: 'fleet', id, body: { n: i + j } })));
        }
        clock.advance(10);
        await docs.putMany(ids.filter((_, i) => i % 2 === 0).map((id) => ({ collection: 'fleet', id, body: { n: -1 } })));
        const listed = await docs.list<{ n: number }>('fleet');
        expect(listed).toHaveLength(count);
        expect(listed.map((v) => v.id)).toEqual(ids);
        expect(listed.filter((v) => v.version === 2 && v.body?.n === -1)).toHaveLength(count / 2);
        expect((await docs.list('fleet', { asOf: t0 })).every((v) => v.version === 1)).toBe(true);
      });
    });

    describe('fencing', () => {
      it("rejects a deposed holder's write and lands the new holder's", async () => {
        const first = await fixture.leases.acquire('writer', 'A', 1000);
        if (!first.ok) throw new Error('expected grant');
        const fenceA = { lease: 'writer', token: first.grant.token };
        expect((await docs.put('nodes', 'n1', 'by A', { fence: fenceA })).ok).toBe(true);

        clock.advance(1000);
        const second = await fixture.leases.acquire('writer', 'B', 1000);
        if (!second.ok) throw new Error('expected grant');

        await expect(docs.put('nodes', 'n1', 'late A', { fence: fenceA })).rejects.toBeInstanceOf(StaleFencingTokenError);
        await expect(docs.delete('nodes', 'n1', { fence: fenceA })).rejects.toMatchObject({ code: 'STALE_FENCING_TOKEN', retryable: false });
        await expect(
          docs.putMany([
            { collection: 'nodes', id: 'n2', body: 'unfenced' },
            { collection: 'nodes', id: 'n1', body: 'late A', options: { fence: fenceA } },
          ]),
        ).rejects.toBeInstanceOf(StaleFencingTokenError);
        expect((await docs.get('nodes', 'n1'))?.body).toBe('by A');
        expect(await docs.history('nodes', 'n1')).toHaveLength(1);
        expect(await docs.get('nodes', 'n2')).toBeUndefined();

        const landed = await docs.put('nodes', 'n1', 'by B', { fence: { lease: 'writer', token: second.grant.token } });
        expect(landed.ok && landed.version.version).toBe(2);
        expect((await docs.get('nodes', 'n1'))?.body).toBe('by B');
      });

      it('rejects a token that was never granted', async () => {
        await expect(docs.put('nodes', 'n1', 'x', { fence: { lease: 'nobody', token: 1 } })).rejects.toBeInstanceOf(StaleFencingTokenError);
        const grant = await fixture.leases.acquire('writer', 'A', 1000);
        if (!grant.ok) throw new Error('expected grant');
        await expect(
          docs.put('nodes', 'n1', 'x', { fence: { lease: 'writer', token: grant.grant.token + 1 } }),
        ).rejects.toBeInstanceOf(StaleFencingTokenError);
        expect(await docs.history('nodes', 'n1')).toEqual([]);
      });
    });

    describe('properties', () => {
      type Op =
        | { readonly kind: 'put'; readonly id: string; readonly backdate: number; readonly value: number }
        | { readonly kind: 'delete'; readonly id: string; readonly backdate: number }
        | { readonly kind: 'advance'; readonly ms: number };

      const opArb: fc.Arbitrary<Op> = fc.oneof(
        fc.record({ kind: fc.constant('put' as const), id: fc.constantFrom('a', 'b', 'c'), backdate: fc.constantFrom(0, 0, 5, 30), value: fc.integer() }),
        fc.record({ kind: fc.constant('delete' as const), id: fc.constantFrom('a', 'b', 'c'), backdate: fc.constantFrom(0, 0, 10) }),
        fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 20 }) }),
      );

      it('get and list agree with a reference model of bitemporal resolution at every (asOf, knownAt)', async () => {
        let run = 0;
        await fc.assert(
          fc.asyncProperty(fc.array(opArb, { maxLength: 25 }), fc.array(fc.tuple(fc.nat(120), fc.nat(120)), { minLength: 1, maxLength: 8 }), async (ops, probes) => {
            const collection = `prop-${run++}`;
            const base = clock.now();
            // The model: every write in commit order; the winner at (V, T) is the visible row with the
            // greatest validFrom, ties to the latest commit.
            const rows: { id: string; validFrom: number; txTime: number; value: number | undefined }[] = [];
            for (const op of ops) {
              if (op.kind === 'advance') {
                clock.advance(op.ms);
              } else if (op.kind === 'put') {
                const validFrom = clock.now() - op.backdate;
                await docs.put(collection, op.id, op.value, { validFrom });
                rows.push({ id: op.id, validFrom, txTime: clock.now(), value: op.value });
              } else {
                const validFrom = clock.now() - op.backdate;
                await docs.delete(collection, op.id, { validFrom });
                rows.push({ id: op.id, validFrom, txTime: clock.now(), value: undefined });
              }
            }
            const resolve = (id: string, asOf: number, knownAt: number): number | undefined => {
              let winner: (typeof rows)[number] | undefined;
              for (const row of rows) {
                if (row.id !== id || row.validFrom > asOf || row.txTime > knownAt) continue;
                if (winner === undefined || row.validFrom >= winner.validFrom) winner = row;
              }
              return winner?.value;
            };
            for (const [dv, dt] of probes) {
              const asOf = base - 40 + dv;
              const knownAt = base - 40 + dt;
              const expected: [string, number][] = [];
              for (const id of ['a', 'b', 'c']) {
                const value = resolve(id, asOf, knownAt);
                expect((await docs.get<number>(collection, id, { asOf, knownAt }))?.body).toBe(value);
                if (value !== undefined) expected.push([id, value]);
              }
              const listed = await docs.list<number>(collection, { asOf, knownAt });
              expect(listed.map((v) => [v.id, v.body])).toEqual(expected);
            }
            for (const id of ['a', 'b', 'c']) {
              const history = await docs.history<number>(collection, id);
              expect(history.map((v) => v.version)).toEqual(history.map((_, i) => i + 1));
              expect(history.map((v) => v.body)).toEqual(rows.filter((r) => r.id === id).map((r) => r.value));
            }
          }),
          { numRuns: 60 },
        );
      });
    });
  });
}

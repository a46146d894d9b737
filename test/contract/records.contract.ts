/** Behaviour every RecordStore adapter must show (write-once records with expiry, ADR 0014). */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { ArcError } from '../../src/core/errors.ts';
import type { RecordStore, StateStores } from '../../src/store/ports.ts';

interface Rec {
  readonly n: number;
  readonly note?: string;
}

export function recordStoreContract(name: string, open: (clock: ManualClock) => Promise<StateStores>): void {
  describe(`RecordStore contract: ${name}`, () => {
    let clock: ManualClock;
    let stores: StateStores;
    let records: RecordStore;

    beforeEach(async () => {
      clock = new ManualClock();
      stores = await open(clock);
      records = stores.records;
    });

    afterEach(async () => {
      await stores.close();
    });

    const put = (collection: string, id: string, n: number, note?: string) => ({ collection, id, body: { n, ...(note === undefined ? {} : { note }) } });

    it('stores new records stamped with the transaction time and reads them back by id', async () => {
      const t0 = clock.now();
      expect(await records.insertMany<Rec>([put('decisions', 'a', 1), put('decisions', 'b', 2, 'é\u{1f600} "quoted"')])).toEqual([true, true]);
      expect(await records.get<Rec>('decisions', 'a')).toEqual({ collection: 'decisions', id: 'a', recordedAt: t0, body: { n: 1 } });
      expect((await records.get<Rec>('decisions', 'b'))?.body).toEqual({ n: 2, note: 'é\u{1f600} "quoted"' });
      expect(await records.get('decisions', 'missing')).toBeUndefined();
      expect(await records.insertMany([])).toEqual([]);
    });

    it('keeps the first body of an id: a later write, or a repeat in the same batch, is not written', async () => {
      await records.insertMany<Rec>([put('decisions', 'a', 1)]);
      clock.advance(1_000);
      expect(await records.insertMany<Rec>([put('decisions', 'a', 2), put('decisions', 'c', 3), put('decisions', 'c', 4)])).toEqual([false, true, false]);
      expect((await records.get<Rec>('decisions', 'a'))?.body).toEqual({ n: 1 });
      expect((await records.get<Rec>('decisions', 'c'))?.body).toEqual({ n: 3 });
    });

    it('keeps collections apart, and records apart from documents of the same name', async () => {
      await records.insertMany<Rec>([put('one', 'x', 1), put('two', 'x', 2)]);
      expect((await records.get<Rec>('one', 'x'))?.body.n).toBe(1);
      expect((await records.get<Rec>('two', 'x'))?.body.n).toBe(2);
      expect(await stores.documents.get('one', 'x')).toBeUndefined();
    });

    it('of concurrent writers of the same id, exactly one wins', async () => {
      const outcomes = await Promise.all([1, 2, 3, 4].map((n) => records.insertMany<Rec>([put('decisions', 'race', n)])));
      expect(outcomes.flat().filter(Boolean)).toHaveLength(1);
      const winner = outcomes.findIndex(([written]) => written === true) + 1;
      expect((await records.get<Rec>('decisions', 'race'))?.body.n).toBe(winner);
    });

    it('lands a large batch in one call', async () => {
      const batch = Array.from({ length: 2_000 }, (_, i) => put('decisions', `r-${i}`, i));
      expect((await records.insertMany(batch)).every(Boolean)).toBe(true);
      expect((await records.get<Rec>('decisions', 'r-1999'))?.body.n).toBe(1_999);
    });

    describe('expire', () => {
      /** Five records of `decisions` a minute apart (r0 oldest), and one of another collection as old as r0. */
      async function fiveMinutes(): Promise<number> {
        const start = clock.now();
        await records.insertMany<Rec>([put('other', 'old', 0)]);
        for (let i = 0; i < 5; i++) {
          await records.insertMany<Rec>([put('decisions', `r${i}`, i)]);
          clock.advance(60_000);
        }
        return start;
      }

      const present = async (collection: string, ids: readonly string[]): Promise<string[]> => {
        const found: string[] = [];
        for (const id of ids) if ((await records.get(collection, id)) !== undefined) found.push(id);
        return found;
      };

      it('removes only the collection records recorded before the cutoff, strictly before it', async () => {
        const start = await fiveMinutes();
        // r0..r2 were recorded at start, +1 min, +2 min; r3 exactly at the cutoff stays.
        expect(await records.expire('decisions', start + 3 * 60_000, 100)).toBe(3);
        expect(await present('decisions', ['r0', 'r1', 'r2', 'r3', 'r4'])).toEqual(['r3', 'r4']);
        expect(await present('other', ['old'])).toEqual(['old']);
        expect(await records.expire('decisions', start + 3 * 60_000, 100)).toBe(0);
      });

      it('removes at most limit per call, oldest first, until none is left', async () => {
        const start = await fiveMinutes();
        const cutoff = start + 5 * 60_000;
        expect(await records.expire('decisions', cutoff, 2)).toBe(2);
        expect(await present('decisions', ['r0', 'r1', 'r2', 'r3', 'r4'])).toEqual(['r2', 'r3', 'r4']);
        expect(await records.expire('decisions', cutoff, 2)).toBe(2);
        expect(await records.expire('decisions', cutoff, 2)).toBe(1);
        expect(await records.expire('decisions', cutoff, 2)).toBe(0);
        expect(await present('decisions', ['r0', 'r1', 'r2', 'r3', 'r4'])).toEqual([]);
      });

      it('frees the id: a record written after its expiry is stored afresh', async () => {
        const start = await fiveMinutes();
        await records.expire('decisions', start + 60_000, 10);
        expect(await records.insertMany<Rec>([put('decisions', 'r0', 42)])).toEqual([true]);
        expect(await records.get<Rec>('decisions', 'r0')).toEqual({ collection: 'decisions', id: 'r0', recordedAt: clock.now(), body: { n: 42 } });
      });

      it('concurrent sweeps remove each record once', async () => {
        for (let i = 0; i < 300; i += 100) await records.insertMany(Array.from({ length: 100 }, (_, k) => put('decisions', `s-${i + k}`, i + k)));
        clock.advance(1);
        const removed = await Promise.all([1, 2, 3].map(async () => {
          let total = 0;
          for (let n = -1; n !== 0; total += n) n = await records.expire('decisions', clock.now(), 40);
          return total;
        }));
        expect(removed.reduce((a, b) => a + b, 0)).toBe(300);
        expect(await present('decisions', ['s-0', 's-150', 's-299'])).toEqual([]);
      });

      it('refuses a limit that is not a positive integer', async () => {
        await expect(records.expire('decisions', clock.now(), 0)).rejects.toBeInstanceOf(ArcError);
        await expect(records.expire('decisions', clock.now(), 1.5)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      });
    });
  });
}

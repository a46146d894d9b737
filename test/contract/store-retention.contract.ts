/**
 * History retention (src/store/retention.ts, ADR 0013) as every engine must show it, driven by a
 * ManualClock: what is kept at each age, that reads at every whole step of a compacted range answer
 * exactly as before (against a reference model of the full history), that reads between steps answer
 * with a version current within the step, that the latest version of every id and every read of now
 * are untouched, and that under sustained telemetry the number of versions stays within what the
 * policy's arithmetic allows.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.ts';
import type { DocumentStore } from '../../src/store/ports.ts';
import type { CompactionReport, RetentionOption } from '../../src/store/retention.ts';

export interface RetentionFixture {
  readonly documents: DocumentStore;
  compactHistory(): Promise<CompactionReport>;
  close(): Promise<void>;
}

export type OpenWithRetention = (clock: ManualClock, retention: RetentionOption) => Promise<RetentionFixture>;

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** Telemetry-shaped: a reading taken at `seq` seconds, stored by a batched flush a little later. */
interface Reading {
  readonly node: string;
  readonly seq: number;
}

/** A written version, for the reference model. */
interface Row {
  readonly id: string;
  readonly validFrom: number;
  readonly txTime: number;
  readonly value: number | undefined;
}

/** The adapters' as-of rule over every version ever written: greatest valid time, then latest write. */
function resolve(rows: readonly Row[], id: string, asOf: number, knownAt: number): number | undefined {
  let winner: Row | undefined;
  for (const row of rows) {
    if (row.id !== id || row.validFrom > asOf || row.txTime > knownAt) continue;
    if (winner === undefined || row.validFrom >= winner.validFrom) winner = row;
  }
  return winner?.value;
}

async function versionCount(documents: DocumentStore, collection: string, ids: readonly string[]): Promise<number> {
  let total = 0;
  for (const id of ids) total += (await documents.history(collection, id)).length;
  return total;
}

export function retentionContract(name: string, open: OpenWithRetention): void {
  describe(`history retention contract: ${name}`, () => {
    const opened: RetentionFixture[] = [];
    /** Passes run when the test says, never on the store's own timer. */
    const start = async (clock: ManualClock, retention: Exclude<RetentionOption, false>): Promise<RetentionFixture> => {
      const fixture = await open(clock, { intervalMs: 24 * HOUR, ...retention });
      opened.push(fixture);
      return fixture;
    };

    afterEach(async () => {
      for (const fixture of opened.splice(0)) await fixture.close();
    });

    /** Minute resolution after 10 minutes, ten-minute resolution after an hour: the default policy's shape, scaled down. */
    const scaled = { collections: ['nodes'], tiers: [{ olderThanMs: 10 * MINUTE, everyMs: MINUTE }, { olderThanMs: HOUR, everyMs: 10 * MINUTE }], horizonMs: null };

    /** `hours` of 5-second telemetry from two nodes, flushed every 15 s as the aggregator batches it. */
    async function telemetry(documents: DocumentStore, clock: ManualClock, hours: number, base: number): Promise<Row[]> {
      const rows: Row[] = [];
      const end = base + hours * HOUR;
      for (let flushAt = base + 15 * SECOND; flushAt <= end; flushAt += 15 * SECOND) {
        clock.set(flushAt);
        const puts = [];
        for (let taken = flushAt - 15 * SECOND + 5 * SECOND; taken <= flushAt; taken += 5 * SECOND) {
          for (const node of ['n1', 'n2']) {
            const body: Reading = { node, seq: (taken - base) / SECOND };
            puts.push({ collection: 'nodes', id: node, body, options: { validFrom: taken - 2 * SECOND } });
            rows.push({ id: node, validFrom: taken - 2 * SECOND, txTime: flushAt, value: body.seq });
          }
        }
        await documents.putMany(puts);
      }
      return rows;
    }

    it('thins telemetry by age, keeps reads of now and of whole minutes exact, and reads between them within the minute', async () => {
      const base = Date.UTC(2026, 0, 1, 10);
      const clock = new ManualClock(base);
      const { documents, compactHistory } = await start(clock, scaled);
      const rows = await telemetry(documents, clock, 2, base);
      const now = clock.now();
      const before = await documents.list<Reading>('nodes');
      const report = await compactHistory();
      expect(report.deleted).toBeGreaterThan(0);
      expect(report.yielded).toBe(false);
      expect(await documents.list<Reading>('nodes')).toEqual(before);

      const history = await documents.history<Reading>('nodes', 'n1');
      const written = rows.filter((r) => r.id === 'n1');
      // The latest version, and every version stored in the last 10 minutes, are all there.
      expect(history.at(-1)?.body?.seq).toBe(written.at(-1)?.value);
      const recent = (list: readonly { txTime: number }[]): number => list.filter((v) => v.txTime > now - 10 * MINUTE).length;
      expect(recent(history)).toBe(recent(written));
      // 10 minutes to an hour old: about one version a minute; older: about one per ten minutes.
      const between = (list: readonly { txTime: number }[], from: number, to: number): number => list.filter((v) => v.txTime > from && v.txTime <= to).length;
      // (At most two per step: what was current at its end as known then, and as known a step later.)
      expect(between(history, now - HOUR, now - 11 * MINUTE)).toBeLessThanOrEqual(2 * 49 + 2);
      expect(between(history, now - HOUR, now - 11 * MINUTE)).toBeGreaterThanOrEqual(49 - 1);
      expect(between(history, base, now - HOUR - 10 * MINUTE)).toBeLessThanOrEqual(2 * 5 + 2);
      expect(history.length).toBeLessThan(written.length / 5);
      // Versions keep their numbers: history is a subsequence of what was written.
      expect(history.map((v) => v.version)).toEqual([...history.map((v) => v.version)].sort((a, b) => a - b));

      for (let t = base + MINUTE; t <= now; t += 20 * SECOND) {
        const step = t <= now - HOUR ? 10 * MINUTE : t <= now - 10 * MINUTE ? MINUTE : 0;
        for (const [asOf, knownAt] of [[t, t], [t, now]] as const) {
          const got = (await documents.get<Reading>('nodes', 'n1', { asOf, knownAt }))?.body?.seq;
          const exact = resolve(rows, 'n1', asOf, knownAt);
          if (step === 0 || asOf % step === 0) {
            expect(got, `asOf ${asOf - base} knownAt ${knownAt - base}`).toBe(exact);
          } else {
            // Current at some instant from the last whole step up to the read's own time.
            // Readings only grow, so that is: between the answers there and here (nothing, before the first).
            const floor = resolve(rows, 'n1', asOf - (asOf % step), knownAt - (knownAt % step));
            const where = `asOf ${asOf - base} knownAt ${knownAt - base}`;
            if (got === undefined) expect(floor, where).toBeUndefined();
            else {
              expect(got, where).toBeGreaterThanOrEqual(floor ?? -1);
              expect(got, where).toBeLessThanOrEqual(exact ?? -1);
            }
          }
        }
      }
      const listed = await documents.list<Reading>('nodes', { asOf: now - 30 * MINUTE, knownAt: now - 30 * MINUTE });
      expect(listed.map((v) => [v.id, v.body?.seq])).toEqual(['n1', 'n2'].map((id) => [id, resolve(rows, id, now - 30 * MINUTE, now - 30 * MINUTE)]));
    });

    it('a pass that runs again compacts nothing more, and collections outside the policy keep every version', async () => {
      const clock = new ManualClock(Date.UTC(2026, 0, 1, 10));
      const { documents, compactHistory } = await start(clock, scaled);
      for (let i = 0; i < 240; i++) {
        await documents.put('nodes', 'n1', { i });
        await documents.put('jobs', 'j1', { i });
        clock.advance(5 * SECOND);
      }
      clock.advance(2 * HOUR);
      const first = await compactHistory();
      const kept = (await documents.history('nodes', 'n1')).length;
      expect(first.deleted).toBe(240 - kept);
      expect(kept).toBeLessThan(30);
      expect((await compactHistory()).deleted).toBe(0);
      expect((await documents.history('jobs', 'j1')).length).toBe(240);
    });

    it('keeps the latest version of every id, even a deletion or one far older than every tier', async () => {
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const { documents, compactHistory } = await start(clock, { ...scaled, horizonMs: 3 * HOUR });
      for (let i = 0; i < 30; i++) {
        await documents.put('nodes', 'old', { i });
        await documents.put('nodes', 'gone', { i });
        clock.advance(SECOND);
      }
      await documents.delete('nodes', 'gone');
      clock.advance(24 * HOUR);
      await compactHistory();
      expect((await documents.history('nodes', 'old')).map((v) => [v.version, v.body])).toEqual([[30, { i: 29 }]]);
      expect((await documents.history('nodes', 'gone')).map((v) => [v.version, v.deleted])).toEqual([[31, true]]);
      expect((await documents.get('nodes', 'old'))?.body).toEqual({ i: 29 });
      expect(await documents.get('nodes', 'gone')).toBeUndefined();
      // Compare-and-set still sees the right latest version.
      expect(await documents.put('nodes', 'old', { i: 30 }, { expectedVersion: 30 })).toMatchObject({ ok: true, version: { version: 31 } });
    });

    it('past the horizon keeps only what was current at the horizon', async () => {
      const base = Date.UTC(2026, 0, 1);
      const clock = new ManualClock(base);
      const { documents, compactHistory } = await start(clock, { ...scaled, horizonMs: 3 * HOUR });
      for (let i = 0; i < 6 * 60; i++) {
        await documents.put('nodes', 'n1', { minute: i });
        clock.advance(MINUTE);
      }
      await compactHistory();
      const now = clock.now();
      const horizon = now - 3 * HOUR;
      const history = await documents.history<{ minute: number }>('nodes', 'n1');
      expect(history.filter((v) => v.txTime <= horizon).map((v) => v.body?.minute)).toEqual([(horizon - base) / MINUTE]);
      // A read at the horizon is still exact; before it, nothing older survives.
      expect((await documents.get<{ minute: number }>('nodes', 'n1', { asOf: horizon }))?.body?.minute).toBe((horizon - base) / MINUTE);
      expect(await documents.get('nodes', 'n1', { asOf: horizon - MINUTE })).toBeUndefined();
      // Between the horizon and an hour ago: one version per ten minutes.
      expect(history.filter((v) => v.txTime > horizon && v.txTime <= now - HOUR - 10 * MINUTE).length).toBeLessThanOrEqual(11 + 1);
    });

    it('answers every read at whole steps exactly as the full history does, for any history of puts, backdated corrections and deletes', async () => {
      let run = 0;
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      // Steps of 10 ms after 100 ms, of 50 ms after 300 ms; past 600 ms only the state at the horizon.
      const policy = { collections: ['p'], tiers: [{ olderThanMs: 100, everyMs: 10 }, { olderThanMs: 300, everyMs: 50 }], horizonMs: 600 };
      const { documents, compactHistory } = await start(clock, policy);
      type Op =
        | { readonly kind: 'put'; readonly id: string; readonly backdate: number; readonly value: number }
        | { readonly kind: 'delete'; readonly id: string; readonly backdate: number }
        | { readonly kind: 'advance'; readonly ms: number }
        | { readonly kind: 'compact' };
      const op: fc.Arbitrary<Op> = fc.oneof(
        { weight: 4, arbitrary: fc.record({ kind: fc.constant('put' as const), id: fc.constantFrom('a', 'b'), backdate: fc.constantFrom(0, 0, 0, 3, 12, 70), value: fc.nat(1000) }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), id: fc.constantFrom('a', 'b'), backdate: fc.constantFrom(0, 8) }) },
        { weight: 4, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 40 }) }) },
        { weight: 1, arbitrary: fc.constant({ kind: 'compact' as const }) },
      );
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 10, maxLength: 60 }), async (ops) => {
          // Ids of their own per run: retention decides per id, so runs cannot disturb each other.
          const tag = run++;
          const idOf = (id: string): string => `${tag}-${id}`;
          const ids = ['a', 'b'].map(idOf);
          const rows: Row[] = [];
          const t0 = clock.now();
          for (const step of ops) {
            if (step.kind === 'advance') clock.advance(step.ms);
            else if (step.kind === 'compact') await compactHistory();
            else {
              const validFrom = clock.now() - step.backdate;
              const value = step.kind === 'put' ? step.value : undefined;
              if (step.kind === 'put') await documents.put('p', idOf(step.id), value, { validFrom });
              else await documents.delete('p', idOf(step.id), { validFrom });
              rows.push({ id: idOf(step.id), validFrom, txTime: clock.now(), value });
            }
          }
          clock.advance(700);
          const now = clock.now();
          await compactHistory();
          // The grid: the horizon itself, whole 50s before the 300 ms cutoff, whole 10s before the 100 ms one, any time after.
          const horizon = Math.floor((now - 600) / 50) * 50;
          const coarse = Math.floor((now - 300) / 50) * 50;
          const fine = Math.floor((now - 100) / 10) * 10;
          const grid = [horizon, now];
          for (let t = horizon + 10; t <= now; t += 10) if (t > coarse || t % 50 === 0) grid.push(t);
          for (let t = fine + 1; t < now; t += 7) grid.push(t);
          const asOfs = grid.filter((t) => t >= t0 - 80);
          const knownAts = grid.filter((t, i) => t >= t0 && (i % 8 === 0 || t === horizon || t === now || (t > fine && i % 2 === 0)));
          for (const asOf of asOfs) {
            for (const knownAt of knownAts) {
              const listed = await documents.list<number>('p', { asOf, knownAt });
              const expected = ids.flatMap((id) => {
                const value = resolve(rows, id, asOf, knownAt);
                return value === undefined ? [] : [[id, value]];
              });
              expect(listed.filter((v) => ids.includes(v.id)).map((v) => [v.id, v.body]), `asOf ${asOf - t0} knownAt ${knownAt - t0}`).toEqual(expected);
            }
          }
          for (const id of ids) {
            const written = rows.filter((r) => r.id === id).length;
            if (written > 0) expect((await documents.history('p', id)).at(-1)?.version).toBe(written);
          }
        }),
        { numRuns: 25 },
      );
    }, 90_000);

    it('keeps the number of versions bounded by the policy under sustained telemetry (1 s reports for 12 h)', async () => {
      const base = Date.UTC(2026, 0, 1);
      const clock = new ManualClock(base);
      // The default policy's shape at a smaller scale: every version for 10 minutes, one a minute to
      // 3 h, one per ten minutes to 6 h, then the state at the horizon. A flush every 30 s (the
      // aggregator batches telemetry), a pass every 5 minutes; the last 6 hours run past the horizon.
      const policy = { collections: ['nodes'], tiers: [{ olderThanMs: 10 * MINUTE, everyMs: MINUTE }, { olderThanMs: 3 * HOUR, everyMs: 10 * MINUTE }], horizonMs: 6 * HOUR };
      const { documents, compactHistory } = await start(clock, policy);
      const nodes = ['n1', 'n2', 'n3'];
      // Right after a pass, per node: the 600 versions of the last 10 minutes, one per minute of the
      // 170 from there to 3 h, one per ten minutes of the 18 to 6 h, one at the horizon, and one more
      // at each of the three boundaries.
      const bound = nodes.length * (600 + 170 + 18 + 1 + 3);
      let inserted = 0;
      let largest = 0;
      let last = 0;
      for (let flushAt = base + 30 * SECOND; flushAt <= base + 12 * HOUR; flushAt += 30 * SECOND) {
        clock.set(flushAt);
        const puts = [];
        for (let taken = flushAt - 29 * SECOND; taken <= flushAt; taken += SECOND) {
          for (const node of nodes) puts.push({ collection: 'nodes', id: node, body: { node, taken }, options: { validFrom: taken } });
        }
        await documents.putMany(puts);
        inserted += puts.length;
        if ((flushAt - base) % (5 * MINUTE) === 0) await compactHistory();
        if ((flushAt - base) % HOUR === 0) {
          last = await versionCount(documents, 'nodes', nodes);
          largest = Math.max(largest, last);
        }
      }
      expect(inserted).toBe(nodes.length * 12 * 3600);
      expect(largest).toBeLessThanOrEqual(bound);
      // Compaction thins, it does not lose what the policy keeps.
      expect(last).toBeGreaterThan(nodes.length * (600 + 170 + 15));
      console.info(`[retention] ${name}: ${inserted} versions written over 12 h, ${last} kept at the end (largest ${largest}, bound ${bound})`);
    }, 120_000);
  });
}

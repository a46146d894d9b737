/**
 * Behaviour every KvStore adapter must show: etcd-like revisions, compare-and-set, prefix lists and
 * watches that replay history then follow live writes. Fencing needs the lease store of the same
 * backing store, so the factory hands both over.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { StaleFencingTokenError } from '../../src/core/errors.ts';
import type { KvEvent, KvStore, KvWatch, LeaseStore } from '../../src/store/ports.ts';

export interface KvStoreFixture {
  readonly kv: KvStore;
  readonly leases: LeaseStore;
  close(): Promise<void>;
}

/** Real time, only to let asynchronous delivery settle; nothing here waits for a TTL. */
function settle(ms = 30): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls often: delivery is asynchronous but quick, and the default 50 ms interval dominates test time. */
function eventually(assertion: () => void): Promise<void> {
  return vi.waitFor(assertion, { interval: 5, timeout: 2000 });
}

function summary(events: readonly KvEvent[]): [number, string, string, unknown][] {
  return events.map((e) => [e.revision, e.type, e.key, e.value]);
}

export function kvStoreContract(name: string, open: (clock: ManualClock) => Promise<KvStoreFixture>): void {
  describe(`KvStore contract: ${name}`, () => {
    let clock: ManualClock;
    let fixture: KvStoreFixture;
    let kv: KvStore;
    const watches: KvWatch[] = [];

    beforeEach(async () => {
      clock = new ManualClock();
      fixture = await open(clock);
      kv = fixture.kv;
    });

    afterEach(async () => {
      for (const watch of watches.splice(0)) watch.close();
      await fixture.close();
    });

    function watch(prefix: string, fromRevision: number): KvEvent[] {
      const events: KvEvent[] = [];
      watches.push(kv.watch(prefix, fromRevision, (event) => events.push(event)));
      return events;
    }

    describe('revisions', () => {
      it('starts empty at revision 0', async () => {
        expect(await kv.revision()).toBe(0);
        expect(await kv.get('nope')).toBeUndefined();
        expect(await kv.list('')).toEqual({ entries: [], revision: 0 });
      });

      it('bumps one store-wide revision per write and tracks create/mod revision and version per key', async () => {
        expect(await kv.put('a', { n: 1 })).toEqual({ ok: true, revision: 1 });
        expect(await kv.put('b', 'bee')).toEqual({ ok: true, revision: 2 });
        expect(await kv.put('a', { n: 2 })).toEqual({ ok: true, revision: 3 });
        expect(await kv.revision()).toBe(3);
        expect(await kv.get('a')).toEqual({ key: 'a', value: { n: 2 }, createRevision: 1, modRevision: 3, version: 2 });
        expect(await kv.get('b')).toEqual({ key: 'b', value: 'bee', createRevision: 2, modRevision: 2, version: 1 });
      });

      it('round-trips JSON values including null, false and 0', async () => {
        await kv.put('null', null);
        await kv.put('false', false);
        await kv.put('zero', 0);
        await kv.put('deep', { list: [1, { x: 'y' }], s: '\u00e9' });
        expect((await kv.get('null'))?.value).toBeNull();
        expect((await kv.get('false'))?.value).toBe(false);
        expect((await kv.get('zero'))?.value).toBe(0);
        expect((await kv.get('deep'))?.value).toEqual({ list: [1, { x: 'y' }], s: '\u00e9' });
      });
    });

    describe('compare-and-set', () => {
      it('writes only when expectedRevision equals the key modRevision', async () => {
        await kv.put('k', 'v1');
        await kv.put('other', 'x');
        expect(await kv.put('k', 'v2', { expectedRevision: 1 })).toEqual({ ok: true, revision: 3 });
        expect(await kv.put('k', 'v3', { expectedRevision: 1 })).toEqual({ ok: false, reason: 'revision-mismatch', currentRevision: 3 });
        expect(await kv.get('k')).toMatchObject({ value: 'v2', modRevision: 3, version: 2 });
        expect(await kv.revision()).toBe(3);
      });

      it('expectedRevision 0 means the key must not exist', async () => {
        expect(await kv.put('k', 'first', { expectedRevision: 0 })).toEqual({ ok: true, revision: 1 });
        expect(await kv.put('k', 'second', { expectedRevision: 0 })).toEqual({ ok: false, reason: 'revision-mismatch', currentRevision: 1 });
        expect((await kv.get('k'))?.value).toBe('first');
        await kv.delete('k');
        expect(await kv.put('k', 'again', { expectedRevision: 0 })).toEqual({ ok: true, revision: 3 });
      });

      it('a mismatch on a missing key reports revision 0', async () => {
        expect(await kv.put('k', 'v', { expectedRevision: 4 })).toEqual({ ok: false, reason: 'revision-mismatch', currentRevision: 0 });
        expect(await kv.get('k')).toBeUndefined();
      });

      it('of concurrent writers expecting the same revision, exactly one wins', async () => {
        await kv.put('k', 0);
        const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) => kv.put('k', i + 1, { expectedRevision: 1 })));
        expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
        expect(await kv.get('k')).toMatchObject({ version: 2, modRevision: 2 });
      });
    });

    describe('delete', () => {
      it('removes the key with a new revision; a re-created key starts a new life', async () => {
        await kv.put('k', 'v1');
        await kv.put('k', 'v2');
        expect(await kv.delete('k')).toEqual({ ok: true, revision: 3 });
        expect(await kv.get('k')).toBeUndefined();
        expect(await kv.revision()).toBe(3);
        await kv.put('k', 'v3');
        expect(await kv.get('k')).toEqual({ key: 'k', value: 'v3', createRevision: 4, modRevision: 4, version: 1 });
      });

      it('deleting a missing key is a no-op that reports the current revision', async () => {
        await kv.put('a', 1);
        expect(await kv.delete('missing')).toEqual({ ok: true, revision: 1 });
        expect(await kv.revision()).toBe(1);
      });

      it('honours expectedRevision', async () => {
        await kv.put('k', 'v1');
        expect(await kv.delete('k', { expectedRevision: 9 })).toEqual({ ok: false, reason: 'revision-mismatch', currentRevision: 1 });
        expect((await kv.get('k'))?.value).toBe('v1');
        expect(await kv.delete('k', { expectedRevision: 1 })).toEqual({ ok: true, revision: 2 });
      });
    });

    describe('list', () => {
      it('returns the keys under a prefix in key order with the revision read at', async () => {
        for (const key of ['nodes/b', 'nodes/a', 'nodes0', 'node', 'jobs/x', 'nodes/c/1', 'nodes/']) await kv.put(key, key);
        await kv.delete('nodes/c/1');
        const { entries, revision } = await kv.list<string>('nodes/');
        expect(entries.map((e) => e.key)).toEqual(['nodes/', 'nodes/a', 'nodes/b']);
        expect(entries.map((e) => e.value)).toEqual(['nodes/', 'nodes/a', 'nodes/b']);
        expect(revision).toBe(8);
        expect((await kv.list('')).entries.map((e) => e.key)).toEqual(['jobs/x', 'node', 'nodes/', 'nodes/a', 'nodes/b', 'nodes0']);
        expect((await kv.list('zzz')).entries).toEqual([]);
      });

      it('treats prefixes literally, including LIKE/GLOB metacharacters and non-ASCII', async () => {
        for (const key of ['a%b/1', 'axb/1', 'a_b/1', 'a*b/1', 'é/1', 'é/2', 'ê/1', '\u{1f600}/1']) await kv.put(key, 1);
        expect((await kv.list('a%b/')).entries.map((e) => e.key)).toEqual(['a%b/1']);
        expect((await kv.list('a_b/')).entries.map((e) => e.key)).toEqual(['a_b/1']);
        expect((await kv.list('a*')).entries.map((e) => e.key)).toEqual(['a*b/1']);
        expect((await kv.list('é')).entries.map((e) => e.key)).toEqual(['é/1', 'é/2']);
        expect((await kv.list('\u{1f600}')).entries.map((e) => e.key)).toEqual(['\u{1f600}/1']);
      });
    });

    describe('watch', () => {
      it('replays history after fromRevision in order, then delivers live changes', async () => {
        await kv.put('svc/a', 1); // 1
        await kv.put('other/x', 1); // 2
        await kv.put('svc/b', 2); // 3
        await kv.delete('svc/a'); // 4

        const fromStart = watch('svc/', 0);
        const fromTwo = watch('svc/', 2);
        await eventually(() => expect(fromStart).toHaveLength(3));
        expect(summary(fromStart)).toEqual([
          [1, 'put', 'svc/a', 1],
          [3, 'put', 'svc/b', 2],
          [4, 'delete', 'svc/a', undefined],
        ]);
        await eventually(() => expect(fromTwo).toHaveLength(2));
        expect(fromTwo.map((e) => e.revision)).toEqual([3, 4]);

        await kv.put('svc/c', 3); // 5
        await kv.put('other/y', 1); // 6
        await kv.put('svc/b', 4); // 7
        await eventually(() => expect(fromStart).toHaveLength(5));
        expect(summary(fromStart.slice(3))).toEqual([
          [5, 'put', 'svc/c', 3],
          [7, 'put', 'svc/b', 4],
        ]);
        await eventually(() => expect(fromTwo).toHaveLength(4));
        await settle();
        expect(fromStart.map((e) => e.revision)).toEqual([1, 3, 4, 5, 7]);
        expect(fromTwo.map((e) => e.revision)).toEqual([3, 4, 5, 7]);
      });

      it('from the current revision delivers only later changes', async () => {
        await kv.put('k/1', 'old');
        const events = watch('k/', await kv.revision());
        await settle();
        expect(events).toEqual([]);
        await kv.put('k/2', 'new');
        await eventually(() => expect(events).toHaveLength(1));
        expect(events[0]).toEqual({ type: 'put', key: 'k/2', revision: 2, value: 'new' });
      });

      it('never calls back synchronously from watch() or put()', async () => {
        await kv.put('k/1', 1);
        const events = watch('k/', 0);
        expect(events).toEqual([]);
        await eventually(() => expect(events).toHaveLength(1));
      });

      it('delivers a burst of writes racing the replay exactly once each, in order', async () => {
        for (let i = 0; i < 50; i++) await kv.put(`burst/${i % 7}`, i);
        const events = watch('burst/', 10);
        const writes: Promise<unknown>[] = [];
        for (let i = 50; i < 150; i++) {
          writes.push(i % 10 === 0 ? kv.delete(`burst/${i % 7}`) : kv.put(`burst/${i % 7}`, i));
        }
        await Promise.all(writes);
        const last = await kv.revision();
        await eventually(() => expect(events.at(-1)?.revision).toBe(last));
        await settle();
        const revisions = events.map((e) => e.revision);
        expect(revisions).toEqual(Array.from({ length: last - 10 }, (_, i) => i + 11));
      });

      it('an empty prefix watches every key', async () => {
        const events = watch('', 0);
        await kv.put('a', 1);
        await kv.put('z/z', 2);
        await eventually(() => expect(events.map((e) => e.key)).toEqual(['a', 'z/z']));
      });

      it('watches independently per prefix and stops after close', async () => {
        const a = watch('a/', 0);
        const b = watch('b/', 0);
        const closed = watch('', 0);
        watches.at(-1)?.close();
        await kv.put('a/1', 1);
        await kv.put('b/1', 1);
        await kv.put('a/2', 2);
        await eventually(() => expect(a.map((e) => e.key)).toEqual(['a/1', 'a/2']));
        await eventually(() => expect(b.map((e) => e.key)).toEqual(['b/1']));
        await settle();
        expect(closed).toEqual([]);
      });

      it('a watcher may write from its callback without losing or repeating events', async () => {
        const seen: number[] = [];
        watches.push(
          kv.watch<number>('chain/', 0, (event) => {
            seen.push(event.revision);
            if (event.value !== undefined && event.value < 5) void kv.put('chain/next', event.value + 1);
          }),
        );
        await kv.put('chain/start', 1);
        await eventually(() => expect(seen).toHaveLength(5));
        await settle();
        expect(seen).toEqual([1, 2, 3, 4, 5]);
      });
    });

    describe('fencing', () => {
      it("rejects a deposed holder's put and delete, writes nothing, and lands the new holder's", async () => {
        const first = await fixture.leases.acquire('config-writer', 'A', 1000);
        if (!first.ok) throw new Error('expected grant');
        const fenceA = { lease: 'config-writer', token: first.grant.token };
        expect(await kv.put('cfg', 'by A', { fence: fenceA })).toEqual({ ok: true, revision: 1 });

        clock.advance(1001);
        const second = await fixture.leases.acquire('config-writer', 'B', 1000);
        if (!second.ok) throw new Error('expected grant');
        const events = watch('', 0);

        await expect(kv.put('cfg', 'late A', { fence: fenceA })).rejects.toBeInstanceOf(StaleFencingTokenError);
        await expect(kv.delete('cfg', { fence: fenceA })).rejects.toMatchObject({ code: 'STALE_FENCING_TOKEN' });
        await expect(kv.put('fresh', 'x', { fence: { lease: 'never-granted', token: 1 } })).rejects.toBeInstanceOf(
          StaleFencingTokenError,
        );
        expect(await kv.revision()).toBe(1);
        expect(await kv.get('cfg')).toMatchObject({ value: 'by A', version: 1 });
        expect(await kv.get('fresh')).toBeUndefined();

        expect(await kv.put('cfg', 'by B', { fence: { lease: 'config-writer', token: second.grant.token } })).toEqual({
          ok: true,
          revision: 2,
        });
        await eventually(() => expect(events.map((e) => e.value)).toEqual(['by A', 'by B']));
      });
    });
  });
}

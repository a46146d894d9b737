import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Registry } from 'prom-client';
import { ManualClock } from '../../src/core/clock.ts';
import { ArcError, StaleFencingTokenError } from '../../src/core/errors.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import { MIGRATIONS } from '../../src/store/sqlite-schema.ts';
import { DAY_MS } from '../../src/store/retention.ts';
import type { KvEvent, StateStores } from '../../src/store/ports.ts';
import { documentStoreContract } from './documents.contract.ts';
import { kvStoreContract } from './kv.contract.ts';
import { leaseStoreContract } from './leases.contract.ts';
import { recordStoreContract } from './records.contract.ts';
import { granted, sharedStoreContract } from './shared-store.contract.ts';
import { retentionContract } from './store-retention.contract.ts';

const root = mkdtempSync(join(tmpdir(), 'arcnet-sqlite-test-'));
let fileCounter = 0;
function freshPath(): string {
  return join(root, `db-${process.pid}-${fileCounter++}`, 'state.sqlite');
}

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

const variants: [string, () => string, boolean][] = [
  ['SQLite file', freshPath, false],
  ['SQLite :memory:', () => ':memory:', false],
  // The query-duration wrappers (src/store/query-metrics.ts) must not change what the ports do.
  ['SQLite :memory: with query metrics', () => ':memory:', true],
];

for (const [label, path, metered] of variants) {
  const open = async (clock: ManualClock): Promise<StateStores> =>
    openSqliteStores({ path: path(), clock, ...(metered ? { registry: new Registry() } : {}) });
  documentStoreContract(label, open);
  kvStoreContract(label, open);
  leaseStoreContract(label, open);
  recordStoreContract(label, open);
}

retentionContract('SQLite file', async (clock, retention) => openSqliteStores({ path: freshPath(), clock, retention }));

sharedStoreContract('SQLite file', async (clock) => {
  const path = freshPath();
  return [openSqliteStores({ path, clock }), openSqliteStores({ path, clock })];
});

describe('SQLite adapter', () => {
  it('keeps the WAL bounded under sustained writes instead of letting it grow with every commit', async () => {
    const path = freshPath();
    const limit = 1 << 20;
    const stores = openSqliteStores({ path, walLimitBytes: limit });
    const body = { payload: 'x'.repeat(4_000) };
    let largest = 0;
    try {
      // ~40 MB of WAL frames without the bound; the background checkpoint alone never rewinds it while writes continue.
      for (let i = 0; i < 5_000; i++) {
        await stores.documents.put('load', `doc-${i % 500}`, body);
        if (i % 250 === 0) largest = Math.max(largest, statSync(`${path}-wal`).size);
      }
    } finally {
      await stores.close();
    }
    // The check runs every 64 commits, so the file may pass the limit by that many commits' frames (~8 pages each); unbounded it reaches ~120 MB.
    expect(largest).toBeLessThan(limit + 64 * 8 * 4096);
  });

  describe('on open', () => {
    it('creates missing parent directories, uses WAL and records the applied migrations once', async () => {
      const path = join(root, 'nested', 'deeper', 'state.sqlite');
      const first = openSqliteStores({ path });
      await first.close();
      const second = openSqliteStores({ path });
      await second.close();
      expect(existsSync(path)).toBe(true);

      const raw = new DatabaseSync(path);
      try {
        expect(raw.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
        const migrations = raw.prepare('SELECT version FROM schema_migrations ORDER BY version').all();
        expect(migrations.map((m) => m['version'])).toEqual(MIGRATIONS.map((m) => m.version));
      } finally {
        raw.close();
      }
    });

    it('moves the decision records an older build kept as documents into records, where they expire', async () => {
      const path = freshPath();
      const stores = openSqliteStores({ path, retention: false });
      await stores.close();
      // Back to migration 3, with one decision written as a document the way build d07f941 wrote it.
      const raw = new DatabaseSync(path);
      try {
        raw.exec("DROP TABLE records; DELETE FROM schema_migrations WHERE version >= 4");
        raw.prepare("INSERT INTO documents (collection, id, version, valid_from, tx_time, body, deleted) VALUES ('inference_decisions', 'req-1', 1, 5, 7, ?, 0)").run('{"id":"req-1"}');
      } finally {
        raw.close();
      }
      const reopened = openSqliteStores({ path, retention: false });
      try {
        expect(await reopened.records.get('inference_decisions', 'req-1')).toEqual({ collection: 'inference_decisions', id: 'req-1', recordedAt: 7, body: { id: 'req-1' } });
        expect(await reopened.documents.history('inference_decisions', 'req-1')).toEqual([]);
      } finally {
        await reopened.close();
      }
    });

    it('indexes history by transaction time only for retained collections, widening the index when a store on the file retains more', async () => {
      const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
      const path = freshPath();
      const indexed = (): unknown => {
        const raw = new DatabaseSync(path);
        try {
          return raw.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'documents_retained_tx'").get()?.['sql'];
        } finally {
          raw.close();
        }
      };
      await openSqliteStores({ path, clock, retention: false }).close();
      expect(indexed()).toBeUndefined();

      const nodesOnly = openSqliteStores({ path, clock, retention: { collections: ['nodes'], intervalMs: DAY_MS } });
      expect(indexed()).toMatch(/WHERE collection IN \('nodes'\)$/);
      // A second store retaining more widens the index; the first keeps compacting through the wider one.
      const wider = openSqliteStores({ path, clock, retention: { collections: ['nodes', "it's-jobs"], intervalMs: DAY_MS } });
      expect(indexed()).toMatch(/WHERE collection IN \('it''s-jobs', 'nodes'\)$/);
      // Reports every 10 s for a day and a half: the day-old half is compacted to one a minute.
      for (let report = 0; report < 1.5 * 8_640; report += 1) {
        await nodesOnly.documents.put('nodes', 'n1', { report });
        await nodesOnly.documents.put("it's-jobs", 'j1', { report });
        clock.advance(10_000);
      }
      const first = await nodesOnly.compactHistory();
      const second = await wider.compactHistory();
      expect(first.deleted).toBeGreaterThan(0);
      expect(second.deleted).toBeGreaterThan(0);
      // Reopening with the narrower policy never narrows the index the wider store relies on.
      await nodesOnly.close();
      await openSqliteStores({ path, clock, retention: { collections: ['nodes'], intervalMs: DAY_MS } }).close();
      expect(indexed()).toMatch(/'it''s-jobs', 'nodes'/);
      await wider.close();
    });

    it('refuses a database written by a newer schema', async () => {
      const path = freshPath();
      await openSqliteStores({ path }).close();
      const raw = new DatabaseSync(path);
      raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, ?, 0)').run('from the future');
      raw.close();
      expect(() => openSqliteStores({ path })).toThrow(/newer than this build/);
    });

    it('fails calls after close with a CLOSED error', async () => {
      const stores = openSqliteStores({ path: ':memory:' });
      await stores.close();
      await stores.close();
      await expect(stores.leases.acquire('x', 'A', 1000)).rejects.toMatchObject({ code: 'CLOSED' });
      await expect(stores.kv.get('x')).rejects.toBeInstanceOf(ArcError);
      await expect(stores.documents.get('c', 'x')).rejects.toMatchObject({ code: 'CLOSED' });
    });

    it('rejects values JSON cannot represent', async () => {
      const stores = openSqliteStores({ path: ':memory:' });
      try {
        await expect(stores.kv.put('k', undefined)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
        await expect(stores.documents.put('c', 'x', () => 1)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
        expect(await stores.kv.revision()).toBe(0);
      } finally {
        await stores.close();
      }
    });
  });

  describe('durability across close and reopen', () => {
    it('keeps document history and bitemporal views', async () => {
      const clock = new ManualClock();
      const t0 = clock.now();
      const path = freshPath();
      const before = openSqliteStores({ path, clock });
      await before.documents.put('nodes', 'n1', { v: 1 });
      clock.advance(100);
      await before.documents.put('nodes', 'n1', { v: 'fixed' }, { validFrom: t0 + 50 });
      await before.documents.delete('nodes', 'gone');
      await before.close();

      const after = openSqliteStores({ path, clock });
      try {
        expect((await after.documents.history('nodes', 'n1')).map((v) => v.version)).toEqual([1, 2]);
        expect((await after.documents.get('nodes', 'n1', { asOf: t0 + 60 }))?.body).toEqual({ v: 'fixed' });
        expect((await after.documents.get('nodes', 'n1', { asOf: t0 + 60, knownAt: t0 }))?.body).toEqual({ v: 1 });
        const next = await after.documents.put('nodes', 'n1', { v: 3 }, { expectedVersion: 2 });
        expect(next.ok && next.version.version).toBe(3);
      } finally {
        await after.close();
      }
    });

    it('keeps kv revisions, per-key counters and the event log', async () => {
      const path = freshPath();
      const before = openSqliteStores({ path });
      await before.kv.put('a', 1);
      await before.kv.put('a', 2);
      await before.kv.put('b', 1);
      await before.kv.delete('b');
      await before.close();

      const after = openSqliteStores({ path });
      try {
        expect(await after.kv.revision()).toBe(4);
        expect(await after.kv.get('a')).toEqual({ key: 'a', value: 2, createRevision: 1, modRevision: 2, version: 2 });
        expect(await after.kv.put('b', 'again')).toEqual({ ok: true, revision: 5 });
        const events: KvEvent[] = [];
        const watch = after.kv.watch('', 1, (event) => events.push(event));
        await vi.waitFor(() => expect(events.map((e) => [e.revision, e.type])).toEqual([[2, 'put'], [3, 'put'], [4, 'delete'], [5, 'put']]));
        watch.close();
      } finally {
        await after.close();
      }
    });

    it('keeps lease tokens increasing after reopen, whether the last grant was released, expired or live', async () => {
      const clock = new ManualClock();
      const path = freshPath();
      let stores = openSqliteStores({ path, clock });
      const g1 = await granted(stores, 'released', 'A', 1000);
      await stores.leases.release(g1);
      const e1 = await granted(stores, 'expired', 'A', 1000);
      const l1 = await granted(stores, 'live', 'A', 1000);
      await stores.close();

      clock.advance(500);
      stores = openSqliteStores({ path, clock });
      try {
        expect(await stores.leases.current('live')).toEqual(l1);
        expect((await stores.leases.acquire('live', 'B', 1000)).ok).toBe(false);
        expect(await stores.leases.renew(l1, 1000)).toMatchObject({ token: l1.token });
        clock.advance(2000);
        expect((await granted(stores, 'released', 'B', 1000)).token).toBe(g1.token + 1);
        expect((await granted(stores, 'expired', 'B', 1000)).token).toBe(e1.token + 1);
        expect((await granted(stores, 'live', 'B', 1000)).token).toBe(l1.token + 1);
        await expect(stores.kv.put('k', 1, { fence: { lease: 'live', token: l1.token } })).rejects.toBeInstanceOf(StaleFencingTokenError);
      } finally {
        await stores.close();
      }
    });
  });

  describe('two stores on one file (two processes)', () => {
    it("a watch sees the other store's writes, in order and once each", async () => {
      const path = freshPath();
      const p1 = openSqliteStores({ path, watchPollMs: 20 });
      const p2 = openSqliteStores({ path });
      try {
        await p2.kv.put('svc/a', 0);
        const events: KvEvent[] = [];
        const watch = p1.kv.watch('svc/', 0, (event) => events.push(event));
        await vi.waitFor(() => expect(events).toHaveLength(1), { interval: 5 });
        for (let i = 1; i <= 10; i++) {
          // Interleave local and remote writes: local ones wake the watch at once, remote ones on poll.
          await (i % 3 === 0 ? p1 : p2).kv.put(`svc/${i % 4}`, i);
          if (i % 4 === 0) await new Promise((r) => setTimeout(r, 25));
        }
        await vi.waitFor(() => expect(events.at(-1)?.revision).toBe(11), { interval: 5 });
        // From here only the other store writes, so nothing local wakes the watch: only polling can.
        await new Promise((r) => setTimeout(r, 30));
        await p2.kv.put('svc/x', 'remote');
        await p2.kv.delete('svc/1');
        await vi.waitFor(() => expect(events.at(-1)?.revision).toBe(13), { interval: 5 });
        await new Promise((r) => setTimeout(r, 60));
        expect(events.map((e) => e.revision)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
        expect(events.at(-1)).toEqual({ type: 'delete', key: 'svc/1', revision: 13, value: undefined });
        watch.close();
      } finally {
        await p1.close();
        await p2.close();
      }
    });

    it('two real processes hammering one lease get distinct, gap-free tokens', async () => {
      const path = freshPath();
      // Create the schema first so the children race on leases, not on migrations.
      await openSqliteStores({ path }).close();
      const module = resolve(import.meta.dirname, '../../src/store/sqlite.ts');
      const script = `
        import { openSqliteStores } from ${JSON.stringify(module)};
        const stores = openSqliteStores({ path: process.env.DB_PATH });
        const tokens = [];
        for (let i = 0; i < 300; i++) {
          const outcome = await stores.leases.acquire('shared', process.env.HOLDER, 60_000);
          if (!outcome.ok) continue;
          tokens.push(outcome.grant.token);
          await stores.kv.put('owner', process.env.HOLDER, { fence: { lease: 'shared', token: outcome.grant.token } });
          if (!(await stores.leases.release(outcome.grant))) throw new Error('lost a lease nobody could take');
        }
        await stores.close();
        process.stdout.write(JSON.stringify(tokens));
      `;
      const run = promisify(execFile);
      const children = ['p1', 'p2'].map((holder) =>
        run(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, DB_PATH: path, HOLDER: holder } }),
      );
      const results = (await Promise.all(children)).map((r) => JSON.parse(r.stdout) as number[]);
      for (const tokens of results) {
        for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1] ?? 0);
      }
      const all = results.flat().sort((a, b) => a - b);
      expect(all).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
      const stores = openSqliteStores({ path });
      try {
        expect(await stores.kv.revision()).toBe(all.length);
        expect((await granted(stores, 'shared', 'parent', 1000)).token).toBe(all.length + 1);
      } finally {
        await stores.close();
      }
    });
  });
});

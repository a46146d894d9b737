import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { ArcError, StaleFencingTokenError } from '../../src/core/errors.ts';
import { openPostgresStores, type PostgresStoreOptions } from '../../src/store/postgres.ts';
import type { KvEvent, StateStores } from '../../src/store/ports.ts';
import { MIGRATIONS } from '../../src/store/postgres-schema.ts';
import type { OpenedStores } from '../../src/store/retention.ts';
import { freePort } from '../support/processes.ts';
import { POSTGRES_URL, adminConnection, testSchemas } from '../support/postgres.ts';
import { needEngines } from '../support/engines.ts';
import { documentStoreContract } from './documents.contract.ts';
import { kvStoreContract } from './kv.contract.ts';
import { leaseStoreContract } from './leases.contract.ts';
import { recordStoreContract } from './records.contract.ts';
import { granted, sharedStoreContract } from './shared-store.contract.ts';
import { retentionContract } from './store-retention.contract.ts';

const probe = needEngines('postgres');
const suite = probe.title('PostgreSQL');
const schemas = testSchemas();
const MODULE = resolve(import.meta.dirname, '../../src/store/postgres.ts');

afterAll(async () => {
  if (probe.available) await schemas.dropAll();
});

function open(schema: string, options: Partial<PostgresStoreOptions> = {}): Promise<OpenedStores> {
  return openPostgresStores({ url: POSTGRES_URL, schema, max: 4, watchPollMs: 50, ...options });
}

/** Every contract test starts from an empty store: a schema of its own. */
async function openFresh(clock: ManualClock): Promise<StateStores> {
  return open(await schemas.fresh(), { clock });
}


async function adminQuery<T>(run: (sql: ReturnType<typeof adminConnection>) => Promise<T>): Promise<T> {
  const sql = adminConnection();
  try {
    return await run(sql);
  } finally {
    await sql.end({ timeout: 0 });
  }
}

/** A Node child running an ES module against the adapter, spoken to in lines over stdin/stdout. */
interface Child {
  nextLine(): Promise<string>;
  send(line: string): void;
  /** Ends its input (nothing more to say) and waits for a clean exit. */
  finish(): Promise<void>;
}

function startChild(script: string, env: Record<string, string>): Child {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--input-type=module', '-e', `const MODULE = ${JSON.stringify(MODULE)};\n${script}`], {
    env: { ...process.env, ARCNET_POSTGRES_URL: POSTGRES_URL, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<void>((resolveExit, reject) => {
    child.on('exit', (code) => (code === 0 ? resolveExit() : reject(new Error(`child exited ${code}: ${stderr}`))));
  });
  // A child that dies early fails the test through nextLine; this only keeps the rejection from going unhandled.
  exited.catch(() => undefined);
  return {
    nextLine: async () => {
      const next = await lines.next();
      if (next.done) throw new Error(`child closed its output: ${stderr}`);
      return next.value;
    },
    send: (line) => child.stdin.write(`${line}\n`),
    finish: () => {
      child.stdin.end();
      return exited;
    },
  };
}

/** Child-side helpers shared by the scripts: line input, JSON output. */
const CHILD_PRELUDE = `
  const { openPostgresStores } = await import(MODULE);
  const { createInterface } = await import('node:readline');
  const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const nextLine = async () => (await input.next()).value;
  const say = (value) => process.stdout.write(JSON.stringify(value) + '\\n');
`;

describe.skipIf(!probe.available)(suite, () => {
  documentStoreContract('PostgreSQL', openFresh);
  kvStoreContract('PostgreSQL', openFresh);
  leaseStoreContract('PostgreSQL', openFresh);
  recordStoreContract('PostgreSQL', openFresh);
  retentionContract('PostgreSQL', async (clock, retention) => open(await schemas.fresh(), { clock, retention }));
  sharedStoreContract('PostgreSQL, two pools on one schema', async (clock) => {
    const schema = await schemas.fresh();
    return [await open(schema, { clock }), await open(schema, { clock })];
  });

  describe('PostgreSQL adapter', () => {
    describe('on open', () => {
      it('creates the schema and records each migration once, however often it is opened', async () => {
        const schema = await schemas.fresh();
        await (await open(schema)).close();
        await (await open(schema)).close();
        const rows = await adminQuery((sql) => sql.unsafe(`SELECT version, name FROM "${schema}".schema_migrations ORDER BY version`));
        expect(rows.map((r) => r['version'])).toEqual(MIGRATIONS.map((m) => m.version));
      });

      it('works in a schema that already exists (provisioned by an administrator)', async () => {
        const schema = await schemas.fresh({ create: true });
        const stores = await open(schema);
        try {
          expect(await stores.kv.put('k', 1)).toEqual({ ok: true, revision: 1 });
        } finally {
          await stores.close();
        }
      });

      it('keeps stores in different schemas of one database apart', async () => {
        const a = await open(await schemas.fresh());
        const b = await open(await schemas.fresh());
        try {
          await a.kv.put('k', 'in a');
          await a.documents.put('c', 'x', 'in a');
          await granted(a, 'lease', 'A', 1000);
          expect(await b.kv.get('k')).toBeUndefined();
          expect(await b.documents.get('c', 'x')).toBeUndefined();
          expect((await granted(b, 'lease', 'B', 1000)).token).toBe(1);
        } finally {
          await a.close();
          await b.close();
        }
      });

      it('refuses a schema written by a newer build', async () => {
        const schema = await schemas.fresh();
        await (await open(schema)).close();
        await adminQuery((sql) => sql.unsafe(`INSERT INTO "${schema}".schema_migrations (version, name) VALUES (999, 'from the future')`));
        await expect(open(schema)).rejects.toThrow(/newer than this build/);
      });

      it('rejects a schema name that is not a plain identifier', async () => {
        await expect(open('bad"; DROP TABLE x; --')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      });

      it('fails UNAVAILABLE (retryable) naming host and port when no server answers', async () => {
        const port = await freePort();
        const error: unknown = await openPostgresStores({ url: `postgres://postgres@127.0.0.1:${port}/test`, connectTimeoutMs: 2000 }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ArcError);
        expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
        expect((error as Error).message).toContain(`127.0.0.1:${port}`);
      });

      it('fails UNAVAILABLE within its deadline when something accepts connections but never completes a handshake', async () => {
        // What a load balancer or pooler with no server behind it does; postgres.js alone would retry forever.
        const server = createServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n'));
        await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
        const { port } = server.address() as AddressInfo;
        const started = Date.now();
        try {
          const error: unknown = await openPostgresStores({ url: `postgres://postgres@127.0.0.1:${port}/test`, connectTimeoutMs: 500 }).catch((e: unknown) => e);
          expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
          expect((error as Error).message).toContain(`127.0.0.1:${port}`);
          expect(Date.now() - started).toBeLessThan(3000);
        } finally {
          server.close();
        }
      });

      it('fails calls after close with a CLOSED error', async () => {
        const stores = await open(await schemas.fresh());
        await stores.close();
        await stores.close();
        await expect(stores.leases.acquire('x', 'A', 1000)).rejects.toMatchObject({ code: 'CLOSED' });
        await expect(stores.kv.get('x')).rejects.toBeInstanceOf(ArcError);
        await expect(stores.documents.put('c', 'x', 1)).rejects.toMatchObject({ code: 'CLOSED' });
        expect(() => stores.kv.watch('', 0, () => undefined)).toThrow(ArcError);
      });

      it('rejects values JSON cannot represent and text PostgreSQL cannot store, writing nothing', async () => {
        const stores = await open(await schemas.fresh());
        try {
          await expect(stores.kv.put('k', undefined)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
          await expect(stores.documents.put('c', 'x', () => 1)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
          await expect(stores.kv.put('nul\u0000key', 1)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
          await expect(stores.documents.put('c', 'nul\u0000id', 1)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
          // Past what one btree entry holds (~2.7 kB after compression): refused by the index, not a crash.
          await expect(stores.kv.put(randomBytes(12_000).toString('base64'), 1)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
          // Inside a JSON body U+0000 is an escape sequence, which text stores fine.
          await stores.documents.put('c', 'x', { s: 'a\u0000b' });
          expect((await stores.documents.get('c', 'x'))?.body).toEqual({ s: 'a\u0000b' });
          expect(await stores.kv.revision()).toBe(0);
        } finally {
          await stores.close();
        }
      });
    });

    describe('durability across close and reopen', () => {
      it('keeps documents, kv revisions and lease tokens, whether the last grant was released, expired or live', async () => {
        const clock = new ManualClock();
        const t0 = clock.now();
        const schema = await schemas.fresh();
        let stores = await open(schema, { clock });
        await stores.documents.put('nodes', 'n1', { v: 1 });
        clock.advance(100);
        await stores.documents.put('nodes', 'n1', { v: 'fixed' }, { validFrom: t0 + 50 });
        await stores.kv.put('a', 1);
        await stores.kv.put('b', 1);
        await stores.kv.delete('b');
        const released = await granted(stores, 'released', 'A', 1000);
        await stores.leases.release(released);
        const expired = await granted(stores, 'expired', 'A', 1000);
        const live = await granted(stores, 'live', 'A', 1000);
        await stores.close();

        clock.advance(500);
        stores = await open(schema, { clock });
        try {
          expect((await stores.documents.history('nodes', 'n1')).map((v) => v.version)).toEqual([1, 2]);
          expect((await stores.documents.get('nodes', 'n1', { asOf: t0 + 60, knownAt: t0 }))?.body).toEqual({ v: 1 });
          expect(await stores.kv.revision()).toBe(3);
          expect(await stores.kv.put('b', 'again')).toEqual({ ok: true, revision: 4 });
          expect(await stores.leases.current('live')).toEqual(live);
          expect((await stores.leases.acquire('live', 'B', 1000)).ok).toBe(false);
          clock.advance(2000);
          expect((await granted(stores, 'released', 'B', 1000)).token).toBe(released.token + 1);
          expect((await granted(stores, 'expired', 'B', 1000)).token).toBe(expired.token + 1);
          expect((await granted(stores, 'live', 'B', 1000)).token).toBe(live.token + 1);
        } finally {
          await stores.close();
        }
      });
    });

    describe('two stores (two pools) on one schema', () => {
      it('compare-and-set holds between writers on warm connections, where statements overlap on the server', async () => {
        const schema = await schemas.fresh();
        const p1 = await open(schema, { max: 4 });
        const p2 = await open(schema, { max: 4 });
        try {
          // Warm every connection first: a statement's first use on a connection costs an extra round
          // trip that spreads concurrent writes out, which would hide an interleaving bug.
          for (let i = 0; i < 2; i++) {
            await Promise.all([p1, p2].flatMap((p) => Array.from({ length: 8 }, (_, j) => p.kv.put(`warm/${j}`, i, { expectedRevision: 0 }))));
            await Promise.all([p1, p2].flatMap((p) => Array.from({ length: 8 }, (_, j) => p.documents.put('warm', `${j}`, i, { expectedVersion: 0 }))));
          }
          await p1.kv.put('k', 0);
          await p1.documents.put('c', 'd', 0);
          for (let round = 1; round <= 10; round++) {
            const seen = (await p1.kv.get('k'))?.modRevision ?? 0;
            const kvOutcomes = await Promise.all(
              [p1, p2].flatMap((p) => Array.from({ length: 4 }, (_, j) => p.kv.put('k', `${round}/${j}`, { expectedRevision: seen }))),
            );
            expect(kvOutcomes.filter((o) => o.ok)).toHaveLength(1);
            const docOutcomes = await Promise.all(
              [p1, p2].flatMap((p) => Array.from({ length: 4 }, (_, j) => p.documents.put('c', 'd', `${round}/${j}`, { expectedVersion: round }))),
            );
            expect(docOutcomes.filter((o) => o.ok)).toHaveLength(1);
          }
          expect((await p2.kv.get('k'))?.version).toBe(11);
          expect((await p2.documents.history('c', 'd')).map((v) => v.version)).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
        } finally {
          await p1.close();
          await p2.close();
        }
      });

      it('a fenced write racing a grant in progress waits for its commit, then is rejected: check and write are one step', async () => {
        const schema = await schemas.fresh();
        const stores = await open(schema);
        const admin = adminConnection();
        try {
          const grant = await granted(stores, 'writer', 'A', 60_000);
          const fence = { lease: 'writer', token: grant.token };
          expect((await stores.kv.put('k', 'by A', { fence })).ok).toBe(true);
          type Settled = { ok: true } | { ok: false; error: unknown };
          const settle = (write: Promise<unknown>): Promise<Settled> => write.then(() => ({ ok: true }) as const, (error: unknown) => ({ ok: false, error }) as const);
          let writes: Promise<Settled>[] = [];
          const pending = new Set<number>();
          // Another process's grant, not yet committed: it holds the lease row.
          await admin.begin(async (tx) => {
            await tx.unsafe(`UPDATE "${schema}".leases SET token = token + 1, holder = 'B' WHERE name = 'writer'`);
            writes = [
              stores.kv.put('k', 'late A', { fence }),
              stores.kv.delete('k', { fence }),
              stores.documents.put('c', 'x', 'late A', { fence }),
              stores.documents.putMany([{ collection: 'c', id: 'y', body: 1 }, { collection: 'c', id: 'x', body: 2, options: { fence } }]),
            ].map((write, i) => {
              pending.add(i);
              return settle(write).finally(() => pending.delete(i));
            });
            await new Promise((r) => setTimeout(r, 150));
            // Had any checked the token without locking the row, it would have passed and committed by now.
            expect([...pending]).toEqual([0, 1, 2, 3]);
          });
          const outcomes = await Promise.all(writes);
          for (const outcome of outcomes) {
            expect(outcome.ok).toBe(false);
            if (!outcome.ok) expect(outcome.error).toBeInstanceOf(StaleFencingTokenError);
          }
          expect(await stores.kv.get('k')).toMatchObject({ value: 'by A', version: 1 });
          expect(await stores.kv.revision()).toBe(1);
          expect(await stores.documents.history('c', 'x')).toEqual([]);
          expect(await stores.documents.history('c', 'y')).toEqual([]);
        } finally {
          await admin.end({ timeout: 0 });
          await stores.close();
        }
      });

      it("a watch sees the other store's writes through NOTIFY, in order and once each", async () => {
        const schema = await schemas.fresh();
        // A poll this slow cannot deliver anything within the test: only notifications can.
        const p1 = await open(schema, { watchPollMs: 60_000 });
        const p2 = await open(schema);
        try {
          await p2.kv.put('svc/a', 0);
          const events: KvEvent[] = [];
          const watch = p1.kv.watch('svc/', 0, (event) => events.push(event));
          await vi.waitFor(() => expect(events).toHaveLength(1), { interval: 5 });
          const delivered = async (outcome: Promise<{ ok: boolean; revision?: number }>): Promise<void> => {
            const { revision } = await outcome;
            // Before the next write: a later write's notification must not be what delivers this one.
            await vi.waitFor(() => expect(events.at(-1)?.revision).toBe(revision), { interval: 5, timeout: 2000 });
          };
          for (let i = 1; i <= 10; i++) {
            // Interleave local and remote writes: local ones wake the watch at once, remote ones by NOTIFY.
            await delivered((i % 3 === 0 ? p1 : p2).kv.put(`svc/${i % 4}`, i));
          }
          await p2.kv.put('other/x', 'not watched');
          await delivered(p2.kv.delete('svc/1'));
          await new Promise((r) => setTimeout(r, 50));
          expect(events.map((e) => e.revision)).toEqual([...Array.from({ length: 11 }, (_, i) => i + 1), 13]);
          expect(events.at(-1)).toEqual({ type: 'delete', key: 'svc/1', revision: 13, value: undefined });
          watch.close();
        } finally {
          await p1.close();
          await p2.close();
        }
      });

      it('a watch loses nothing while its LISTEN connection is down: the poll delivers, and NOTIFY resumes', async (ctx) => {
        // Keeping the listener from reconnecting means refusing new connections to its database, so
        // this runs in a scratch database of its own: the shared one stays open to everyone else.
        const maintenanceUrl = new URL(POSTGRES_URL);
        maintenanceUrl.pathname = '/postgres';
        const admin = adminConnection(maintenanceUrl.href);
        const database = `arcnet_test_${process.pid}_${Date.now().toString(36)}`;
        const databaseUrl = new URL(POSTGRES_URL);
        databaseUrl.pathname = `/${database}`;
        const stores: StateStores[] = [];
        try {
          const [role] = await admin.unsafe<{ may: boolean }[]>('SELECT rolsuper OR rolcreatedb AS may FROM pg_roles WHERE rolname = current_user');
          if (!role?.may) ctx.skip('needs CREATEDB, to refuse connections to a scratch database while the listener is down');
          await admin.unsafe(`CREATE DATABASE "${database}"`);
          // One connection each, opened before connections are refused: every query reuses it.
          const p1 = await openPostgresStores({ url: databaseUrl.href, watchPollMs: 25, max: 1 });
          stores.push(p1);
          const p2 = await openPostgresStores({ url: databaseUrl.href, max: 1 });
          stores.push(p2);
          const listeners = async (): Promise<number> =>
            (await admin.unsafe('SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND query ILIKE $2', [database, 'listen "arcnet_kv_public"'])).length;
          const allowConnections = (allow: boolean): Promise<unknown> => admin.unsafe(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS ${allow}`);

          const events: KvEvent[] = [];
          const watch = p1.kv.watch('', 0, (event) => events.push(event));
          await vi.waitFor(async () => expect(await listeners()).toBe(1), { interval: 10 });
          await p2.kv.put('k', 0);
          await vi.waitFor(() => expect(events).toHaveLength(1), { interval: 5 });

          // The listener's connection drops and cannot come back while these are written: no
          // notification reaches p1 for any of them.
          await allowConnections(false);
          try {
            await admin.unsafe('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE $2', [
              database,
              'listen "arcnet_kv_public"',
            ]);
            for (let i = 1; i <= 20; i++) await p2.kv.put(`k${i % 3}`, i);
            await vi.waitFor(() => expect(events.at(-1)?.revision).toBe(21), { interval: 5, timeout: 3000 });
            expect(await listeners()).toBe(0);
          } finally {
            await allowConnections(true);
          }

          await vi.waitFor(async () => expect(await listeners()).toBe(1), { interval: 10, timeout: 5000 });
          await p2.kv.put('after', 'reconnect');
          await vi.waitFor(() => expect(events.at(-1)?.revision).toBe(22), { interval: 5 });
          expect(events.map((e) => e.revision)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
          watch.close();
        } finally {
          for (const opened of stores) await opened.close();
          await admin.unsafe(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
          await admin.end({ timeout: 0 });
        }
      });
    });

    describe('real processes', () => {
      it('migrate a fresh schema exactly once when several open it at the same moment', async () => {
        const schema = await schemas.fresh();
        const script = `${CHILD_PRELUDE}
          say('ready');
          await nextLine();
          const started = Date.now();
          const stores = await openPostgresStores({ url: process.env.ARCNET_POSTGRES_URL, schema: process.env.SCHEMA, max: 1 });
          const finished = Date.now();
          await stores.close();
          say({ started, finished });
        `;
        const children = Array.from({ length: 4 }, () => startChild(script, { SCHEMA: schema }));
        for (const child of children) expect(JSON.parse(await child.nextLine())).toBe('ready');
        for (const child of children) child.send('go');
        const spans = await Promise.all(children.map(async (child) => JSON.parse(await child.nextLine()) as { started: number; finished: number }));
        await Promise.all(children.map((child) => child.finish()));
        // The opens overlapped in time, so they really did race for the empty schema.
        const overlapping = spans.some((a, i) => spans.some((b, j) => i !== j && a.started < b.finished && b.started < a.finished));
        expect(overlapping).toBe(true);
        const rows = await adminQuery((sql) => sql.unsafe(`SELECT version, count(*)::int AS n FROM "${schema}".schema_migrations GROUP BY version ORDER BY version`));
        expect(rows.map((r) => [r['version'], r['n']])).toEqual(MIGRATIONS.map((m) => [m.version, 1]));
        const stores = await open(schema);
        try {
          expect(await stores.kv.revision()).toBe(0);
        } finally {
          await stores.close();
        }
      });

      it('two processes hammering one lease: one holder at a time, distinct gap-free tokens, fenced writes in token order', async () => {
        const schema = await schemas.fresh();
        // Create the schema first so the children race on the lease, not on migrations.
        await (await open(schema)).close();
        const script = `${CHILD_PRELUDE}
          const stores = await openPostgresStores({ url: process.env.ARCNET_POSTGRES_URL, schema: process.env.SCHEMA, max: 2 });
          const me = process.env.HOLDER;
          const tokens = [];
          const overlaps = [];
          for (let i = 0; i < 200; i++) {
            const outcome = await stores.leases.acquire('shared', me, 60_000);
            if (!outcome.ok) continue;
            const fence = { lease: 'shared', token: outcome.grant.token };
            tokens.push(fence.token);
            // A witness of exclusivity: had another holder written 'owner' since we read it, this CAS would fail.
            const seen = await stores.kv.get('owner');
            const cas = await stores.kv.put('owner', me, { fence, expectedRevision: seen?.modRevision ?? 0 });
            if (!cas.ok) overlaps.push(fence.token);
            await stores.documents.put('race', 'log', { holder: me, token: fence.token }, { fence });
            if (!(await stores.leases.release(outcome.grant))) throw new Error('lost a lease nobody could take');
          }
          await stores.close();
          say({ tokens, overlaps });
        `;
        const children = ['p1', 'p2'].map((holder) => startChild(script, { SCHEMA: schema, HOLDER: holder }));
        const results = await Promise.all(children.map(async (child) => JSON.parse(await child.nextLine()) as { tokens: number[]; overlaps: number[] }));
        await Promise.all(children.map((child) => child.finish()));

        for (const { tokens, overlaps } of results) {
          expect(overlaps).toEqual([]);
          for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1] ?? 0);
        }
        const all = results.flatMap((r) => r.tokens).sort((a, b) => a - b);
        expect(all).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
        // Both really contended (each got some grants), not one running after the other finished.
        expect(results.every((r) => r.tokens.length > 0)).toBe(true);

        const stores = await open(schema);
        try {
          const log = await stores.documents.history<{ token: number }>('race', 'log');
          expect(log.map((v) => v.body?.token)).toEqual(all);
          expect(await stores.kv.revision()).toBe(all.length);
          expect((await granted(stores, 'shared', 'parent', 1000)).token).toBe(all.length + 1);
        } finally {
          await stores.close();
        }
      });

      it("a deposed holder's fenced writes from another process are rejected by the database and land nothing", async () => {
        const schema = await schemas.fresh();
        await (await open(schema)).close();
        const script = `${CHILD_PRELUDE}
          const stores = await openPostgresStores({ url: process.env.ARCNET_POSTGRES_URL, schema: process.env.SCHEMA, max: 2 });
          const outcome = await stores.leases.acquire('writer', 'child', 1000);
          if (!outcome.ok) throw new Error('expected the lease');
          const fence = { lease: 'writer', token: outcome.grant.token };
          await stores.documents.put('cfg', 'x', 'first', { fence });
          say({ token: fence.token });
          await nextLine();
          const attempts = [
            () => stores.documents.put('cfg', 'x', 'late', { fence }),
            () => stores.documents.putMany([{ collection: 'cfg', id: 'y', body: 'late' }, { collection: 'cfg', id: 'x', body: 'late', options: { fence } }]),
            () => stores.documents.delete('cfg', 'x', { fence }),
            () => stores.kv.put('cfg', 'late', { fence }),
            () => stores.kv.delete('cfg', { fence }),
          ];
          const errors = [];
          for (const attempt of attempts) {
            try { await attempt(); errors.push(null); } catch (error) { errors.push({ name: error.name, code: error.code }); }
          }
          const renewed = await stores.leases.renew(outcome.grant, 1000);
          const released = await stores.leases.release(outcome.grant);
          await stores.close();
          say({ errors, renewed: renewed ?? null, released });
        `;
        const child = startChild(script, { SCHEMA: schema });
        const { token } = JSON.parse(await child.nextLine()) as { token: number };
        // The child's grant runs on the real clock; this store's clock is past its expiry, no sleeping needed.
        const later = new ManualClock(Date.now() + 60_000);
        const stores = await open(schema, { clock: later });
        try {
          const mine = await granted(stores, 'writer', 'parent', 1000);
          expect(mine.token).toBe(token + 1);
          child.send('go');
          const report = JSON.parse(await child.nextLine()) as { errors: unknown[]; renewed: unknown; released: boolean };
          await child.finish();
          expect(report.errors).toEqual(Array.from({ length: 5 }, () => ({ name: 'StaleFencingTokenError', code: 'STALE_FENCING_TOKEN' })));
          expect(report.renewed).toBeNull();
          expect(report.released).toBe(false);
          expect((await stores.documents.history('cfg', 'x')).map((v) => v.body)).toEqual(['first']);
          expect(await stores.documents.history('cfg', 'y')).toEqual([]);
          expect(await stores.kv.revision()).toBe(0);
          expect(await stores.leases.current('writer')).toEqual(mine);
        } finally {
          await stores.close();
        }
      });
    });
  });
});

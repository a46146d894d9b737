/**
 * The PostgreSQL store read with psql alone (docs/operating-postgres.md, ADR 0013): every query the
 * operator page shows is taken from the page itself and run against a real store holding the data
 * set the page describes, so the documented queries and their answers cannot drift from the schema.
 * Also: every table, view and column is commented, and the generated jsonb/timestamptz columns agree
 * with what the adapter wrote.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock, systemClock } from '../../src/core/clock.ts';
import { openPostgresStores } from '../../src/store/postgres.ts';
import type { StateStores } from '../../src/store/ports.ts';
import type { OpenedStores } from '../../src/store/retention.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, adminConnection, testSchemas } from '../support/postgres.ts';

const probe = needEngines('postgres');
const schemas = testSchemas();
const DOC = resolve(import.meta.dirname, '../../docs/operating-postgres.md');

/** The page's tested queries: a `<!-- query: name -->` line, then a ```sql block. */
function documentedQueries(): Map<string, string> {
  const text = readFileSync(DOC, 'utf8');
  const queries = new Map<string, string>();
  for (const match of text.matchAll(/<!-- query: ([a-z0-9-]+) -->\s*```sql\n([\s\S]*?)```/g)) {
    queries.set(match[1] as string, (match[2] as string).trim());
  }
  return queries;
}

const at = (hhmm: string): number => Date.parse(`2026-01-01T${hhmm}:00Z`);
const iso = (hhmm: string): string => new Date(at(hhmm)).toISOString();

interface NodeBody {
  readonly id: string;
  readonly geozone: string;
  readonly status: string;
}

/** The data set the page describes, written through the adapter as ArcNet writes it. */
async function writeDataSet(stores: StateStores, clock: ManualClock): Promise<void> {
  const node = (id: string, geozone: string, status: string): NodeBody => ({ id, geozone, status });
  const report = async (hhmm: string, body: NodeBody): Promise<void> => {
    clock.set(at(hhmm));
    await stores.documents.put('nodes', body.id, body, { validFrom: at(hhmm) });
  };
  await report('10:00', node('caiso-1', 'CAISO', 'online'));
  await report('10:00', node('pjm-1', 'PJM', 'online'));
  const job = async (hhmm: string, status: string): Promise<void> => {
    clock.set(at(hhmm));
    await stores.documents.put('jobs', 'job-7', { job: { id: 'job-7', status }, extras_created: 0 });
  };
  await job('10:05', 'queued');
  await job('10:06', 'running');
  await job('10:09', 'completed');
  await report('10:30', node('caiso-3', 'CAISO', 'online'));
  clock.set(at('11:00'));
  await stores.documents.delete('nodes', 'caiso-3');
  await report('11:30', node('caiso-1', 'CAISO', 'busy'));
  await report('12:15', node('caiso-2', 'CAISO', 'online'));
  await report('12:30', node('caiso-1', 'CAISO', 'offline'));
  // Learned at 13:00, true since 11:45: a correction of the past.
  clock.set(at('13:00'));
  await stores.documents.put('nodes', 'caiso-1', node('caiso-1', 'CAISO', 'draining'), { validFrom: at('11:45') });
}

describe.skipIf(!probe.available)(probe.title('PostgreSQL store read with psql'), () => {
  let schema: string;
  let stores: OpenedStores;
  let live: StateStores;
  let sql: ReturnType<typeof adminConnection>;
  let leaseToken: number;

  beforeAll(async () => {
    schema = await schemas.fresh();
    const clock = new ManualClock(at('10:00'));
    stores = await openPostgresStores({ url: POSTGRES_URL, schema, clock, max: 2 });
    await writeDataSet(stores, clock);
    // Retention two days later, as the page says: the minute tier runs over 1 January and removes nothing.
    clock.set(Date.parse('2026-01-03T13:00:00Z'));
    expect((await stores.compactHistory()).deleted).toBe(0);
    // Leases are live against the server's clock, so this store runs on real time.
    live = await openPostgresStores({ url: POSTGRES_URL, schema, clock: systemClock, max: 1 });
    await live.leases.acquire('aggregator/CAISO', 'aggregator-a', 60_000);
    const renewed = await live.leases.acquire('aggregator/CAISO', 'aggregator-a', 60_000);
    if (!renewed.ok) throw new Error('expected the lease');
    leaseToken = renewed.grant.token;
    sql = adminConnection();
    await sql.unsafe(`SET search_path TO "${schema}"`);
  });

  afterAll(async () => {
    await sql?.end({ timeout: 0 });
    await stores?.close();
    await live?.close();
    if (probe.available) await schemas.dropAll();
  });

  const run = async (name: string): Promise<Record<string, unknown>[]> => {
    const text = documentedQueries().get(name);
    if (text === undefined) throw new Error(`docs/operating-postgres.md has no query "${name}"`);
    return [...(await sql.unsafe(text))] as Record<string, unknown>[];
  };
  const time = (value: unknown): string => (value as Date).toISOString();

  /** What each documented query must answer on the data set; the page may add no query without one. */
  const expectations: Record<string, (rows: Record<string, unknown>[]) => void> = {
    'nodes-now': (rows) => {
      expect(rows.map((r) => [r['id'], r['geozone'], r['status'], time(r['valid_from_at'])])).toEqual([
        ['caiso-1', 'CAISO', 'offline', iso('12:30')],
        ['caiso-2', 'CAISO', 'online', iso('12:15')],
        ['pjm-1', 'PJM', 'online', iso('10:00')],
      ]);
    },
    'zone-as-known-at': (rows) => {
      expect(rows.map((r) => [r['id'], r['status'], time(r['valid_from_at']), time(r['tx_time_at'])])).toEqual([['caiso-1', 'busy', iso('11:30'), iso('11:30')]]);
    },
    'zone-as-of-known-now': (rows) => {
      expect(rows.map((r) => [r['id'], r['status'], time(r['valid_from_at']), time(r['tx_time_at'])])).toEqual([['caiso-1', 'draining', iso('11:45'), iso('13:00')]]);
    },
    'zone-as-known-at-by-hand': (rows) => {
      expect(rows).toEqual([{ id: 'caiso-1', status: 'busy' }]);
    },
    'node-status-changes': (rows) => {
      expect(rows.map((r) => [time(r['valid_from_at']), time(r['tx_time_at']), r['status']])).toEqual([
        [iso('10:00'), iso('10:00'), 'online'],
        [iso('11:30'), iso('11:30'), 'busy'],
        [iso('11:45'), iso('13:00'), 'draining'],
        [iso('12:30'), iso('12:30'), 'offline'],
      ]);
    },
    'job-history': (rows) => {
      expect(rows.map((r) => [r['version'], time(r['valid_from_at']), time(r['tx_time_at']), r['deleted'], r['status']])).toEqual([
        [1, iso('10:05'), iso('10:05'), false, 'queued'],
        [2, iso('10:06'), iso('10:06'), false, 'running'],
        [3, iso('10:09'), iso('10:09'), false, 'completed'],
      ]);
    },
    'lease-holder': (rows) => {
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ holder: 'aggregator-a', token: String(leaseToken) });
      expect((rows[0]?.['expires_at'] as Date).getTime()).toBeGreaterThan(Date.now());
    },
    'retention-progress': (rows) => {
      expect(rows.map((r) => [r['collection'], Number(r['resolution_ms']), time(r['compacted_through'])])).toEqual([
        ['nodes', 0, '2025-10-05T13:00:00.000Z'],
        ['nodes', 60_000, '2026-01-02T13:00:00.000Z'],
        ['nodes', 3_600_000, '2025-12-27T13:00:00.000Z'],
      ]);
    },
    'history-size': (rows) => {
      expect(rows.map((r) => [r['collection'], Number(r['versions']), Number(r['ids']), time(r['oldest']), time(r['newest'])])).toEqual([
        ['jobs', 3, 1, iso('10:05'), iso('10:09')],
        ['nodes', 8, 4, iso('10:00'), iso('13:00')],
      ]);
    },
  };

  it('every query on the operator page is tested, and every tested query is on the page', () => {
    expect([...documentedQueries().keys()].sort()).toEqual(Object.keys(expectations).sort());
  });

  for (const [name, check] of Object.entries(expectations)) {
    it(`the documented query "${name}" answers as the page says`, async () => {
      check(await run(name));
    });
  }

  it('answers documents_as_of() exactly as the adapter answers get/list at the same times', async () => {
    for (const [valid, known] of [['11:50', '12:00'], ['12:00', '13:30'], ['10:45', '10:45'], ['12:20', '12:20']] as const) {
      const listed = await stores.documents.list<NodeBody>('nodes', { asOf: at(valid), knownAt: at(known) });
      const rows = await sql.unsafe('SELECT id, version, body FROM documents_as_of($1, $2, $3)', ['nodes', iso(valid), iso(known)]);
      expect(rows.map((r) => [r['id'], r['version'], r['body']])).toEqual(listed.map((v) => [v.id, v.version, v.body]));
    }
  });

  it('comments every table, view and column of the schema', async () => {
    const uncommented = await sql.unsafe(
      `SELECT c.relname, a.attname
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'v')
         AND (obj_description(c.oid, 'pg_class') IS NULL OR (a.attname IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL))
       ORDER BY 1, 2`,
      [schema],
    );
    expect(uncommented.map((r) => `${r['relname']}.${r['attname']}`)).toEqual([]);
    const relations = await sql.unsafe(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'v')`, [schema]);
    expect(relations[0]?.['n']).toBeGreaterThanOrEqual(13);
  });

  it('derives jsonb and timestamptz from what the adapter wrote, and keeps bodies jsonb cannot hold as text only', async () => {
    const clock = new ManualClock(at('14:00'));
    const own = await schemas.fresh();
    const other = await openPostgresStores({ url: POSTGRES_URL, schema: own, clock, max: 1 });
    try {
      const body = { z: 1, a: [true, null, 'é😀'], nested: { b: -1.5 } };
      await other.documents.put('misc', 'ordered', body);
      await other.documents.put('misc', 'nul', { s: 'a\u0000b' });
      await other.documents.put('misc', 'lone', { s: '\ud800' });
      await other.kv.put('blueprints/x', { replicas: 3 });
      const rows = await sql.unsafe(`SELECT id, body, body_json, valid_from_at, tx_time_at FROM "${own}".documents WHERE collection = 'misc' ORDER BY id`);
      expect(rows.map((r) => [r['id'], r['body_json']])).toEqual([
        ['lone', null],
        ['nul', null],
        ['ordered', body],
      ]);
      // The text, not the jsonb, is what the adapter reads back: key order and every string intact.
      expect(rows.find((r) => r['id'] === 'ordered')?.['body']).toBe(JSON.stringify(body));
      expect((await other.documents.get('misc', 'nul'))?.body).toEqual({ s: 'a\u0000b' });
      expect((await other.documents.get('misc', 'lone'))?.body).toEqual({ s: '\ud800' });
      expect(rows.map((r) => time(r['valid_from_at']))).toEqual([iso('14:00'), iso('14:00'), iso('14:00')]);
      const kv = await sql.unsafe(`SELECT value_json FROM "${own}".kv WHERE key = 'blueprints/x'`);
      expect(kv[0]?.['value_json']).toEqual({ replicas: 3 });
    } finally {
      await other.close();
    }
  });
});

/**
 * `arcnet_store_query_duration_ms{engine, query_type}` on both engines: every port call is observed
 * under its query type, on the registry passed to the open function, and nothing is timed without one.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ManualClock } from '../../src/core/clock.ts';
import { openPostgresStores } from '../../src/store/postgres.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import type { KvEvent, StateStores } from '../../src/store/ports.ts';
import { STORE_QUERY_DURATION } from '../../src/store/query-metrics.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, testSchemas } from '../support/postgres.ts';
import { until } from '../support/until.ts';

const probe = needEngines('postgres');
const schemas = testSchemas();

afterAll(async () => {
  if (probe.available) await schemas.dropAll();
});

/** Observation count per query type for one engine, read from the registry as Prometheus would. */
async function counts(registry: Registry, engine: string): Promise<Record<string, number>> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === STORE_QUERY_DURATION);
  const out: Record<string, number> = {};
  for (const value of (metric?.values ?? []) as { metricName?: string; labels: Record<string, string | number>; value: number }[]) {
    if (value.metricName === `${STORE_QUERY_DURATION}_count` && value.labels['engine'] === engine) out[String(value.labels['query_type'])] = value.value;
  }
  return out;
}

async function exercise(stores: StateStores): Promise<void> {
  await stores.documents.put('nodes', 'n1', { geozone: 'CAISO' });
  await stores.documents.putMany([{ collection: 'nodes', id: 'n2', body: { geozone: 'PJM' } }]);
  await stores.documents.get('nodes', 'n1');
  await stores.documents.list('nodes');
  await stores.documents.history('nodes', 'n1');
  await stores.documents.delete('nodes', 'n2');
  await stores.kv.put('k', 1);
  await stores.kv.get('k');
  await stores.kv.list('');
  await stores.kv.revision();
  await stores.kv.delete('k');
  const seen: KvEvent[] = [];
  const watch = stores.kv.watch('', 0, (event) => seen.push(event));
  await until(() => seen.length === 2);
  watch.close();
  const grant = await stores.leases.acquire('lease', 'me', 1_000);
  if (!grant.ok) throw new Error('expected a grant');
  await stores.leases.renew(grant.grant, 1_000);
  await stores.leases.current('lease');
  await stores.leases.release(grant.grant);
  await stores.leases.acquireMany([{ name: 'a', holder: 'me', ttlMs: 1_000 }]);
  await stores.leases.releaseMany([{ name: 'a', token: 1 }]);
}

const EVERY_TYPE = [
  'document_put',
  'document_put_many',
  'document_get',
  'document_list',
  'document_history',
  'document_delete',
  'kv_put',
  'kv_get',
  'kv_list',
  'kv_revision',
  'kv_delete',
  'kv_watch_read',
  'lease_acquire',
  'lease_renew',
  'lease_current',
  'lease_release',
  'lease_acquire_many',
  'lease_release_many',
];

function metricsSuite(engine: 'sqlite' | 'postgres', open: (options: { registry?: Registry; clock: ManualClock }) => Promise<StateStores>): void {
  describe(`store query-duration metric: ${engine}`, () => {
    it('observes every port call under its query type and engine', async () => {
      const registry = new Registry();
      const stores = await open({ registry, clock: new ManualClock() });
      try {
        await exercise(stores);
        const observed = await counts(registry, engine);
        for (const type of EVERY_TYPE) expect(observed[type], type).toBeGreaterThanOrEqual(1);
        expect(observed['document_put']).toBe(1);
        expect(await registry.metrics()).toMatch(new RegExp(`${STORE_QUERY_DURATION}_bucket\\{le="[^"]+",engine="${engine}",query_type="document_get"\\}`));
      } finally {
        await stores.close();
      }
    });

    it('observes calls that fail, and two stores share one histogram on one registry', async () => {
      const registry = new Registry();
      const clock = new ManualClock();
      const first = await open({ registry, clock });
      const second = await open({ registry, clock });
      try {
        await expect(first.documents.put('c', 'x', () => 1)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
        await second.documents.get('c', 'x');
        expect(await counts(registry, engine)).toMatchObject({ document_put: 1, document_get: 1 });
      } finally {
        await first.close();
        await second.close();
      }
    });

    it('registers nothing without a registry', async () => {
      const stores = await open({ clock: new ManualClock() });
      try {
        await stores.documents.put('c', 'x', 1);
        // The adapter itself, not a timing wrapper around it.
        expect(stores.documents.constructor.name).not.toBe('Object');
      } finally {
        await stores.close();
      }
    });
  });
}

metricsSuite('sqlite', async (options) => openSqliteStores({ path: ':memory:', ...options }));

describe.skipIf(!probe.available)(probe.title('PostgreSQL'), () => {
  metricsSuite('postgres', async (options) => openPostgresStores({ url: POSTGRES_URL, schema: await schemas.fresh(), max: 2, watchPollMs: 50, ...options }));
});

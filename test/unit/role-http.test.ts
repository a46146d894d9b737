import { afterEach, describe, expect, it } from 'vitest';
import { Counter, Registry } from 'prom-client';
import { silentLogger } from '../../src/core/logging.ts';
import type { HealthReport } from '../../src/api/server.ts';
import { startRoleHttp, type RoleHttp } from '../../src/main/role-http.ts';
import { System } from '../../src/main/system.ts';
import type { ModuleHealth } from '../../src/main/modules/module.ts';
import { KeyRing } from '../../src/access/api-keys.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import { systemClock } from '../../src/core/clock.ts';

const ready: () => HealthReport = () => ({ ready: true, body: {} });

describe('role health and metrics port', () => {
  let http: RoleHttp | undefined;
  afterEach(async () => {
    await http?.close();
    http = undefined;
  });

  it('answers /ready 503 with the reason until every module can work, /health 200 throughout, and serves its metrics', async () => {
    let health: ModuleHealth = { ready: false, notReady: 'no node of CAISO known yet', details: { nodesKnown: 0 } };
    const system = new System('scheduler', { instanceId: 'scheduler-1', kinds: { bus: 'kafka', store: 'postgres' }, logger: silentLogger, close: async () => undefined });
    await system.start(async () => ({ name: 'scheduler', health: () => health, stop: async () => undefined }));
    const registry = new Registry();
    new Counter({ name: 'arcnet_test_total', help: 'a test counter', registers: [registry] }).inc(3);
    http = await startRoleHttp({ host: '127.0.0.1', port: 0, role: 'scheduler', report: () => system.report(), metrics: registry, logger: silentLogger });

    const notReady = await fetch(`${http.url}/ready`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({
      status: 'starting',
      role: 'scheduler',
      instanceId: 'scheduler-1',
      engines: { bus: 'kafka', store: 'postgres' },
      mode: 'distributed',
      notReady: 'scheduler: no node of CAISO known yet',
      modules: { scheduler: { ready: false, notReady: 'no node of CAISO known yet', nodesKnown: 0 } },
      // One module: its details also at the top, as the role ports answered before modules existed.
      nodesKnown: 0,
    });
    expect((await fetch(`${http.url}/health`)).status).toBe(200);

    health = { ready: true, details: { nodesKnown: 50 } };
    const ok = await fetch(`${http.url}/ready`);
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 'ok', nodesKnown: 50, modules: { scheduler: { ready: true, nodesKnown: 50 } } });
    expect(body).not.toHaveProperty('notReady');
    expect(await (await fetch(`${http.url}/metrics`)).text()).toContain('arcnet_test_total 3');
  });

  it('serves /metrics only to a reading key when it has a key ring, and keeps /health open to probes', async () => {
    const system = new System('aggregator', { instanceId: 'aggregator-1', kinds: { bus: 'kafka', store: 'postgres' }, logger: silentLogger, close: async () => undefined });
    await system.start(async () => ({ name: 'mesh', health: () => ({ ready: true, details: {} }), stop: async () => undefined }));
    const stores = openSqliteStores({ path: ':memory:', retention: false });
    const keys = new KeyRing(stores.documents, systemClock);
    const viewer = (await keys.create({ name: 'prometheus', role: 'viewer', createdBy: 'test' })).key;
    const enrolment = (await keys.create({ name: 'enrol', role: 'enrolment', geozone: 'CAISO', createdBy: 'test' })).key;
    const registry = new Registry();
    new Counter({ name: 'arcnet_test_total', help: 'a test counter', registers: [registry] }).inc(2);
    http = await startRoleHttp({ host: '127.0.0.1', port: 0, role: 'aggregator', report: () => system.report(), metrics: registry, logger: silentLogger, keys });
    try {
      const anonymous = await fetch(`${http.url}/metrics`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toBe('Bearer realm="arcnet"');
      expect((await fetch(`${http.url}/metrics`, { headers: { authorization: `Bearer ${enrolment}` } })).status).toBe(403);
      expect(await (await fetch(`${http.url}/metrics`, { headers: { authorization: `Bearer ${viewer}` } })).text()).toContain('arcnet_test_total 2');
      expect((await fetch(`${http.url}/health`)).status).toBe(200);
    } finally {
      await stores.close();
    }
  });

  it('refuses other paths and methods with a message naming what is served', async () => {
    http = await startRoleHttp({ host: '127.0.0.1', port: 0, role: 'aggregator', report: ready, metrics: new Registry(), logger: silentLogger });
    const missing = await fetch(`${http.url}/api/v1/nodes`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toMatch(/aggregator serves \/health, \/ready and \/metrics/);
    const post = await fetch(`${http.url}/health`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('says which port is taken', async () => {
    http = await startRoleHttp({ host: '127.0.0.1', port: 0, role: 'aggregator', report: ready, metrics: new Registry(), logger: silentLogger });
    const port = Number(new URL(http.url).port);
    await expect(startRoleHttp({ host: '127.0.0.1', port, role: 'aggregator', report: ready, metrics: new Registry(), logger: silentLogger })).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { Counter, Registry } from 'prom-client';
import { silentLogger } from '../../src/core/logging.ts';
import { startRoleHttp, type RoleHealth, type RoleHttp } from '../../src/main/role-http.ts';

describe('role health and metrics port', () => {
  let http: RoleHttp | undefined;
  afterEach(async () => {
    await http?.close();
    http = undefined;
  });

  it('answers /ready 503 with the reason until the role can work, /health 200 throughout, and serves its metrics', async () => {
    let health: RoleHealth = { ready: false, notReady: 'no node of CAISO known yet', details: { nodesKnown: 0 } };
    const registry = new Registry();
    new Counter({ name: 'arcnet_test_total', help: 'a test counter', registers: [registry] }).inc(3);
    http = await startRoleHttp({ host: '127.0.0.1', port: 0, role: 'scheduler', instanceId: 'scheduler-1', health: () => health, metrics: registry, logger: silentLogger });

    const notReady = await fetch(`${http.url}/ready`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ status: 'starting', role: 'scheduler', instanceId: 'scheduler-1', notReady: 'no node of CAISO known yet', nodesKnown: 0 });
    expect((await fetch(`${http.url}/health`)).status).toBe(200);

    health = { ready: true, details: { nodesKnown: 50 } };
    const ready = await fetch(`${http.url}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ok', nodesKnown: 50 });
    expect(await (await fetch(`${http.url}/metrics`)).text()).toContain('arcnet_test_total 3');
  });

  it('refuses other paths and methods with a message naming what is served', async () => {
    http = await startRoleHttp({ host: '127.0.0.1', port: 0, role: 'aggregator', instanceId: 'aggregator-1', health: () => ({ ready: true, details: {} }), metrics: new Registry(), logger: silentLogger });
    const missing = await fetch(`${http.url}/api/v1/nodes`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toMatch(/aggregator serves \/health, \/ready and \/metrics/);
    const post = await fetch(`${http.url}/health`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('says which port is taken', async () => {
    http = await startRoleHttp({ host: '127.0.0.1', port: 0, role: 'aggregator', instanceId: 'aggregator-1', health: () => ({ ready: true, details: {} }), metrics: new Registry(), logger: silentLogger });
    const port = Number(new URL(http.url).port);
    await expect(startRoleHttp({ host: '127.0.0.1', port, role: 'aggregator', instanceId: 'aggregator-2', health: () => ({ ready: true, details: {} }), metrics: new Registry(), logger: silentLogger })).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});

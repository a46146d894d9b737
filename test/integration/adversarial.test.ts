/**
 * Issue 11's attacks, repeated against a real embedded server, each asserted refused: every route and
 * WebSocket without a key or with a role that may not (walked from the server's own route table, so
 * a route added later is attacked too), cross-node results, hijacked hellos with and without the real
 * node connected, impostor results after a hijack attempt, telemetry that renames or moves a node,
 * fake workers with unbounded capacity or no enrolment, one party filling a quorum, a flood answered
 * with 429, and oversized bodies refused before they are read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Fastify from 'fastify';
import WebSocket from 'ws';
import { seededUuid } from '../../src/core/ids.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { installAccess } from '../../src/api/access-hook.ts';
import { routesOf } from '../../src/api/route-table.ts';
import { withDefaults } from '../../src/main/config.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { bearer, keyed } from '../support/api-key.ts';
import { until } from '../support/until.ts';

const idOf = (name: string): string => seededUuid(`adversarial-${name}`);
const identity = (name: string, geozone = 'CAISO') => ({ id: idOf(name), name, geozone, geohash: '9q9hvu', capacity: { cpuCores: 4, memoryGb: 8, gpus: 1 }, tags: [], backend: 'simulated' });

interface Session {
  readonly socket: WebSocket;
  readonly frames: Record<string, unknown>[];
  /** The next frame after the ones already read. */
  next(): Promise<Record<string, unknown>>;
  readonly closed: Promise<number>;
  readonly refusedWith: Promise<number | undefined>;
}

/** A raw agent session, as an attacker would open one. */
function session(url: string, path: string, key: string | undefined): Session {
  const socket = new WebSocket(`${url.replace('http', 'ws')}${path}`, { headers: bearer(key) });
  const frames: Record<string, unknown>[] = [];
  let read = 0;
  socket.on('message', (data: Buffer) => void frames.push(JSON.parse(data.toString()) as Record<string, unknown>));
  const refusedWith = new Promise<number | undefined>((resolve) => {
    socket.once('unexpected-response', (_request, response) => resolve(response.statusCode));
    socket.once('open', () => resolve(undefined));
  });
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', (code: number) => resolve(code)));
  return {
    socket,
    frames,
    next: async () => {
      await until(() => frames.length > read, 'a frame from the server', 5_000);
      return frames[read++]!;
    },
    closed,
    refusedWith,
  };
}

const opened = async (s: Session): Promise<Session> => {
  expect(await s.refusedWith).toBeUndefined();
  return s;
};

describe('adversarial: identity and access', () => {
  let system: EmbeddedSystem;
  let operator: typeof fetch;
  const keys: Record<'viewer' | 'developer' | 'enrolment' | 'enrolment2' | 'enrolment3' | 'ercot', string> = { viewer: '', developer: '', enrolment: '', enrolment2: '', enrolment3: '', ercot: '' };
  const cleanup: (() => void)[] = [];

  const create = async (role: string, name: string, geozone?: string): Promise<string> => {
    const response = await operator(`${system.url}/api/v1/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ role, name, ...(geozone ? { geozone } : {}) }) });
    expect(response.status).toBe(201);
    return String(((await response.json()) as { key: string }).key);
  };

  beforeAll(async () => {
    system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 } }));
    operator = keyed(system.operatorKey);
    keys.viewer = await create('viewer', 'a viewer');
    keys.developer = await create('developer', 'a developer');
    keys.enrolment = await create('enrolment', 'enrolment of party 1', 'CAISO');
    keys.enrolment2 = await create('enrolment', 'enrolment of party 2', 'CAISO');
    keys.enrolment3 = await create('enrolment', 'enrolment of party 3', 'CAISO');
    keys.ercot = await create('enrolment', 'enrolment for ERCOT', 'ERCOT');
  });
  afterAll(async () => {
    for (const close of cleanup) close();
    await system.stop();
  });

  it('refuses every route and WebSocket without a key (401) and with a role that may not (403), from the route table', async () => {
    // The `/{service}/…` router matches only services a blueprint names: name one `x`, the walker's value for every parameter.
    await system.stores.kv.put('blueprints/adversarial', { name: 'adversarial', slices: [{ artifact: 'org.test:x:1.0', instances: 0, run: { kind: 'process', command: ['true'] } }], timestamp: Date.now() });
    await until(() => system.services.registry?.knows('x'), 'the router to know the service x');
    const routes = routesOf(system.server).filter((r) => r.method !== 'HEAD');
    expect(routes.length).toBeGreaterThan(15);
    // Public routes are few and named here: a new one must be added on purpose.
    // The console's static files (src/api/console-delivery.ts) carry no data: the app signs in with a key.
    expect(routes.filter((r) => r.access?.kind === 'public').map((r) => `${r.method} ${r.url}`).sort()).toEqual(['GET /', 'GET /*', 'GET /health', 'GET /ready']);
    expect(routes.filter((r) => r.access === undefined)).toEqual([]);
    const pathOf = (url: string): string => url.replace(/:[a-z_]+/g, (param) => (param === ':id' ? idOf('target') : 'x'));
    const call = async (method: string, url: string, key: string | undefined, websocket: boolean): Promise<number> => {
      if (websocket) return (await session(system.url, pathOf(url), key).refusedWith) ?? 101;
      const response = await fetch(`${system.url}${pathOf(url)}`, { method, headers: { ...bearer(key), ...(method === 'GET' || method === 'DELETE' ? {} : { 'content-type': 'application/json' }) }, ...(method === 'GET' || method === 'DELETE' ? {} : { body: '{}' }) });
      await response.body?.cancel();
      return response.status;
    };
    const checked: string[] = [];
    for (const route of routes) {
      const rule = route.access!;
      if (rule.kind === 'public') continue;
      const name = `${route.method} ${route.url}`;
      expect(await call(route.method, route.url, undefined, route.websocket), `${name} without a key`).toBe(401);
      expect(await call(route.method, route.url, 'arck_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', route.websocket), `${name} with a made-up key`).toBe(401);
      const allowed = rule.kind === 'roles' ? rule.roles : (rule.or ?? []);
      for (const role of ['viewer', 'developer', 'enrolment'] as const) {
        if (allowed.includes(role)) continue;
        expect(await call(route.method, route.url, keys[role], route.websocket), `${name} as ${role}`).toBe(403);
      }
      checked.push(name);
    }
    expect(checked).toEqual(expect.arrayContaining(['POST /api/v1/jobs', 'GET /api/v1/tokens', 'POST /api/v1/tokens', 'GET /telemetry', 'GET /agent', 'GET /metrics', 'GET /stats', 'POST /api/v1/worker/result']));

    // The rules themselves, not only their enforcement: what each role may reach.
    // `/{service}/…` is the services' own traffic forwarded (any key, any method), not a change to ArcNet: checked above for 401, left out here.
    const reach = (role: string): string[] =>
      routes.filter((r) => !r.url.startsWith('/:service')).filter((r) => r.access?.kind !== 'public' && (r.access?.kind === 'roles' ? r.access.roles : (r.access?.kind === 'worker' ? r.access.or ?? [] : [])).includes(role as never)).map((r) => `${r.method} ${r.url}`).sort();
    // An enrolment token enrols, and nothing else; a viewer never writes; keys and the audit are an operator's.
    expect(reach('enrolment')).toEqual(['GET /agent', 'GET /api/v1/whoami', 'POST /api/v1/nodes/register']);
    expect(reach('viewer').filter((r) => !r.startsWith('GET '))).toEqual([]);
    expect(reach('viewer').filter((r) => /tokens|audit/.test(r))).toEqual([]);
    expect(reach('developer').filter((r) => !r.startsWith('GET '))).toEqual(['POST /api/v1/inference', 'POST /api/v1/jobs', 'POST /api/v1/training', 'POST /api/v1/training/:id/cancel']);
  });

  it('will not start a server with a route that declares no access rule', async () => {
    const app = Fastify();
    await installAccess(app, { keys: system.keys, ratePerMinute: 0, logger: silentLogger });
    expect(() => app.get('/open-by-accident', async () => 'oops')).toThrow(/declares no access rule/);
    await app.close();
  });

  it('takes a result only from the session its request was dispatched to, with its fencing token', async () => {
    const a = await opened(session(system.url, '/agent', keys.enrolment));
    const b = await opened(session(system.url, '/agent', keys.enrolment));
    cleanup.push(() => a.socket.close(), () => b.socket.close());
    a.socket.send(JSON.stringify({ type: 'hello', node: identity('honest-a') }));
    const welcomeA = await a.next();
    expect(welcomeA).toMatchObject({ type: 'welcome', nodeId: idOf('honest-a'), credential: expect.stringMatching(/^arck_/) });
    b.socket.send(JSON.stringify({ type: 'hello', node: identity('attacker-b') }));
    expect(await b.next()).toMatchObject({ type: 'welcome', nodeId: idOf('attacker-b') });
    const report = (s: Session, name: string, models: string[]): void =>
      s.socket.send(JSON.stringify({ type: 'telemetry', telemetry: { schemaVersion: 2, id: idOf(name), geohash: '9q9hvu', energySource: 'cogen', batteryLevel: 1, gpuUtilization: 0.1, gpuMemoryFreeGb: 40, modelsLoaded: models, timestamp: new Date().toISOString() } }));
    report(a, 'honest-a', ['only-on-a']);
    report(b, 'attacker-b', ['something-else']);
    await until(() => [...system.scheduler.index.allNodes()].some((n) => n.id === idOf('honest-a')), 'node a in the index');
    const submitted = operator(`${system.url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ modelId: 'only-on-a', contextWindowTokens: 16, requesterGeozone: 'CAISO' }) });
    const dispatch = (await a.next())['dispatch'] as { requestId: string; fencingToken: number };
    expect((await (await submitted).json()) as { status: string }).toMatchObject({ status: 'dispatched' });
    const result = (nodeId: string, fencingToken: number) => ({ schemaVersion: 1, requestId: dispatch.requestId, nodeId, latencyMs: 3, status: 'failed', completedAt: new Date().toISOString(), fencingToken, error: 'forged' });
    // B read the request id (from /telemetry or elsewhere) and tries to settle it, as itself and as A.
    b.socket.send(JSON.stringify({ type: 'result', result: result(idOf('attacker-b'), dispatch.fencingToken) }));
    expect(String((await b.next())['message'])).toMatch(/was not dispatched to this session/);
    b.socket.send(JSON.stringify({ type: 'result', result: result(idOf('honest-a'), dispatch.fencingToken) }));
    expect(String((await b.next())['message'])).toMatch(/\/nodeId .* is not this session's node/);
    // A itself with a stale token is refused too.
    a.socket.send(JSON.stringify({ type: 'result', result: result(idOf('honest-a'), dispatch.fencingToken + 7) }));
    expect(String((await a.next())['message'])).toMatch(/fencingToken .* is not the dispatch's/);
    expect(system.tracker.get(dispatch.requestId)?.status).toBe('dispatched');
    a.socket.send(JSON.stringify({ type: 'result', result: { ...result(idOf('honest-a'), dispatch.fencingToken), status: 'completed', error: undefined } }));
    await until(() => system.tracker.get(dispatch.requestId)?.status === 'completed', 'the honest result to land');
    const metrics = await (await operator(`${system.url}/metrics`)).text();
    expect(metrics).toMatch(/arcnet_agent_refusals_total\{reason="not-dispatched"\} [1-9]/);
    expect(metrics).toMatch(/arcnet_agent_refusals_total\{reason="wrong-result-node"\} [1-9]/);
    expect(metrics).toMatch(/arcnet_agent_refusals_total\{reason="stale-token"\} [1-9]/);

    // Telemetry cannot rename the node or move it to another geozone.
    for (const change of [{ name: 'renamed' }, { geozone: 'ERCOT' }, { id: idOf('someone-else') }]) {
      a.socket.send(JSON.stringify({ type: 'telemetry', telemetry: { schemaVersion: 2, id: idOf('honest-a'), geohash: '9q9hvu', energySource: 'cogen', batteryLevel: 1, gpuUtilization: 0.1, gpuMemoryFreeGb: 40, modelsLoaded: ['only-on-a'], timestamp: new Date().toISOString(), ...change } }));
      expect(String((await a.next())['message'])).toMatch(/a node cannot change its (name|geozone|id)/);
    }
    const node = (await (await operator(`${system.url}/api/v1/nodes/${idOf('honest-a')}`)).json()) as { name: string; geozone: string };
    expect(node).toMatchObject({ name: 'honest-a', geozone: 'CAISO' });

    // Hijack with the real node connected: an enrolment token cannot take an enrolled node's identity.
    const hijack = await opened(session(system.url, '/agent', keys.enrolment2));
    hijack.socket.send(JSON.stringify({ type: 'hello', node: identity('honest-a') }));
    expect(String((await hijack.next())['message'])).toMatch(/already enrolled/);
    expect(await hijack.closed).toBe(4000);
    // Impostor results after the attempt: the attacker's own session was never A's.
    const impostor = await opened(session(system.url, '/agent', keys.enrolment2));
    cleanup.push(() => impostor.socket.close());
    impostor.socket.send(JSON.stringify({ type: 'result', result: result(idOf('honest-a'), dispatch.fencingToken) }));
    expect(String((await impostor.next())['message'])).toMatch(/before hello/);
    // An enrolment token enrols into its own geozone only.
    const elsewhere = await opened(session(system.url, '/agent', keys.ercot));
    elsewhere.socket.send(JSON.stringify({ type: 'hello', node: identity('sneaky', 'CAISO') }));
    expect(String((await elsewhere.next())['message'])).toMatch(/enrols nodes into ERCOT, not CAISO/);
    // No key at all: the upgrade itself is refused.
    expect(await session(system.url, '/agent', undefined).refusedWith).toBe(401);

    // A's own key opens a second session: the first is told and closed, the new one takes the dispatches.
    const aKey = String(welcomeA['credential']);
    const again = await opened(session(system.url, '/agent', aKey));
    cleanup.push(() => again.socket.close());
    again.socket.send(JSON.stringify({ type: 'hello', node: identity('honest-a') }));
    expect(await again.next()).toMatchObject({ type: 'welcome', nodeId: idOf('honest-a') });
    expect(String((await a.next())['message'])).toMatch(/replaced by a newer one/);
    expect(await a.closed).toBe(4001);
    // A node key speaks for its own node only.
    const wrong = await opened(session(system.url, '/agent', aKey));
    wrong.socket.send(JSON.stringify({ type: 'hello', node: identity('attacker-b') }));
    expect(String((await wrong.next())['message'])).toMatch(/belongs to node/);

    // Hijack with the real node gone: still refused, the enrolment stays A's.
    again.socket.close();
    await again.closed;
    const late = await opened(session(system.url, '/agent', keys.enrolment3));
    late.socket.send(JSON.stringify({ type: 'hello', node: identity('honest-a') }));
    expect(String((await late.next())['message'])).toMatch(/already enrolled/);
  });

  it('keeps fake workers out: no enrolment, unbounded capacity, or one party filling a quorum', async () => {
    const register = async (key: string | undefined, body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }> => {
      const response = await fetch(`${system.url}/api/v1/nodes/register`, { method: 'POST', headers: { 'content-type': 'application/json', ...bearer(key) }, body: JSON.stringify(body) });
      return { status: response.status, json: (await response.json()) as Record<string, unknown> };
    };
    expect((await register(undefined, { name: 'anon', cpu_cores: 4, memory_gb: 4 })).status).toBe(401);
    expect((await register(keys.viewer, { name: 'viewer', cpu_cores: 4, memory_gb: 4 })).status).toBe(403);
    for (const capacity of ['Infinity', 1e308, true, '0x10', -1, null]) {
      const answer = await register(keys.enrolment, { name: 'greedy', cpu_cores: capacity, memory_gb: 4 });
      expect(answer.status, `cpu_cores ${JSON.stringify(capacity)}`).toBe(400);
      expect(String(answer.json['message'])).toMatch(/cpu_cores/);
    }
    // Three workers of one party, and a job that asks for distinct enrolments.
    const party1 = [];
    for (const name of ['sybil-1', 'sybil-2', 'sybil-3']) {
      const answer = await register(keys.enrolment, { name, cpu_cores: 4, memory_gb: 4 });
      expect(answer.status).toBe(201);
      expect(answer.json['node']).toMatchObject({ region: 'CAISO', enrolled_by: expect.stringMatching(/^[0-9a-f]{16}$/) });
      party1.push(answer.json);
    }
    // A worker's own credential cannot enrol more workers.
    expect((await register(String(party1[0]!['credential']), { name: 'sybil-4', cpu_cores: 4, memory_gb: 4 })).status).toBe(403);
    const submitted = await (await operator(`${system.url}/api/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'quorum', docker_image: 'arcnet/busybox:test', command: ['true'], redundancy: 3, consensus: 2, distinct_enrolments: true }) })).json() as { id: string };
    const executions = (): readonly { node_id: string }[] => system.coordinator.executionsOf(submitted.id);
    await until(() => executions().length === 1, 'one execution placed');
    expect(executions()).toHaveLength(1);
    // Workers of two more parties: the quorum fills, one execution per party.
    await register(keys.enrolment2, { name: 'party-2', cpu_cores: 4, memory_gb: 4 });
    await register(keys.enrolment3, { name: 'party-3', cpu_cores: 4, memory_gb: 4 });
    await until(() => executions().length === 3, 'three executions placed');
    const parties = executions().map((e) => system.coordinator.worker(e.node_id)!.enrolled_by);
    expect(new Set(parties).size).toBe(3);
  });

  it('refuses a body before reading it when the caller may not send it', async () => {
    const huge = 'x'.repeat(12 << 20);
    const started = performance.now();
    const anonymous = await fetch(`${system.url}/api/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: huge });
    expect(anonymous.status).toBe(401);
    const viewer = await fetch(`${system.url}/api/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...bearer(keys.viewer) }, body: huge });
    expect(viewer.status).toBe(403);
    // A developer may send it, and then the body limit speaks.
    const developer = await fetch(`${system.url}/api/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...bearer(keys.developer) }, body: huge });
    expect(developer.status).toBe(413);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('forgets a revoked key at once, and lists keys without their secrets', async () => {
    const key = await create('viewer', 'short-lived');
    expect((await fetch(`${system.url}/stats`, { headers: bearer(key) })).status).toBe(200);
    const id = /^arck_([0-9a-f]{16})_/.exec(key)![1]!;
    expect((await operator(`${system.url}/api/v1/tokens/${id}`, { method: 'DELETE' })).status).toBe(200);
    expect((await fetch(`${system.url}/stats`, { headers: bearer(key) })).status).toBe(401);
    const listed = await (await operator(`${system.url}/api/v1/tokens`)).text();
    expect(listed).not.toMatch(/secret|arck_/);
    expect(listed).toContain(id);
  });

  it('enrols the simulated nodes of arcnet up like agents: one node key each, bound to its geozone', async () => {
    const simulated = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 6, requestRate: 0 } }));
    try {
      const nodeKeys = (await simulated.keys!.list()).filter((k) => k.role === 'node');
      expect(nodeKeys).toHaveLength(6);
      for (const node of simulated.mesh!.nodes) {
        expect(nodeKeys.find((k) => k.node_id === node.id)).toMatchObject({ geozone: node.geozone, enrolled_by: 'system:simulator', status: 'active' });
      }
      // So a hello naming a simulated node is a hijack like any other.
      const enrolment = await (await keyed(simulated.operatorKey)(`${simulated.url}/api/v1/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ role: 'enrolment', name: 'e', geozone: simulated.mesh!.nodes[0]!.geozone }) })).json() as { key: string };
      const hijack = await opened(session(simulated.url, '/agent', enrolment.key));
      const target = simulated.mesh!.nodes[0]!;
      hijack.socket.send(JSON.stringify({ type: 'hello', node: { ...identity(target.name, target.geozone), id: target.id } }));
      expect(String((await hijack.next())['message'])).toMatch(/already enrolled/);
    } finally {
      await simulated.stop();
    }
  });

  it('answers a flood from one key with 429 and Retry-After, and serves other keys meanwhile', async () => {
    const limited = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 }, api: { rateLimitPerMinute: 20 } }));
    try {
      const flood = keyed(limited.operatorKey);
      const statuses: number[] = [];
      for (let i = 0; i < 25; i++) {
        const response = await flood(`${limited.url}/stats`);
        statuses.push(response.status);
        if (response.status === 429) {
          expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
          expect(((await response.json()) as { code: string }).code).toBe('RATE_LIMITED');
        } else await response.body?.cancel();
      }
      expect(statuses.filter((s) => s === 200)).toHaveLength(20);
      expect(statuses.slice(20)).toEqual([429, 429, 429, 429, 429]);
      // Probes are counted per address, not per key: /health still answers for the same caller.
      expect((await fetch(`${limited.url}/health`)).status).toBe(200);
    } finally {
      await limited.stop();
    }
  });
});

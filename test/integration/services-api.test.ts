/**
 * The services family's management API through `startEmbedded` on the real engines (embedded SQLite,
 * memory bus) and its HTTP API: deploy, read, list, scale, status, delete; bad input a 400 naming the
 * field, an artifact of another blueprint a 409, unknown names 404, a viewer refused every write. No
 * leader runs yet, so the slice records, endpoints and the leader's keys the status reads are written
 * straight into the KV here, as the leader and the nodes will write them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { blueprintKey, endpointKey, sliceKey, type BlueprintBody, type EndpointRecord, type SliceRecord } from '../../src/services/model.ts';
import { LEADER_KEY, SERVICES_LEASE, UNPLACED_KEY } from '../../src/services/model.ts';
import type { KvStore } from '../../src/store/ports.ts';
import { until } from '../support/until.ts';

const ECHO = 'org.example:echo:1.0';
const CACHE = 'org.example:cache:2.1';

const web = (): BlueprintBody => ({
  name: 'web',
  slices: [
    { artifact: ECHO, instances: 2, run: { kind: 'process', command: ['node', 'echo.js'] }, entryPoints: [{ name: 'http', path: '/' }], resources: { cpu: 0.5, memoryMb: 256 } },
    { artifact: CACHE, instances: 1, run: { kind: 'container', image: 'redis:7', containerPorts: [6379] }, requiredTags: ['data_node'] },
  ],
});

interface Answer {
  readonly status: number;
  readonly json: Record<string, unknown>;
}

describe('services management API', () => {
  let system: EmbeddedSystem;
  let viewer = '';
  let operatorName = '';
  let nodeIds: string[] = [];

  /** `key` null: no credential at all. */
  const call = async (method: string, path: string, body?: unknown, key: string | null | undefined = system.operatorKey): Promise<Answer> => {
    const headers: Record<string, string> = key === null || key === undefined ? {} : { authorization: `Bearer ${key}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${system.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };
  const record = (over: Partial<SliceRecord> & Pick<SliceRecord, 'state' | 'instance'>): SliceRecord => ({ timestamp: Date.now(), version: 1, blueprint: 'web', epoch: 7, placedAt: Date.now(), ...over });

  beforeAll(async () => {
    system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 3, requestRate: 0 } }));
    // These tests read back slice records they write by hand, on nodes that run no runner: a leader would reconcile them away.
    await system.services.manager?.stop();
    const created = await call('POST', '/api/v1/tokens', { role: 'viewer', name: 'services dashboard' });
    expect(created.status).toBe(201);
    viewer = String(created.json['key']);
    operatorName = String((await call('GET', '/api/v1/whoami')).json['name']);
    nodeIds = await until(async () => {
      const nodes = (await call('GET', '/api/v1/cluster/nodes')).json['nodes'] as { id: string }[];
      return nodes.length === 3 ? nodes.map((n) => n.id) : undefined;
    }, 'the 3 simulated nodes in the mesh');
  });
  afterAll(async () => {
    await system.stop();
  });

  it('deploys, reads, lists, scales and deletes a blueprint', async () => {
    const created = await call('POST', '/api/v1/deploy', web());
    expect(created.status).toBe(201);
    expect(created.json['created']).toBe(true);
    const stored = created.json['blueprint'] as Record<string, unknown>;
    expect(stored).toMatchObject({ ...web(), appliedBy: operatorName });
    expect(typeof stored['timestamp']).toBe('number');

    const again = await call('POST', '/api/v1/deploy', web());
    expect(again.status).toBe(200);
    expect(again.json['created']).toBe(false);

    const got = await call('GET', '/api/v1/blueprints/web');
    expect(got.status).toBe(200);
    expect(got.json).toEqual(again.json['blueprint']);
    const listed = await call('GET', '/api/v1/blueprints', undefined, viewer);
    expect(listed.status).toBe(200);
    expect(listed.json['count']).toBe(1);
    expect((listed.json['blueprints'] as { name: string }[]).map((b) => b.name)).toEqual(['web']);

    const scaled = await call('POST', '/api/v1/scale', { artifact: ECHO, instances: 4 });
    expect(scaled.status).toBe(200);
    expect(scaled.json).toMatchObject({ blueprint: 'web', artifact: ECHO, instances: 4, previous: 2 });
    const after = (await call('GET', '/api/v1/blueprints/web')).json as unknown as BlueprintBody;
    expect(after.slices.map((s) => [s.artifact, s.instances])).toEqual([[ECHO, 4], [CACHE, 1]]);

    // PUT creates or replaces, and its body names the blueprint of its path.
    const put = await call('PUT', '/api/v1/blueprints/batch', { name: 'batch', slices: [{ artifact: 'org.example:batcher:3.0', instances: 1, run: { kind: 'process', command: ['./worker'] } }] });
    expect(put.status).toBe(201);
    const replaced = await call('PUT', '/api/v1/blueprints/batch', { name: 'batch', slices: [{ artifact: 'org.example:batcher:3.0', instances: 2, run: { kind: 'process', command: ['./worker'] } }] });
    expect(replaced.status).toBe(200);
    expect((replaced.json['blueprint'] as BlueprintBody).slices[0]!.instances).toBe(2);

    const deleted = await call('DELETE', '/api/v1/blueprints/batch');
    expect(deleted.status).toBe(200);
    expect(deleted.json['deleted']).toBe('batch');
    expect((await call('GET', '/api/v1/blueprints/batch')).status).toBe(404);
    expect((await call('DELETE', '/api/v1/blueprints/batch')).status).toBe(404);
    expect((await call('GET', '/api/v1/blueprints')).json['count']).toBe(1);
  });

  it('refuses bad blueprints with a 400 naming the field', async () => {
    const ok = web();
    const slice0 = ok.slices[0]!;
    const cases: [unknown, RegExp][] = [
      [{ ...ok, slices: [{ ...slice0, artifact: 'echo' }] }, /body\/slices\/0\/artifact must match pattern/],
      [{ ...ok, slices: [{ ...slice0, instances: -1 }] }, /body\/slices\/0\/instances must be >= 0/],
      [{ ...ok, slices: [{ ...slice0, artifact: 'org.example:api:1.0' }] }, /body\/slices\/0\/service: "api" is one of the server's own paths/],
      [{ ...ok, slices: [{ ...slice0, service: 'metrics' }] }, /body\/slices\/0\/service: "metrics" is one of the server's own paths/],
      [{ ...ok, slices: [slice0, { ...slice0, service: 'echo2' }] }, /body\/slices\/1\/artifact: org.example:echo:1.0 is already slice 0/],
      [{ ...ok, slices: [{ ...slice0, replicas: 3 }] }, /body\/slices\/0 must NOT have additional properties: "replicas"/],
      [{ ...ok, owner: 'me' }, /additional properties: "owner"/],
      [{ ...ok, slices: [{ ...ok.slices[1]!, ports: 2 }] }, /body\/slices\/0\/ports: a container slice gets one host port per run.containerPorts entry/],
      [{ ...ok, name: 'Web_App' }, /body\/name must match pattern/],
      [{ ...ok, slices: [] }, /body\/slices must NOT have fewer than 1 items/],
    ];
    for (const [body, message] of cases) {
      const { status, json } = await call('POST', '/api/v1/deploy', body);
      expect(status, JSON.stringify(body)).toBe(400);
      expect(String(json['message']), JSON.stringify(body)).toMatch(message);
    }
    const mismatch = await call('PUT', '/api/v1/blueprints/other', web());
    expect(mismatch.status).toBe(400);
    expect(String(mismatch.json['message'])).toMatch(/body\/name: "web" is not the blueprint of the path, "other"/);
    expect((await call('GET', '/api/v1/blueprints/Not_A_Name')).status).toBe(400);
    expect(String((await call('POST', '/api/v1/scale', { artifact: ECHO, instances: -2 })).json['message'])).toMatch(/body\/instances/);
    expect(String((await call('POST', '/api/v1/scale', { artifact: ECHO })).json['message'])).toMatch(/instances/);
    expect((await call('GET', '/api/v1/slices?node=a%2Fb')).status).toBe(400);
    expect((await call('GET', '/api/v1/slices/not-an-artifact')).status).toBe(400);
    // Nothing of it was stored.
    expect((await call('GET', '/api/v1/blueprints/other')).status).toBe(404);
  });

  it('refuses an artifact that belongs to another blueprint (409, naming it), and unknown names (404)', async () => {
    const clash = await call('POST', '/api/v1/deploy', { name: 'clash', slices: [{ artifact: 'org.example:other:1.0', instances: 1, run: { kind: 'process', command: ['x'] } }, { ...web().slices[0]!, instances: 1 }] });
    expect(clash.status).toBe(409);
    expect(String(clash.json['message'])).toMatch(/body\/slices\/1\/artifact: org.example:echo:1.0 belongs to blueprint web/);
    expect((await call('GET', '/api/v1/blueprints/clash')).status).toBe(404);

    const unknownScale = await call('POST', '/api/v1/scale', { artifact: 'org.example:nobody:1.0', instances: 1 });
    expect(unknownScale.status).toBe(404);
    expect(String(unknownScale.json['message'])).toMatch(/no blueprint has a slice org.example:nobody:1.0/);
    expect((await call('POST', '/api/v1/scale', { artifact: ECHO, instances: 1, blueprint: 'nope' })).status).toBe(404);
    expect((await call('GET', '/api/v1/slices/org.example:nobody:1.0')).status).toBe(404);
    expect((await call('GET', '/api/v1/nodes/no-such-node/slices')).status).toBe(404);
  });

  it('lets a viewer read and nothing more (403 on every write)', async () => {
    const writes: [string, string, unknown][] = [
      ['POST', '/api/v1/deploy', web()],
      ['PUT', '/api/v1/blueprints/web', web()],
      ['DELETE', '/api/v1/blueprints/web', undefined],
      ['POST', '/api/v1/scale', { artifact: ECHO, instances: 0 }],
    ];
    for (const [method, path, body] of writes) {
      const { status, json } = await call(method, path, body, viewer);
      expect(status, `${method} ${path}`).toBe(403);
      expect(String(json['message'])).toMatch(/needs an API key with role operator/);
    }
    for (const path of ['/api/v1/status', '/api/v1/blueprints/web', '/api/v1/slices', '/api/v1/cluster/nodes']) expect((await call('GET', path, undefined, viewer)).status, path).toBe(200);
    expect((await call('GET', '/api/v1/status', undefined, null)).status).toBe(401);
    expect((await call('GET', '/api/v1/blueprints/web')).json['slices']).toHaveLength(2);
  });

  it('reports slice records, endpoints, the unplaced map and the leader as the status', async () => {
    const kv = system.stores.kv;
    const [a, b, c] = nodeIds as [string, string, string];
    await kv.put(sliceKey(a, ECHO), record({ state: 'ACTIVE', instance: 1, address: '127.0.0.1:40001' }));
    await kv.put(sliceKey(b, ECHO), record({ state: 'LOADING', instance: 2 }));
    await kv.put(sliceKey(c, ECHO), record({ state: 'FAILED', instance: 3, reason: 'exited with code 1: boom' }));
    // A key of a blueprint that is gone: the leader has not unloaded it yet.
    await kv.put(sliceKey(a, 'org.example:old:0.9'), record({ state: 'UNLOAD', instance: 1, blueprint: 'retired' }));
    const endpoint: EndpointRecord = { nodeId: a, instance: 1, state: 'ACTIVE', timestamp: Date.now(), address: '127.0.0.1:40001', path: '/', epoch: 7 };
    await kv.put(endpointKey(ECHO, 'http', 1), endpoint);
    await kv.put(UNPLACED_KEY, { [CACHE]: { blueprint: 'web', wanted: 1, placed: 0, reason: '0 of 3 nodes fit: required-tags removed 3', rejectedBy: { 'required-tags': 3 } } });
    // Who leads is the live lease (this process's, its manager stopped); a record of another leader is a dead one's.
    const grant = (await system.stores.leases.current(SERVICES_LEASE))!;
    expect(grant.holder).toBe(system.instanceId);
    await kv.put(LEADER_KEY, { holder: 'arc-12345678', epoch: 7, since: 1_700_000_000_000 });
    expect((await call('GET', '/api/v1/status', undefined, viewer)).json['leader']).toEqual({ holder: grant.holder, epoch: grant.token, since: null });
    await kv.put(LEADER_KEY, { holder: grant.holder, epoch: grant.token, since: 1_700_000_000_000 });

    const { status, json } = await call('GET', '/api/v1/status', undefined, viewer);
    expect(status).toBe(200);
    expect(json['leader']).toEqual({ holder: grant.holder, epoch: grant.token, since: 1_700_000_000_000 });
    const blueprints = json['blueprints'] as { name: string; wanted: number; active: number; slices: Record<string, unknown>[] }[];
    expect(blueprints.map((bp) => [bp.name, bp.wanted, bp.active])).toEqual([['web', 5, 1]]);
    const [echo, cache] = blueprints[0]!.slices as [Record<string, unknown>, Record<string, unknown>];
    expect(echo).toMatchObject({ artifact: ECHO, service: 'echo', wanted: 4, active: 1, states: { ACTIVE: 1, LOADING: 1, FAILED: 1 }, unplaced: null });
    expect(echo['instances']).toEqual([
      expect.objectContaining({ node: a, instance: 1, state: 'ACTIVE', address: '127.0.0.1:40001', nodeName: expect.any(String) }),
      expect.objectContaining({ node: b, instance: 2, state: 'LOADING' }),
      expect.objectContaining({ node: c, instance: 3, state: 'FAILED', reason: 'exited with code 1: boom' }),
    ]);
    expect(cache).toMatchObject({ artifact: CACHE, wanted: 1, active: 0, states: {}, instances: [], unplaced: { wanted: 1, placed: 0, reason: expect.stringMatching(/required-tags/) } });
    expect(json['unowned']).toEqual([expect.objectContaining({ artifact: 'org.example:old:0.9', blueprint: 'retired', node: a, state: 'UNLOAD' })]);
    expect(json['totals']).toEqual({ blueprints: 1, slices: 2, wanted: 5, instances: 4, active: 1, unplaced: 1, states: { ACTIVE: 1, LOADING: 1, FAILED: 1, UNLOAD: 1 } });

    const all = await call('GET', '/api/v1/slices', undefined, viewer);
    expect(all.json['count']).toBe(4);
    const onA = await call('GET', `/api/v1/slices?node=${a}`);
    expect((onA.json['slices'] as { artifact: string }[]).map((s) => s.artifact).sort()).toEqual([ECHO, 'org.example:old:0.9']);
    const echoes = await call('GET', `/api/v1/slices?artifact=${encodeURIComponent(ECHO)}`);
    expect((echoes.json['slices'] as { node: string }[]).map((s) => s.node).sort()).toEqual([a, b, c].sort());
    expect((await call('GET', `/api/v1/slices?node=${b}&artifact=${encodeURIComponent(ECHO)}`)).json['count']).toBe(1);

    const one = await call('GET', `/api/v1/slices/${encodeURIComponent(ECHO)}`, undefined, viewer);
    expect(one.status).toBe(200);
    expect(one.json).toMatchObject({ artifact: ECHO, blueprints: ['web'], wanted: 4, active: 1, states: { ACTIVE: 1, LOADING: 1, FAILED: 1 }, unplaced: null });
    expect(one.json['endpoints']).toEqual([{ entryPoint: 'http', ...endpoint }]);
    // The artifact as it is typed, colons unescaped, reaches the same slice.
    expect((await call('GET', `/api/v1/slices/${ECHO}`)).json['artifact']).toBe(ECHO);
    const short = await call('GET', `/api/v1/slices/${encodeURIComponent(CACHE)}`);
    expect(short.json).toMatchObject({ wanted: 1, active: 0, endpoints: [], unplaced: { placed: 0 } });

    const node = await call('GET', `/api/v1/nodes/${a}/slices`, undefined, viewer);
    expect(node.status).toBe(200);
    expect(node.json).toMatchObject({ node: a, count: 2, states: { ACTIVE: 1, UNLOAD: 1 }, status: expect.any(String), name: expect.any(String) });
    // A node the mesh does not know but that still holds a key is answered, marked unknown.
    await kv.put(sliceKey('gone-node', ECHO), record({ state: 'ACTIVE', instance: 9, blueprint: 'web' }));
    expect((await call('GET', '/api/v1/nodes/gone-node/slices')).json).toMatchObject({ node: 'gone-node', known: false, count: 1 });

    const cluster = await call('GET', '/api/v1/cluster/nodes', undefined, viewer);
    const nodes = cluster.json['nodes'] as { id: string; slices: number; tags: unknown; capacity: unknown; cpuLoad: unknown; datasetsHot: unknown; status: unknown; name: unknown }[];
    expect(cluster.json['count']).toBe(3);
    expect(Object.fromEntries(nodes.map((n) => [n.id, n.slices]))).toEqual({ [a]: 2, [b]: 1, [c]: 1 });
    for (const n of nodes) expect(n).toEqual(expect.objectContaining({ name: expect.any(String), status: expect.any(String), tags: expect.any(Array), cpuLoad: expect.any(Number), capacity: expect.any(Object), datasetsHot: expect.any(Array) }));
    expect(cluster.json['unknown']).toEqual([{ id: 'gone-node', slices: 1, states: { ACTIVE: 1 } }]);
    await kv.delete(sliceKey('gone-node', ECHO));

    // A malformed leader record only loses the since, not a 500.
    await kv.put(LEADER_KEY, 'garbage');
    await kv.put(UNPLACED_KEY, [1, 2]);
    const odd = await call('GET', '/api/v1/status');
    expect(odd.status).toBe(200);
    expect(odd.json['leader']).toEqual({ holder: grant.holder, epoch: grant.token, since: null });
    expect((odd.json['totals'] as { unplaced: number }).unplaced).toBe(0);
  });

  it('loses no change when writes of one blueprint race (CAS on its revision, one retry, then 409)', async () => {
    // Concurrent scales of different slices of one blueprint: each read-modify-write keeps the other's.
    await call('POST', '/api/v1/deploy', web());
    const results = await Promise.all([call('POST', '/api/v1/scale', { artifact: ECHO, instances: 7 }), call('POST', '/api/v1/scale', { artifact: CACHE, instances: 5 })]);
    expect(results.map((r) => r.status)).toEqual([200, 200]);
    const both = (await call('GET', '/api/v1/blueprints/web')).json as unknown as BlueprintBody;
    expect(both.slices.map((s) => s.instances)).toEqual([7, 5]);

    // Another writer (a second server replica) changes the key between this server's read and its write.
    const kv = system.stores.kv as KvStore & { put: KvStore['put'] };
    const put = kv.put.bind(kv);
    let interfere = 1;
    kv.put = async (key, value, options) => {
      if (key === blueprintKey('web') && interfere > 0) {
        interfere--;
        const current = await kv.get<BlueprintBody>(key);
        await put(key, { ...current!.value, slices: current!.value.slices.map((s) => (s.artifact === CACHE ? { ...s, instances: 9 } : s)) });
      }
      return put(key, value, options);
    };
    try {
      const retried = await call('POST', '/api/v1/scale', { artifact: ECHO, instances: 3 });
      expect(retried.status).toBe(200);
      const merged = (await call('GET', '/api/v1/blueprints/web')).json as unknown as BlueprintBody;
      expect(merged.slices.map((s) => s.instances)).toEqual([3, 9]);

      interfere = 2;
      const lost = await call('POST', '/api/v1/scale', { artifact: ECHO, instances: 1 });
      expect(lost.status).toBe(409);
      expect(lost.json).toMatchObject({ code: 'CONFLICT', retryable: true });
      expect(String(lost.json['message'])).toMatch(/blueprint web was changed by another call/);
    } finally {
      kv.put = put;
    }
    expect(((await call('GET', '/api/v1/blueprints/web')).json as unknown as BlueprintBody).slices[0]!.instances).toBe(3);

    const removed = await call('DELETE', '/api/v1/blueprints/web');
    expect(removed.status).toBe(200);
    expect((await call('GET', '/api/v1/blueprints')).json['count']).toBe(0);
    // Its slice keys stay until the leader unloads them: the status now names them unowned.
    const status = (await call('GET', '/api/v1/status')).json;
    expect(status['blueprints']).toEqual([]);
    expect((status['unowned'] as unknown[]).length).toBe(4);
  });
});

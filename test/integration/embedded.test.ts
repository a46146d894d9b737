/**
 * The whole embedded system in one process, on real components (memory bus, SQLite store, the HTTP
 * server), with a manual clock so silence and expiry are exact.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { seededUuid } from '../../src/core/ids.ts';
import type { InferenceDispatch, NodeTelemetry, EnergySource } from '../../src/contracts/messages.ts';
import { topics } from '../../src/contracts/topics.ts';
import { HEADER_DLQ_REASON, HEADER_DLQ_TOPIC, HEADER_SCHEMA, HEADER_VERSION } from '../../src/bus/typed-bus.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { decodeGeohash } from '../../src/core/geohash.ts';
import WebSocket from 'ws';
import { withDefaults } from '../../src/main/config.ts';
import { until } from '../support/until.ts';
import { bearer, keyed } from '../support/api-key.ts';

interface Seed {
  name: string;
  geozone: string;
  geohash: string;
  energySource: EnergySource;
  batteryLevel: number;
  gpuUtilization: number;
  models: string[];
}

// Ten nodes with known telemetry. Expected choices below are worked out from the seed's formula.
const seeds: Seed[] = [
  { name: 'caiso-a', geozone: 'CAISO', geohash: '9q9hvu', energySource: 'grid', batteryLevel: 0.9, gpuUtilization: 0.3, models: ['llama-3-70b'] },
  { name: 'caiso-b', geozone: 'CAISO', geohash: '9q5ctr', energySource: 'cogen', batteryLevel: 0.5, gpuUtilization: 0.6, models: ['llama-3-70b', 'mistral-7b'] },
  { name: 'caiso-c', geozone: 'CAISO', geohash: '9mudwb', energySource: 'battery', batteryLevel: 0.15, gpuUtilization: 0.0, models: ['llama-3-70b'] },
  { name: 'caiso-d', geozone: 'CAISO', geohash: '9qce5d', energySource: 'grid', batteryLevel: 1.0, gpuUtilization: 0.9, models: ['llama-3-70b'] },
  { name: 'ercot-a', geozone: 'ERCOT', geohash: '9vk1eh', energySource: 'cogen', batteryLevel: 1.0, gpuUtilization: 0.1, models: ['llama-3-70b', 'whisper'] },
  { name: 'ercot-b', geozone: 'ERCOT', geohash: '9vg4mq', energySource: 'grid', batteryLevel: 0.4, gpuUtilization: 0.2, models: ['whisper'] },
  { name: 'ercot-c', geozone: 'ERCOT', geohash: '9v6kpm', energySource: 'battery', batteryLevel: 0.8, gpuUtilization: 0.5, models: ['sdxl'] },
  { name: 'pjm-a', geozone: 'PJM', geohash: 'dr4e3x', energySource: 'grid', batteryLevel: 0.7, gpuUtilization: 0.4, models: ['sdxl', 'whisper'] },
  { name: 'pjm-b', geozone: 'PJM', geohash: 'dqcjqc', energySource: 'cogen', batteryLevel: 0.2, gpuUtilization: 0.7, models: ['sdxl'] },
  { name: 'pjm-c', geozone: 'PJM', geohash: 'dqcrzr', energySource: 'battery', batteryLevel: 0.3, gpuUtilization: 0.84, models: ['mistral-7b'] },
];
const idOf = (name: string): string => seededUuid(`integration-${name}`);
const score = (s: Seed, requesterGeozone: string): number =>
  (s.geozone === requesterGeozone ? 100 : 0) + (s.energySource === 'cogen' ? 50 : 0) + 30 * (1 - s.gpuUtilization) + 20 * s.batteryLevel;


describe('embedded ArcNet, end to end in one process', () => {
  const clock = new ManualClock(Date.UTC(2026, 10, 24, 12, 0, 0));
  let system: EmbeddedSystem;
  const dispatched: InferenceDispatch[] = [];
  const telemetryFor = (s: Seed, overrides: Partial<NodeTelemetry> = {}): NodeTelemetry => ({
    schemaVersion: 2,
    id: idOf(s.name),
    geohash: s.geohash,
    energySource: s.energySource,
    batteryLevel: s.batteryLevel,
    gpuUtilization: s.gpuUtilization,
    gpuMemoryFreeGb: 40,
    modelsLoaded: s.models,
    timestamp: new Date(clock.now()).toISOString(),
    geozone: s.geozone,
    name: s.name,
    ...overrides,
  });
  // Every call as an operator would make it: with the key the system made for its own CLI.
  const api: typeof fetch = (input, init) => keyed(system.operatorKey)(input, init);
  const post = async (body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const response = await api(`${system.url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };
  /** Reports the request finished on its node, as the node would, and waits for the reservation to end. */
  const complete = async (requestId: unknown): Promise<void> => {
    const record = system.tracker.get(String(requestId))!;
    await system.bus.publish(topics.inferenceResult, 'InferenceResult', {
      schemaVersion: 1, requestId: record.id, nodeId: record.nodeId!, latencyMs: 10, status: 'completed', completedAt: new Date(clock.now()).toISOString(), fencingToken: record.fencingToken!,
    });
    await until(() => !system.scheduler.index.reservation(record.nodeId!), 'the reservation to be released');
  };
  const getNode = async (id: string, query = ''): Promise<Record<string, unknown>> => (await (await api(`${system.url}/api/v1/nodes/${id}${query}`)).json()) as Record<string, unknown>;

  beforeAll(async () => {
    system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 } }), { clock });
    for (const s of seeds) {
      system.router.attach(idOf(s.name), (d) => void dispatched.push(d));
      await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetryFor(s));
    }
    await until(() => system.scheduler.index.size === 10 && system.aggregator.registry.size === 10, 'ten nodes known');
  });
  afterAll(async () => {
    await system.stop();
  });

  it('routes each request to the node the seed formula predicts, forwarding across geozones when it must', async () => {
    // llama-3-70b from CAISO: caiso-c is on battery at 15 % and caiso-d is at 90 % GPU, so a or b.
    const caisoFeasible = seeds.filter((s) => ['caiso-a', 'caiso-b'].includes(s.name));
    const expected = caisoFeasible.reduce((best, s) => (score(s, 'CAISO') > score(best, 'CAISO') ? s : best));
    const first = await post({ modelId: 'llama-3-70b', contextWindowTokens: 4096, requesterGeozone: 'CAISO' });
    expect(first.status).toBe(201);
    expect(first.json['nodeId']).toBe(idOf(expected.name));
    expect(first.json['score']).toBeCloseTo(score(expected, 'CAISO'), 2);
    expect(first.json['forwarded']).toBe(false);
    expect(typeof first.json['fencingToken']).toBe('number');
    await until(() => dispatched.find((d) => d.requestId === first.json['id']), 'the dispatch to reach the node');

    // whisper from CAISO: no CAISO node has it; ercot-a (cogen, 10 % GPU) beats ercot-b and pjm-a.
    const whisper = await post({ modelId: 'whisper', contextWindowTokens: 100, requesterGeozone: 'CAISO' });
    expect(whisper.json['nodeId']).toBe(idOf('ercot-a'));
    expect(whisper.json['forwarded']).toBe(true);
    expect(whisper.json['geozone']).toBe('ERCOT');
    await complete(first.json['id']);
    await complete(whisper.json['id']);
  });

  it('keeps a reservation through telemetry updates and routes the next request elsewhere', async () => {
    // mistral-7b from PJM: pjm-c (84 % GPU, battery 30 %) scores 100+4.8+6 = 110.8; caiso-b (cogen) 50+12+10 = 72.
    const first = await post({ modelId: 'mistral-7b', contextWindowTokens: 512, requesterGeozone: 'PJM' });
    expect(first.json['nodeId']).toBe(idOf('pjm-c'));
    const token = first.json['fencingToken'];
    const node = seeds.find((s) => s.name === 'pjm-c')!;
    await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetryFor(node, { gpuUtilization: 0.05, batteryLevel: 0.99 }));
    await until(async () => (await getNode(idOf('pjm-c')))['gpuUtilization'] === 0.05, 'the update to be applied');
    const after = await getNode(idOf('pjm-c'));
    expect(after['reservation']).toMatchObject({ requestId: first.json['id'], fencingToken: token });
    const second = await post({ modelId: 'mistral-7b', contextWindowTokens: 512, requesterGeozone: 'PJM' });
    expect(second.json['nodeId']).toBe(idOf('caiso-b'));

    // The result releases the reservation: pjm-c is a candidate again, now with its fresh telemetry.
    await system.bus.publish(topics.inferenceResult, 'InferenceResult', {
      schemaVersion: 1, requestId: String(first.json['id']), nodeId: idOf('pjm-c'), latencyMs: 42, status: 'completed', completedAt: new Date(clock.now()).toISOString(), fencingToken: Number(token),
    });
    await until(async () => (await getNode(idOf('pjm-c')))['reservation'] === null, 'the reservation to be released');
    const status = (await (await api(`${system.url}/api/v1/inference/${String(first.json['id'])}`)).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ status: 'completed', latencyMs: 42 });
    const third = await post({ modelId: 'mistral-7b', contextWindowTokens: 512, requesterGeozone: 'PJM' });
    expect(third.json['nodeId']).toBe(idOf('pjm-c'));
    await complete(second.json['id']);
    await complete(third.json['id']);
  });

  it('rejects what no node can serve with a reason a person can read, and 400s bad input naming the field', async () => {
    const none = await post({ modelId: 'no-such-model', contextWindowTokens: 10, requesterGeozone: 'ERCOT' });
    expect(none.status).toBe(503);
    expect(none.json['status']).toBe('rejected');
    expect(none.json['reason']).toMatch(/no candidate for no-such-model .* among 10 nodes: 10 nodes without the model loaded/);

    const cases: [unknown, RegExp][] = [
      ['{"modelId": ', /JSON/i],
      [{ contextWindowTokens: 10, requesterGeozone: 'CAISO' }, /modelId/],
      [{ modelId: 'x', contextWindowTokens: 'many', requesterGeozone: 'CAISO' }, /contextWindowTokens/],
      [{ modelId: 'x', contextWindowTokens: 0, requesterGeozone: 'CAISO' }, /contextWindowTokens/],
      [{ modelId: 'x', contextWindowTokens: 10, requesterGeozone: 'CAISO', priority: 'urgent' }, /priority/],
    ];
    for (const [body, field] of cases) {
      const response = await post(body);
      expect(response.status).toBe(400);
      expect(String(response.json['message'])).toMatch(field);
    }
    const recent = (await (await api(`${system.url}/api/v1/inference?limit=2`)).json()) as { requests: { id: string }[] };
    expect(recent.requests.map((r) => r.id)).toEqual([none.json['id'], ...recent.requests.slice(1).map((r) => r.id)]);
    expect(recent.requests).toHaveLength(2);
    const badTime = await api(`${system.url}/api/v1/nodes?asOf=yesterday`);
    expect(badTime.status).toBe(400);
    expect(((await badTime.json()) as { message: string }).message).toMatch(/asOf/);
    expect((await api(`${system.url}/health`)).status).toBe(200);
  });

  it('dead-letters a malformed telemetry message with the reason and its original topic', async () => {
    const bad = { ...telemetryFor(seeds[0]!), batteryLevel: 7 };
    await system.adapter.produce(topics.telemetry, [{ key: bad.id, value: Buffer.from(JSON.stringify(bad)), headers: { [HEADER_SCHEMA]: 'NodeTelemetry', [HEADER_VERSION]: '2' } }]);
    const record = await until(async () => (await system.adapter.read(topics.deadLetter(topics.telemetry), 0, 0, 100)).find((r) => r.headers[HEADER_DLQ_REASON]?.includes('/batteryLevel')), 'a dead letter');
    expect(record.headers[HEADER_DLQ_TOPIC]).toBe(topics.telemetry);
    expect(record.headers[HEADER_DLQ_REASON]).toMatch(/invalid NodeTelemetry v2: \/batteryLevel/);
    // The bad value never reached the node's state.
    expect((await getNode(idOf(seeds[0]!.name)))['batteryLevel']).toBe(seeds[0]!.batteryLevel);
  });

  it('answers what was known about a node before an update (bitemporal)', async () => {
    const node = seeds.find((s) => s.name === 'ercot-b')!;
    await until(async () => (await getNode(idOf(node.name), '?knownAt=' + clock.now()))['gpuUtilization'] === node.gpuUtilization, 'the first document to be stored');
    const before = clock.now();
    clock.advance(5_000);
    await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetryFor(node, { gpuUtilization: 0.77 }));
    await until(async () => (await getNode(idOf(node.name), `?knownAt=${clock.now()}`))['gpuUtilization'] === 0.77, 'the update to be stored');
    const then = await getNode(idOf(node.name), `?knownAt=${new Date(before).toISOString()}`);
    expect(then['gpuUtilization']).toBe(node.gpuUtilization);
    const validThen = await getNode(idOf(node.name), `?asOf=${before}`);
    expect(validThen['gpuUtilization']).toBe(node.gpuUtilization);
    const now = await getNode(idOf(node.name));
    expect(now['gpuUtilization']).toBe(0.77);
    const list = (await (await api(`${system.url}/api/v1/nodes?knownAt=${before}&geozone=ERCOT`)).json()) as { nodes: Record<string, unknown>[] };
    expect(list.nodes.find((n) => n['id'] === idOf(node.name))?.['gpuUtilization']).toBe(node.gpuUtilization);
  });

  it('marks a silent node offline, announces it, and gives it no work until it reports again', async () => {
    // sdxl from PJM: pjm-b (cogen, 70 % GPU, 20 % battery) 100+50+9+4 = 163 beats pjm-a (grid, 40 %, 70 %) 100+18+14 = 132.
    const silent = seeds.find((s) => s.name === 'pjm-b')!;
    const events: string[] = [];
    const consumer = await system.bus.subscribe('test-events', [topics.systemEvent], 'SystemEvent', (e) => void events.push(`${e.kind}:${e.subjectId}`), { startAt: 'latest' });
    expect((await post({ modelId: 'sdxl', contextWindowTokens: 64, requesterGeozone: 'PJM' })).json['nodeId']).toBe(idOf('pjm-b'));
    // Release it again so only silence can keep it from work.
    await complete(system.scheduler.index.reservation(idOf('pjm-b'))!.holder);

    clock.advance(31_000);
    for (const s of seeds) if (s !== silent) await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetryFor(s));
    await until(async () => (await getNode(idOf('pjm-b')))['status'] === 'offline', 'pjm-b to be marked offline', 5_000);
    await until(() => events.includes(`node.offline:${idOf('pjm-b')}`), 'the offline event');
    const routed = await post({ modelId: 'sdxl', contextWindowTokens: 64, requesterGeozone: 'PJM' });
    expect(routed.json['nodeId']).not.toBe(idOf('pjm-b'));
    expect(routed.json['nodeId']).toBe(idOf('pjm-a'));
    await complete(routed.json['id']);

    await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetryFor(silent));
    await until(async () => (await getNode(idOf('pjm-b')))['status'] === 'online', 'pjm-b back online');
    await until(() => events.includes(`node.online:${idOf('pjm-b')}`), 'the online event');
    expect((await post({ modelId: 'sdxl', contextWindowTokens: 64, requesterGeozone: 'PJM' })).json['nodeId']).toBe(idOf('pjm-b'));
    await consumer.close();
  });

  it('streams the console protocol of seed 001 on /telemetry', async () => {
    // snapshot=telemetry: seed 001's form of the first nodes (one telemetry message each), with the console's additions.
    const socket = new WebSocket(`${system.url.replace('http', 'ws')}/telemetry?snapshot=telemetry`, { headers: bearer(system.operatorKey) });
    const messages: Record<string, unknown>[] = [];
    socket.on('message', (data: Buffer) => void messages.push(JSON.parse(data.toString()) as Record<string, unknown>));
    await new Promise((resolve) => socket.once('open', resolve));
    // A new client first gets every known node.
    await until(() => messages.filter((m) => m['type'] === 'telemetry').length >= 10, 'the node snapshot');
    const snapshot = messages.find((m) => m['type'] === 'telemetry')!;
    expect(Object.keys(snapshot['node'] as object)).toEqual(expect.arrayContaining(['batteryLevel', 'energySource', 'geohash', 'gpuUtilization', 'id', 'modelsLoaded', 'timestamp']));

    const routed = await post({ modelId: 'sdxl', contextWindowTokens: 64, requesterGeozone: 'ERCOT', priority: 'critical' });
    const inference = await until(() => messages.find((m) => m['type'] === 'inference' && m['requestId'] === routed.json['id']), 'an inference event');
    const target = seeds.find((x) => idOf(x.name) === routed.json['nodeId'])!;
    // source: the centre of the requester's geozone (the mean of its nodes' positions), where the console draws the arc from.
    const ercot = seeds.filter((x) => x.geozone === 'ERCOT').map((x) => decodeGeohash(x.geohash));
    const centre = [0, 1].map((i) => Math.round((ercot.reduce((sum, p) => sum + p[i]!, 0) / ercot.length) * 10_000) / 10_000);
    expect(inference).toEqual({
      seq: expect.any(Number),
      type: 'inference',
      requestId: routed.json['id'],
      source: centre,
      targetNodeId: routed.json['nodeId'],
      modelId: 'sdxl',
      priority: 'critical',
      status: 'dispatched',
      timestamp: expect.any(String),
      requesterGeozone: 'ERCOT',
      targetGeozone: target.geozone,
      forwarded: target.geozone !== 'ERCOT',
    });
    const [lng, lat] = inference['source'] as [number, number];
    expect(lng).toBeLessThan(-60);
    expect(lat).toBeGreaterThan(20);
    await complete(routed.json['id']);
    const done = await until(() => messages.find((m) => m['type'] === 'inference' && m['requestId'] === routed.json['id'] && m['status'] === 'completed'), 'the completion event');
    expect(done['latencyMs']).toBe(10);

    await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetryFor(seeds[5]!, { gpuUtilization: 0.33 }));
    const live = await until(() => messages.find((m) => m['type'] === 'telemetry' && (m['node'] as Record<string, unknown>)['gpuUtilization'] === 0.33), 'a live telemetry message');
    expect((live['node'] as Record<string, unknown>)['id']).toBe(idOf(seeds[5]!.name));

    await post({ modelId: 'nobody-has-this', contextWindowTokens: 1, requesterGeozone: 'PJM' });
    const system_ = await until(() => messages.find((m) => m['type'] === 'system' && String(m['message']).includes('rejected')), 'a system event');
    expect(system_).toMatchObject({ severity: 'warn', timestamp: expect.any(String) });
    socket.close();
  });

  it('fails a request whose node never answers within the reservation, even when routing runs meanwhile', async () => {
    const silent = await post({ modelId: 'whisper', contextWindowTokens: 10, requesterGeozone: 'ERCOT' });
    expect(silent.json['nodeId']).toBe(idOf('ercot-a'));
    clock.advance(30_001);
    // Fresh telemetry keeps the mesh online; a routing decision lands before the expiry timer fires.
    for (const s of seeds) await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetryFor(s));
    await until(() => system.scheduler.index.node(idOf('pjm-a'))?.lastSeen === clock.now(), 'fresh telemetry');
    const next = await post({ modelId: 'whisper', contextWindowTokens: 10, requesterGeozone: 'ERCOT' });
    expect(next.json['nodeId']).toBe(idOf('ercot-a'));
    const failed = await until(async () => {
      const body = (await (await api(`${system.url}/api/v1/inference/${String(silent.json['id'])}`)).json()) as Record<string, unknown>;
      return body['status'] === 'failed' ? body : undefined;
    }, 'the silent request to fail', 5_000);
    expect(failed['reason']).toMatch(/no result from node ercot-a within the 30 s reservation/);
    await complete(next.json['id']);
  });

  it('answers bad agent frames with an error naming the problem and keeps serving', async () => {
    const socket = new WebSocket(`${system.url.replace('http', 'ws')}/agent`, { headers: bearer(system.operatorKey) });
    const replies: Record<string, unknown>[] = [];
    socket.on('message', (data: Buffer) => void replies.push(JSON.parse(data.toString()) as Record<string, unknown>));
    await new Promise((resolve) => socket.once('open', resolve));
    const next = async (): Promise<Record<string, unknown>> => {
      const count = replies.length;
      await until(() => replies.length > count, 'a reply');
      return replies[count]!;
    };
    socket.send('{not json');
    expect(await next()).toEqual({ type: 'error', message: 'frame is not valid JSON' });
    socket.send(JSON.stringify({ type: 'telemetry', telemetry: {} }));
    expect((await next())['message']).toMatch(/before hello/);
    const identity = { id: idOf('agent-x'), name: 'agent-x', geozone: 'PJM', geohash: 'dr4e39', capacity: { cpuCores: 4, memoryGb: 8, gpus: 1 }, tags: [], backend: 'simulated' };
    socket.send(JSON.stringify({ type: 'hello', node: identity }));
    expect(await next()).toMatchObject({ type: 'welcome', nodeId: identity.id });
    socket.send(JSON.stringify({ type: 'telemetry', telemetry: { ...telemetryFor(seeds[7]!), id: identity.id, name: identity.name, geozone: identity.geozone, gpuUtilization: 3 } }));
    expect((await next())['message']).toMatch(/telemetry rejected: \/gpuUtilization/);
    socket.send(JSON.stringify({ type: 'telemetry', telemetry: telemetryFor(seeds[7]!) }));
    expect((await next())['message']).toMatch(/telemetry rejected: \/id .* is not this session's .*a node cannot change its id/);
    socket.send(JSON.stringify({ type: 'result', result: { schemaVersion: 1, requestId: idOf('r'), nodeId: idOf('pjm-a'), latencyMs: 1, status: 'completed', completedAt: new Date().toISOString() } }));
    expect((await next())['message']).toMatch(/result rejected: \/nodeId/);
    socket.send(JSON.stringify({ type: 'launch-missiles' }));
    expect((await next())['message']).toMatch(/unknown frame type "launch-missiles"/);
    // A valid report from the session lands like any other telemetry.
    socket.send(JSON.stringify({ type: 'telemetry', telemetry: { ...telemetryFor(seeds[7]!), id: identity.id, name: undefined, geozone: undefined } }));
    await until(async () => (await getNode(identity.id))['name'] === 'agent-x', 'the agent node to be known');
    expect((await getNode(identity.id))['geozone']).toBe('PJM');
    socket.close();
    const refused = new WebSocket(`${system.url.replace('http', 'ws')}/agent`, { headers: bearer(system.operatorKey) });
    const closed = new Promise<number>((resolve) => refused.once('close', (code: number) => resolve(code)));
    const refusal = new Promise<string>((resolve) => refused.once('message', (data: Buffer) => resolve(data.toString())));
    await new Promise((resolve) => refused.once('open', resolve));
    refused.send(JSON.stringify({ type: 'hello', node: { ...identity, geozone: 'MISO' } }));
    expect(await refusal).toMatch(/geozone \\"MISO\\" is not served here/);
    expect(await closed).toBe(4000);
    expect((await api(`${system.url}/health`)).status).toBe(200);
  });

  it('publishes a regional summary per geozone with totals, active nodes, average GPU and the energy mix', async () => {
    const summaries: Record<string, unknown>[] = [];
    const consumer = await system.bus.subscribe('test-summaries', [topics.regionalSummary], 'RegionalSummary', (m) => void summaries.push(m as unknown as Record<string, unknown>), { startAt: 'latest' });
    await system.aggregator.publishSummaries();
    await until(() => summaries.length === 3, 'three summaries');
    const byZone = Object.fromEntries(summaries.map((m) => [m['geozoneId'], m]));
    const registry = [...system.aggregator.registry.all()];
    for (const zone of ['CAISO', 'ERCOT', 'PJM']) {
      const nodes = registry.filter((n) => n.geozone === zone);
      const active = nodes.filter((n) => n.status !== 'offline');
      expect(byZone[zone]).toMatchObject({
        geozoneId: zone,
        totalNodes: nodes.length,
        activeNodes: active.length,
        energyBreakdown: {
          cogen: active.filter((n) => n.energySource === 'cogen').length,
          grid: active.filter((n) => n.energySource === 'grid').length,
          battery: active.filter((n) => n.energySource === 'battery').length,
        },
      });
      expect(byZone[zone]!['avgGpuUtil']).toBeCloseTo(active.reduce((sum, n) => sum + n.gpuUtilization, 0) / active.length, 3);
    }
    await consumer.close();
  });

  it('exposes the seed metrics for Prometheus', async () => {
    const text = await (await api(`${system.url}/metrics`)).text();
    const pjmOnline = [...system.aggregator.registry.all()].filter((n) => n.geozone === 'PJM' && n.status === 'online').length;
    expect(text).toContain(`arcnet_nodes_total{geozone="PJM",status="online"} ${pjmOnline}`);
    expect(text).toMatch(/arcnet_process_cpu_seconds_total \d/);
    expect(text).toMatch(/arcnet_gpu_utilization_avg\{geozone="CAISO"\}/);
    expect(text).toMatch(/arcnet_inference_requests_total\{geozone="CAISO",status="dispatched"\} \d+/);
    expect(text).toMatch(/arcnet_inference_requests_total\{geozone="ERCOT",status="rejected"\} 1/);
    expect(text).toMatch(/arcnet_inference_requests_total\{geozone="PJM",status="completed"\} \d+/);
    expect(text).toMatch(/arcnet_inference_latency_ms_bucket/);
  });

  it('answers /health and /ready with the one body every process gives, and names its engines in /stats', async () => {
    const ready = await api(`${system.url}/ready`);
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      status: 'ok',
      role: 'embedded',
      instanceId: system.instanceId,
      engines: { bus: 'memory', store: 'sqlite-memory' },
      mode: 'embedded',
      modules: { inference: { ready: true }, mesh: { ready: true, nodes: system.aggregator.registry.size }, scheduler: { ready: true, nodesKnown: system.scheduler.index.size }, jobs: { ready: true } },
    });
    expect(typeof body['uptimeSeconds']).toBe('number');
    expect(body['version']).toEqual(expect.any(String));
    expect(await (await api(`${system.url}/health`)).json()).toMatchObject({ status: 'ok', mode: 'embedded', uptimeS: expect.any(Number) });
    const stats = (await (await api(`${system.url}/stats`)).json()) as Record<string, unknown>;
    expect(stats).toMatchObject({ engines: { bus: 'memory', store: 'sqlite-memory' }, mode: 'embedded' });

    // A scheduler that knows no node is not ready: /ready says so and why, /health stays 200.
    const empty = await startEmbedded(withDefaults({ port: 0, dataDir: null, geozones: ['MISO'], simulation: { nodes: 0, requestRate: 0 } }));
    try {
      const waiting = await keyed(empty.operatorKey)(`${empty.url}/ready`);
      expect(waiting.status).toBe(503);
      expect(await waiting.json()).toMatchObject({ status: 'starting', notReady: 'scheduler: no node of MISO known yet: waiting for node documents or telemetry' });
      expect((await keyed(empty.operatorKey)(`${empty.url}/health`)).status).toBe(200);
    } finally {
      await empty.stop();
    }
  });

  it('sheds submissions with 503 when the scheduler falls behind, and answers 202 for what it accepted but could not decide in time', async () => {
    const stalled = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 }, api: { decisionTimeoutMs: 400, maxAwaitingDecisions: 2 } }));
    await stalled.scheduler.stop();
    const submit = (): Promise<Response> =>
      keyed(stalled.operatorKey)(`${stalled.url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ modelId: 'm', contextWindowTokens: 1, requesterGeozone: 'CAISO' }) });
    const first = submit();
    const second = submit();
    await until(() => stalled.tracker.awaitingDecision === 2, 'two submissions waiting');
    const shed = await submit();
    expect(shed.status).toBe(503);
    expect(shed.headers.get('retry-after')).toBe('1');
    expect(((await shed.json()) as { message: string }).message).toMatch(/scheduler backlog: 2 requests await a decision \(limit 2\)/);
    for (const response of await Promise.all([first, second])) {
      expect(response.status).toBe(202);
      expect(((await response.json()) as { status: string }).status).toBe('pending');
    }
    await stalled.stop();
  });
});

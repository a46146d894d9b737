/**
 * Input strictness (issue 11), attack by attack, on the embedded server over HTTP and WebSocket:
 * wrong types are refused rather than converted, `"Infinity"` and absurd capacities are refused,
 * instants outside 1970..9999 are 400s naming the field (on the bus and the agent session, refused
 * frames), a request whose publish fails is a 503 and is failed rather than left pending, and a
 * client's protocol errors are logged as warnings, rate-limited, never as errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import WebSocket from 'ws';
import { seededUuid } from '../../src/core/ids.ts';
import { topics } from '../../src/contracts/topics.ts';
import { HEADER_DLQ_REASON, HEADER_SCHEMA, HEADER_VERSION } from '../../src/bus/typed-bus.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { bearer } from '../support/api-key.ts';
import { until } from '../support/until.ts';

interface LogEntry {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

const RANGE = '1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z';

describe('strict input on every route and session', () => {
  let system: EmbeddedSystem;
  const logs: LogEntry[] = [];

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line) as LogEntry);
        done();
      },
    });
    system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 } }), { logger: pino({ level: 'debug', base: undefined }, sink) });
  });
  afterAll(async () => {
    await system.stop();
  });

  const call = async (method: string, path: string, body?: unknown, key = system.operatorKey): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> => {
    const response = await fetch(`${system.url}${path}`, {
      method,
      headers: { ...bearer(key), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown>, headers: response.headers };
  };
  const expect400 = async (method: string, path: string, body: unknown, message: RegExp): Promise<void> => {
    const answer = await call(method, path, body);
    expect(answer.status, `${method} ${path} ${typeof body === 'string' ? body : JSON.stringify(body)}`).toBe(400);
    expect(answer.json).toMatchObject({ code: 'INVALID_INPUT' });
    expect(String(answer.json['message']), `${method} ${path}`).toMatch(message);
  };
  const worker = { name: 'box', region: 'CAISO', cpu_cores: 4, memory_gb: 8 };
  const job = { name: 'hello', docker_image: 'arcnet/busybox:test', command: ['echo', 'hello'] };
  const inference = { modelId: 'llama-3-70b', contextWindowTokens: 512, requesterGeozone: 'CAISO' };

  it('refuses wrong types in bodies instead of converting them (was: "0x10" → 16, true → 1, false → "false")', async () => {
    const workersBefore = [...system.coordinator.allWorkers()].length;
    const jobsBefore = system.coordinator.jobCounts().total;
    await expect400('POST', '/api/v1/nodes/register', { ...worker, cpu_cores: '0x10' }, /^body\/cpu_cores must be number$/);
    await expect400('POST', '/api/v1/nodes/register', { ...worker, cpu_cores: true }, /^body\/cpu_cores must be number$/);
    await expect400('POST', '/api/v1/nodes/register', { ...worker, memory_gb: '8' }, /^body\/memory_gb must be number$/);
    await expect400('POST', '/api/v1/nodes/register', { ...worker, gpu_enabled: 'true' }, /^body\/gpu_enabled must be boolean$/);
    await expect400('POST', '/api/v1/nodes/register', { ...worker, name: 42 }, /^body\/name must be string$/);
    await expect400('POST', '/api/v1/inference', { ...inference, modelId: false }, /^body\/modelId must be string$/);
    await expect400('POST', '/api/v1/inference', { ...inference, contextWindowTokens: '512' }, /^body\/contextWindowTokens must be integer$/);
    await expect400('POST', '/api/v1/jobs', { ...job, required_cpu: '2' }, /^body\/required_cpu must be number$/);
    await expect400('POST', '/api/v1/jobs', { ...job, redundancy: 3.0000001 }, /^body\/redundancy must be integer$/);
    // Ajv's 'array' coercion would have wrapped a lone string into a one-element command.
    await expect400('POST', '/api/v1/jobs', { ...job, command: 'echo hello' }, /^body\/command must be array$/);
    await expect400('POST', '/api/v1/jobs', { ...job, network: 0 }, /^body\/network must be boolean$/);
    expect([...system.coordinator.allWorkers()]).toHaveLength(workersBefore);
    expect(system.coordinator.jobCounts().total).toBe(jobsBefore);
  });

  it('refuses "Infinity", 1e400 and capacities no machine has, so no fake worker can claim unbounded capacity', async () => {
    await expect400('POST', '/api/v1/nodes/register', { ...worker, cpu_cores: 'Infinity' }, /^body\/cpu_cores must be number$/);
    await expect400('POST', '/api/v1/nodes/register', { ...worker, memory_gb: 'Infinity' }, /^body\/memory_gb must be number$/);
    // JSON.parse reads 1e400 as Infinity.
    await expect400('POST', '/api/v1/nodes/register', '{"name":"box","cpu_cores":1e400,"memory_gb":8}', /^body\/cpu_cores must be number$/);
    await expect400('POST', '/api/v1/nodes/register', { ...worker, cpu_cores: 1e9 }, /^body\/cpu_cores must be <= 4096$/);
    await expect400('POST', '/api/v1/nodes/register', { ...worker, memory_gb: 1e308 }, /^body\/memory_gb must be <= 65536$/);
    await expect400('POST', '/api/v1/jobs', { ...job, required_memory: 1e12 }, /^body\/required_memory must be <= 65536$/);
    await expect400('POST', '/api/v1/jobs', { ...job, timeout_seconds: 1e9 }, /^body\/timeout_seconds must be <= 2592000$/);
    await expect400('POST', '/api/v1/jobs', { ...job, credits_required: 1e15 }, /^body\/credits_required must be <= 1000000000$/);
    await expect400('POST', '/api/v1/inference', { ...inference, maxLatencyMs: 1e9 }, /^body\/maxLatencyMs must be <= 600000$/);
    await expect400('POST', '/api/v1/inference', '{"modelId":"m","contextWindowTokens":1e400,"requesterGeozone":"CAISO"}', /^body\/contextWindowTokens must be integer$/);
    // A worker's own report is held to the same: its duration and exit code are bounded.
    const registered = await call('POST', '/api/v1/nodes/register', worker);
    expect(registered.status).toBe(201);
    const nodeId = String((registered.json['node'] as { id: string }).id);
    const credential = String(registered.json['credential']);
    const report = { node_id: nodeId, execution_id: seededUuid('strict-execution'), status: 'completed', result: 'x' };
    for (const [field, value, message] of [
      ['duration_ms', 1e300, /^body\/duration_ms must be <= 2592000000$/],
      ['duration_ms', '12', /^body\/duration_ms must be number$/],
      ['exit_code', 2 ** 40, /^body\/exit_code must be <= 4294967295$/],
    ] as const) {
      const answer = await call('POST', '/api/v1/worker/result', { ...report, [field]: value }, credential);
      expect(answer.status, field).toBe(400);
      expect(String(answer.json['message'])).toMatch(message);
    }
    for (const record of system.coordinator.allWorkers()) {
      expect(Number.isFinite(record.cpu_cores) && record.cpu_cores <= 4096, `worker ${record.id} cpu_cores ${record.cpu_cores}`).toBe(true);
      expect(Number.isFinite(record.memory_gb) && record.memory_gb <= 65536, `worker ${record.id} memory_gb ${record.memory_gb}`).toBe(true);
    }
  });

  it('parses querystrings into integers only when written in decimal (was: ?limit=0x10 → 16, ?limit=Infinity passed maximum 1000)', async () => {
    for (const limit of ['0x10', 'Infinity', '%207', '1e3', '-Infinity', '12abc', '1.5']) {
      await expect400('GET', `/api/v1/inference?limit=${limit}`, undefined, /^querystring\/limit must be integer$/);
      await expect400('GET', `/api/v1/jobs?limit=${limit}`, undefined, /^querystring\/limit must be integer$/);
    }
    await expect400('GET', '/api/v1/inference?limit=1001', undefined, /^querystring\/limit must be <= 1000$/);
    expect((await call('GET', '/api/v1/inference?limit=7')).status).toBe(200);
    expect((await call('GET', '/api/v1/jobs?limit=7')).status).toBe(200);
    await expect400('GET', '/api/v1/nodes/x?history=1', undefined, /querystring\/history/);
  });

  it('answers asOf and knownAt outside 1970..9999 with a 400 naming the field and the range (was: 500, Invalid time value)', async () => {
    const nodeId = seededUuid('strict-asof');
    for (const value of ['99999999999999999', '8640000000000001', '+300000-01-01T00:00:00Z', '+275000-01-01T00:00:00Z', '+010000-01-01T00:00:00Z', '1969-12-31T23:59:59Z', '-000001-01-01T00:00:00Z']) {
      for (const field of ['asOf', 'knownAt']) {
        for (const path of ['/api/v1/nodes', `/api/v1/nodes/${nodeId}`]) {
          const answer = await call('GET', `${path}?${field}=${encodeURIComponent(value)}`);
          expect(answer.status, `${path}?${field}=${value}`).toBe(400);
          expect(String(answer.json['message'])).toContain(`querystring/${field}: "${value}" is outside the supported range ${RANGE}`);
        }
      }
    }
    // Text that is no instant at all says so (Date.parse took "March 1 2024", and "2" as the year 2001).
    await expect400('GET', '/api/v1/nodes?asOf=yesterday', undefined, /querystring\/asOf: "yesterday" is not an ISO-8601 instant or epoch milliseconds/);
    await expect400('GET', '/api/v1/nodes?asOf=March%201%202024', undefined, /querystring\/asOf: "March 1 2024" is not an ISO-8601 instant/);
    // Both ends of the range are answered.
    for (const value of ['0', '1970-01-01T00:00:00Z', '9999-12-31T23:59:59.999Z', '253402300799999', '2026-01-01']) {
      const answer = await call('GET', `/api/v1/nodes?asOf=${encodeURIComponent(value)}&knownAt=${encodeURIComponent(value)}`);
      expect(answer.status, value).toBe(200);
    }
  });

  it('refuses a request from a geozone no scheduler here serves, rather than leaving it pending', async () => {
    await expect400('POST', '/api/v1/inference', { ...inference, requesterGeozone: 'MISO' }, /^body\/requesterGeozone: "MISO" is not a geozone served here \(known: CAISO, ERCOT, PJM\)$/);
  });

  it('refuses instants and numbers out of range on the agent session, with an error frame naming the field', async () => {
    const socket = new WebSocket(`${system.url.replace('http', 'ws')}/agent`, { headers: bearer(system.operatorKey) });
    const replies: Record<string, unknown>[] = [];
    socket.on('message', (data: Buffer) => void replies.push(JSON.parse(data.toString()) as Record<string, unknown>));
    await new Promise((resolve) => socket.once('open', resolve));
    const next = async (frame: unknown): Promise<Record<string, unknown>> => {
      const count = replies.length;
      socket.send(JSON.stringify(frame));
      await until(() => replies.length > count, 'a reply');
      return replies[count]!;
    };
    const identity = { id: seededUuid('strict-agent'), name: 'strict-agent', geozone: 'CAISO', geohash: '9q9hvu', capacity: { cpuCores: 4, memoryGb: 8, gpus: 1 }, tags: [], backend: 'simulated' };
    expect(await next({ type: 'hello', node: identity })).toMatchObject({ type: 'welcome', nodeId: identity.id });
    const telemetry = { schemaVersion: 2, id: identity.id, geohash: '9q9hvu', energySource: 'grid', batteryLevel: 0.5, gpuUtilization: 0.5, gpuMemoryFreeGb: 10, modelsLoaded: ['m'], timestamp: new Date().toISOString() };
    for (const timestamp of ['+275000-01-01T00:00:00.000Z', '1969-12-31T23:59:59.000Z', '+010000-01-01T00:00:00.000Z']) {
      expect(String((await next({ type: 'telemetry', telemetry: { ...telemetry, timestamp } }))['message'])).toBe(
        `telemetry rejected: /timestamp: "${timestamp}" is outside the supported range ${RANGE}; expected an ISO-8601 instant from ${RANGE}`,
      );
    }
    expect(String((await next({ type: 'telemetry', telemetry: { ...telemetry, gpuMemoryFreeGb: '10' } }))['message'])).toMatch(/^telemetry rejected: \/gpuMemoryFreeGb: Expected number$/);
    expect(String((await next({ type: 'telemetry', telemetry: { ...telemetry, capacity: { cpuCores: 1e9, memoryGb: 8, gpus: 1 } } }))['message'])).toMatch(/^telemetry rejected: \/capacity\/cpuCores: Expected number to be less or equal to 4096$/);
    const result = { schemaVersion: 1, requestId: seededUuid('strict-request'), nodeId: identity.id, latencyMs: 5, status: 'completed', completedAt: '+275760-09-13T00:00:00.000Z' };
    expect(String((await next({ type: 'result', result }))['message'])).toMatch(/^result rejected: \/completedAt: ".*" is outside the supported range/);
    expect(String((await next({ type: 'result', result: { ...result, completedAt: new Date().toISOString(), latencyMs: 1e12 } }))['message'])).toMatch(/^result rejected: \/latencyMs: Expected number to be less or equal to 86400000$/);
    socket.close();
    // A hello claiming an unbounded capacity is refused outright.
    const refused = new WebSocket(`${system.url.replace('http', 'ws')}/agent`, { headers: bearer(system.operatorKey) });
    const refusal = new Promise<string>((resolve) => refused.once('message', (data: Buffer) => resolve(data.toString())));
    await new Promise((resolve) => refused.once('open', resolve));
    refused.send(JSON.stringify({ type: 'hello', node: { ...identity, id: seededUuid('strict-agent-2'), capacity: { cpuCores: 1e300, memoryGb: 8, gpus: 1 } } }));
    expect(await refusal).toMatch(/hello refused: node\/capacity\/cpuCores: Expected number to be less or equal to 4096/);
    refused.close();
  });

  it('dead-letters a bus message whose numbers are strings or out of range: nothing is coerced on the bus either', async () => {
    const id = seededUuid('strict-bus-node');
    const base = { schemaVersion: 2, id, geohash: '9q9hvu', energySource: 'grid', batteryLevel: 0.5, gpuUtilization: 0.5, gpuMemoryFreeGb: 10, modelsLoaded: ['m'], timestamp: new Date().toISOString(), geozone: 'CAISO', name: 'bus-node' };
    const headers = { [HEADER_SCHEMA]: 'NodeTelemetry', [HEADER_VERSION]: '2' };
    await system.adapter.produce(topics.telemetry, [
      { key: id, value: Buffer.from(JSON.stringify({ ...base, batteryLevel: '0.5' })), headers },
      { key: id, value: Buffer.from(JSON.stringify(base).replace('"gpuMemoryFreeGb":10', '"gpuMemoryFreeGb":1e400')), headers },
      { key: id, value: Buffer.from(JSON.stringify({ ...base, timestamp: '+275000-01-01T00:00:00.000Z' })), headers },
    ]);
    const reasons = async (): Promise<string[]> => (await system.adapter.read(topics.deadLetter(topics.telemetry), 0, 0, 1_000)).map((r) => r.headers[HEADER_DLQ_REASON] ?? '');
    await until(async () => (await reasons()).some((r) => r.includes('/timestamp')), 'the three dead letters');
    const found = await reasons();
    expect(found.some((r) => /\/batteryLevel: Expected number/.test(r)), found.join('\n')).toBe(true);
    expect(found.some((r) => /\/gpuMemoryFreeGb: Expected number/.test(r)), found.join('\n')).toBe(true);
    expect(found.some((r) => /\/timestamp: ".*" is outside the supported range/.test(r)), found.join('\n')).toBe(true);
    expect(system.aggregator.registry.get(id)).toBeUndefined();
  });

  it('logs a client\'s protocol errors as one warning per session per 10 s with the count suppressed, never as errors', async () => {
    const registered = await call('POST', '/api/v1/nodes/register', { ...worker, name: 'noisy' });
    const nodeId = String((registered.json['node'] as { id: string }).id);
    const socket = new WebSocket(`${system.url.replace('http', 'ws')}/api/v1/worker/stream?node_id=${nodeId}`, { headers: bearer(String(registered.json['credential'])) });
    const replies: string[] = [];
    socket.on('message', (data: Buffer) => void replies.push(data.toString()));
    await new Promise((resolve) => socket.once('open', resolve));
    const from = logs.length;
    for (let i = 0; i < 20; i++) socket.send(i % 2 === 0 ? '{not json' : JSON.stringify({ type: 'launch' }));
    await until(() => replies.filter((r) => r.includes('"error"')).length === 20, 'twenty error frames');
    const protocol = logs.slice(from).filter((l) => l.msg === 'client protocol error' && l['node'] === nodeId);
    expect(protocol.filter((l) => l.level === 40)).toHaveLength(1);
    expect(protocol.filter((l) => l.level === 40)[0]).toMatchObject({ problem: 'frame is not valid JSON', suppressed: 0 });
    expect(protocol.filter((l) => l.level === 20)).toHaveLength(19);
    socket.close();

    // A frame the WebSocket protocol itself refuses (text that is not UTF-8): the session ends, the log warns.
    const feed = new WebSocket(`${system.url.replace('http', 'ws')}/telemetry`, { headers: bearer(system.operatorKey) });
    const closed = new Promise<number>((resolve) => feed.once('close', (code: number) => resolve(code)));
    feed.on('error', () => undefined);
    await new Promise((resolve) => feed.once('open', resolve));
    feed.send(Buffer.from([0xff, 0xfe, 0xfd]), { binary: false });
    expect(await closed).toBe(1007);
    await until(() => logs.some((l) => l['code'] === 'WS_ERR_INVALID_UTF8'), 'the transport error to be logged');
    expect(logs.find((l) => l['code'] === 'WS_ERR_INVALID_UTF8')).toMatchObject({ level: 40, msg: 'client protocol error', path: '/telemetry' });
    expect(logs.filter((l) => l.level >= 50).map((l) => `${l.msg} ${JSON.stringify(l)}`)).toEqual([]);
  });
});

describe('a request whose publish fails', () => {
  it('is answered 503 with the reason and failed, not left pending (was: 500, and pending forever)', async () => {
    const system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 } }));
    try {
      // The memory bus, closed: every produce now throws, as a broker that went away does.
      await system.adapter.close();
      const id = seededUuid('strict-unpublished');
      const post = (): Promise<Response> =>
        fetch(`${system.url}/api/v1/inference`, {
          method: 'POST',
          headers: { ...bearer(system.operatorKey), 'content-type': 'application/json' },
          body: JSON.stringify({ id, modelId: 'llama-3-70b', contextWindowTokens: 512, requesterGeozone: 'CAISO' }),
        });
      const response = await post();
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('1');
      const body = (await response.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ statusCode: 503, code: 'UNAVAILABLE', retryable: true });
      expect(String(body['message'])).toMatch(new RegExp(`^inference request ${id} was not accepted: the bus refused it \\(memory bus is closed: cannot produce to arc.request.inference\\); nothing was scheduled, retry later$`));
      const status = (await (await fetch(`${system.url}/api/v1/inference/${id}`, { headers: bearer(system.operatorKey) })).json()) as Record<string, unknown>;
      expect(status).toMatchObject({ id, status: 'failed', reason: 'not published to arc.request.inference: memory bus is closed: cannot produce to arc.request.inference' });
      expect(system.tracker.awaitingDecision).toBe(0);
      // The same id may be sent again (it was never scheduled), and is refused the same way while the bus is down.
      expect((await post()).status).toBe(503);
      expect(system.tracker.get(id)?.status).toBe('failed');
      expect((await fetch(`${system.url}/health`)).status).toBe(200);
    } finally {
      await system.stop();
    }
  });
});

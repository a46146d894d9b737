/**
 * Every route of a real embedded server, fuzzed (issue 11: "no 500 from any input"). The routes are
 * read from the server itself (`routesOf`, recorded by `buildServer` as they are added), so a route
 * a family adds later is fuzzed without editing this file. For each one fast-check sends, with a
 * fixed seed and a bounded count, bodies shaped by the route's own schema and then broken (a field
 * of the wrong type, `"Infinity"` and `1e400`, huge and negative numbers, a missing or an extra
 * field, deep or odd JSON, text that is not JSON, other content types), querystrings and params
 * alike, under an operator key, a worker credential, no credential or a garbage one. It holds:
 *
 * - no answer is a 5xx, except the inference route's 503 for a request no node can serve (a
 *   decision with its reason, not a failure) and the console's 503 when it is not built;
 * - no request hangs (each is bounded by a timeout);
 * - nothing a client sends is logged at error level;
 * - random frames on `/agent`, the worker stream and `/telemetry` never stop the server from serving
 *   them, and `/health` still answers at the end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import WebSocket from 'ws';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { routesOf, type RouteEntry } from '../../src/api/route-table.ts';
import { AgentIdentity } from '../../src/agent/protocol.ts';
import { InferenceResultV1, NodeTelemetryV2 } from '../../src/contracts/messages.ts';
import { seededUuid } from '../../src/core/ids.ts';
import { topics } from '../../src/contracts/topics.ts';
import { bearer } from '../support/api-key.ts';
import { until } from '../support/until.ts';

const SEED = 20_261_202;
/** Runs per route: most where the input is (a body, then a querystring or params); a HEAD is its GET's handler. */
const RUNS_WITH_BODY = 220;
const RUNS_WITH_QUERY_OR_PARAMS = 80;
const RUNS_OTHERWISE = 20;
const FRAMES_PER_SOCKET = 250;
const REQUEST_TIMEOUT_MS = 5_000;

type Schema = Readonly<Record<string, unknown>>;

const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
const num = (value: unknown): number | undefined => (typeof value === 'number' ? value : undefined);

/** A value the schema accepts (mostly: patterns and formats are approximated, which is fine for a fuzzer). */
function shaped(schema: Schema | undefined, depth = 0): fc.Arbitrary<unknown> {
  if (schema === undefined || depth > 6) return fc.jsonValue({ maxDepth: 2 });
  if ('const' in schema) return fc.constant(schema['const']);
  if (Array.isArray(schema['anyOf'])) return fc.oneof(...(schema['anyOf'] as Schema[]).map((s) => shaped(s, depth + 1)));
  if (Array.isArray(schema['enum'])) return fc.constantFrom(...(schema['enum'] as unknown[]));
  switch (schema['type']) {
    case 'string':
      return stringOf(schema);
    case 'integer': {
      const min = num(schema['minimum']) ?? (num(schema['exclusiveMinimum']) === undefined ? -1_000_000 : Math.floor(num(schema['exclusiveMinimum'])!) + 1);
      const max = Math.min(num(schema['maximum']) ?? 1_000_000, Number.MAX_SAFE_INTEGER);
      return fc.integer({ min, max });
    }
    case 'number': {
      const exclusive = num(schema['exclusiveMinimum']);
      return fc.double({ min: num(schema['minimum']) ?? exclusive ?? -1e6, max: num(schema['maximum']) ?? 1e6, minExcluded: exclusive !== undefined, noNaN: true, noDefaultInfinity: true });
    }
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(shaped(schema['items'] as Schema | undefined, depth + 1), { minLength: num(schema['minItems']) ?? 0, maxLength: Math.min(num(schema['maxItems']) ?? 4, 4) });
    case 'object': {
      const properties = (schema['properties'] as Record<string, Schema> | undefined) ?? {};
      if (Object.keys(properties).length === 0 && schema['patternProperties'] !== undefined) {
        const [value] = Object.values(schema['patternProperties'] as Record<string, Schema>);
        return fc.dictionary(fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,8}$/), shaped(value, depth + 1), { maxKeys: 3 });
      }
      const arbitraries: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [name, property] of Object.entries(properties)) arbitraries[name] = shaped(property, depth + 1);
      return fc.record(arbitraries, { requiredKeys: (schema['required'] as string[] | undefined) ?? [] });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

function stringOf(schema: Schema): fc.Arbitrary<string> {
  const minLength = num(schema['minLength']) ?? 0;
  const maxLength = Math.min(num(schema['maxLength']) ?? 40, 40);
  if (schema['format'] === 'uuid' || schema['pattern'] === UUID_PATTERN) return fc.uuid();
  if (schema['format'] === 'date-time') return fc.date({ min: new Date(0), max: new Date(Date.UTC(9999, 11, 31)), noInvalidDate: true }).map((d) => d.toISOString());
  if (typeof schema['pattern'] === 'string') {
    // The pattern bounds the length itself (`^[0-9a-f]{64}$`): only the schema's own limits filter, never the 40 cap, or no string would pass.
    const patternMax = num(schema['maxLength']) ?? Number.POSITIVE_INFINITY;
    return fc.stringMatching(new RegExp(schema['pattern'])).filter((s) => s.length >= minLength && s.length <= patternMax);
  }
  return fc.string({ minLength, maxLength: Math.max(maxLength, minLength) });
}

/** Numbers as text, where the server parses text: huge, negative, hexadecimal, exponent, Infinity, NaN, -0. */
const numericText: fc.Arbitrary<string> = fc.oneof(
  fc.bigInt({ min: -(10n ** 24n), max: 10n ** 24n }).map(String),
  fc.double().map(String),
  fc.integer().map((n) => `0x${n.toString(16)}`),
  fc.constantFrom('Infinity', '-Infinity', 'NaN', '1e400', '-0', ' 7', '7 ', '1e3', '1_000', '٣'),
);

/** What an attacker puts where a value belongs. */
const hostile: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: numericText },
  fc.constantFrom('Infinity', '-Infinity', 'NaN', '1e400', '0x10', ' 7', '1e3', '-0', '-1', '99999999999999999999', '', 'true', 'false', 'null', '[]', '{}', '\u0000', '%00', '../../etc/passwd', "'; DROP TABLE documents;--"),
  fc.constantFrom(true, false, null, 0, -1, -0, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, 5e-324, 0.5, 99_999_999_999_999_999),
  fc.constantFrom('+300000-01-01T00:00:00Z', '+275000-01-01T00:00:00Z', '1969-12-31T23:59:59Z', '9999-12-31T23:59:59.999Z', '10000-01-01T00:00:00Z', '99999999999999999', '2026-13-45T25:61:61Z'),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.constant('x'.repeat(70_000)),
  fc.jsonValue({ maxDepth: 3 }),
);

/** JSON text no JSON.stringify can write: numbers out of double range, deep nesting, prototype keys, not JSON at all. */
const oddText: fc.Arbitrary<string> = fc.constantFrom(
  '{"cpu_cores":1e400,"memory_gb":1e400,"name":"x"}',
  '{"modelId":"m","contextWindowTokens":1e400,"requesterGeozone":"CAISO"}',
  '['.repeat(20_000) + ']'.repeat(20_000),
  '{"a":'.repeat(5_000) + '1' + '}'.repeat(5_000),
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  'not json',
  '',
  '{',
  '\uFEFF{}',
  'null',
  '[]',
  '"text"',
  '123',
  '{"a":1,"a":2}',
);

interface Body {
  readonly text: string;
  readonly contentType: string | undefined;
}

/** Replaces the first number in a JSON text by one JSON.parse turns into Infinity (or 0). */
const withOutOfRangeNumber = (text: string, number: string): string => text.replace(/(":\s*)-?\d+(\.\d+)?([eE][+-]?\d+)?/, `$1${number}`);

function bodies(schema: Schema | undefined): fc.Arbitrary<Body> {
  const valid = shaped(schema);
  const object = valid.filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v));
  const json = fc.oneof(
    { weight: 3, arbitrary: valid },
    // One field replaced by a hostile value, removed, or an extra one added.
    { weight: 4, arbitrary: fc.tuple(object, fc.nat(), hostile).map(([o, i, bad]) => {
      const keys = Object.keys(o);
      return keys.length === 0 ? { ...o, extra: bad } : { ...o, [keys[i % keys.length]!]: bad };
    }) },
    { weight: 1, arbitrary: fc.tuple(object, fc.nat()).map(([o, i]) => {
      const keys = Object.keys(o);
      const copy = { ...o };
      if (keys.length > 0) delete copy[keys[i % keys.length]!];
      return copy;
    }) },
    { weight: 1, arbitrary: fc.tuple(object, fc.string({ maxLength: 12 }), hostile).map(([o, key, bad]) => ({ ...o, [key]: bad })) },
    { weight: 1, arbitrary: hostile },
  );
  const contentType = fc.oneof(
    { weight: 8, arbitrary: fc.constant('application/json') },
    { weight: 1, arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x', undefined) },
  );
  return fc.oneof(
    { weight: 8, arbitrary: fc.tuple(json, contentType).map(([value, type]) => ({ text: JSON.stringify(value) ?? '', contentType: type })) },
    { weight: 1, arbitrary: fc.tuple(valid, fc.constantFrom('1e400', '-1e400', '1e-400')).map(([value, n]) => ({ text: withOutOfRangeNumber(JSON.stringify(value) ?? '', n), contentType: 'application/json' })) },
    { weight: 1, arbitrary: oddText.map((text) => ({ text, contentType: 'application/json' })) },
  );
}

function queries(schema: Schema | undefined): fc.Arbitrary<string> {
  const properties = Object.keys((schema?.['properties'] as Record<string, Schema> | undefined) ?? {});
  const names = properties.length > 0 ? fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...properties) }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) }) : fc.string({ maxLength: 8 });
  const textOf = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value) ?? '');
  const value = fc.oneof(
    { weight: 2, arbitrary: schema === undefined ? fc.string() : fc.constantFrom(...properties, 'x').chain((name) => shaped((schema['properties'] as Record<string, Schema> | undefined)?.[name]).map(textOf)) },
    // Long enough to hurt, short enough that the URL still fits Node's 16 KiB of headers (else every answer is a 431).
    { weight: 3, arbitrary: hostile.map(textOf).filter((text) => text.length < 4_000) },
  );
  const pairs = fc.array(fc.tuple(names, value), { maxLength: 4 });
  return fc.oneof(
    { weight: 9, arbitrary: pairs.map((list) => (list.length === 0 ? '' : `?${new URLSearchParams(list).toString()}`)) },
    { weight: 1, arbitrary: fc.constantFrom('?%zz=1', '?limit=1&limit=2', '?asOf[]=1', '?=', '?&&&', '?asOf=%00', `?q=${'a'.repeat(8_000)}`, `?q=${'a'.repeat(20_000)}`) },
  );
}

function paths(url: string): fc.Arbitrary<string> {
  const params = [...url.matchAll(/:(\w+)/g)].map((m) => m[1]!);
  if (params.length === 0) return fc.constant(url);
  const segment = fc.oneof(fc.uuid(), fc.string({ unit: 'grapheme', maxLength: 20 }), hostile.map((v) => (typeof v === 'string' ? v : JSON.stringify(v) ?? '')).filter((s) => s.length < 5_000));
  return fc.array(segment, { minLength: params.length, maxLength: params.length }).map((values) => {
    let path = url;
    params.forEach((name, i) => {
      path = path.replace(`:${name}`, encodeURIComponent(values[i]!));
    });
    return path;
  });
}

interface Credentials {
  operator: string | undefined;
  worker: string | undefined;
}

/** Mostly the credential the route takes (so the input reaches validation), sometimes another, none or garbage. */
function authorizations(primary: string | undefined, other: string | undefined): fc.Arbitrary<Record<string, string>> {
  return fc.oneof(
    { weight: 14, arbitrary: fc.constant(bearer(primary)) },
    { weight: 2, arbitrary: fc.constant(bearer(other)) },
    { weight: 1, arbitrary: fc.constant({}) },
    { weight: 2, arbitrary: fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom('Bearer', 'Bearer ', 'Basic YTpi', `Bearer ${'k'.repeat(5_000)}`)).map((value) => ({ authorization: value.replace(/[\r\n]/g, '') })) },
  );
}

interface Sent {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

function requests(route: RouteEntry, primary: string | undefined, other: string | undefined): fc.Arbitrary<Sent> {
  const withBody = route.method === 'POST' || route.method === 'PUT' || route.method === 'PATCH' || route.method === 'DELETE';
  return fc
    .record({
      path: paths(route.url),
      query: queries(route.schema.querystring as Schema | undefined),
      auth: authorizations(primary, other),
      body: withBody ? bodies(route.schema.body as Schema | undefined).map((b): Body | undefined => b) : fc.constant<Body | undefined>(undefined),
    })
    .map(({ path, query, auth, body }) => ({
      method: route.method,
      path: path + query,
      headers: { ...auth, ...(body?.contentType === undefined ? {} : { 'content-type': body.contentType }) },
      body: body?.text,
    }));
}

/**
 * The 5xx that are answers rather than failures: no node can serve this inference request; the
 * console is not built in this checkout (`GET /` says to run `npm run build:console`).
 */
function acceptable(route: RouteEntry, status: number, json: unknown): boolean {
  if (status < 500) return true;
  if ((route.url === '/' || route.url === '/*') && (route.method === 'GET' || route.method === 'HEAD') && status === 503) return true;
  return route.url === '/api/v1/inference' && route.method === 'POST' && status === 503 && (json as { status?: unknown } | null)?.status === 'rejected';
}

describe('every route and WebSocket of the embedded server, fuzzed', () => {
  let system: EmbeddedSystem;
  const logLines: { level: number; msg: string; line: string }[] = [];
  const credentials: Credentials = { operator: undefined, worker: undefined };
  const tally = { requests: 0, byStatus: new Map<number, number>() };

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) {
          const entry = JSON.parse(line) as { level: number; msg?: string };
          logLines.push({ level: entry.level, msg: entry.msg ?? '', line: line.slice(0, 600) });
        }
        done();
      },
    });
    // Warn and above, kept: the suite asserts that nothing a client sends is logged at error.
    const logger = pino({ level: 'warn', base: undefined }, sink);
    system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 }, api: { decisionTimeoutMs: 300 } }), { logger });
    credentials.operator = system.operatorKey;
    // A node in every geozone, so the server is ready and a well-formed inference request can be routed.
    for (const [i, geozone] of system.config.geozones.entries()) {
      await system.bus.publish(topics.telemetry, 'NodeTelemetry', {
        schemaVersion: 2, id: seededUuid(`fuzz-node-${i}`), geohash: '9q9hvu', energySource: 'grid', batteryLevel: 0.9, gpuUtilization: 0.2,
        gpuMemoryFreeGb: 40, modelsLoaded: ['m', 'llama-3-70b'], timestamp: new Date().toISOString(), geozone, name: `fuzz-node-${i}`,
      });
    }
    await until(() => system.health().ready, 'the server to be ready');
    // A real worker, so the worker routes are fuzzed past their credential check too.
    const registered = await fetch(`${system.url}/api/v1/nodes/register`, {
      method: 'POST',
      headers: { ...bearer(credentials.operator), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'fuzz-worker', region: 'CAISO', cpu_cores: 2, memory_gb: 4 }),
    });
    expect(registered.status).toBe(201);
    credentials.worker = String(((await registered.json()) as { credential: string }).credential);
  });

  afterAll(async () => {
    await system.stop();
  });

  const send = async (request: Sent): Promise<{ status: number; json: unknown }> => {
    const response = await fetch(`${system.url}${request.path}`, {
      method: request.method,
      headers: request.headers,
      ...(request.body === undefined ? {} : { body: request.body }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await response.text();
    tally.requests++;
    tally.byStatus.set(response.status, (tally.byStatus.get(response.status) ?? 0) + 1);
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: response.status, json };
  };

  it('finds every route, including those of encapsulated plugins (jobs) and the WebSockets', () => {
    const table = routesOf(system.server).map((r) => `${r.method} ${r.url}`);
    for (const route of ['GET /health', 'POST /api/v1/inference', 'GET /api/v1/nodes/:id', 'POST /api/v1/jobs', 'POST /api/v1/nodes/register', 'POST /api/v1/worker/result', 'GET /agent', 'GET /api/v1/worker/stream']) {
      expect(table).toContain(route);
    }
  });

  // Bounded by its count (about 2,500 requests); the time allows for a loaded 2-core machine.
  it('answers no input on any route with a 5xx, and none hangs', { timeout: 120_000 }, async () => {
    // `/{service}/…` forwards to a service's instance: its 502/503/504 are the instance's absence, not bad input (test/integration/service-router.test.ts).
    const routes = routesOf(system.server).filter((r) => !r.websocket && !r.url.startsWith('/:service'));
    for (const [index, route] of routes.entries()) {
      const runs = route.schema.body !== undefined ? RUNS_WITH_BODY : route.method !== 'HEAD' && (route.schema.querystring !== undefined || route.schema.params !== undefined) ? RUNS_WITH_QUERY_OR_PARAMS : RUNS_OTHERWISE;
      // A route only a worker may call is fuzzed mostly with the worker's credential, so its input reaches validation.
      const workerOnly = route.access?.kind === 'worker' && !(route.access.or ?? []).includes('operator');
      const [primary, other] = workerOnly ? [credentials.worker, credentials.operator] : [credentials.operator, credentials.worker];
      await fc.assert(
        fc.asyncProperty(requests(route, primary, other), async (request) => {
          const { status, json } = await send(request);
          if (!acceptable(route, status, json)) throw new Error(`${route.method} ${route.url}: ${status} for ${request.method} ${request.path.slice(0, 200)} ${request.body?.slice(0, 300) ?? ''}: ${JSON.stringify(json)?.slice(0, 300)}`);
        }),
        { seed: SEED + index, numRuns: runs, endOnFailure: true },
      );
    }
    const errors = logLines.filter((l) => l.level >= 50);
    expect(errors.map((l) => l.line), 'error-level log lines').toEqual([]);
    expect((await fetch(`${system.url}/health`)).status).toBe(200);
    // The figure a reader of the run wants: how much was sent and how it was answered.
    console.info(`api fuzz: ${tally.requests} requests over ${routes.length} routes; by status ${JSON.stringify(Object.fromEntries([...tally.byStatus].sort(([a], [b]) => a - b)))}`);
    expect(tally.requests).toBeGreaterThan(2_000);
  });

  /** Sends frames, reopening the socket whenever the server closes it; returns how many closes it saw. */
  const pound = async (path: string, headers: Record<string, string>, frames: readonly (string | Buffer)[]): Promise<number> => {
    let closes = 0;
    const open = async (): Promise<WebSocket> => {
      const socket = new WebSocket(`${system.url.replace('http', 'ws')}${path}`, { headers, maxPayload: 4 << 20 });
      socket.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        socket.once('open', () => resolve());
        socket.once('unexpected-response', (_req, res) => reject(new Error(`${path}: upgrade answered ${res.statusCode}`)));
        socket.once('error', reject);
      });
      socket.once('close', () => closes++);
      return socket;
    };
    let socket = await open();
    for (const frame of frames) {
      if (socket.readyState !== WebSocket.OPEN) socket = await open();
      // Text frames, whatever the bytes (invalid UTF-8 included): what the server must survive.
      socket.send(frame, { binary: false });
      await new Promise((resolve) => setImmediate(resolve));
    }
    socket.close();
    return closes;
  };

  const firstMessage = async (path: string, headers: Record<string, string>, frame?: string): Promise<Record<string, unknown>> => {
    const socket = new WebSocket(`${system.url.replace('http', 'ws')}${path}`, { headers });
    try {
      const message = new Promise<Record<string, unknown>>((resolve, reject) => {
        socket.once('message', (data: Buffer) => resolve(JSON.parse(data.toString()) as Record<string, unknown>));
        socket.once('error', reject);
        setTimeout(() => reject(new Error(`${path}: no message within 5 s`)), 5_000).unref();
      });
      await new Promise((resolve) => socket.once('open', resolve));
      if (frame !== undefined) socket.send(frame);
      return await message;
    } finally {
      socket.close();
    }
  };

  const frames = (shapes: readonly fc.Arbitrary<unknown>[], seed: number): (string | Buffer)[] =>
    fc.sample(
      fc.oneof(
        { weight: 3, arbitrary: fc.oneof(...shapes).map((v) => JSON.stringify(v) ?? '') },
        { weight: 3, arbitrary: fc.tuple(fc.oneof(...shapes), hostile).map(([v, bad]) => JSON.stringify(typeof v === 'object' && v !== null ? { ...v, [Object.keys(v)[0] ?? 'x']: bad } : bad) ?? '') },
        { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? '') },
        { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 200 }) },
        { weight: 1, arbitrary: oddText },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from([0xff, 0xfe, ...bytes])) },
        // Past the server's 1 MiB frame limit: it closes the session (1009), and must keep serving.
        { weight: 1, arbitrary: fc.constant('"' + 'x'.repeat((1 << 20) + 16) + '"') },
      ),
      { seed, numRuns: FRAMES_PER_SOCKET },
    );

  it('keeps serving /agent, the worker stream and /telemetry through random frames', async () => {
    const operator = bearer(credentials.operator);
    const hello = shaped(AgentIdentity as unknown as Schema).map((node) => ({ type: 'hello', node }));
    const telemetry = shaped(NodeTelemetryV2 as unknown as Schema).map((t) => ({ type: 'telemetry', telemetry: t }));
    const result = shaped(InferenceResultV1 as unknown as Schema).map((r) => ({ type: 'result', result: r }));
    const ack = fc.record({ type: fc.constantFrom('ack', 'nack', 'result'), execution_id: fc.oneof(fc.uuid(), fc.string({ maxLength: 300 })) });

    await pound('/agent', operator, frames([hello, telemetry, result, fc.constant({ type: 'hello' })], SEED));
    const identity = { id: '6f1d3c4e-0000-4000-8000-00000000f022', name: 'after-the-fuzz', geozone: 'CAISO', geohash: '9q9hvu', capacity: { cpuCores: 4, memoryGb: 8, gpus: 1 }, tags: [], backend: 'simulated' };
    expect(await firstMessage('/agent', operator, JSON.stringify({ type: 'hello', node: identity }))).toMatchObject({ type: 'welcome', nodeId: identity.id });

    const worker = bearer(credentials.worker);
    const workerId = String(((await (await fetch(`${system.url}/api/v1/nodes`, { headers: operator })).json()) as { nodes: { id: string; name: string }[] }).nodes.find((n) => n.name === 'fuzz-worker')?.id);
    const stream = `/api/v1/worker/stream?node_id=${workerId}`;
    await pound(stream, worker, frames([ack], SEED + 1));
    expect(await firstMessage(stream, worker)).toMatchObject({ type: 'welcome', node_id: workerId });

    await pound('/telemetry', operator, frames([hello, telemetry], SEED + 2));
    const feed = new WebSocket(`${system.url.replace('http', 'ws')}/telemetry`, { headers: operator });
    await new Promise((resolve, reject) => {
      feed.once('open', resolve);
      feed.once('error', reject);
    });
    feed.close();

    expect((await fetch(`${system.url}/health`)).status).toBe(200);
    expect(logLines.filter((l) => l.level >= 50).map((l) => l.line), 'error-level log lines').toEqual([]);
  });
});

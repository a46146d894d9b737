/**
 * The router for services (src/api/service-router.ts) in a real server (`buildServer`, with its access
 * hook, error mapper and console) in front of real `node:http` instances on free ports, found through
 * a real endpoint registry over a SQLite KV: requests spread over every instance, arrive as sent
 * (method, path, query, body, headers less ArcNet's key), survive a dead instance, and the server's
 * own paths and the console keep answering as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/api/server.ts';
import { registerServiceRouter } from '../../src/api/service-router.ts';
import { ArcMetrics } from '../../src/api/metrics.ts';
import { KeyRing } from '../../src/access/api-keys.ts';
import { MessageBus } from '../../src/bus/typed-bus.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { systemClock } from '../../src/core/clock.ts';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { EndpointRegistry } from '../../src/services/endpoint-registry.ts';
import { blueprintKey, endpointKey, type Blueprint, type EndpointRecord, type SliceSpec } from '../../src/services/model.ts';
import { until } from '../support/until.ts';

const ECHO = 'org.example:echo:1.0.0';
const HTML = 'text/html,application/xhtml+xml,*/*;q=0.8';
const INDEX = '<!doctype html><title>console</title>\n';
const SCRIPT = 'export const app = 1;\n';
const TIMEOUT_MS = 400;

interface Seen {
  readonly instance: string;
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly bodyLength: number;
  readonly bodySha256: string;
  readonly body: string;
}

interface Upstream {
  readonly name: string;
  readonly server: Server;
  readonly port: number;
  readonly seen: Seen[];
  /** Requests that reached it, answered or not. */
  readonly hits: { count: number };
  /** Requests whose connection closed before it answered. */
  readonly abandoned: { count: number };
}

/** An instance of a service: answers what it received, as JSON, with a cookie and a header of its own. */
async function upstream(name: string, behaviour: 'echo' | 'hang' | 'reset' = 'echo'): Promise<Upstream> {
  const seen: Seen[] = [];
  const hits = { count: 0 };
  const abandoned = { count: 0 };
  const server = createServer((req, res) => {
    hits.count++;
    res.once('close', () => {
      if (!res.writableFinished) abandoned.count++;
    });
    if (behaviour === 'reset') {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const record: Seen = { instance: name, method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyLength: body.length, bodySha256: createHash('sha256').update(body).digest('hex'), body: body.length <= 4_096 ? body.toString() : '' };
      seen.push(record);
      if (behaviour === 'hang') return;
      const status = req.url?.startsWith('/status/') ? Number(req.url.slice('/status/'.length)) : 200;
      res.writeHead(status, { 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'], 'x-served-by': name, connection: 'x-secret-hop', 'x-secret-hop': 'drop me' });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify(record));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { name, server, port: (server.address() as AddressInfo).port, seen, hits, abandoned };
}

async function close(server: Server): Promise<void> {
  if (!server.listening) return;
  server.closeAllConnections();
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  json<T = Record<string, unknown>>(): T;
}

/** A raw exchange (fetch forbids the hop-by-hop headers this test sends), on a fresh connection each time. */
function call(base: string, method: string, path: string, options: { headers?: Record<string, string>; body?: Buffer | string; chunked?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers: options.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
      });
    });
    req.on('error', reject);
    if (options.chunked && options.body !== undefined) {
      // No length known up front: two chunks, framed by chunked encoding.
      req.setHeader('transfer-encoding', 'chunked');
      const half = Math.floor(options.body.length / 2);
      req.write(options.body.slice(0, half));
      req.end(options.body.slice(half));
    } else {
      req.end(options.body);
    }
  });
}

function slice(artifact: string, extra: Partial<SliceSpec> = {}): SliceSpec {
  return { artifact, instances: 1, run: { kind: 'process', command: ['serve'] }, ...extra };
}

function endpointOf(nodeId: string, instance: number, port: number, path = '/'): EndpointRecord {
  return { nodeId, instance, state: 'ACTIVE', timestamp: Date.now(), address: `127.0.0.1:${port}`, path, epoch: 1 };
}

describe('service router', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'arcnet-service-router-'));
  let stores: StateStores;
  let registry: EndpointRegistry;
  let app: FastifyInstance;
  let base: string;
  let key: string;
  const instances: Upstream[] = [];
  const others: Upstream[] = [];
  let auth: Record<string, string>;
  // What the server logs at warn and above: nothing a caller or an instance does is a server error.
  const logged: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'warn' }, new Writable({ write: (chunk: Buffer, _encoding, done) => (logged.push(JSON.parse(chunk.toString()) as { level: number; msg: string }), done()) }));

  const publish = async (artifact: string, entry: string, record: EndpointRecord): Promise<void> => {
    await stores.kv.put(endpointKey(artifact, entry, record.instance), record);
  };

  beforeAll(async () => {
    mkdirSync(join(scratch, 'dist', 'assets'), { recursive: true });
    writeFileSync(join(scratch, 'dist', 'index.html'), INDEX);
    writeFileSync(join(scratch, 'dist', 'assets', 'app.js'), SCRIPT);
    stores = openSqliteStores({ path: ':memory:' });
    const keys = new KeyRing(stores.documents, systemClock);
    key = (await keys.create({ name: 'caller', role: 'viewer', createdBy: 'test' })).key;
    auth = { authorization: `Bearer ${key}` };

    for (const n of [1, 2, 3]) instances.push(await upstream(`echo-${n}`));
    const prefixed = await upstream('prefixed-1');
    const slow = await upstream('slow-1', 'hang');
    const resetting = await upstream('flaky-1', 'reset');
    const healthy = await upstream('flaky-2');
    others.push(prefixed, slow, resetting, healthy);

    const blueprint: Blueprint = {
      name: 'shop',
      timestamp: Date.now(),
      slices: [
        slice(ECHO),
        slice('org.example:prefixed:1.0', { entryPoints: [{ name: 'api', path: '/v1/' }] }),
        slice('org.example:slow:1.0'),
        slice('org.example:flaky:1.0'),
        slice('org.example:ghost:1.0'),
        slice('org.example:gone:1.0'),
      ],
    };
    await stores.kv.put(blueprintKey('shop'), blueprint);
    // Written past the API's checks: services named like the server's own paths must not take them.
    await stores.kv.put(blueprintKey('squatter'), { name: 'squatter', timestamp: Date.now(), slices: [slice('org.example:health:1.0'), slice('org.example:assets:1.0'), slice('org.example:api:1.0')] });
    for (const [i, instance] of instances.entries()) await publish(ECHO, 'http', endpointOf(`node-${i + 1}`, i + 1, instance.port));
    await publish('org.example:prefixed:1.0', 'api', endpointOf('node-p', 1, prefixed.port, '/v1/'));
    await publish('org.example:slow:1.0', 'http', endpointOf('node-s', 1, slow.port));
    await publish('org.example:flaky:1.0', 'http', endpointOf('node-r', 1, resetting.port));
    await publish('org.example:flaky:1.0', 'http', endpointOf('node-h', 2, healthy.port));
    for (const name of ['health', 'assets', 'api']) await publish(`org.example:${name}:1.0`, 'http', endpointOf('node-x', 1, healthy.port));

    registry = new EndpointRegistry({ kv: stores.kv });
    await registry.start();
    app = await buildServer({
      engines: { bus: 'memory', store: 'sqlite' },
      access: { keys, ratePerMinute: 0 },
      mode: 'embedded',
      health: () => ({ ready: true, body: { status: 'ok' } }),
      bus: new MessageBus(new MemoryBus()),
      clock: systemClock,
      logger,
      geozones: ['CAISO'],
      documents: stores.documents,
      metrics: new ArcMetrics(),
      version: 'test',
      consoleDir: join(scratch, 'dist'),
      routes: [(server) => registerServiceRouter(server, { registry, logger, timeoutMs: TIMEOUT_MS })],
    });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await app?.close();
    registry?.stop();
    for (const u of [...instances, ...others]) await close(u.server);
    await stores?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('spreads requests over every instance, and says on each answer which one took it', async () => {
    for (const u of instances) u.seen.length = 0;
    const servedBy: string[] = [];
    for (let i = 0; i < 9; i++) {
      const answer = await call(base, 'GET', `/echo/ping/${i}`, { headers: auth });
      expect(answer.status).toBe(200);
      const seen = answer.json<Seen>();
      servedBy.push(seen.instance);
      expect(answer.headers['x-arcnet-instance']).toBe(`node-${seen.instance.slice('echo-'.length)}/${seen.instance.slice('echo-'.length)}`);
    }
    expect(instances.map((u) => u.seen.length)).toEqual([3, 3, 3]);
    await until(() => registry.snapshot().services.find((s) => s.service === 'echo')?.endpoints.every((e) => e.inFlight === 0), 'every exchange to be released', 1_000);
    // Sequential requests tie on zero in flight: strictly in turn.
    expect(servedBy.slice(0, 3).sort()).toEqual(['echo-1', 'echo-2', 'echo-3']);
    expect(servedBy.slice(3)).toEqual([...servedBy.slice(0, 3), ...servedBy.slice(0, 3)]);
  });

  it('forwards the method, the rest of the path, the query string and the body as sent', async () => {
    const json = JSON.stringify({ hello: 'world', n: [1, 2, 3] });
    const post = await call(base, 'POST', '/echo/orders/42?x=1&y=two%20words', { headers: { ...auth, 'content-type': 'application/json' }, body: json });
    expect(post.status).toBe(200);
    expect(post.json<Seen>()).toMatchObject({ method: 'POST', url: '/orders/42?x=1&y=two%20words', body: json });
    expect(post.json<Seen>().headers['content-type']).toBe('application/json');

    // A type the server parses nothing of passes untouched, as do DELETE, PATCH and the bare prefix.
    const bytes = Buffer.from([0, 1, 2, 250, 251, 252]);
    const put = await call(base, 'PUT', '/echo/blob', { headers: { ...auth, 'content-type': 'application/x-unknown-to-arcnet' }, body: bytes });
    expect(put.json<Seen>()).toMatchObject({ method: 'PUT', url: '/blob', bodyLength: 6, bodySha256: createHash('sha256').update(bytes).digest('hex') });
    expect((await call(base, 'DELETE', '/echo/orders/42', { headers: auth })).json<Seen>()).toMatchObject({ method: 'DELETE', url: '/orders/42', bodyLength: 0 });
    expect((await call(base, 'PATCH', '/echo', { headers: { ...auth, 'content-type': 'text/plain' }, body: 'patch' })).json<Seen>()).toMatchObject({ method: 'PATCH', url: '/', body: 'patch' });
    expect((await call(base, 'GET', '/echo?only=query', { headers: auth })).json<Seen>()).toMatchObject({ url: '/?only=query' });
    // An OPTIONS of the service's own goes to it; a browser's CORS preflight is the server's (no --cors-origin here: 404).
    expect((await call(base, 'OPTIONS', '/echo/x', { headers: auth })).json<Seen>()).toMatchObject({ method: 'OPTIONS', url: '/x' });
    const preflight = await call(base, 'OPTIONS', '/echo/x', { headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(404);
    const head = await call(base, 'HEAD', '/echo/x', { headers: auth });
    expect(head.status).toBe(200);
    expect(head.headers['x-served-by']).toMatch(/^echo-/);

    // The instance's status and headers come back; its hop-by-hop ones do not.
    const created = await call(base, 'GET', '/echo/status/201', { headers: auth });
    expect(created.status).toBe(201);
    expect(created.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(created.headers['x-secret-hop']).toBeUndefined();
    const missing = await call(base, 'GET', '/echo/status/404', { headers: auth });
    expect(missing.status).toBe(404);
    expect(missing.json<Seen>().url).toBe('/status/404');
  });

  it('puts the entry point\'s path in front of the rest', async () => {
    expect((await call(base, 'GET', '/prefixed/items?page=2', { headers: auth })).json<Seen>()).toMatchObject({ instance: 'prefixed-1', url: '/v1/items?page=2' });
    expect((await call(base, 'GET', '/prefixed', { headers: auth })).json<Seen>().url).toBe('/v1');
    expect((await call(base, 'GET', '/prefixed/', { headers: auth })).json<Seen>().url).toBe('/v1/');
  });

  it('never passes ArcNet\'s key on, drops hop-by-hop headers and says who forwarded', async () => {
    const answer = await call(base, 'GET', '/echo/whoami', {
      headers: { ...auth, 'x-api-key': 'arck_should_not_travel', connection: 'keep-alive, x-hop', 'x-hop': 'hop', 'x-custom': 'kept', 'x-forwarded-for': '6.6.6.6', 'proxy-authorization': 'Basic eA==' },
    });
    const { headers } = answer.json<Seen>();
    expect(headers['authorization']).toBeUndefined();
    expect(headers['x-api-key']).toBeUndefined();
    expect(headers['proxy-authorization']).toBeUndefined();
    expect(headers['x-hop']).toBeUndefined();
    expect(headers['x-custom']).toBe('kept');
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers['x-forwarded-host']).toBe(new URL(base).host);
    expect(JSON.stringify(headers)).not.toContain(key);
  });

  it('streams a body larger than the retry buffer through intact', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    for (let i = 0; i < big.length; i += 4_093) big[i] = i % 251;
    const answer = await call(base, 'POST', '/echo/upload', { headers: { ...auth, 'content-type': 'application/octet-stream' }, body: big });
    expect(answer.status).toBe(200);
    expect(answer.json<Seen>()).toMatchObject({ bodyLength: big.length, bodySha256: createHash('sha256').update(big).digest('hex') });
    // Of unknown length, and with a method Node would not chunk by itself.
    const chunked = await call(base, 'DELETE', '/echo/bulk', { headers: { ...auth, 'content-type': 'application/octet-stream' }, body: big, chunked: true });
    expect(chunked.json<Seen>()).toMatchObject({ method: 'DELETE', bodyLength: big.length, bodySha256: createHash('sha256').update(big).digest('hex') });
    const small = await call(base, 'OPTIONS', '/echo/bulk', { headers: { ...auth, 'content-type': 'text/plain' }, body: 'small and chunked', chunked: true });
    expect(small.json<Seen>()).toMatchObject({ method: 'OPTIONS', body: 'small and chunked' });
  });

  it('needs an ArcNet key: 401 without one, and the instance never sees the request', async () => {
    const before = instances.reduce((n, u) => n + u.seen.length, 0);
    const answer = await call(base, 'GET', '/echo/secret');
    expect(answer.status).toBe(401);
    expect(answer.json()).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(answer.headers['www-authenticate']).toBe('Bearer realm="arcnet"');
    expect(instances.reduce((n, u) => n + u.seen.length, 0)).toBe(before);
  });

  it('leaves the server\'s own paths and the console as they were: static routes win, unknown services fall through', async () => {
    // A blueprint in the KV names services "health", "assets" and "api": none of them takes the server's path.
    const squatted = others[3]!;
    const before = squatted.seen.length;
    expect((await call(base, 'GET', '/health')).json()).toEqual({ status: 'ok' });
    expect((await call(base, 'GET', '/api/v1/nodes', { headers: auth })).json()).toMatchObject({ count: 0 });
    const asset = await call(base, 'GET', '/assets/app.js');
    expect(asset.status).toBe(200);
    expect(asset.text).toBe(SCRIPT);
    const apiMiss = await call(base, 'GET', '/api/v1/no-such-route', { headers: auth });
    expect(apiMiss.status).toBe(404);
    expect(apiMiss.json()).toMatchObject({ statusCode: 404, error: 'Not Found' });

    // No blueprint names "nowhere": the JSON 404 for an API client, the console's page for a browser.
    const unknown = await call(base, 'GET', '/nowhere/at/all', { headers: { ...auth, accept: 'application/json' } });
    expect(unknown.status).toBe(404);
    expect(unknown.json()).toMatchObject({ statusCode: 404, error: 'Not Found', message: 'no route GET /nowhere/at/all' });
    expect((await call(base, 'POST', '/nowhere', { headers: { ...auth, 'content-type': 'application/json' }, body: '{}' })).status).toBe(404);
    const page = await call(base, 'GET', '/nowhere', { headers: { accept: HTML } });
    expect(page.status).toBe(200);
    expect(page.text).toBe(INDEX);
    expect(squatted.seen.length).toBe(before);
  });

  it('tries the next instance when one refuses connections, sending a buffered body again', async () => {
    const dead = instances[1]!;
    await close(dead.server);
    const deadHits = dead.hits.count;
    for (const u of instances) u.seen.length = 0;
    const body = JSON.stringify({ attempt: 'again' });
    for (let i = 0; i < 9; i++) {
      const answer = await call(base, 'POST', `/echo/retry/${i}`, { headers: { ...auth, 'content-type': 'application/json' }, body });
      expect(answer.status).toBe(200);
      expect(answer.json<Seen>()).toMatchObject({ url: `/retry/${i}`, body });
      expect(answer.headers['x-arcnet-instance']).not.toBe('node-2/2');
    }
    // Refused: nothing of a large body was read yet, so it too goes to the next instance whole.
    const big = Buffer.alloc(3 * 1024 * 1024, 3);
    for (let i = 0; i < 3; i++) {
      const answer = await call(base, 'POST', '/echo/big', { headers: { ...auth, 'content-type': 'application/octet-stream' }, body: big });
      expect(answer.status).toBe(200);
      expect(answer.json<Seen>().bodyLength).toBe(big.length);
    }
    expect(dead.hits.count).toBe(deadHits);
    expect(instances[0]!.seen.length + instances[2]!.seen.length).toBe(12);
  });

  it('tries the next instance when one resets the connection before answering', async () => {
    const [resetting, healthy] = [others[2]!, others[3]!];
    const before = healthy.seen.length;
    for (let i = 0; i < 4; i++) {
      const answer = await call(base, 'PUT', `/flaky/${i}`, { headers: { ...auth, 'content-type': 'text/plain' }, body: `payload ${i}` });
      expect(answer.status).toBe(200);
      expect(answer.json<Seen>()).toMatchObject({ instance: 'flaky-2', body: `payload ${i}` });
    }
    expect(healthy.seen.length - before).toBe(4);
    // In turn, half of them went to the resetting instance first.
    expect(resetting.hits.count).toBe(2);
  });

  it('does not send a body too large to hold to a second instance once part of it went to the first', async () => {
    const [resetting, healthy] = [others[2]!, others[3]!];
    const [hitsBefore, seenBefore] = [resetting.hits.count, healthy.seen.length];
    const big = Buffer.alloc(2 * 1024 * 1024, 1);
    const statuses: number[] = [];
    const messages: string[] = [];
    // Two in a row: one of them meets the resetting instance first, the other the healthy one.
    for (let i = 0; i < 2; i++) {
      const answer = await call(base, 'POST', '/flaky/upload', { headers: { ...auth, 'content-type': 'application/octet-stream' }, body: big });
      statuses.push(answer.status);
      if (answer.status !== 200) messages.push(answer.json<{ message: string }>().message);
    }
    expect(statuses.sort()).toEqual([200, 502]);
    expect(messages[0]).toMatch(/^service "flaky" \(org\.example:flaky:1\.0\): node-r\/1 at 127\.0\.0\.1:\d+: .*after part of a body too large to hold for a retry had been sent$/);
    expect(resetting.hits.count - hitsBefore).toBe(1);
    expect(healthy.seen.length - seenBefore).toBe(1);
  });

  it('answers 504 when the instance takes longer than the timeout', async () => {
    const began = Date.now();
    const answer = await call(base, 'GET', '/slow/report', { headers: auth });
    expect(answer.status).toBe(504);
    expect(answer.json()).toMatchObject({ code: 'TIMEOUT', message: `service "slow" (org.example:slow:1.0): node-s/1 at 127.0.0.1:${others[1]!.port} did not answer within ${TIMEOUT_MS} ms` });
    expect(Date.now() - began).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(others[1]!.seen.map((s) => s.url)).toEqual(['/report']);
  });

  it('lets go of the instance when the caller leaves before it answers', async () => {
    const slow = others[1]!;
    const [hits, abandoned] = [slow.hits.count, slow.abandoned.count];
    const began = Date.now();
    const controller = new AbortController();
    const pending = fetch(`${base}/slow/leaving`, { headers: auth, signal: controller.signal });
    await until(() => slow.hits.count > hits, 'the request to reach the instance', 1_000);
    controller.abort();
    await expect(pending).rejects.toThrow();
    await until(() => slow.abandoned.count > abandoned, 'the instance to see the request abandoned', 1_000);
    // Before the router's own timeout would have cut it: the caller leaving did.
    expect(Date.now() - began).toBeLessThan(TIMEOUT_MS);
    await until(() => registry.snapshot().services.find((s) => s.service === 'slow')?.endpoints.every((e) => e.inFlight === 0), 'the in-flight count to drop', 1_000);
  });

  it('answers 503 with the reason when no instance is ACTIVE, or none of them can be reached', async () => {
    const none = await call(base, 'GET', '/ghost/x', { headers: auth });
    expect(none.status).toBe(503);
    expect(none.headers['retry-after']).toBe('1');
    expect(none.json()).toMatchObject({
      code: 'UNAVAILABLE',
      retryable: true,
      message: 'no ACTIVE instance of service "ghost" (org.example:ghost:1.0): no instance has published an ACTIVE endpoint "http" (instances may still be starting, or none is placed)',
    });

    for (const u of instances) await close(u.server);
    const down = await call(base, 'POST', '/echo/x', { headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
    expect(down.status).toBe(503);
    expect(down.headers['retry-after']).toBe('1');
    const { message } = down.json<{ message: string }>();
    expect(message).toMatch(/^no ACTIVE instance of service "echo" \(org\.example:echo:1\.0\.0\): all 3 instances tried failed: /);
    for (const [i, u] of instances.entries()) expect(message).toContain(`node-${i + 1}/${i + 1} at 127.0.0.1:${u.port}: connection refused (ECONNREFUSED)`);
  });

  it('follows the registry: a newly published instance takes requests at once, an unpublished one none', async () => {
    const fresh = await upstream('gone-1');
    others.push(fresh);
    await publish('org.example:gone:1.0', 'http', endpointOf('node-g', 1, fresh.port));
    await until(async () => (await call(base, 'GET', '/gone/now', { headers: auth })).status === 200, 'the new instance to be routed to', 1_000);
    await stores.kv.delete(endpointKey('org.example:gone:1.0', 'http', 1));
    await until(async () => (await call(base, 'GET', '/gone/now', { headers: auth })).status === 503, 'the instance to be dropped', 1_000);
    await stores.kv.delete(blueprintKey('shop'));
    await until(async () => (await call(base, 'GET', '/gone/now', { headers: auth })).status === 404, 'the service to be unknown', 1_000);
  });

  it('logged nothing at error level through all of the above', () => {
    expect(logged.filter((line) => line.level >= 50)).toEqual([]);
  });
});

/**
 * The server's router for services (issue 14, seed 003): `/{service}/…`, any method, is forwarded to
 * an ACTIVE instance of the service a blueprint names (`src/services/endpoint-registry.ts`).
 *
 * - The rest of the path after `/{service}` (under the entry point's `path` when it is not `/`) and the
 *   query string go to the instance as they came; request and response bodies are streamed. Hop-by-hop
 *   headers are dropped both ways; `x-forwarded-for/-proto/-host` are set; ArcNet's own credential
 *   (`authorization`, `x-api-key`) is never passed on, so a service cannot replay a caller's key
 *   against ArcNet. The answer carries `x-arcnet-instance: {node}/{instance}`.
 * - An instance that cannot be reached (refused, reset before any answer byte, connect timeout) is
 *   left for another one, each tried at most once. A body is buffered up to `maxReplayBytes` (1 MiB)
 *   so it can be sent again; a larger one is streamed, and is sent to a second instance only when the
 *   first could not even be connected to (nothing of it was read yet).
 * - No ACTIVE instance: 503 with the reason and `Retry-After`; no answer within `timeoutMs`: 504; an
 *   instance that broke the exchange when it could not be retried: 502.
 * - Not forwarded: WebSocket upgrades (`@fastify/websocket` accepts and closes them on a plain route).
 *
 * Routing: the routes are `/:service` and `/:service/*` with a route constraint that matches only a
 * service the registry knows. find-my-way tries static paths first and backtracks past a parametric
 * route whose constraint fails, so the server's own paths (`/health`, `/api/…`) always win and an
 * unknown first segment reaches the console's `/*` exactly as before: its files (`/assets/…`), its
 * SPA fallback for a browser, and the JSON 404 for everything else. A CORS preflight is never
 * routed here: the server's CORS policy answers it (`installCors`), as for any other path.
 */
import { Agent, request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { ArcError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { ACCESS } from '../access/policy.ts';
import type { EndpointRegistry, ServiceEndpoint, ServiceRoute } from '../services/endpoint-registry.ts';
import { sendApiError } from './errors.ts';

export interface ServiceRouterOptions {
  /** What the router reads of the registry: whether a service exists, and an instance per request. */
  readonly registry: Pick<EndpointRegistry, 'knows' | 'resolve' | 'pick'>;
  readonly logger: Logger;
  /** No byte to or from a connected instance for this long: 504 before its answer, the stream cut after (default 30 s). */
  readonly timeoutMs?: number;
  /** A connection not established within this is a failed instance, and the next one is tried (default 2 s). */
  readonly connectTimeoutMs?: number;
  /** Bodies up to this size are held so a retry can send them again (default 1 MiB). */
  readonly maxReplayBytes?: number;
}

const CONSTRAINT = 'arcnetService';
const KNOWN = 'known';
const METHODS: HTTPMethods[] = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'];
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
/** Never sent to a service: ArcNet's credential, and what the router itself sets or the body handling replaces. */
const NOT_FORWARDED = new Set(['host', 'authorization', 'x-api-key', 'expect', 'content-length', 'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);
/** Errors after the connection stood but before any answer byte: the next instance may take it when the body can be sent again. */
const EXCHANGE_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** `/echo/a/b?x=1` → `{ service: 'echo', rest: '/a/b?x=1' }`; undefined for a URL that is not origin-form. */
export function splitServiceUrl(url: string): { service: string; rest: string } | undefined {
  if (url.charCodeAt(0) !== 47 /* / */) return undefined;
  let end = 1;
  while (end < url.length && url[end] !== '/' && url[end] !== '?') end++;
  if (end === 1) return undefined;
  return { service: url.slice(1, end), rest: url.slice(end) };
}

/** The path an instance is asked for: the entry point's prefix, then the rest of the caller's. */
export function upstreamPath(prefix: string, rest: string): string {
  const base = prefix === '/' ? '' : prefix.replace(/\/+$/, '');
  if (rest === '' || rest.startsWith('?')) return `${base === '' ? '/' : base}${rest}`;
  return `${base}${rest}`;
}

type Body =
  | { readonly kind: 'none' }
  | { readonly kind: 'buffered'; readonly data: Buffer }
  /** Too large to hold: `prefix` was read already, `source` not yet; `consumed` once piping began. */
  | { readonly kind: 'stream'; readonly prefix: readonly Buffer[]; readonly source: Readable; readonly length: string | undefined; consumed: boolean };

type Attempt =
  | { readonly kind: 'response'; readonly response: IncomingMessage; readonly upstream: ClientRequest }
  /** `connected`: the connection stood before it failed. */
  | { readonly kind: 'failed'; readonly error: NodeJS.ErrnoException; readonly connected: boolean; readonly reused: boolean }
  | { readonly kind: 'timeout' };

class ConnectTimeout extends Error {
  readonly code = 'ETIMEDOUT';
}

/** Registers `/{service}/…` on `app`; call before the server starts (it adds a route constraint). */
export function registerServiceRouter(app: FastifyInstance, options: ServiceRouterOptions): void {
  const { registry, logger } = options;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
  const maxReplayBytes = options.maxReplayBytes ?? 1 << 20;
  // Idle sockets are dropped before Node's default server keep-alive (5 s) would close them under us.
  const agent = new Agent({ keepAlive: true, timeout: 4_000 });

  app.addConstraintStrategy({
    name: CONSTRAINT,
    storage() {
      const handlers = new Map<string, unknown>();
      return { get: (value: string) => (handlers.get(value) ?? null) as never, set: (value: string, handler: unknown) => void handlers.set(value, handler) };
    },
    // Runs while the route is matched, for every request: one scan of the first segment and a map lookup.
    deriveConstraint(req) {
      const split = splitServiceUrl(req.url ?? '');
      if (split === undefined || isPreflight(req.method, req.headers)) return undefined as unknown as string;
      return (registry.knows(split.service) ? KNOWN : undefined) as unknown as string;
    },
  });

  const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const split = splitServiceUrl(request.url);
    // Known when matched; a blueprint deleted since (the access check awaits) makes it unknown again.
    if (split === undefined || !registry.knows(split.service)) return notFound(reply);
    const resolution = registry.resolve(split.service);
    if (!resolution.found) {
      if (!resolution.known) return notFound(reply);
      return sendApiError(request, reply, unavailable(split.service, resolution.route, resolution.missing));
    }
    return forward(request, reply, split.service, split.rest);
  };

  const forward = async (request: FastifyRequest, reply: FastifyReply, service: string, rest: string): Promise<FastifyReply> => {
    let body: Body;
    try {
      body = await readBody(request, maxReplayBytes);
    } catch (error) {
      // The caller broke its own upload (or left): no instance is bothered with half a request.
      request.log.debug({ err: error }, 'service router: the request body could not be read');
      return reply.status(400).send({ statusCode: 400, error: 'Bad Request', code: 'INVALID_INPUT', message: `the request body could not be read: ${errorMessage(error)}`, retryable: false });
    }
    let current: ClientRequest | undefined;
    let clientGone = false;
    reply.raw.once('close', () => {
      if (reply.raw.writableFinished) return;
      clientGone = true;
      current?.destroy();
    });
    const track = (upstream: ClientRequest): void => {
      current = upstream;
    };
    const tried = new Set<string>();
    const failures: string[] = [];
    for (;;) {
      const picked = registry.pick(service, tried);
      if (!picked.found) {
        if (!picked.known) return notFound(reply);
        const why = failures.length === 0 ? picked.missing : `${failures.length === 1 ? 'the one instance tried' : `all ${failures.length} instances tried`} failed: ${failures.join('; ')}`;
        return sendApiError(request, reply, unavailable(service, picked.route, why));
      }
      const { route, endpoint } = picked;
      tried.add(endpoint.key);
      const path = upstreamPath(endpoint.path, rest);
      let outcome = await attempt(request, endpoint, path, body, false, track);
      if (outcome.kind === 'failed' && outcome.reused && retryable(outcome, body) && !clientGone) {
        // A kept-alive connection the instance had closed in the meantime says nothing about the instance: once more, on a new one.
        outcome = await attempt(request, endpoint, path, body, true, track);
      }
      if (outcome.kind === 'response') {
        // At the end of the answer, so the next request sees this instance free; on close, for one cut short.
        outcome.response.once('end', picked.release);
        outcome.response.once('close', picked.release);
        outcome.upstream.once('close', picked.release);
        return reply.status(outcome.response.statusCode ?? 502).headers(responseHeaders(outcome.response.headers, endpoint)).send(outcome.response);
      }
      picked.release();
      const label = `${instanceLabel(endpoint)} at ${endpoint.address}`;
      if (outcome.kind === 'timeout') {
        logger.debug({ service, instance: instanceLabel(endpoint), timeoutMs }, 'service router: the instance did not answer in time');
        // Not retried: the instance may be working on it, and a second one would do the work twice.
        return sendApiError(request, reply, new ArcError('TIMEOUT', `service "${service}" (${route.artifact}): ${label} did not answer within ${timeoutMs} ms`, { retryable: false }));
      }
      const again = retryable(outcome, body);
      logger.debug({ service, instance: instanceLabel(endpoint), err: outcome.error, connected: outcome.connected, retryable: again }, 'service router: an instance failed');
      failures.push(`${label}: ${describe(outcome.error, outcome.connected)}`);
      if (clientGone) return sendApiError(request, reply, unavailable(service, route, `the caller left; ${failures.join('; ')}`));
      if (!again) {
        const unsent = body.kind === 'stream' && body.consumed ? ', after part of a body too large to hold for a retry had been sent' : '';
        // 502, not 503: an instance was reached and broke the exchange; trying it again is the caller's call.
        return reply.status(502).send({ statusCode: 502, error: 'Bad Gateway', code: 'UNAVAILABLE', message: `service "${service}" (${route.artifact}): ${failures.at(-1)}${unsent}`, retryable: false });
      }
    }
  };

  const attempt = (request: FastifyRequest, endpoint: ServiceEndpoint, path: string, body: Body, fresh: boolean, onStart: (upstream: ClientRequest) => void): Promise<Attempt> =>
    new Promise((resolve) => {
      const { host, port } = splitAddress(endpoint.address);
      const headers = requestHeaders(request, body);
      const upstream = httpRequest({ host, port, method: request.method, path, headers, agent: fresh ? false : agent });
      onStart(upstream);
      let connected = false;
      let timedOut = false;
      let connectTimer: NodeJS.Timeout | undefined;
      let settled = false;
      const settle = (outcome: Attempt): void => {
        if (settled) return;
        settled = true;
        clearTimeout(connectTimer);
        resolve(outcome);
      };
      const onConnected = (): void => {
        connected = true;
        if (body.kind === 'stream') {
          body.consumed = true;
          body.source.pipe(upstream);
        }
      };
      upstream.once('socket', (socket) => {
        if (!socket.connecting) return onConnected();
        connectTimer = setTimeout(() => upstream.destroy(new ConnectTimeout(`no connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
        socket.once('connect', () => {
          clearTimeout(connectTimer);
          onConnected();
        });
      });
      // Idle time on the socket: writes of a long upload and bytes of a slow answer both keep it alive.
      upstream.setTimeout(timeoutMs, () => {
        if (!connected) return;
        timedOut = true;
        upstream.destroy(new Error(`no byte from the instance within ${timeoutMs} ms`));
      });
      upstream.once('response', (response) => settle({ kind: 'response', response, upstream }));
      upstream.on('error', (error: NodeJS.ErrnoException) => settle(timedOut ? { kind: 'timeout' } : { kind: 'failed', error, connected, reused: upstream.reusedSocket }));
      // Destroyed without an error (the caller left): the attempt still ends, so the handler does.
      upstream.once('close', () => settle({ kind: 'failed', error: Object.assign(new Error('the request to the instance was closed'), { code: 'ECONNABORTED' }), connected, reused: upstream.reusedSocket }));
      if (body.kind === 'none') upstream.end();
      else if (body.kind === 'buffered') upstream.end(body.data);
      else for (const chunk of body.prefix) upstream.write(chunk);
    });

  void app.register(async (scope) => {
    // In a scope of their own, so that this parser applies to these routes only: every body reaches the
    // handler unread, whatever its type, for the instance (not ArcNet) to parse.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.addHook('onClose', async () => agent.destroy());
    for (const url of ['/:service', '/:service/*']) {
      scope.route({
        method: METHODS,
        url,
        constraints: { [CONSTRAINT]: KNOWN },
        // A service is not public: the caller needs an ArcNet key of an operator-side role (any of them);
        // the service authorises on its own terms past that. The key is stripped before the request leaves.
        config: { access: ACCESS.viewer },
        // Bodies pass as the instance sent them: no compression on top, no decompression of the caller's.
        compress: false,
        decompress: false,
        handler,
      });
    }
  });
}

/** The server's own not-found answer, as for a path no route takes. */
function notFound(reply: FastifyReply): FastifyReply {
  reply.callNotFound();
  return reply;
}

/**
 * Whether another instance may take the request after this failure: always when no connection stood
 * (nothing reached the instance); after a reset before any answer byte, when the body can be sent again.
 */
function retryable(outcome: Extract<Attempt, { kind: 'failed' }>, body: Body): boolean {
  if (!outcome.connected) return true;
  const reset = EXCHANGE_ERRORS.has(outcome.error.code ?? '') || outcome.error.message === 'socket hang up';
  return reset && (body.kind !== 'stream' || !body.consumed);
}

function isPreflight(method: string | undefined, headers: IncomingHttpHeaders): boolean {
  return method === 'OPTIONS' && headers.origin !== undefined && headers['access-control-request-method'] !== undefined;
}

function unavailable(service: string, route: ServiceRoute | undefined, why: string): ArcError {
  return new ArcError('UNAVAILABLE', `no ACTIVE instance of service "${service}"${route ? ` (${route.artifact})` : ''}: ${why}`, { retryable: true });
}

function instanceLabel(endpoint: ServiceEndpoint): string {
  return `${endpoint.nodeId}/${endpoint.instance}`;
}

function describe(error: NodeJS.ErrnoException, connected: boolean): string {
  const code = error.code;
  if (code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED)';
  if (error instanceof ConnectTimeout) return `connect timeout: ${error.message}`;
  if (code === 'ECONNRESET' || error.message === 'socket hang up') return `connection reset before any answer (${code ?? error.message})`;
  return `${connected ? '' : 'cannot connect: '}${error.message}${code && !error.message.includes(code) ? ` (${code})` : ''}`;
}

function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon);
  return { host: host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, port: Number(address.slice(colon + 1)) };
}

/** Header names a `Connection` header lists are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  return new Set((value ?? '').split(',').map((token) => token.trim().toLowerCase()).filter((token) => token !== ''));
}

function requestHeaders(request: FastifyRequest, body: Body): OutgoingHttpHeaders {
  const incoming = request.headers;
  const listed = connectionTokens(incoming);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || HOP_BY_HOP.has(name) || NOT_FORWARDED.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  // This server trusts no forwarding headers it receives (no trustProxy), so it passes on only what it saw itself.
  out['x-forwarded-for'] = request.ip;
  out['x-forwarded-proto'] = request.protocol;
  if (incoming.host !== undefined) out['x-forwarded-host'] = incoming.host;
  if (body.kind === 'buffered') out['content-length'] = String(body.data.length);
  else if (body.kind === 'stream' && body.length !== undefined) out['content-length'] = body.length;
  // Node chunks a body of unknown length by default only for some methods (not DELETE, OPTIONS, GET): say it for all.
  else if (body.kind === 'stream') out['transfer-encoding'] = 'chunked';
  return out;
}

function responseHeaders(incoming: IncomingHttpHeaders, endpoint: ServiceEndpoint): Record<string, string | string[]> {
  const listed = connectionTokens(incoming);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  out['x-arcnet-instance'] = instanceLabel(endpoint);
  return out;
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
}

/**
 * The body, read into memory when it fits the replay buffer; otherwise what was read so far and the
 * rest of the stream, untouched until an instance is connected.
 */
async function readBody(request: FastifyRequest, limit: number): Promise<Body> {
  const source = request.body instanceof Readable ? request.body : hasBody(request.headers) ? request.raw : undefined;
  if (source === undefined) return { kind: 'none' };
  const declared = request.headers['content-length'];
  const length = declared === undefined ? undefined : declared;
  if (length !== undefined && Number(length) > limit) return { kind: 'stream', prefix: [], source, length, consumed: false };
  const { chunks, ended } = await readPrefix(source, limit);
  if (ended) return { kind: 'buffered', data: Buffer.concat(chunks) };
  return { kind: 'stream', prefix: chunks, source, length, consumed: false };
}

function readPrefix(source: Readable, limit: number): Promise<{ chunks: Buffer[]; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    if (source.readableEnded) return resolve({ chunks, ended: true });
    let total = 0;
    const cleanup = (): void => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      source.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      total += chunk.length;
      if (total <= limit) return;
      source.pause();
      cleanup();
      resolve({ chunks, ended: false });
    };
    const onEnd = (): void => {
      cleanup();
      resolve({ chunks, ended: true });
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('the client closed the connection before the body ended'));
    };
    source.on('data', onData);
    source.once('end', onEnd);
    source.once('error', onError);
    source.once('close', onClose);
  });
}

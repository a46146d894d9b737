/**
 * Client certificates (mTLS, issue 11 "Transport"). A server started with `--tls-ca` asks every
 * client for a certificate and verifies it against that CA (`serverTlsOptions` in src/core/tls.ts);
 * the handshake still completes without one, so the CLI and a browser can come with an API key alone.
 * The routes only nodes call (an agent's session, a worker's calls and stream) then need a verified
 * certificate, refused with 401 in the first `onRequest` hook, before authentication, body parsing
 * or a WebSocket upgrade.
 *
 * `clientCertificateOf` is how the rest of the server reads who the certificate names (its subject's
 * CN: a node name, or a role such as `scheduler`), so the access layer can bind a node by certificate.
 */
import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AGENT_PATH } from '../agent/protocol.ts';
import { WORKER_STREAM_PATH } from '../jobs/protocol.ts';

export interface ClientCertificate {
  /** The subject's common name (CN): a node name, or a role such as `scheduler`; '' when it has none. */
  readonly subject: string;
  /** SHA-256 fingerprint of the certificate, colon-separated hex (`AB:CD:…`), as `openssl x509 -fingerprint -sha256` prints it. */
  readonly fingerprint: string;
}

const bySocket = new WeakMap<TLSSocket, ClientCertificate>();

/**
 * The verified client certificate of a request's connection; undefined over plain HTTP, without a
 * certificate, or with one the server's CA did not verify.
 */
export function clientCertificateOf(request: FastifyRequest | IncomingMessage): ClientCertificate | undefined {
  const socket = ('raw' in request ? request.raw : request).socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const known = bySocket.get(socket);
  if (known) return known;
  const peer = socket.getPeerCertificate();
  if (!peer || !peer.fingerprint256) return undefined;
  const cn = (peer.subject as Record<string, string | string[] | undefined> | undefined)?.['CN'];
  const certificate = { subject: (Array.isArray(cn) ? cn[0] : cn) ?? '', fingerprint: peer.fingerprint256 };
  // One connection carries one certificate: keep-alive requests and the socket's WebSocket reuse it.
  bySocket.set(socket, certificate);
  return certificate;
}

/** Why a request's connection has no verified certificate, for the refusal. */
function missingWhy(request: FastifyRequest): string {
  const socket = request.raw.socket;
  if (!(socket instanceof TLSSocket)) return 'the connection is not TLS';
  const peer = socket.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) return 'none was presented';
  return `the one presented was not accepted (${String(socket.authorizationError ?? 'not verified')})`;
}

/**
 * Routes only nodes call, by method and route pattern: with `--tls-ca` each needs a verified client
 * certificate. `test/integration/tls.test.ts` checks every one is a route the server really has, so a
 * rename cannot silently open it; anything under `/api/v1/worker/` is a worker's too.
 */
export const NODE_ROUTES: readonly { readonly method: 'GET' | 'POST'; readonly url: string }[] = [
  { method: 'GET', url: AGENT_PATH },
  { method: 'POST', url: '/api/v1/nodes/register' },
  { method: 'POST', url: '/api/v1/nodes/:id/heartbeat' },
  { method: 'GET', url: '/api/v1/nodes/:id/pending-jobs' },
  { method: 'POST', url: '/api/v1/worker/result' },
  { method: 'GET', url: WORKER_STREAM_PATH },
];

const NODE_ROUTE_KEYS = new Set(NODE_ROUTES.map((r) => `${r.method} ${r.url}`));

/** Whether a matched route (its method and pattern, not the URL asked for) is a node's. */
export function requiresClientCertificate(method: string, routeUrl: string | undefined): boolean {
  if (routeUrl === undefined) return false;
  const verb = method === 'HEAD' ? 'GET' : method;
  return NODE_ROUTE_KEYS.has(`${verb} ${routeUrl}`) || routeUrl.startsWith('/api/v1/worker/');
}

/**
 * Refuses a node route's request without a verified client certificate: 401, or for a WebSocket a
 * refused upgrade with the same status. Install it first, so it runs before every other hook.
 */
export function requireClientCertificates(app: FastifyInstance): void {
  app.addHook('onRequest', async (request, reply) => {
    if (!requiresClientCertificate(request.method, request.routeOptions.url)) return;
    if (clientCertificateOf(request) !== undefined) return;
    const route = `${request.method} ${request.routeOptions.url ?? request.url}`;
    // Nothing more is read from a caller that failed here: the connection goes once this is sent.
    void reply.header('connection', 'close');
    return reply.status(401).send({
      statusCode: 401,
      error: 'Unauthorized',
      code: 'UNAUTHENTICATED',
      message: `${route} needs a client certificate signed by this server's CA (--tls-ca): ${missingWhy(request)}`,
      retryable: false,
    });
  });
}

/**
 * The small HTTP port of a role process that has no API of its own (aggregator, scheduler): what an
 * orchestrator probes and a Prometheus server scrapes. It answers `/health` and `/ready` exactly as the
 * API server does, from the process's one report (`System.report()`).
 *
 * - GET /health: 200 while the process runs, with what it is doing (liveness, and for people).
 * - GET /ready: 200 once every module has started and can do its work, 503 with the reason before.
 * - GET /metrics: the role's Prometheus metrics.
 *
 * With `tls` it serves HTTPS only (TLS 1.3); with `tls.ca` as well, `/metrics` needs a client
 * certificate that CA verified (the scraper is a component of the mesh), while `/health` and `/ready`
 * stay open to probes, which carry none. With `keys`, `/metrics` otherwise needs an API key of a
 * reading role (`Authorization: Bearer …`, as Prometheus sends with `authorization.credentials`).
 */
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import type { HealthReport } from '../api/server.ts';
import { serverTlsOptions, type ServerTls } from '../core/tls.ts';
import { clientCertificateOf } from '../access/client-certificate.ts';
import type { KeyRing } from '../access/api-keys.ts';
import type { Role } from '../access/principal.ts';

export interface RoleHttpOptions {
  readonly host: string;
  readonly port: number;
  /** Named in the answer to an unknown path. */
  readonly role: string;
  readonly report: () => HealthReport;
  readonly metrics: Registry;
  readonly logger: Logger;
  readonly tls?: ServerTls;
  /** Verifies the key a scraper presents for `/metrics` (the key ring on the role's store). */
  readonly keys?: Pick<KeyRing, 'authenticate'>;
}

const READERS: readonly Role[] = ['viewer', 'developer', 'operator'];

export interface RoleHttp {
  readonly url: string;
  close(): Promise<void>;
}

export async function startRoleHttp(options: RoleHttpOptions): Promise<RoleHttp> {
  const json = (response: ServerResponse, status: number, body: unknown): void => {
    response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
    response.end(JSON.stringify(body));
  };
  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('allow', 'GET, HEAD');
      json(response, 405, { error: `${request.method} ${path}: only GET is served here` });
      return;
    }
    if (path === '/metrics') {
      const certified = clientCertificateOf(request) !== undefined;
      if (options.tls?.ca !== undefined && !certified) {
        json(response, 401, { error: `${path} needs a client certificate signed by this ${options.role}'s CA (--tls-ca)` });
        return;
      }
      if (options.keys && !certified) {
        const bearer = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
        const principal = bearer === undefined ? undefined : await options.keys.authenticate(bearer);
        if (!principal) {
          response.setHeader('www-authenticate', 'Bearer realm="arcnet"');
          json(response, 401, { error: `${path} needs an API key with role ${READERS.join(' or ')}: send "Authorization: Bearer <key>"` });
          return;
        }
        if (!READERS.includes(principal.role)) {
          json(response, 403, { error: `${path} needs an API key with role ${READERS.join(' or ')}; key ${principal.keyId} (role ${principal.role}) may not` });
          return;
        }
      }
      const text = await options.metrics.metrics();
      response.writeHead(200, { 'content-type': options.metrics.contentType });
      response.end(text);
      return;
    }
    if (path === '/health' || path === '/ready') {
      const report = options.report();
      json(response, path === '/ready' && !report.ready ? 503 : 200, report.body);
      return;
    }
    json(response, 404, { error: `no such path ${path}; this ${options.role} serves /health, /ready and /metrics` });
  };
  const listener: RequestListener = (request, response) => {
    handle(request, response).catch((error: unknown) => {
      options.logger.error({ err: errorMessage(error), url: request.url }, 'role HTTP request failed');
      if (!response.headersSent) json(response, 500, { error: errorMessage(error) });
      else response.destroy();
    });
  };
  const server = options.tls ? createHttpsServer(serverTlsOptions(options.tls), listener) : createServer(listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: httpUrl(options.host, port, options.tls !== undefined),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** `http://host:port` (`https://` when `secure`), with an IPv6 host in brackets. */
export function httpUrl(host: string, port: number, secure = false): string {
  return `${secure ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

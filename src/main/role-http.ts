/**
 * The small HTTP port of a role process that has no API of its own (aggregator, scheduler): what an
 * orchestrator probes and a Prometheus server scrapes.
 *
 * - GET /health: 200 while the process runs, with what it is doing (liveness, and for people).
 * - GET /ready: 200 once the role has started and can do its work, 503 with the reason before.
 * - GET /metrics: the role's Prometheus metrics.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { VERSION } from './version.ts';

/** What a role reports of itself; `ready` false comes with the reason in `notReady`. */
export interface RoleHealth {
  readonly ready: boolean;
  readonly notReady?: string;
  readonly details: Readonly<Record<string, unknown>>;
}

export interface RoleHttpOptions {
  readonly host: string;
  readonly port: number;
  readonly role: string;
  readonly instanceId: string;
  readonly health: () => RoleHealth;
  readonly metrics: Registry;
  readonly logger: Logger;
}

export interface RoleHttp {
  readonly url: string;
  close(): Promise<void>;
}

export async function startRoleHttp(options: RoleHttpOptions): Promise<RoleHttp> {
  const startedAt = Date.now();
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
      const text = await options.metrics.metrics();
      response.writeHead(200, { 'content-type': options.metrics.contentType });
      response.end(text);
      return;
    }
    if (path === '/health' || path === '/ready') {
      const health = options.health();
      const body = {
        status: health.ready ? 'ok' : 'starting',
        role: options.role,
        instanceId: options.instanceId,
        version: VERSION,
        uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
        ...(health.notReady ? { notReady: health.notReady } : {}),
        ...health.details,
      };
      json(response, path === '/ready' && !health.ready ? 503 : 200, body);
      return;
    }
    json(response, 404, { error: `no such path ${path}; this ${options.role} serves /health, /ready and /metrics` });
  };
  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      options.logger.error({ err: errorMessage(error), url: request.url }, 'role HTTP request failed');
      if (!response.headersSent) json(response, 500, { error: errorMessage(error) });
      else response.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

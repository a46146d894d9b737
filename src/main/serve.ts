/**
 * A process's HTTP edge, registered with its `System` so it closes before any module stops: the API
 * server (what the modules contribute, plus `/health`, `/ready`, `/stats`, `/metrics` and the node
 * list) or, for a role without an API, the small health-and-metrics port of `role-http.ts`.
 */
import type { FastifyInstance } from 'fastify';
import type { ArcMetrics } from '../api/metrics.ts';
import type { ServerTls } from '../core/tls.ts';
import { buildServer } from '../api/server.ts';
import { modeOf, type Engines } from './engines.ts';
import { httpUrl, startRoleHttp, type RoleHttp } from './role-http.ts';
import type { System } from './system.ts';
import type { KeyRing } from '../access/api-keys.ts';
import { VERSION } from './version.ts';

export interface ApiOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly geozones: readonly string[];
  readonly metrics: ArcMetrics;
  readonly decisionTimeoutMs?: number;
  readonly maxAwaitingDecisions?: number;
  /** HTTPS and WSS only (`--tls-cert`/`--tls-key`); with `ca`, mTLS for the routes nodes call. */
  readonly tls?: ServerTls;
  /** `--cors-origin`: pages elsewhere that may call this API; none by default. */
  readonly corsOrigins?: readonly string[];
  /** The built console (default `<repo>/web/dist`). */
  readonly consoleDir?: string;
}

export interface Api {
  readonly server: FastifyInstance;
  readonly url: string;
  close(): Promise<void>;
}

/** Builds the API from the modules started so far and listens. */
export function serveApi(system: System, engines: Engines, options: ApiOptions): Promise<Api> {
  return system.serve(async () => {
    const contributions = system.api();
    if (contributions.access === undefined) throw new Error(`the ${system.role} process serves an API without the access module: start it first (src/main/modules/access.ts)`);
    const server = await buildServer({
      ...contributions,
      access: contributions.access,
      engines: engines.kinds,
      mode: modeOf(engines.kinds),
      health: () => system.report(),
      bus: engines.bus,
      clock: engines.clock,
      logger: engines.logger,
      geozones: options.geozones,
      documents: engines.stores.documents,
      metrics: options.metrics,
      ...(options.decisionTimeoutMs === undefined ? {} : { decisionTimeoutMs: options.decisionTimeoutMs }),
      ...(options.maxAwaitingDecisions === undefined ? {} : { maxAwaitingDecisions: options.maxAwaitingDecisions }),
      version: VERSION,
      ...(options.tls ? { tls: options.tls } : {}),
      ...(options.corsOrigins ? { corsOrigins: options.corsOrigins } : {}),
      ...(options.consoleDir === undefined ? {} : { consoleDir: options.consoleDir }),
    });
    try {
      await server.listen({ host: options.host, port: options.port });
    } catch (error) {
      await server.close();
      throw error;
    }
    const address = server.server.address();
    const url = httpUrl(options.host, typeof address === 'object' && address ? address.port : options.port, options.tls !== undefined);
    return { server, url, close: () => server.close() };
  });
}

export interface HealthPortOptions {
  readonly host: string;
  readonly port: number;
  readonly metrics: ArcMetrics;
  readonly tls?: ServerTls;
  /** `/metrics` then needs a reading key (or, under `tls.ca`, a client certificate). */
  readonly keys?: Pick<KeyRing, 'authenticate'>;
}

/** `/health`, `/ready` and `/metrics` for an aggregator or a scheduler process. */
export function serveHealthPort(system: System, options: HealthPortOptions): Promise<RoleHttp> {
  return system.serve(() =>
    startRoleHttp({ host: options.host, port: options.port, role: system.role, report: () => system.report(), metrics: options.metrics.registry, logger: system.engines.logger, ...(options.tls ? { tls: options.tls } : {}), ...(options.keys ? { keys: options.keys } : {}) }),
  );
}

/**
 * Composition roots of the role processes (seed 000 "Running Components"): each opens its engines,
 * starts its one module (two for the server: its node view and the inference parts), and serves its
 * HTTP port. Any number of replicas of each may run.
 *
 * - aggregator: per geozone, every replica keeps the zone's whole registry; the lease holder of
 *   `aggregator/<zone>` writes node documents (fenced), status events and summaries.
 * - scheduler: replicas of the same geozones share the requests through one consumer group; the
 *   routing step is exactly-once (dispatches and the consumed offset commit in one transaction) and
 *   reservations are PostgreSQL leases.
 * - server: API, console feed, agent sessions, metrics; each replica delivers the dispatches of the
 *   agents connected to it.
 * - coordinator: the verified-jobs coordinator and its API, on the embedded engines or PostgreSQL.
 * - simulate: simulated nodes publishing telemetry and running their dispatches, plus request load.
 * - central: the central orchestrator and its API (global view, history, alerts); every replica
 *   consumes every summary, the holder of the lease `central` writes the history and the alerts.
 * - bridge: the training bridge; replicas share submissions through one consumer group and own each
 *   HPC job through its lease `bridge/job/<id>` (fenced writes), so no two transfer or submit one job.
 * - services: the services cluster deployment manager over a node view fed by telemetry; the holder
 *   of the lease `services` plans and places (fenced writes), the other replicas stand by warm.
 */
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logging.ts';
import type { ServerTls } from '../core/tls.ts';
import { ArcMetrics } from '../api/metrics.ts';
import type { CoordinatorConfig } from '../jobs/coordinator.ts';
import { schedulerGroup } from '../inference/scheduler.ts';
import type { EmbeddedConfig } from './config.ts';
import { openConfiguredEngines } from './embedded.ts';
import { openBusEngines, openEngines, type Engines, type KafkaChoice, type PostgresChoice } from './engines.ts';
import { System } from './system.ts';
import type { ModuleHandle } from './modules/module.ts';
import { serveApi, serveHealthPort } from './serve.ts';
import { startMeshModule, type MeshModule, type MeshOptions } from './modules/mesh.ts';
import { startSchedulerModule, type SchedulerModule, type SchedulerOptions } from './modules/scheduler.ts';
import { startAccessModule, type AccessModuleOptions } from './modules/access.ts';
import { KeyRing } from '../access/api-keys.ts';
import { startInferenceModule } from './modules/inference.ts';
import { startJobsModule, type JobsModule } from './modules/jobs.ts';
import { startSimulatorModule, type SimulatorModule, type SimulatorOptions } from './modules/simulator.ts';
import { startCentralModule, type CentralModule, type CentralOptions } from './modules/central.ts';
import { startBridgeModule, startTrainingApiModule, type BridgeModule, type BridgeModuleOptions } from './modules/bridge.ts';
import { startServicesModule, type ServicesModule, type ServicesModuleOptions } from './modules/services.ts';

/** Kafka and PostgreSQL: what the distributed roles share. */
export interface DistributedEngines {
  readonly kafka: KafkaChoice;
  readonly postgres: PostgresChoice;
}

interface ProcessOptions {
  readonly logger: Logger;
  readonly clock?: Clock;
}

/** A role on Kafka and PostgreSQL, with its health port where asked for. */
interface DistributedProcessOptions extends ProcessOptions {
  readonly engines: DistributedEngines;
  readonly http?: HealthPortSettings;
}

export interface RoleProcess {
  readonly role: string;
  readonly instanceId: string;
  /** A line for the banner: what runs and where. */
  readonly summary: string;
  /** The HTTP address: the API, or an aggregator's or scheduler's health and metrics port. */
  readonly url?: string;
  readonly system: System;
  stop(): Promise<void>;
}

/** Where an aggregator or scheduler serves /health, /ready and /metrics (off unless asked for). */
export interface HealthPortSettings {
  readonly host: string;
  readonly port: number;
  /** HTTPS only; with `ca`, `/metrics` needs a verified client certificate. */
  readonly tls?: ServerTls;
}

function openDistributed(role: string, geozones: readonly string[], engines: DistributedEngines, options: ProcessOptions, metrics?: ArcMetrics): Promise<Engines> {
  return openEngines({
    role,
    geozones,
    kafka: engines.kafka,
    store: { postgres: engines.postgres },
    logger: options.logger,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(metrics ? { observer: metrics.busObserver(), registry: metrics.registry } : {}),
  });
}

/** The process as the CLI sees it; the banner mentions the health port when there is one. */
function roleProcess(system: System, summary: string, url: string | undefined, healthPort: boolean): RoleProcess {
  return {
    role: system.role,
    instanceId: system.instanceId,
    summary: url && healthPort ? `${summary}; health and metrics at ${url}` : summary,
    ...(url ? { url } : {}),
    system,
    stop: () => system.stop(),
  };
}

/**
 * A role without an API: its engines, its modules, and the health port when asked for (metrics
 * exist only then). `start` starts the modules on the system, feeding the metrics if any, and
 * returns the one the role is named for.
 */
async function startHealthPortRole<M extends ModuleHandle>(
  role: string,
  options: DistributedProcessOptions & { readonly geozones: readonly string[] },
  summary: string,
  start: (system: System, engines: Engines, metrics: ArcMetrics | undefined) => Promise<M>,
): Promise<{ process: RoleProcess; module: M }> {
  const metrics = options.http ? new ArcMetrics() : undefined;
  const engines = await openDistributed(role, options.geozones, options.engines, options, metrics);
  const system = new System(role, engines);
  const module = await start(system, engines, metrics);
  // The scraper proves itself with a key from the same store the API servers keep their keys in.
  const keys = new KeyRing(engines.stores.documents, engines.clock);
  const http = options.http && metrics ? await serveHealthPort(system, { ...options.http, metrics, keys }) : undefined;
  return { process: roleProcess(system, summary, http?.url, true), module };
}

export type AggregatorProcessOptions = DistributedProcessOptions & Omit<MeshOptions, 'writer' | 'metrics'>;

/** One aggregator per geozone, each campaigning for its zone's lease; replicas stand by warm. */
export async function startAggregatorProcess(options: AggregatorProcessOptions): Promise<RoleProcess & { mesh: MeshModule }> {
  const { engines: _engines, http: _http, logger: _logger, clock: _clock, ...meshOptions } = options;
  const summary = `aggregator for ${options.geozones.join(', ')} (leases aggregator/<zone>; standby until one is won)`;
  const { process, module } = await startHealthPortRole('aggregator', options, summary, (system, engines, metrics) =>
    system.start(() => startMeshModule(engines, { ...meshOptions, writer: 'lease', ...(metrics ? { metrics } : {}) })),
  );
  return { ...process, mesh: module };
}

export type SchedulerProcessOptions = DistributedProcessOptions & Omit<SchedulerOptions, 'metrics' | 'countRequests'>;

export async function startSchedulerProcess(options: SchedulerProcessOptions): Promise<RoleProcess & { scheduler: SchedulerModule }> {
  const { engines: _engines, http: _http, logger: _logger, clock: _clock, ...schedulerOptions } = options;
  const summary = `scheduler for ${options.geozones.join(', ')} (group ${schedulerGroup(options.geozones)}, exactly-once routing)`;
  const { process, module } = await startHealthPortRole('scheduler', options, summary, async (system, engines, metrics) => {
    // No tracker in this process: the scheduler counts the requests it routes and their results, and its index is the node view.
    const scheduler = await system.start(() => startSchedulerModule(engines, { ...schedulerOptions, ...(metrics ? { metrics, countRequests: true } : {}) }));
    metrics?.attachNodes({ all: () => scheduler.scheduler.index.allNodes() });
    return scheduler;
  });
  return { ...process, scheduler: module };
}

export interface ServerProcessOptions extends ProcessOptions {
  readonly engines: DistributedEngines;
  readonly host: string;
  readonly port: number;
  readonly geozones: readonly string[];
  readonly telemetryIntervalMs?: number;
  readonly offlineAfterMs?: number;
  readonly decisionTimeoutMs?: number;
  /** HTTPS and WSS only; with `ca`, mTLS for agents. */
  readonly tls?: ServerTls;
  readonly access: AccessModuleOptions;
  /** `--cors-origin`: pages elsewhere that may call this API; none by default. */
  readonly corsOrigins?: readonly string[];
}

/** API, console feed, agent sessions and metrics; its node list is a read-only view fed by telemetry. */
export async function startServerProcess(options: ServerProcessOptions): Promise<RoleProcess & { server: FastifyInstance }> {
  const metrics = new ArcMetrics();
  const engines = await openDistributed('server', options.geozones, options.engines, options, metrics);
  const system = new System('server', engines);
  const { geozones } = options;
  const access = await system.start(() => startAccessModule(engines, options.access));
  const inference = await system.start(() => startInferenceModule(engines, { geozones, metrics, keys: access.keys, audit: access.audit, ...(options.telemetryIntervalMs ? { telemetryIntervalMs: options.telemetryIntervalMs } : {}) }));
  const mesh = await system.start(() => startMeshModule(engines, { writer: 'view', geozones, metrics, ...(options.offlineAfterMs ? { offlineAfterMs: options.offlineAfterMs } : {}) }));
  inference.attachMesh(mesh);
  // Training submissions are taken here and driven by `arcnet bridge` replicas; their hpc messages reach this console.
  await system.start(() => startTrainingApiModule(engines, { hub: inference.hub }));
  // Agents' runners reach their keys through this server's sessions; the leader is an `arcnet services` replica.
  await system.start(() => startServicesModule(engines, { nodes: mesh.nodes, api: true, gateway: inference.gateway }));
  const api = await serveApi(system, engines, { host: options.host, port: options.port, geozones, metrics, ...(options.decisionTimeoutMs ? { decisionTimeoutMs: options.decisionTimeoutMs } : {}), ...(options.tls ? { tls: options.tls } : {}), ...(options.corsOrigins ? { corsOrigins: options.corsOrigins } : {}) });
  return { ...roleProcess(system, `server at ${api.url} (API, console at ${api.url}/, console feed, agent sessions, /health, /ready, /metrics) for ${geozones.join(', ')}`, api.url, false), server: api.server };
}

export interface CoordinatorProcessOptions extends ProcessOptions {
  readonly host: string;
  readonly port: number;
  readonly geozones: readonly string[];
  /** SQLite in this directory (null: in memory), unless `external.postgres`. */
  readonly dataDir: string | null;
  readonly external?: EmbeddedConfig['external'];
  readonly jobs: CoordinatorConfig;
  /** HTTPS and WSS only; with `ca`, mTLS for workers. */
  readonly tls?: ServerTls;
  readonly access: AccessModuleOptions;
  /** `--cors-origin`: pages elsewhere that may call this API; none by default. */
  readonly corsOrigins?: readonly string[];
}

/** The verified-jobs coordinator and its API alone: workers join with `arcnet agent --worker`. */
export async function startCoordinatorProcess(options: CoordinatorProcessOptions): Promise<RoleProcess & { jobs: JobsModule }> {
  const metrics = new ArcMetrics();
  const engines = await openConfiguredEngines('coordinator', options, metrics, options);
  const system = new System('coordinator', engines);
  const access = await system.start(() => startAccessModule(engines, options.access));
  const jobs = await system.start(() => startJobsModule(engines, { config: options.jobs, metrics, audit: access.audit }));
  const api = await serveApi(system, engines, { host: options.host, port: options.port, geozones: options.geozones, metrics, ...(options.tls ? { tls: options.tls } : {}), ...(options.corsOrigins ? { corsOrigins: options.corsOrigins } : {}) });
  return { ...roleProcess(system, `coordinator at ${api.url}`, api.url, false), jobs };
}

export interface CentralProcessOptions extends ProcessOptions, Omit<CentralOptions, 'writer' | 'metrics'> {
  readonly engines: DistributedEngines;
  readonly host: string;
  readonly port: number;
  /** HTTPS only. */
  readonly tls?: ServerTls;
  readonly access: AccessModuleOptions;
  /** `--cors-origin`: pages elsewhere that may call this API; none by default. */
  readonly corsOrigins?: readonly string[];
}

/** The central orchestrator and its API on Kafka and PostgreSQL; replicas stand by warm behind the `central` lease. */
export async function startCentralProcess(options: CentralProcessOptions): Promise<RoleProcess & { central: CentralModule }> {
  const metrics = new ArcMetrics();
  const engines = await openDistributed('central', options.geozones, options.engines, options, metrics);
  const system = new System('central', engines);
  await system.start(() => startAccessModule(engines, options.access));
  const { engines: _engines, logger: _logger, clock: _clock, host: _host, port: _port, tls: _tls, access: _access, corsOrigins: _cors, ...centralOptions } = options;
  const central = await system.start(() => startCentralModule(engines, { ...centralOptions, writer: 'lease', metrics }));
  const api = await serveApi(system, engines, { host: options.host, port: options.port, geozones: options.geozones, metrics, ...(options.tls ? { tls: options.tls } : {}), ...(options.corsOrigins ? { corsOrigins: options.corsOrigins } : {}) });
  return { ...roleProcess(system, `central orchestrator at ${api.url} (/api/v1/global, lease central; standby until it is won) for ${options.geozones.join(', ')}`, api.url, false), central };
}

export type SimulatorProcessOptions = ProcessOptions & { readonly kafka: KafkaChoice } & Omit<SimulatorOptions, 'router' | 'submit' | 'silencesPerHour'>;

/** Simulated nodes on the bus directly (telemetry out, their dispatches in), plus a request load; no node goes silent on its own. */
export async function startSimulatorProcess(options: SimulatorProcessOptions): Promise<RoleProcess & { simulator: SimulatorModule }> {
  const { kafka, logger, clock, ...simulatorOptions } = options;
  const engines = await openBusEngines({ role: 'simulate', geozones: options.geozones, kafka, logger, ...(clock ? { clock } : {}) });
  const system = new System('simulate', engines);
  const simulator = await system.start(() => startSimulatorModule(engines, { ...simulatorOptions, silencesPerHour: 0 }));
  return { ...roleProcess(system, `${options.nodes} simulated nodes in ${options.geozones.join(', ')}${options.rate > 0 ? `, ${options.rate} req/s` : ''}`, undefined, false), simulator };
}

export type BridgeProcessOptions = DistributedProcessOptions & { readonly geozones: readonly string[]; readonly bridge: Omit<BridgeModuleOptions, 'hub' | 'routes'> };

/** The training bridge alone (`arcnet bridge`): submissions from Kafka, job state in PostgreSQL; the API servers take the submissions. */
export async function startBridgeProcess(options: BridgeProcessOptions): Promise<RoleProcess & { bridge: BridgeModule }> {
  const summary = `training bridge (group arc-bridge; HPC jobs owned through leases bridge/job/<id>; staging ${options.bridge.config.stagingDir})`;
  const { process, module } = await startHealthPortRole('bridge', options, summary, (system, engines) => system.start(() => startBridgeModule(engines, options.bridge)));
  return { ...process, bridge: module };
}

export type ServicesProcessOptions = DistributedProcessOptions & {
  readonly geozones: readonly string[];
  /** Silence after which the node view takes a node for offline (its instances are re-placed). */
  readonly offlineAfterMs?: number;
} & Pick<ServicesModuleOptions, 'leaseTtlMs' | 'runnerGraceMs'>;

/**
 * The services cluster deployment manager alone (`arcnet services`): every replica follows the mesh
 * through telemetry and the KV, the holder of the lease `services` plans and places; agents' runners
 * reach their keys through the `arcnet server` replicas their sessions are on.
 */
export async function startServicesProcess(options: ServicesProcessOptions): Promise<RoleProcess & { services: ServicesModule }> {
  const summary = 'services cluster deployment manager (lease services; standby until it is won)';
  const { process, module } = await startHealthPortRole('services', options, summary, async (system, engines, metrics) => {
    const mesh = await system.start(() => startMeshModule(engines, { writer: 'view', geozones: options.geozones, ...(options.offlineAfterMs ? { offlineAfterMs: options.offlineAfterMs } : {}) }));
    return system.start(() =>
      startServicesModule(engines, {
        nodes: mesh.nodes,
        manager: true,
        ...(metrics ? { metrics } : {}),
        ...(options.leaseTtlMs ? { leaseTtlMs: options.leaseTtlMs } : {}),
        ...(options.runnerGraceMs ? { runnerGraceMs: options.runnerGraceMs } : {}),
      }),
    );
  });
  return { ...process, services: module };
}

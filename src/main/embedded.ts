/**
 * Composition root of one process running every module (`arcnet up`): the inference parts, the mesh
 * aggregator as the sole writer, the scheduler, the jobs coordinator, the API and console feed on one
 * port, and the simulated mesh with its load. By default on the embedded engines (in-memory bus,
 * SQLite in the data directory); `external` moves the bus to Kafka and state to PostgreSQL with the
 * same modules. Modules only see ports: `engines.ts` is where adapters are chosen.
 */
import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import type { Clock } from '../core/clock.ts';
import { silentLogger, type Logger } from '../core/logging.ts';
import type { InferenceRequest } from '../contracts/messages.ts';
import type { BusAdapter } from '../bus/ports.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { StateStores } from '../store/ports.ts';
import type { RegionalAggregator } from '../mesh/aggregator.ts';
import type { InferenceScheduler } from '../inference/scheduler.ts';
import type { InferenceTracker } from '../inference/tracker.ts';
import type { DispatchRouter } from '../inference/dispatch-router.ts';
import { ArcMetrics } from '../api/metrics.ts';
import type { AgentGateway } from '../api/agent-gateway.ts';
import type { HealthReport } from '../api/server.ts';
import type { WorkerGateway } from '../api/worker-gateway.ts';
import type { Coordinator } from '../jobs/coordinator.ts';
import type { KeyRing } from '../access/api-keys.ts';
import type { SimulatedMesh } from '../sim/mesh.ts';
import type { LoadGenerator } from '../sim/load.ts';
import type { EmbeddedConfig } from './config.ts';
import { openEngines, type EngineKinds, type Engines } from './engines.ts';
import { System } from './system.ts';
import { serveApi } from './serve.ts';
import { startAccessModule, OPERATOR_KEY_FILE } from './modules/access.ts';
import { startInferenceModule } from './modules/inference.ts';
import { startMeshModule } from './modules/mesh.ts';
import { startCentralModule } from './modules/central.ts';
import { bridgeOptionsOf, startBridgeModule } from './modules/bridge.ts';
import { startSchedulerModule } from './modules/scheduler.ts';
import { startJobsModule } from './modules/jobs.ts';
import { startSimulatorModule } from './modules/simulator.ts';
import { startServicesModule, type ServicesModule } from './modules/services.ts';

export { RESERVATION_TOKENS_PER_EPOCH, nextEpoch } from './modules/scheduler.ts';

export interface EmbeddedSystem {
  readonly config: EmbeddedConfig;
  readonly instanceId: string;
  /** The engines actually in use: bus `memory` or `kafka`, store `sqlite`, `sqlite-memory` or `postgres`. */
  readonly engines: EngineKinds;
  readonly url: string;
  /** The operator key of this system's own CLI (also in `<dataDir>/operator.key`); undefined under --insecure-no-auth. */
  readonly operatorKey: string | undefined;
  readonly keys: KeyRing | undefined;
  readonly bus: MessageBus;
  /** The bus adapter underneath: in memory, or Kafka with `external.kafka`. */
  readonly adapter: BusAdapter;
  readonly stores: StateStores;
  readonly aggregator: RegionalAggregator;
  readonly scheduler: InferenceScheduler;
  readonly tracker: InferenceTracker;
  readonly router: DispatchRouter;
  readonly metrics: ArcMetrics;
  readonly gateway: AgentGateway;
  readonly coordinator: Coordinator;
  /** The services family: the cluster deployment manager (leading on the lease `services`) and the endpoint registry. */
  readonly services: ServicesModule;
  readonly workers: WorkerGateway;
  readonly server: FastifyInstance;
  readonly mesh: SimulatedMesh | undefined;
  readonly load: LoadGenerator | undefined;
  /** What `/health` and `/ready` answer. */
  health(): HealthReport;
  /** Publishes a request as a client would, recording it for status queries. */
  submit(request: InferenceRequest): Promise<void>;
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly logger?: Logger;
  readonly clock?: Clock;
}

/** Opens the engines `config` names: the external ones where given, else the in-memory bus and SQLite in `dataDir` (in memory when null). */
export function openConfiguredEngines(role: string, config: Pick<EmbeddedConfig, 'geozones' | 'dataDir' | 'external'>, metrics: ArcMetrics, options: StartOptions): Promise<Engines> {
  const { kafka, postgres } = config.external ?? {};
  return openEngines({
    role,
    geozones: config.geozones,
    ...(kafka ? { kafka } : {}),
    store: postgres ? { postgres } : { dataDir: config.dataDir },
    logger: options.logger ?? silentLogger,
    ...(options.clock ? { clock: options.clock } : {}),
    observer: metrics.busObserver(),
    registry: metrics.registry,
  });
}

/** Simulated nodes are enrolled by the simulator itself, once: a node enrolled on an earlier run keeps its key. */
function simulatedEnrolment(keys: KeyRing): (node: { id: string; name: string; geozone: string }) => Promise<void> {
  return async (node) => {
    if (await keys.nodeKeyOf(node.id)) return;
    await keys.enrolNode({ nodeId: node.id, name: node.name, geozone: node.geozone, enrolledBy: 'system:simulator' });
  };
}

export async function startEmbedded(config: EmbeddedConfig, options: StartOptions = {}): Promise<EmbeddedSystem> {
  const metrics = new ArcMetrics();
  const engines = await openConfiguredEngines('arc', config, metrics, options);
  const system = new System('embedded', engines);
  const { geozones } = config;
  const access = await system.start(() =>
    startAccessModule(engines, {
      insecure: config.api.insecureNoAuth,
      operatorKeyFile: config.dataDir === null ? null : join(config.dataDir, OPERATOR_KEY_FILE),
      ratePerMinute: config.api.rateLimitPerMinute,
    }),
  );
  // Readers start before writers, so nothing published during start-up goes unseen.
  const inference = await system.start(() => startInferenceModule(engines, { geozones, telemetryIntervalMs: config.telemetryIntervalMs, metrics, keys: access.keys, audit: access.audit, placement: config.placement }));
  // A reader of the summaries and events, so it starts before the mesh publishes them.
  await system.start(() => startCentralModule(engines, { writer: 'sole', geozones, summaryIntervalMs: config.summaryIntervalMs, metrics }));
  const mesh = await system.start(() => startMeshModule(engines, { writer: 'sole', geozones, offlineAfterMs: config.offlineAfterMs, summaryIntervalMs: config.summaryIntervalMs, metrics }));
  inference.attachMesh(mesh);
  const scheduler = await system.start(() =>
    startSchedulerModule(engines, { geozones, placement: config.placement, reservationTtlMs: config.reservationTtlMs, maxRetries: config.maxRetries, metrics }),
  );
  const jobs = await system.start(() => startJobsModule(engines, { config: config.jobs, metrics, audit: access.audit }));
  // The training bridge and its API; without an HPC scheduler it still classifies, and HPC jobs wait in pending (its health says so).
  await system.start(() => startBridgeModule(engines, bridgeOptionsOf(config.bridge, config.dataDir, { hub: inference.hub, routes: true })));
  const services = await system.start(() => startServicesModule(engines, { nodes: mesh.nodes, manager: true, api: true, gateway: inference.gateway, metrics }));
  const api = await serveApi(system, engines, {
    host: config.host,
    port: config.port,
    geozones,
    metrics,
    decisionTimeoutMs: config.api.decisionTimeoutMs,
    maxAwaitingDecisions: config.api.maxAwaitingDecisions,
    ...(config.tls ? { tls: config.tls } : {}),
    corsOrigins: config.api.corsOrigins,
    ...(config.api.consoleDir === undefined ? {} : { consoleDir: config.api.consoleDir }),
  });
  const { simulation } = config;
  const simulator =
    simulation.nodes > 0 || simulation.requestRate > 0
      ? await system.start(() =>
          startSimulatorModule(engines, {
            geozones,
            nodes: simulation.nodes,
            rate: simulation.requestRate,
            seed: simulation.seed,
            speed: simulation.speed,
            telemetryIntervalMs: config.telemetryIntervalMs,
            ...(simulation.silencesPerHour === undefined ? {} : { silencesPerHour: simulation.silencesPerHour }),
            router: inference.router,
            submit: inference.submit,
            ...(access.keys ? { enrol: simulatedEnrolment(access.keys) } : {}),
          }),
        )
      : undefined;

  return {
    config,
    instanceId: engines.instanceId,
    engines: engines.kinds,
    url: api.url,
    operatorKey: access.operatorKey,
    keys: access.keys,
    bus: engines.bus,
    adapter: engines.adapter,
    stores: engines.stores,
    aggregator: mesh.aggregators[0]!.aggregator,
    scheduler: scheduler.scheduler,
    tracker: inference.tracker,
    router: inference.router,
    metrics,
    gateway: inference.gateway,
    coordinator: jobs.coordinator,
    services,
    workers: jobs.workers,
    server: api.server,
    mesh: simulator?.mesh,
    load: simulator?.load,
    health: () => system.report(),
    submit: inference.submit,
    stop: () => system.stop(),
  };
}

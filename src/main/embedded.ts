/**
 * Composition root of the embedded mode (`arcnet up`): every role in one process over the
 * in-memory bus and the SQLite store, simulated nodes plus any real agents that connect, the API
 * and console feed on one port. Roles only see ports; this is the one place adapters are chosen.
 */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { systemClock, type Clock } from '../core/clock.ts';
import { newId } from '../core/ids.ts';
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logging.ts';
import type { InferenceRequest } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import { MemoryBus } from '../bus/memory.ts';
import { KafkaBus } from '../bus/kafka.ts';
import type { BusAdapter } from '../bus/ports.ts';
import { openPostgresStores } from '../store/postgres.ts';
import { MessageBus } from '../bus/typed-bus.ts';
import { openSqliteStores } from '../store/sqlite.ts';
import type { KvStore, LeaseStore, StateStores } from '../store/ports.ts';
import { MemoryLeaseStore } from '../store/memory-leases.ts';
import { RegionalAggregator, DEFAULT_AGGREGATOR_CONFIG } from '../mesh/aggregator.ts';
import { InferenceScheduler, DEFAULT_SCHEDULER_CONFIG, schedulerGroup } from '../inference/scheduler.ts';
import { InferenceTracker } from '../inference/tracker.ts';
import { DispatchRouter } from '../inference/dispatch-router.ts';
import { ArcMetrics } from '../api/metrics.ts';
import { ConsoleHub } from '../api/console-hub.ts';
import { inferenceObserver } from '../api/inference-observer.ts';
import { AgentGateway } from '../api/agent-gateway.ts';
import { buildServer } from '../api/server.ts';
import { WorkerGateway } from '../api/worker-gateway.ts';
import { Coordinator } from '../jobs/coordinator.ts';
import { SimulatedMesh } from '../sim/mesh.ts';
import { LoadGenerator } from '../sim/load.ts';
import { seededRandom } from '../sim/random.ts';
import type { EmbeddedConfig } from './config.ts';
import { VERSION } from './version.ts';
import { lockDataDir } from './data-dir-lock.ts';


/** Reservation tokens one start may hand out before the next start's tokens begin (2^32, so 2^21 starts fit in a safe integer). */
export const RESERVATION_TOKENS_PER_EPOCH = 2 ** 32;
const EPOCH_KEY = 'system/epoch';

/** A counter bumped once per start with compare-and-set, so two starts never share an epoch. */
export async function nextEpoch(kv: KvStore): Promise<number> {
  for (;;) {
    const current = await kv.get<number>(EPOCH_KEY);
    const next = (current?.value ?? 0) + 1;
    const written = await kv.put(EPOCH_KEY, next, { expectedRevision: current?.modRevision ?? 0 });
    if (written.ok) return next;
  }
}

export interface EmbeddedSystem {
  readonly config: EmbeddedConfig;
  readonly url: string;
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
  readonly workers: WorkerGateway;
  readonly server: FastifyInstance;
  readonly mesh: SimulatedMesh | undefined;
  readonly load: LoadGenerator | undefined;
  /** Publishes a request as a client would, recording it for status queries. */
  submit(request: InferenceRequest): Promise<void>;
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly logger?: Logger;
  readonly clock?: Clock;
}

export async function startEmbedded(config: EmbeddedConfig, options: StartOptions = {}): Promise<EmbeddedSystem> {
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const postgres = config.external?.postgres;
  const kafka = config.external?.kafka;
  let unlock = (): void => undefined;
  let stores: StateStores;
  if (postgres) {
    // Several processes may share one database: there is no directory to own.
    stores = await openPostgresStores({ url: postgres.url, ...(postgres.schema ? { schema: postgres.schema } : {}), clock, logger });
  } else {
    let path = ':memory:';
    if (config.dataDir !== null) {
      mkdirSync(config.dataDir, { recursive: true });
      unlock = lockDataDir(config.dataDir);
      path = join(config.dataDir, 'arcnet.db');
    }
    try {
      stores = openSqliteStores({ path, clock, logger });
    } catch (error) {
      unlock();
      throw error;
    }
  }
  const instanceId = `arc-${newId().slice(0, 8)}`;

  let aggregator: RegionalAggregator | undefined;
  const metrics = new ArcMetrics({ all: () => aggregator?.registry.all() ?? [] });
  const adapter: BusAdapter = kafka ? new KafkaBus({ ...kafka, clientId: `${kafka.clientId}-${instanceId}`, logger: logger.child({ component: 'kafka' }) }) : new MemoryBus();
  const bus = new MessageBus(adapter, { logger, observer: metrics.busObserver() });
  await bus.ensureTopics(config.geozones);

  const hub = new ConsoleHub();
  aggregator = new RegionalAggregator({
    bus,
    documents: stores.documents,
    clock,
    logger: logger.child({ component: 'aggregator' }),
    config: { ...DEFAULT_AGGREGATOR_CONFIG, geozones: config.geozones, offlineAfterMs: config.offlineAfterMs, summaryIntervalMs: config.summaryIntervalMs },
    // On Kafka the topic outlives this process and may carry other deployments' zones: start from the
    // stored node documents and the newest telemetry, in a group of this instance's own.
    ...(kafka ? { group: `${instanceId}-aggregator`, startAt: 'latest' as const } : {}),
    onTelemetry: (_node, telemetry) => hub.telemetry(telemetry),
  });
  // Embedded: reservations live in memory (ADR 0005); the durable start epoch keeps their tokens increasing
  // across restarts. On PostgreSQL they are the store's leases, shared by every scheduler process.
  let reservations: LeaseStore;
  if (postgres) {
    reservations = stores.leases;
  } else {
    const epoch = await nextEpoch(stores.kv);
    reservations = new MemoryLeaseStore({ clock, tokenFloor: epoch * RESERVATION_TOKENS_PER_EPOCH });
  }
  const scheduler = new InferenceScheduler({
    bus,
    leases: reservations,
    clock,
    logger: logger.child({ component: 'scheduler' }),
    instanceId,
    group: schedulerGroup(config.geozones),
    ...(kafka ? { nodes: stores.documents } : {}),
    config: { ...DEFAULT_SCHEDULER_CONFIG, placement: config.placement, reservationTtlMs: config.reservationTtlMs, maxRetries: config.maxRetries, geozones: config.geozones },
    observer: {
      routed: (outcome) => {
        metrics.decisionSamples.add(outcome.decisionMs);
        metrics.routingDecision.observe({ outcome: outcome.status }, outcome.decisionMs);
      },
    },
  });
  const tracker = new InferenceTracker();
  const registry = aggregator.registry;
  tracker.addListener(inferenceObserver(metrics, hub, registry));
  const router = new DispatchRouter(bus, clock, instanceId);
  const gateway = new AgentGateway({
    bus,
    router,
    geozones: config.geozones,
    telemetryIntervalMs: config.telemetryIntervalMs,
    logger: logger.child({ component: 'agents' }),
    onSessionsChanged: (count) => metrics.agentsConnected.set(count),
  });

  const workers = new WorkerGateway(logger.child({ component: 'workers' }));
  const coordinator = new Coordinator({
    documents: stores.documents,
    clock,
    logger: logger.child({ component: 'coordinator' }),
    channel: workers,
    config: config.jobs,
    observer: {
      consensus: (outcome) => metrics.consensus.inc({ outcome }),
      executionFinished: (execution) => {
        if (execution.duration_ms !== null) metrics.executionDuration.observe({ status: execution.status }, execution.duration_ms / 1000);
      },
    },
  });
  workers.bind({ connected: (nodeId) => coordinator.workerConnected(nodeId), acknowledged: (nodeId, executionId) => coordinator.acknowledge(nodeId, executionId) });
  metrics.attachJobs(coordinator);

  // Readers start before writers, so nothing published during start-up goes unseen.
  await tracker.start(bus, config.geozones, instanceId);
  await router.start(config.geozones, `${instanceId}-dispatch-router`);
  await aggregator.start();
  await scheduler.start();
  await coordinator.start();

  const server = await buildServer({
    mode: postgres || kafka ? 'distributed' : 'embedded',
    bus,
    clock,
    logger,
    geozones: config.geozones,
    nodes: registry,
    documents: stores.documents,
    tracker,
    metrics,
    hub,
    gateway,
    reservationOf: (nodeId) => scheduler.index.reservation(nodeId),
    decisionTimeoutMs: config.api.decisionTimeoutMs,
    maxAwaitingDecisions: config.api.maxAwaitingDecisions,
    version: VERSION,
    jobs: { coordinator, workers },
  });
  await server.listen({ host: config.host, port: config.port });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;

  const submit = async (request: InferenceRequest): Promise<void> => {
    tracker.submitted(request, clock.now());
    await bus.publish(topics.inferenceRequest, 'InferenceRequest', request);
  };

  let mesh: SimulatedMesh | undefined;
  let load: LoadGenerator | undefined;
  if (config.simulation.nodes > 0) {
    mesh = new SimulatedMesh({
      bus,
      router,
      clock,
      logger: logger.child({ component: 'simulator' }),
      geozones: config.geozones,
      nodes: config.simulation.nodes,
      telemetryIntervalMs: config.telemetryIntervalMs,
      seed: config.simulation.seed,
      speed: config.simulation.speed,
      ...(config.simulation.silencesPerHour === undefined ? {} : { silencesPerHour: config.simulation.silencesPerHour }),
    });
    mesh.start();
  }
  if (config.simulation.requestRate > 0) {
    // Short ticks: at thousands of requests per second a 50 ms tick would arrive as bursts that stall everything else.
    load = new LoadGenerator({ rate: config.simulation.requestRate, geozones: config.geozones, random: seededRandom(config.simulation.seed + 1), submit, logger, tickMs: 5 });
    load.start();
  }

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await load?.stop();
    await mesh?.stop();
    await server.close();
    await coordinator.stop();
    await scheduler.stop();
    await aggregator.stop();
    await router.stop();
    await tracker.stop();
    await adapter.close();
    try {
      await stores.close();
    } catch (error) {
      logger.error({ err: errorMessage(error) }, 'store did not close cleanly');
    }
    unlock();
  };

  return { config, url, bus, adapter, stores, aggregator, scheduler, tracker, router, metrics, gateway, coordinator, workers, server, mesh, load, submit, stop };
}

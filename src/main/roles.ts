/**
 * Composition roots of the distributed mode (seed 000 "Running Components"): each role as its own
 * process on Kafka and PostgreSQL, as many replicas as wanted.
 *
 * - aggregator: per geozone, every replica keeps the zone's whole registry; the lease holder of
 *   `aggregator/<zone>` writes node documents (fenced), status events and summaries.
 * - scheduler: replicas of the same geozones share the requests through one consumer group; the
 *   routing step is exactly-once (dispatches and the consumed offset commit in one transaction) and
 *   reservations are PostgreSQL leases.
 * - server: API, console feed, agent sessions, metrics; any number of replicas, each delivering the
 *   dispatches of the agents connected to it.
 * - simulate: simulated nodes publishing telemetry and running their dispatches, plus request load.
 */
import type { FastifyInstance } from 'fastify';
import { systemClock, type Clock } from '../core/clock.ts';
import { newId } from '../core/ids.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import type { InferenceRequest } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import { KafkaBus } from '../bus/kafka.ts';
import type { KafkaConnectionOptions } from '../bus/kafka-config.ts';
import { MessageBus, type BusObserver } from '../bus/typed-bus.ts';
import { openPostgresStores } from '../store/postgres.ts';
import type { StateStores } from '../store/ports.ts';
import { RegionalAggregator, DEFAULT_AGGREGATOR_CONFIG } from '../mesh/aggregator.ts';
import { LeaseLeadership, READ_ONLY } from '../mesh/leadership.ts';
import { InferenceScheduler, DEFAULT_SCHEDULER_CONFIG, schedulerGroup, type SchedulerObserver } from '../inference/scheduler.ts';
import { InferenceTracker } from '../inference/tracker.ts';
import { DispatchRouter } from '../inference/dispatch-router.ts';
import { ArcMetrics } from '../api/metrics.ts';
import { ConsoleHub } from '../api/console-hub.ts';
import { inferenceObserver } from '../api/inference-observer.ts';
import { AgentGateway } from '../api/agent-gateway.ts';
import { buildServer } from '../api/server.ts';
import { SimulatedMesh } from '../sim/mesh.ts';
import { LoadGenerator } from '../sim/load.ts';
import { seededRandom } from '../sim/random.ts';
import { DEFAULT_INFERENCE_PROFILE, type InferenceProfileConfig } from '../placement/inference-profile.ts';
import { VERSION } from './version.ts';
import { startRoleHttp, type RoleHealth, type RoleHttp } from './role-http.ts';
import { Gauge } from 'prom-client';
import type { NodeState } from '../mesh/node.ts';

export interface EngineSettings {
  readonly kafka: KafkaConnectionOptions;
  readonly postgres: { readonly url: string; readonly schema?: string };
}

/** The bus and state every role process opens, under one instance id. */
export interface Engines {
  readonly instanceId: string;
  readonly bus: MessageBus;
  readonly stores: StateStores;
  readonly clock: Clock;
  readonly logger: Logger;
  close(): Promise<void>;
}

/** What a role needs of the bus alone (the simulator keeps no state). */
export type BusEngines = Pick<Engines, 'instanceId' | 'bus' | 'clock' | 'logger' | 'close'>;

export interface BusOptions {
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly geozones: readonly string[];
  readonly observer?: BusObserver;
  /** Kafka session timeout: how long a member that died silently keeps its partitions. */
  readonly sessionTimeoutMs?: number;
}

export interface RoleProcess {
  readonly instanceId: string;
  /** A line for the banner: what runs and where. */
  readonly summary: string;
  /** The HTTP address: the server's API, or an aggregator's or scheduler's health and metrics port. */
  readonly url?: string;
  stop(): Promise<void>;
}

function instance(role: string, logger: Logger): { instanceId: string; logger: Logger } {
  const instanceId = `${role}-${newId().slice(0, 8)}`;
  return { instanceId, logger: logger.child({ instance: instanceId }) };
}

/** Kafka only, for the roles without state. */
export function openBus(role: string, kafkaSettings: KafkaConnectionOptions, options: BusOptions): Promise<BusEngines> {
  const { instanceId, logger } = instance(role, options.logger);
  return connectBus(instanceId, logger, kafkaSettings, options);
}

async function connectBus(instanceId: string, logger: Logger, kafkaSettings: KafkaConnectionOptions, options: BusOptions): Promise<BusEngines> {
  const kafka = new KafkaBus({
    ...kafkaSettings,
    clientId: `${kafkaSettings.clientId}-${instanceId}`,
    logger: logger.child({ component: 'kafka' }),
    // A member that dies silently keeps its partitions this long: the failover time of the consumer groups.
    ...(options.sessionTimeoutMs ? { sessionTimeoutMs: options.sessionTimeoutMs, heartbeatIntervalMs: Math.max(100, Math.floor(options.sessionTimeoutMs / 10)) } : {}),
  });
  const bus = new MessageBus(kafka, { logger, ...(options.observer ? { observer: options.observer } : {}) });
  try {
    await bus.ensureTopics(options.geozones);
  } catch (error) {
    await kafka.close();
    throw error;
  }
  return { instanceId, bus, clock: options.clock ?? systemClock, logger, close: () => kafka.close() };
}

export async function openEngines(role: string, settings: EngineSettings, options: BusOptions): Promise<Engines> {
  const { instanceId, logger } = instance(role, options.logger);
  const clock = options.clock ?? systemClock;
  const stores = await openPostgresStores({ url: settings.postgres.url, ...(settings.postgres.schema ? { schema: settings.postgres.schema } : {}), clock, logger });
  let bus: BusEngines;
  try {
    bus = await connectBus(instanceId, logger, settings.kafka, { ...options, clock });
  } catch (error) {
    await stores.close();
    throw error;
  }
  return {
    ...bus,
    stores,
    close: async () => {
      await bus.close();
      try {
        await stores.close();
      } catch (error) {
        logger.error({ err: errorMessage(error) }, 'store did not close cleanly');
      }
    },
  };
}

/** Where an aggregator or scheduler serves /health, /ready and /metrics (off unless asked for). */
export interface RoleHttpSettings {
  readonly host: string;
  readonly port: number;
}

/**
 * Metrics for a role without an API, created before its engines (the bus observer counts from the
 * first message) and told later where its nodes are.
 */
export interface RoleMetrics {
  readonly metrics: ArcMetrics;
  readonly nodes: { current: () => Iterable<NodeState> };
}

export function roleMetrics(): RoleMetrics {
  const nodes = { current: (): Iterable<NodeState> => [] };
  return { metrics: new ArcMetrics({ all: () => nodes.current() }), nodes };
}

export type RoleHttpOption = RoleHttpSettings & { readonly metrics: RoleMetrics };

/** Points the role's node metrics at its nodes, then serves /health, /ready and /metrics. */
function serveRoleHttp(engines: Engines, role: string, http: RoleHttpOption, nodes: () => Iterable<NodeState>, health: () => RoleHealth): Promise<RoleHttp> {
  http.metrics.nodes.current = nodes;
  return startRoleHttp({ host: http.host, port: http.port, role, instanceId: engines.instanceId, health, metrics: http.metrics.metrics.registry, logger: engines.logger });
}

/** The banner's mention of a role's HTTP port, and its address on the RoleProcess. */
function httpParts(http: RoleHttp | undefined): { note: string; address: { url?: string } } {
  return http ? { note: `; health and metrics at ${http.url}`, address: { url: http.url } } : { note: '', address: {} };
}

export interface AggregatorRoleOptions {
  readonly geozones: readonly string[];
  readonly offlineAfterMs?: number;
  readonly summaryIntervalMs?: number;
  /** How long a dead leader's duties wait before a standby takes them (lease TTL). */
  readonly leaseTtlMs?: number;
  readonly http?: RoleHttpOption;
}

/** One aggregator per geozone, each campaigning for its zone's lease; replicas stand by warm. */
export async function startAggregatorRole(engines: Engines, options: AggregatorRoleOptions): Promise<RoleProcess & { aggregators: ReadonlyMap<string, { aggregator: RegionalAggregator; leadership: LeaseLeadership }> }> {
  const { bus, stores, clock, logger, instanceId } = engines;
  const aggregators = new Map<string, { aggregator: RegionalAggregator; leadership: LeaseLeadership }>();
  for (const zone of options.geozones) {
    const leadership = new LeaseLeadership({
      leases: stores.leases,
      name: `aggregator/${zone}`,
      holder: instanceId,
      clock,
      logger: logger.child({ component: 'leadership', geozone: zone }),
      ...(options.leaseTtlMs ? { ttlMs: options.leaseTtlMs } : {}),
    });
    const aggregator = new RegionalAggregator({
      bus,
      documents: stores.documents,
      clock,
      logger: logger.child({ component: 'aggregator', geozone: zone }),
      config: {
        ...DEFAULT_AGGREGATOR_CONFIG,
        geozones: [zone],
        offlineAfterMs: options.offlineAfterMs ?? DEFAULT_AGGREGATOR_CONFIG.offlineAfterMs,
        summaryIntervalMs: options.summaryIntervalMs ?? DEFAULT_AGGREGATOR_CONFIG.summaryIntervalMs,
      },
      // Its own group: every replica sees every node of the zone (silence can only be judged whole).
      group: `${instanceId}-aggregator-${zone}`,
      startAt: 'latest',
      leadership,
    });
    await aggregator.start();
    await leadership.start();
    aggregators.set(zone, { aggregator, leadership });
  }
  let http: RoleHttp | undefined;
  if (options.http) {
    new Gauge({
      name: 'arcnet_aggregator_leading',
      help: 'Whether this replica holds the geozone\'s aggregator lease and writes for it (1) or stands by (0)',
      labelNames: ['geozone'],
      registers: [options.http.metrics.metrics.registry],
      collect() {
        for (const [zone, { leadership }] of aggregators) this.set({ geozone: zone }, leadership.leading ? 1 : 0);
      },
    });
    const nodes = function* (): Generator<NodeState> {
      for (const { aggregator } of aggregators.values()) yield* aggregator.registry.all();
    };
    http = await serveRoleHttp(engines, 'aggregator', options.http, nodes, () => ({
      ready: true,
      details: {
        geozones: Object.fromEntries(
          [...aggregators].map(([zone, { aggregator, leadership }]) => [zone, { leading: leadership.leading, leaseToken: leadership.fence()?.token ?? null, nodes: aggregator.registry.size }]),
        ),
      },
    }));
  }
  const { note, address } = httpParts(http);
  return {
    instanceId,
    aggregators,
    summary: `aggregator for ${options.geozones.join(', ')} (leases aggregator/<zone>; standby until one is won)${note}`,
    ...address,
    stop: async () => {
      await http?.close();
      for (const { aggregator, leadership } of aggregators.values()) {
        await aggregator.stop();
        await leadership.stop();
      }
      await engines.close();
    },
  };
}

export interface SchedulerRoleOptions {
  readonly geozones: readonly string[];
  readonly reservationTtlMs?: number;
  readonly maxRetries?: number;
  readonly placement?: InferenceProfileConfig;
  readonly http?: RoleHttpOption;
}

export async function startSchedulerRole(engines: Engines, options: SchedulerRoleOptions): Promise<RoleProcess & { scheduler: InferenceScheduler }> {
  const { bus, stores, clock, logger, instanceId } = engines;
  const scheduler = new InferenceScheduler({
    bus,
    leases: stores.leases,
    nodes: stores.documents,
    clock,
    logger: logger.child({ component: 'scheduler' }),
    instanceId,
    group: schedulerGroup(options.geozones),
    ...(options.http ? { observer: schedulerObserver(options.http.metrics.metrics) } : {}),
    config: {
      ...DEFAULT_SCHEDULER_CONFIG,
      placement: options.placement ?? DEFAULT_INFERENCE_PROFILE,
      reservationTtlMs: options.reservationTtlMs ?? DEFAULT_SCHEDULER_CONFIG.reservationTtlMs,
      maxRetries: options.maxRetries ?? DEFAULT_SCHEDULER_CONFIG.maxRetries,
      geozones: options.geozones,
    },
  });
  await scheduler.start();
  const http = options.http
    ? await serveRoleHttp(engines, 'scheduler', options.http, () => scheduler.index.allNodes(), () => ({
        // With no node known it would turn every request away.
        ready: scheduler.index.size > 0,
        ...(scheduler.index.size > 0 ? {} : { notReady: `no node of ${options.geozones.join(', ')} known yet: waiting for node documents or telemetry` }),
        details: {
          geozones: options.geozones,
          group: schedulerGroup(options.geozones),
          nodesKnown: scheduler.index.size,
          reservations: scheduler.index.reservationCount(),
          inFlight: scheduler.inFlightCount,
          // Leases of another scheduler's completed requests this one freed (see InferenceScheduler.reclaim).
          reclaimedReservations: scheduler.reclaimedReservations,
          routing: scheduler.routedFrom(),
        },
      }))
    : undefined;
  const { note, address } = httpParts(http);
  return {
    instanceId,
    scheduler,
    summary: `scheduler for ${options.geozones.join(', ')} (group ${schedulerGroup(options.geozones)}, exactly-once routing)${note}`,
    ...address,
    stop: async () => {
      await http?.close();
      await scheduler.stop();
      await engines.close();
    },
  };
}

/** Counts what the scheduler decides and what comes back for the requests it dispatched. */
function schedulerObserver(metrics: ArcMetrics): SchedulerObserver {
  return {
    routed: (outcome, request) => {
      metrics.requests.inc({ geozone: request.requesterGeozone, status: outcome.status });
      metrics.routingDecision.observe({ outcome: outcome.status }, outcome.decisionMs);
    },
    completed: (result, geozone) => {
      if (geozone === undefined) return;
      metrics.requests.inc({ geozone, status: result.status });
      metrics.inferenceLatency.observe({ geozone }, result.latencyMs);
    },
  };
}

export interface ServerRoleOptions {
  readonly host: string;
  readonly port: number;
  readonly geozones: readonly string[];
  readonly telemetryIntervalMs?: number;
  readonly offlineAfterMs?: number;
  readonly decisionTimeoutMs?: number;
}

/** API, console feed, agent sessions and metrics; its node list is a read-only view fed by telemetry. */
export async function startServerRole(engines: Engines, options: ServerRoleOptions, metrics: ArcMetrics, registryView: { current?: RegionalAggregator }): Promise<RoleProcess & { server: FastifyInstance; router: DispatchRouter }> {
  const { bus, stores, clock, logger, instanceId } = engines;
  const hub = new ConsoleHub();
  const view = new RegionalAggregator({
    bus,
    documents: stores.documents,
    clock,
    logger: logger.child({ component: 'nodes' }),
    config: { ...DEFAULT_AGGREGATOR_CONFIG, offlineAfterMs: options.offlineAfterMs ?? DEFAULT_AGGREGATOR_CONFIG.offlineAfterMs },
    group: `${instanceId}-nodes`,
    startAt: 'latest',
    leadership: READ_ONLY,
    onTelemetry: (_node, telemetry) => hub.telemetry(telemetry),
  });
  registryView.current = view;
  const tracker = new InferenceTracker();
  tracker.addListener(inferenceObserver(metrics, hub, view.registry));
  const router = new DispatchRouter(bus, clock, instanceId);
  const gateway = new AgentGateway({
    bus,
    router,
    geozones: options.geozones,
    telemetryIntervalMs: options.telemetryIntervalMs ?? 10_000,
    logger: logger.child({ component: 'agents' }),
    onSessionsChanged: (count) => metrics.agentsConnected.set(count),
  });
  await tracker.start(bus, options.geozones, instanceId);
  await router.start(options.geozones, `${instanceId}-dispatch-router`);
  await view.start();
  const server = await buildServer({
    mode: 'distributed',
    bus,
    clock,
    logger,
    geozones: options.geozones,
    nodes: view.registry,
    documents: stores.documents,
    tracker,
    metrics,
    hub,
    gateway,
    ...(options.decisionTimeoutMs ? { decisionTimeoutMs: options.decisionTimeoutMs } : {}),
    version: VERSION,
  });
  await server.listen({ host: options.host, port: options.port });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const url = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`;
  return {
    instanceId,
    server,
    router,
    url,
    summary: `server at ${url} (API, console feed, agent sessions, /metrics) for ${options.geozones.join(', ')}`,
    stop: async () => {
      await server.close();
      await view.stop();
      await router.stop();
      await tracker.stop();
      await engines.close();
    },
  };
}

/** Metrics of a server process: the node gauge reads the view the server builds. */
export function serverMetrics(): { metrics: ArcMetrics; registryView: { current?: RegionalAggregator } } {
  const registryView: { current?: RegionalAggregator } = {};
  const metrics = new ArcMetrics({ all: () => registryView.current?.registry.all() ?? [] });
  return { metrics, registryView };
}

export interface SimulatorRoleOptions {
  readonly geozones: readonly string[];
  readonly nodes: number;
  /** Inference requests per second published to the request topic; 0 for none. */
  readonly rate: number;
  readonly seed: number;
  readonly telemetryIntervalMs: number;
  readonly speed?: number;
  /** Called with every request published (tests count them). */
  readonly onSubmitted?: (request: InferenceRequest) => void;
}

/** Simulated nodes on the bus directly (telemetry out, their dispatches in), plus a request load. */
export async function startSimulatorRole(engines: BusEngines, options: SimulatorRoleOptions): Promise<RoleProcess & { mesh: SimulatedMesh }> {
  const { bus, clock, logger, instanceId } = engines;
  const router = new DispatchRouter(bus, clock, instanceId);
  await router.start(options.geozones, `${instanceId}-dispatch-router`);
  const mesh = new SimulatedMesh({
    bus,
    router,
    clock,
    logger: logger.child({ component: 'simulator' }),
    geozones: options.geozones,
    nodes: options.nodes,
    telemetryIntervalMs: options.telemetryIntervalMs,
    seed: options.seed,
    speed: options.speed ?? 1,
    silencesPerHour: 0,
  });
  mesh.start();
  let load: LoadGenerator | undefined;
  if (options.rate > 0) {
    load = new LoadGenerator({
      rate: options.rate,
      geozones: options.geozones,
      random: seededRandom(options.seed + 1),
      logger,
      tickMs: 5,
      submit: async (request) => {
        await bus.publish(topics.inferenceRequest, 'InferenceRequest', request);
        options.onSubmitted?.(request);
      },
    });
    load.start();
  }
  return {
    instanceId,
    mesh,
    summary: `${options.nodes} simulated nodes in ${options.geozones.join(', ')}${options.rate > 0 ? `, ${options.rate} req/s` : ''}`,
    stop: async () => {
      await load?.stop();
      await mesh.stop();
      await router.stop();
      await engines.close();
    },
  };
}

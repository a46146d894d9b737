/**
 * The server's inference parts: the tracker (each request's status for the API, the metrics and the
 * console), the dispatch router (each dispatch to its node's session only, DESIGN §4), the agent
 * gateway (WebSocket sessions of `arcnet agent`) and the console hub (`/telemetry`). Any process with
 * an API for inference runs it: `arcnet up` and `arcnet server`. It starts before the mesh and the
 * scheduler publish anything, since its readers begin at the newest record.
 */
import { errorMessage } from '../../core/errors.ts';
import type { InferenceRequest } from '../../contracts/messages.ts';
import { topics } from '../../contracts/topics.ts';
import { InferenceTracker } from '../../inference/tracker.ts';
import { DispatchRouter } from '../../inference/dispatch-router.ts';
import type { ArcMetrics } from '../../api/metrics.ts';
import { ConsoleHub } from '../../api/console-hub.ts';
import { inferenceObserver } from '../../api/inference-observer.ts';
import { AgentGateway } from '../../api/agent-gateway.ts';
import type { NodeView } from '../../api/server.ts';
import type { BusEngines, Engines } from '../engines.ts';
import { startConsoleRecords } from './console-records.ts';
import type { InferenceProfileConfig } from '../../inference/profile.ts';
import type { ModuleHandle } from './module.ts';
import type { KeyRing } from '../../access/api-keys.ts';
import type { AuditLog } from '../../access/audit.ts';
import type { MeshModule } from './mesh.ts';

/** The dispatch router of a process: reads the geozones' dispatch topics once, in a group of its own. */
export async function startDispatchRouter(engines: BusEngines, geozones: readonly string[]): Promise<DispatchRouter> {
  const router = new DispatchRouter(engines.bus, engines.clock, engines.instanceId);
  await router.start(geozones, `${engines.instanceId}-dispatch-router`);
  return router;
}

export interface InferenceOptions {
  readonly geozones: readonly string[];
  /** The telemetry period asked of agents. */
  readonly telemetryIntervalMs?: number;
  readonly metrics: ArcMetrics;
  /** Enrols agents that connect with an enrolment token (src/main/modules/access.ts); none under --insecure-no-auth. */
  readonly keys: KeyRing | undefined;
  /** Where enrolments are recorded (the access module's audit log). */
  readonly audit?: AuditLog;
  /** The scheduler's placement profile, for "why this node" (the seed's when absent). */
  readonly placement?: InferenceProfileConfig;
}

export interface InferenceModule extends ModuleHandle {
  readonly tracker: InferenceTracker;
  readonly router: DispatchRouter;
  readonly gateway: AgentGateway;
  readonly hub: ConsoleHub;
  /** Publishes a request as a client would, recording it for status queries. */
  submit(request: InferenceRequest): Promise<void>;
  /** Feeds the console with the mesh's telemetry and names nodes in its events. */
  attachMesh(mesh: Pick<MeshModule, 'nodes' | 'onTelemetry'>): void;
}

export async function startInferenceModule(engines: BusEngines & Partial<Pick<Engines, 'stores'>>, options: InferenceOptions): Promise<InferenceModule> {
  const { bus, clock, logger, instanceId } = engines;
  const { metrics } = options;
  const hub = new ConsoleHub({ serverInstance: instanceId });
  let nodes: Pick<NodeView, 'get'> = { get: () => undefined };
  const tracker = new InferenceTracker();
  tracker.addListener(inferenceObserver(metrics, hub, { get: (id) => nodes.get(id) }));
  // Events, zone summaries and decision records for the console's REST routes (./console-records.ts).
  const records = await startConsoleRecords(engines, tracker, { metrics, records: engines.stores?.records, ...(options.placement ? { placement: options.placement } : {}) });
  await tracker.start(bus, options.geozones, instanceId);
  const router = await startDispatchRouter(engines, options.geozones);
  const gateway = new AgentGateway({
    bus,
    router,
    geozones: options.geozones,
    telemetryIntervalMs: options.telemetryIntervalMs ?? 10_000,
    logger: logger.child({ component: 'agents' }),
    keys: options.keys,
    audit: options.audit,
    metrics,
    onSessionsChanged: (count) => metrics.agentsConnected.set(count),
  });
  return {
    name: 'inference',
    tracker,
    router,
    gateway,
    hub,
    api: { inference: { tracker, hub, gateway, events: records.events, decisions: records.decisions, placement: records.placement } },
    submit: async (request) => {
      tracker.submitted(request, clock.now());
      try {
        await bus.publish(topics.inferenceRequest, 'InferenceRequest', request);
      } catch (error) {
        // Not on the bus, so never decided: failed with the reason rather than pending forever.
        tracker.notPublished(request.id, `not published to ${topics.inferenceRequest}: ${errorMessage(error)}`, clock.now());
        throw error;
      }
    },
    attachMesh: (mesh) => {
      nodes = mesh.nodes;
      hub.attachNodes(mesh.nodes);
      // Every report as the registry applied it; status changes reach the hub as the aggregator's events (tracker → observer).
      mesh.onTelemetry((node) => hub.telemetry(node));
    },
    health: () => ({ ready: true, details: { agentsConnected: gateway.sessions, awaitingDecision: tracker.awaitingDecision, requestsTracked: tracker.size } }),
    stop: async () => {
      hub.closeAll();
      await router.stop();
      await tracker.stop();
      await records.stop();
    },
  };
}

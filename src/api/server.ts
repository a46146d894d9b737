/**
 * The HTTP edge: health and readiness, stats, Prometheus metrics, nodes (with bitemporal
 * `asOf`/`knownAt`), and what the process's modules contribute (`ServerContributions`): inference
 * submission and status, the console feed and agent sessions where the inference module runs, the
 * jobs API where the jobs module runs, and any family's own routes. Every bad input is a 400 naming
 * the field; nothing a client sends can take the server down.
 */
import { createServer as createHttpsServer } from 'node:https';
import Fastify, { type FastifyInstance, type FastifyError, type FastifyBaseLogger } from 'fastify';
import fastifyWebsocket from '@fastify/websocket';
import { Type, type Static } from '@sinclair/typebox';
import type { Clock } from '../core/clock.ts';
import { newId } from '../core/ids.ts';
import { ArcError, errorMessage } from '../core/errors.ts';
import { parseInstant as parseInstantText } from '../core/instants.ts';
import type { Logger } from '../core/logging.ts';
import { serverTlsOptions, type ServerTls } from '../core/tls.ts';
import { requireClientCertificates } from '../access/client-certificate.ts';
import { topics } from '../contracts/topics.ts';
import { MAX_LATENCY_MS, Priority, type InferenceRequest } from '../contracts/messages.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { DocumentStore } from '../store/ports.ts';
import type { NodeState } from '../mesh/node.ts';
import { NODES_COLLECTION } from '../mesh/aggregator.ts';
import { RECENT_RING, SETTLED_RETENTION_MS, type InferenceTracker, type RequestRecord } from '../inference/tracker.ts';
import type { Reservation } from '../placement/candidate-index.ts';
import { AGENT_PATH } from '../agent/protocol.ts';
import { principalOf } from '../access/principal.ts';
import type { ArcMetrics } from './metrics.ts';
import { installAccess, type AccessOptions } from './access-hook.ts';
import { registerTokenRoutes } from './token-routes.ts';
import { registerAuditRoutes } from './audit-routes.ts';
import { registerNodeExecutionRoutes } from './node-execution-routes.ts';
import { registerZoneRoutes } from './zone-routes.ts';
import { registerEventRoutes } from './event-routes.ts';
import type { EventLog } from './event-log.ts';
import { registerExplainRoutes } from './explain-routes.ts';
import type { DecisionLog } from '../inference/decision-log.ts';
import type { InferenceProfileConfig } from '../inference/profile.ts';
import type { AuditLog } from '../access/audit.ts';
import { ACCESS } from '../access/policy.ts';
import { sendApiError } from './errors.ts';
import { installRequestValidation } from './validator.ts';
import { recordRoutes } from './route-table.ts';
import { websocketErrorHandler } from './client-errors.ts';
import type { ConsoleHub } from './console-hub.ts';
import { registerConsoleFeed } from './console-feed.ts';
import { corsPolicy, installCompression, installCors, registerConsoleDelivery } from './console-delivery.ts';
import type { AgentGateway } from './agent-gateway.ts';
import type { JobRoutesDeps } from './job-routes.ts';
import { WORKERS_COLLECTION } from '../jobs/coordinator.ts';
import type { WorkerRecord } from '../jobs/model.ts';

export interface NodeView {
  get(id: string): NodeState | undefined;
  all(): Iterable<NodeState>;
}

/** The inference parts the routes read: request tracking, the console feed, agent sessions. */
export interface InferenceApi {
  readonly tracker: InferenceTracker;
  readonly hub: ConsoleHub;
  readonly gateway: AgentGateway;
  /** System events since boot: `GET /api/v1/events`. */
  readonly events?: EventLog;
  /** Decision records: `GET /api/v1/inference/:id/explain`. */
  readonly decisions?: DecisionLog;
  /** The placement profile the explanations recompute with. */
  readonly placement?: InferenceProfileConfig;
}

/** A family's own routes, registered after the core ones. */
export type RouteContribution = (app: FastifyInstance) => void;

/**
 * What the modules of a process (`src/main/modules/`) give its API server. Each part switches on the
 * routes that read it; a process without the inference module serves no `/api/v1/inference`.
 */
export interface ServerContributions {
  /** Who may call what: the access module's key ring (none under --insecure-no-auth) and rate limit. */
  readonly access?: Omit<AccessOptions, 'logger' | 'workerOf' | 'assertWorkerAuthority'>;
  /** The audit log (the access module's): `GET /api/v1/audit`, and the records of key changes. */
  readonly audit?: AuditLog;
  /** Nodes known from telemetry: the mesh module's registry, or its read-only view. */
  readonly nodes?: NodeView;
  /** Inference submission and status, `/telemetry` and `/agent`. */
  readonly inference?: InferenceApi;
  /** The scheduler's live reservation of a node, where this process runs one. */
  readonly reservationOf?: (nodeId: string) => Reservation | undefined;
  /** Verified batch jobs (seed 004): the node list and `/stats` merge its workers. */
  readonly jobs?: JobRoutesDeps;
  readonly routes?: readonly RouteContribution[];
}

/** What `/health` and `/ready` answer (`src/main/system.ts` builds it for every process alike). */
export interface HealthReport {
  readonly ready: boolean;
  readonly body: Readonly<Record<string, unknown>>;
}

/** The engines under this process, as `/stats` names them. */
export interface EngineNames {
  readonly bus: string;
  readonly store?: string;
}

export interface ServerDeps extends ServerContributions {
  readonly engines: EngineNames;
  /** Who may call what (src/api/access-hook.ts); required: a server without it would be open. */
  readonly access: Omit<AccessOptions, 'logger' | 'workerOf' | 'assertWorkerAuthority'>;
  /** The word older clients read: `embedded` only when both engines are embedded. */
  readonly mode: string;
  readonly health: () => HealthReport;
  readonly bus: MessageBus;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly geozones: readonly string[];
  readonly documents: DocumentStore;
  readonly metrics: ArcMetrics;
  readonly decisionTimeoutMs?: number;
  /** Undecided submissions over HTTP beyond which new ones get 503 (load shedding). */
  readonly maxAwaitingDecisions?: number;
  readonly version: string;
  /** HTTPS and WSS only, TLS 1.3; with a CA, the routes only nodes call need a verified client certificate. */
  readonly tls?: ServerTls;
  /** The built console served at `/` (default `<repo>/web/dist`, ./console-delivery.ts). */
  readonly consoleDir?: string;
  /** Origins whose pages may call this server (`--cors-origin`); none by default: same-origin only. */
  readonly corsOrigins?: readonly string[];
}

const NO_NODES: NodeView = { get: () => undefined, all: () => [] };

const InferenceBody = Type.Object(
  {
    // Seed 000's InferenceRequest message is accepted as it is, version field included.
    schemaVersion: Type.Optional(Type.Literal(1)),
    id: Type.Optional(Type.String({ format: 'uuid' })),
    modelId: Type.String({ minLength: 1, maxLength: 256 }),
    contextWindowTokens: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
    priority: Type.Optional(Priority),
    maxLatencyMs: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LATENCY_MS })),
    requesterGeozone: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }),
  },
  { additionalProperties: false },
);

const TimeQuery = Type.Object(
  {
    asOf: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    knownAt: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    geozone: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    status: Type.Optional(Type.Union([Type.Literal('online'), Type.Literal('busy'), Type.Literal('draining'), Type.Literal('offline')])),
  },
  { additionalProperties: false },
);

const InferenceListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    nodeId: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' })),
  },
  { additionalProperties: false },
);
/** The tracker's ring of recent ids (src/inference/tracker.ts): a node's work is looked for among these. */
const RECENT_WINDOW = RECENT_RING;

class BadRequest extends Error {
  readonly statusCode = 400;
}

/** Accepts an ISO-8601 instant or epoch milliseconds, within the range every store and Date can hold (src/core/instants.ts). */
function parseInstant(field: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = parseInstantText(value, { epochMs: true });
  if (!parsed.ok) throw new BadRequest(`querystring/${field}: ${parsed.problem}`);
  return parsed.ms;
}

export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  // Per-request logs would drown the status line at thousands of requests a second; the metrics count them instead.
  // Validation (types exact in bodies, a misspelt field an error) is ./validator.ts, installed below for every route.
  const tls = deps.tls;
  const app = Fastify({
    // An https.Server in place of the http one: every route and WebSocket is then served over TLS only.
    ...(tls ? { serverFactory: (handler: Parameters<typeof createHttpsServer>[1]) => createHttpsServer(serverTlsOptions(tls), handler) } : {}),
    loggerInstance: deps.logger.child({ component: 'api' }, { level: deps.logger.levelVal > 40 ? deps.logger.level : 'warn' }) as FastifyBaseLogger,
    bodyLimit: 1 << 20,
    schemaErrorFormatter: (errors, dataVar) =>
      new Error(
        errors
          .map((e) => {
            const extra = (e.params as { additionalProperty?: string }).additionalProperty;
            return `${dataVar}${e.instancePath} ${e.message ?? 'is not valid'}${extra === undefined ? '' : `: "${extra}"`}`;
          })
          .join('; '),
      ),
  });
  // First of all hooks: a node route without a verified client certificate goes no further.
  if (tls?.ca !== undefined) requireClientCertificates(app);
  installRequestValidation(app);
  recordRoutes(app);
  // A client's broken frame or dropped connection is its problem, not the server's: warned, rate-limited (./client-errors.ts).
  // Per-message deflate only for messages over 64 KiB (a console's snapshot of thousands of nodes), with
  // no context kept between messages: a session that never sends one never holds a zlib stream.
  const perMessageDeflate = { threshold: 64 * 1024, serverNoContextTakeover: true, clientNoContextTakeover: true, concurrencyLimit: 4 };
  await app.register(fastifyWebsocket, { options: { maxPayload: 1 << 20, perMessageDeflate }, errorHandler: websocketErrorHandler(deps.logger.child({ component: 'websocket' })) });
  // Before any route: a route added without an access rule makes buildServer throw.
  await installAccess(app, { ...deps.access, logger: deps.logger, ...(deps.jobs ? { workerOf: (credential: string) => deps.jobs?.coordinator.workerByCredential(credential), assertWorkerAuthority: () => deps.jobs?.coordinator.assertLeading() } : {}) });
  installCors(app, deps.corsOrigins ?? []);
  await installCompression(app);
  const started = Date.now();
  const decisionTimeoutMs = deps.decisionTimeoutMs ?? 5_000;
  const maxAwaiting = deps.maxAwaitingDecisions ?? 10_000;

  // One mapper for every route (src/api/errors.ts): codes and statuses become the same body everywhere.
  app.setErrorHandler((error: FastifyError, request, reply) => {
    void sendApiError(request, reply, error);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${request.method} ${request.url}` });
  });
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    deps.metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    deps.metrics.httpDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
    done();
  });

  // Liveness and readiness, the same body in every process (src/main/system.ts): /health is 200 while it runs, /ready 503 until every module is ready.
  const probe = { config: { access: ACCESS.public('liveness and readiness probes (load balancers, orchestrators) carry no keys') } };
  app.get('/health', probe, async () => deps.health().body);
  app.get('/ready', probe, async (_request, reply) => {
    const report = deps.health();
    return reply.status(report.ready ? 200 : 503).send(report.body);
  });

  app.get('/stats', { config: { access: ACCESS.viewer } }, async () => stats(deps, started));

  app.get('/metrics', { config: { access: ACCESS.viewer } }, async (_request, reply) => {
    void reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });

  app.get<{ Querystring: Static<typeof TimeQuery> }>('/api/v1/nodes', { schema: { querystring: TimeQuery }, config: { access: ACCESS.viewer } }, async (request) => {
    const { geozone, status } = request.query;
    const asOf = parseInstant('asOf', request.query.asOf);
    const knownAt = parseInstant('knownAt', request.query.knownAt);
    let nodes: NodeState[];
    let workers: WorkerRecord[];
    if (asOf === undefined && knownAt === undefined) {
      nodes = [...nodesOf(deps).all()];
      workers = deps.jobs ? [...deps.jobs.coordinator.allWorkers()] : [];
    } else {
      const times = { ...(asOf === undefined ? {} : { asOf }), ...(knownAt === undefined ? {} : { knownAt }) };
      nodes = (await deps.documents.list<NodeState>(NODES_COLLECTION, times)).flatMap((v) => (v.body ? [v.body] : []));
      workers = deps.jobs ? (await deps.documents.list<WorkerRecord>(WORKERS_COLLECTION, times)).flatMap((v) => (v.body ? [v.body] : [])) : [];
    }
    const merged = mergeNodes(nodes, workers, deps);
    const filtered = merged.filter((n) => (geozone === undefined || n['geozone'] === geozone) && (status === undefined || n['status'] === status)).sort((a, b) => String(a['name']).localeCompare(String(b['name'])));
    return { count: filtered.length, asOf: asOf === undefined ? null : new Date(asOf).toISOString(), knownAt: knownAt === undefined ? null : new Date(knownAt).toISOString(), nodes: filtered };
  });

  app.get<{ Params: { id: string }; Querystring: Static<typeof TimeQuery> & { history?: string } }>(
    '/api/v1/nodes/:id',
    { schema: { querystring: Type.Composite([Type.Omit(TimeQuery, ['geozone', 'status']), Type.Object({ history: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])) })], { additionalProperties: false }) }, config: { access: ACCESS.viewer } },
    async (request, reply) => {
      const { id } = request.params;
      const asOf = parseInstant('asOf', request.query.asOf);
      const knownAt = parseInstant('knownAt', request.query.knownAt);
      let node: NodeState | undefined;
      let version: { version: number; validFrom: string; txTime: string } | undefined;
      if (asOf === undefined && knownAt === undefined) {
        node = nodesOf(deps).get(id);
      }
      if (!node) {
        const doc = await deps.documents.get<NodeState>(NODES_COLLECTION, id, { ...(asOf === undefined ? {} : { asOf }), ...(knownAt === undefined ? {} : { knownAt }) });
        node = doc?.body;
        if (doc) version = { version: doc.version, validFrom: new Date(doc.validFrom).toISOString(), txTime: new Date(doc.txTime).toISOString() };
      }
      let worker: WorkerRecord | undefined;
      if (deps.jobs) {
        worker = asOf === undefined && knownAt === undefined
          ? deps.jobs.coordinator.worker(id)
          : (await deps.documents.get<WorkerRecord>(WORKERS_COLLECTION, id, { ...(asOf === undefined ? {} : { asOf }), ...(knownAt === undefined ? {} : { knownAt }) }))?.body;
      }
      if (!node && !worker) {
        const when = asOf !== undefined || knownAt !== undefined ? ' at the requested time' : '';
        return reply.status(404).send({ statusCode: 404, error: 'Not Found', message: `node ${id} is not known${when}` });
      }
      const body: Record<string, unknown> = { ...(node ? presentNode(node, deps, worker) : presentWorkerOnly(worker!)), ...(version ? { document: version } : {}) };
      if (request.query.history === 'true' && node) {
        body['history'] = (await deps.documents.history<NodeState>(NODES_COLLECTION, id)).map((v) => ({
          version: v.version,
          validFrom: new Date(v.validFrom).toISOString(),
          txTime: new Date(v.txTime).toISOString(),
          status: v.body?.status,
          gpuUtilization: v.body?.gpuUtilization,
          batteryLevel: v.body?.batteryLevel,
          energySource: v.body?.energySource,
        }));
      }
      return body;
    },
  );

  if (deps.access.keys) registerTokenRoutes(app, deps.access.keys, deps.clock, deps.audit);
  if (deps.audit) registerAuditRoutes(app, deps.audit);
  if (deps.jobs) registerNodeExecutionRoutes(app, deps.jobs.coordinator);
  registerZoneRoutes(app, { geozones: deps.geozones, nodes: nodesOf(deps), figures: deps.metrics.zones, ...(deps.jobs ? { workers: () => deps.jobs!.coordinator.allWorkers() } : {}) });
  if (deps.inference?.events) registerEventRoutes(app, deps.inference.events);
  registerExplainRoutes(app, { documents: deps.documents, ...(deps.inference?.decisions ? { decisions: deps.inference.decisions } : {}), ...(deps.inference?.placement ? { placement: deps.inference.placement } : {}), ...(deps.jobs ? { coordinator: deps.jobs.coordinator } : {}) });

  const inferenceApi = deps.inference;
  if (inferenceApi) {
    app.post<{ Body: Static<typeof InferenceBody> }>('/api/v1/inference', { schema: { body: InferenceBody }, config: { access: ACCESS.developer } }, async (request, reply) => {
      const body = request.body;
      const inference: InferenceRequest = {
        schemaVersion: 1,
        id: body.id ?? newId(),
        modelId: body.modelId,
        contextWindowTokens: body.contextWindowTokens,
        priority: body.priority ?? 'normal',
        maxLatencyMs: body.maxLatencyMs ?? 2_000,
        requesterGeozone: body.requesterGeozone,
      };
      // A zone no scheduler here serves is never decided: refused, rather than accepted and left pending.
      if (!deps.geozones.includes(inference.requesterGeozone)) throw new BadRequest(`body/requesterGeozone: "${inference.requesterGeozone}" is not a geozone served here (known: ${deps.geozones.join(', ')})`);
      const existing = inferenceApi.tracker.get(inference.id);
      if (existing && existing.status !== 'pending' && existing.unpublished !== true) return reply.status(200).send(presentRequest(existing, deps));
      // Shed load rather than queue without bound: past this many undecided requests the scheduler is
      // behind, and a client retrying later does better than one waiting out a timeout.
      if (inferenceApi.tracker.awaitingDecision >= maxAwaiting) {
        void reply.header('retry-after', '1');
        return reply.status(503).send({ statusCode: 503, error: 'Service Unavailable', message: `scheduler backlog: ${inferenceApi.tracker.awaitingDecision} requests await a decision (limit ${maxAwaiting}); retry after 1 s` });
      }
      inferenceApi.tracker.submitted(inference, deps.clock.now());
      const decision = inferenceApi.tracker.waitForDecision(inference.id, decisionTimeoutMs);
      try {
        await deps.bus.publish(topics.inferenceRequest, 'InferenceRequest', inference);
      } catch (error) {
        // Nothing will ever decide a request that is not on the bus: fail it with the reason (the same id may be sent again).
        inferenceApi.tracker.notPublished(inference.id, `not published to ${topics.inferenceRequest}: ${errorMessage(error)}`, deps.clock.now());
        if (error instanceof ArcError && error.code === 'INVALID_INPUT') throw error;
        throw new ArcError('UNAVAILABLE', `inference request ${inference.id} was not accepted: the bus refused it (${errorMessage(error)}); nothing was scheduled, retry later`, { retryable: true, cause: error });
      }
      const outcome = await decision;
      if (outcome.kind === 'timeout') {
        return reply.status(202).send({ id: inference.id, status: 'pending', message: `accepted, but no scheduler decided within ${decisionTimeoutMs} ms; poll GET /api/v1/inference/${inference.id}` });
      }
      if (outcome.kind === 'rejected') {
        void reply.header('retry-after', '1');
        return reply.status(503).send(presentRequest(outcome.record, deps));
      }
      return reply.status(201).send(presentRequest(outcome.record, deps));
    });

    app.get<{ Params: { id: string } }>('/api/v1/inference/:id', { schema: { params: Type.Object({ id: Type.String({ format: 'uuid' }) }) }, config: { access: ACCESS.viewer } }, async (request, reply) => {
      const record = inferenceApi.tracker.get(request.params.id);
      if (!record) return reply.status(404).send({ statusCode: 404, error: 'Not Found', message: `inference request ${request.params.id} is not known here (recent requests only: the newest ${RECENT_RING.toLocaleString('en')}, and any settled in the last ${SETTLED_RETENTION_MS / 1000} s or not settled yet)` });
      return presentRequest(record, deps);
    });

    // `nodeId`: that node's recent work, from the same window of recent requests (the newest 1,000 this server saw).
    app.get<{ Querystring: Static<typeof InferenceListQuery> }>('/api/v1/inference', { schema: { querystring: InferenceListQuery }, config: { access: ACCESS.viewer } }, async (request) => {
      const { nodeId, limit = 50 } = request.query;
      const records = nodeId === undefined ? inferenceApi.tracker.recent(limit) : inferenceApi.tracker.recent(RECENT_WINDOW).filter((r) => r.nodeId === nodeId).slice(0, limit);
      return { ...(nodeId === undefined ? {} : { nodeId }), requests: records.map((r) => presentRequest(r, deps)) };
    });

    registerConsoleFeed(app, inferenceApi.hub, corsPolicy(deps.corsOrigins ?? []));

    app.get(AGENT_PATH, { websocket: true, config: { access: ACCESS.agent } }, (socket, request) => {
      inferenceApi.gateway.handle(socket, principalOf(request), request.ip);
    });
  }

  for (const routes of deps.routes ?? []) routes(app);
  // Last: its `/*` route answers only what no API route does (the app's own paths, in the browser).
  await registerConsoleDelivery(app, deps.consoleDir === undefined ? {} : { dir: deps.consoleDir });

  app.addHook('onClose', async () => {
    deps.inference?.hub.closeAll();
    deps.inference?.gateway.closeAll();
    deps.jobs?.workers.closeAll();
  });

  return app;
}

/**
 * One node list for both seeds (ADR 0007): a node known from telemetry carries seed 004's worker
 * fields when it is also a registered worker; a worker that sends no telemetry appears on its own.
 */
function mergeNodes(nodes: readonly NodeState[], workers: readonly WorkerRecord[], deps: ServerDeps): Record<string, unknown>[] {
  const byId = new Map(workers.map((w) => [w.id, w]));
  const out = nodes.map((node) => presentNode(node, deps, byId.get(node.id)));
  const seen = new Set(nodes.map((n) => n.id));
  for (const worker of workers) if (!seen.has(worker.id)) out.push(presentWorkerOnly(worker));
  return out;
}

/** Seed 004's node fields, without the credential's hash. */
function workerFields(worker: WorkerRecord): Record<string, unknown> {
  const { credential_hash: _hidden, id: _id, name: _name, status, ...fields } = worker;
  return { ...fields, worker_status: status };
}

function presentWorkerOnly(worker: WorkerRecord): Record<string, unknown> {
  return {
    id: worker.id,
    name: worker.name,
    geozone: worker.region ?? 'UNZONED',
    status: worker.status,
    capacity: { cpuCores: worker.cpu_cores, memoryGb: worker.memory_gb, gpus: worker.gpu_enabled ? 1 : 0 },
    cpuLoad: worker.cpu_usage,
    lastSeen: worker.last_heartbeat,
    reservation: null,
    ...workerFields(worker),
  };
}

/**
 * Seed 004's node fields for a node known only from telemetry, so a seed 004 dashboard reads every
 * node alike: its zone as the region, capacity as the resources, no jobs run and no credits yet.
 */
function seedFieldsOfTelemetryNode(node: NodeState): Record<string, unknown> {
  const lastSeen = new Date(node.lastSeen).toISOString();
  return {
    region: node.geozone,
    cpu_cores: node.capacity.cpuCores,
    memory_gb: node.capacity.memoryGb,
    gpu_enabled: node.capacity.gpus > 0,
    gpu_model: null,
    reputation_score: node.reputation,
    total_jobs_run: 0,
    successful_jobs_run: 0,
    failed_jobs: 0,
    credits_earned: 0,
    last_heartbeat: lastSeen,
    // Documents stored before firstSeen existed: the earliest time this process can vouch for.
    registered_at: node.firstSeen === undefined ? lastSeen : new Date(node.firstSeen).toISOString(),
    current_job_id: null,
  };
}

function presentNode(node: NodeState, deps: ServerDeps, worker?: WorkerRecord): Record<string, unknown> {
  const reservation = deps.reservationOf?.(node.id);
  const live = reservation && reservation.expiresAt > deps.clock.now();
  return {
    ...node,
    ...(worker ? { reputation: worker.reputation_score } : {}),
    lastSeen: new Date(node.lastSeen).toISOString(),
    reportedAt: new Date(node.reportedAt).toISOString(),
    ...(node.firstSeen === undefined ? {} : { firstSeen: new Date(node.firstSeen).toISOString() }),
    reservation: live ? { requestId: reservation.holder, fencingToken: reservation.token, expiresAt: new Date(reservation.expiresAt).toISOString() } : null,
    // A registered worker's own record wins: it is what seed 004's coordinator counts.
    ...(worker ? workerFields(worker) : seedFieldsOfTelemetryNode(node)),
  };
}

function presentRequest(record: RequestRecord, deps: ServerDeps): Record<string, unknown> {
  const node = record.nodeId ? nodesOf(deps).get(record.nodeId) : undefined;
  const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());
  return {
    id: record.id,
    status: record.status,
    modelId: record.modelId,
    requesterGeozone: record.requesterGeozone,
    priority: record.priority,
    nodeId: record.nodeId,
    nodeName: node?.name,
    geozone: record.geozone,
    forwarded: record.forwarded,
    score: record.score,
    fencingToken: record.fencingToken,
    latencyMs: record.latencyMs,
    outputTokens: record.outputTokens,
    reason: record.reason,
    rejectedBy: record.rejectedBy,
    submittedAt: iso(record.submittedAt),
    dispatchedAt: iso(record.dispatchedAt),
    completedAt: iso(record.completedAt),
  };
}

function nodesOf(deps: Pick<ServerContributions, 'nodes'>): NodeView {
  return deps.nodes ?? NO_NODES;
}

/**
 * `/stats`: ArcNet's figures and seed 004's dashboard cards (nodes total/online/busy, resources, jobs
 * total/completed/running/failed), every node counted once whether it is a telemetry node, a worker
 * or both. One pass over the in-memory registries, no store read: dashboards poll it.
 */
export function stats(deps: Pick<ServerDeps, 'nodes' | 'metrics' | 'geozones' | 'engines' | 'mode' | 'inference' | 'jobs'>, started: number): Record<string, unknown> {
  const zones: Record<string, Record<string, number>> = {};
  for (const zone of deps.geozones) zones[zone] = { total: 0, online: 0, busy: 0, draining: 0, offline: 0 };
  const byStatus: Record<string, number> = { online: 0, busy: 0, draining: 0, offline: 0 };
  // Seed 004's resource cards: the capacity of the nodes that are not offline (as workers.cpuCores always counted).
  const resources = { total_cpu_cores: 0, total_memory_gb: 0, total_gpus: 0 };
  let total = 0;
  const count = (geozone: string, status: string, capacity: { cpuCores: number; memoryGb: number; gpus: number }): void => {
    total++;
    const zone = (zones[geozone] ??= { total: 0, online: 0, busy: 0, draining: 0, offline: 0 });
    zone['total']!++;
    zone[status] = (zone[status] ?? 0) + 1;
    byStatus[status] = (byStatus[status] ?? 0) + 1;
    if (status === 'offline') return;
    resources.total_cpu_cores += capacity.cpuCores;
    resources.total_memory_gb += capacity.memoryGb;
    resources.total_gpus += capacity.gpus;
  };
  const telemetryIds = new Set<string>();
  for (const node of nodesOf(deps).all()) {
    telemetryIds.add(node.id);
    // A node that is also a worker shows the worker's resources in the node list (presentNode): the same here.
    const worker = deps.jobs?.coordinator.worker(node.id);
    count(node.geozone, node.status, worker ? { cpuCores: worker.cpu_cores, memoryGb: worker.memory_gb, gpus: node.capacity.gpus } : node.capacity);
  }
  let jobs: Record<string, unknown> | undefined;
  if (deps.jobs) {
    const workers = { total: 0, online: 0, busy: 0, offline: 0, connected: deps.jobs.workers.connected, cpuCores: 0, memoryGb: 0, reputationAvg: null as number | null };
    let reputation = 0;
    for (const worker of deps.jobs.coordinator.allWorkers()) {
      if (!telemetryIds.has(worker.id)) count(worker.region ?? 'UNZONED', worker.status, { cpuCores: worker.cpu_cores, memoryGb: worker.memory_gb, gpus: worker.gpu_enabled ? 1 : 0 });
      workers.total++;
      workers[worker.status]++;
      reputation += worker.reputation_score;
      if (worker.status !== 'offline') {
        workers.cpuCores += worker.cpu_cores;
        workers.memoryGb += worker.memory_gb;
      }
    }
    workers.reputationAvg = workers.total > 0 ? Math.round((reputation / workers.total) * 10) / 10 : null;
    const counts = deps.jobs.coordinator.jobCounts();
    jobs = { jobs: { total: counts.total, ...counts.byStatus }, workers };
  }
  const m = deps.metrics;
  const [p50, p99] = m.decisionSamples.percentiles(50, 99);
  const [l50, l99] = m.latencySamples.percentiles(50, 99);
  const round = (v: number | undefined, digits = 3): number | null => (v === undefined || Number.isNaN(v) ? null : Math.round(v * 10 ** digits) / 10 ** digits);
  return {
    engines: deps.engines,
    mode: deps.mode,
    uptimeS: Math.round((Date.now() - started) / 1000),
    nodes: { total, ...byStatus, byGeozone: zones },
    resources,
    agentsConnected: deps.inference?.gateway.sessions ?? 0,
    inference: {
      ...m.totals,
      requestsPerSecond: round(m.requestRate.perSecond(), 1),
      routingMsP50: round(p50),
      routingMsP99: round(p99),
      latencyMsP50: round(l50, 1),
      latencyMsP99: round(l99, 1),
    },
    ...jobs,
  };
}

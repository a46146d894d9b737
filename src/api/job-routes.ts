/**
 * Seed 004's coordinator API on ArcNet's server: jobs, worker registration, heartbeats, pending
 * jobs, results, the worker push session, and which replica leads. Bodies are checked against
 * TypeBox schemas (a 400 naming the field). The edge does two checks, in this order, before any
 * worker call reaches the coordinator: this replica leads (else 503 NOT_LEADER: a worker given
 * several servers tries the next), and the worker's credential is its own (`workerCall`). Every
 * error, the coordinator's refusals included, is answered by the one mapper in `./errors.ts`.
 */
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Coordinator } from '../jobs/coordinator.ts';
import { authenticateReregistration, authenticateWorker, type AuthenticatedWorker } from '../jobs/credentials.ts';
import { JobsError } from '../jobs/errors.ts';
import type { Job, JobExecution, JobStatus } from '../jobs/model.ts';
import { WORKER_STREAM_PATH } from '../jobs/protocol.ts';
import { MAX_CPU_CORES, MAX_MEMORY_GB } from '../contracts/messages.ts';
import { KEY_ID_PATTERN } from '../jobs/signing.ts';
import { publicWorker } from '../jobs/workers.ts';
import { sendApiError } from './errors.ts';
import { ACCESS, type AccessRule } from '../access/policy.ts';
import { bearerFromHeader } from './access-hook.ts';
import { originOf, principalOf } from '../access/principal.ts';
import type { Caller } from '../jobs/ports.ts';
import type { WorkerGateway } from './worker-gateway.ts';

export interface JobRoutesDeps {
  readonly coordinator: Coordinator;
  readonly workers: WorkerGateway;
}

const Uuid = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' });
// Sane maxima for every number a client sends (issue 11): far above any real job or machine, far below what breaks arithmetic.
// The coordinator's own limits (maxRedundancy, maxTimeoutSeconds, maxResultBytes) are tighter and name themselves.
const MAX_TIMEOUT_SECONDS = 30 * 86_400;
const MAX_EXECUTIONS = 1_000;
const MAX_CREDITS = 1_000_000_000;
/** The result route's body limit: what `result` and `logs` can be at most, said in their schema too. */
const RESULT_BODY_LIMIT = 16 << 20;

const JobBody = Type.Object(
  {
    id: Type.Optional(Uuid),
    name: Type.String({ minLength: 1, maxLength: 255 }),
    description: Type.Optional(Type.String({ maxLength: 10_000 })),
    docker_image: Type.String({ minLength: 1, maxLength: 255 }),
    command: Type.Array(Type.String({ maxLength: 100_000 }), { minItems: 1, maxItems: 1_000 }),
    // Keys are checked by the coordinator: Fastify's validator would silently drop a bad key here.
    environment: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 100_000 }), { maxProperties: 1_000 })),
    input_data: Type.Optional(Type.String({ maxLength: 1 << 20 })),
    required_cpu: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_CPU_CORES })),
    required_memory: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_MEMORY_GB })),
    required_gpu: Type.Optional(Type.Boolean()),
    redundancy: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_EXECUTIONS })),
    consensus: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_EXECUTIONS })),
    max_executions: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_EXECUTIONS })),
    timeout_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TIMEOUT_SECONDS })),
    network: Type.Optional(Type.Boolean()),
    distinct_enrolments: Type.Optional(Type.Boolean()),
    submitted_by: Type.Optional(Type.String({ maxLength: 255 })),
    credits_required: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_CREDITS })),
    // The submitter's Ed25519 signature over the signed fields (src/jobs/signing.ts); the coordinator verifies it.
    signature: Type.Optional(
      Type.Object(
        { key_id: Type.String({ pattern: KEY_ID_PATTERN }), value: Type.String({ minLength: 1, maxLength: 200 }) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const RegisterBody = Type.Object(
  {
    id: Type.Optional(Uuid),
    name: Type.String({ minLength: 1, maxLength: 255 }),
    region: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    cpu_cores: Type.Number({ exclusiveMinimum: 0, maximum: MAX_CPU_CORES }),
    memory_gb: Type.Number({ exclusiveMinimum: 0, maximum: MAX_MEMORY_GB }),
    gpu_enabled: Type.Optional(Type.Boolean()),
    gpu_model: Type.Optional(Type.String({ maxLength: 255 })),
  },
  { additionalProperties: false },
);

const HeartbeatBody = Type.Object(
  {
    cpu_usage: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    memory_usage: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    active_jobs: Type.Optional(Type.Array(Type.String({ maxLength: 128 }), { maxItems: 10_000 })),
  },
  { additionalProperties: false },
);

const ResultBody = Type.Object(
  {
    node_id: Uuid,
    execution_id: Uuid,
    status: Type.Union([Type.Literal('completed'), Type.Literal('failed'), Type.Literal('timed_out')]),
    result: Type.Optional(Type.String({ maxLength: RESULT_BODY_LIMIT })),
    result_encoding: Type.Optional(Type.Union([Type.Literal('utf8'), Type.Literal('base64')])),
    result_hash: Type.Optional(Type.String({ maxLength: 128 })),
    // Signed 32-bit on Linux, unsigned on Windows.
    exit_code: Type.Optional(Type.Integer({ minimum: -2_147_483_648, maximum: 4_294_967_295 })),
    duration_ms: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_TIMEOUT_SECONDS * 1_000 })),
    error_message: Type.Optional(Type.String({ maxLength: 10_000 })),
    logs: Type.Optional(Type.String({ maxLength: RESULT_BODY_LIMIT })),
  },
  { additionalProperties: false },
);

const JobStatusSchema = Type.Union([Type.Literal('pending'), Type.Literal('running'), Type.Literal('completed'), Type.Literal('failed')]);

/** Executions as the API shows them; results are kept, logs only on the executions endpoint. */
function presentExecution(execution: JobExecution, withLogs: boolean): Record<string, unknown> {
  const { logs, ...rest } = execution;
  return withLogs ? { ...rest, logs } : rest;
}

/** A job with its execution counts by status, and the executions themselves when asked for one job. */
export function presentJob(job: Job, executions: readonly JobExecution[], withExecutions: boolean): Record<string, unknown> {
  const summary: Record<string, number> = {};
  for (const execution of executions) summary[execution.status] = (summary[execution.status] ?? 0) + 1;
  // Jobs stored before signing existed carry neither field: shown as unsigned.
  return { ...job, signature: job.signature ?? null, signed_by: job.signed_by ?? null, execution_counts: summary, ...(withExecutions ? { executions: executions.map((e) => presentExecution(e, false)) } : {}) };
}

/** Who is calling and from where, named in the audit records of what the call changes. */
function callerOf(request: FastifyRequest): Caller {
  const { principal, address } = originOf(request);
  return { actor: principal.keyId, actorRole: principal.role, address };
}

const jobNotKnown = (id: string): JobsError => new JobsError('NOT_FOUND', `job ${id} is not known`);

export function registerJobRoutes(app: FastifyInstance, deps: JobRoutesDeps): void {
  const { coordinator } = deps;
  // A replica that stops leading ends its workers' sessions, so they move to the one that leads.
  coordinator.onLeadershipChange((leading) => {
    if (!leading) deps.workers.closeAll();
  });

  const authenticated = new WeakMap<FastifyRequest, AuthenticatedWorker>();
  /** The one guard of every worker call: this replica leads, and the credential is the node's own. */
  const workerCall = <R extends FastifyRequest>(nodeIdOf: (request: R) => string): { preHandler: preHandlerAsyncHookHandler; config: { access: AccessRule } } => ({
    config: { access: ACCESS.worker },
    preHandler: async (request) => {
      coordinator.assertLeading();
      const nodeId = nodeIdOf(request as R);
      authenticated.set(request, authenticateWorker(coordinator.worker(nodeId), nodeId, bearerFromHeader(request.headers.authorization)));
    },
  });
  const workerOf = (request: FastifyRequest): AuthenticatedWorker => {
    const worker = authenticated.get(request);
    if (worker === undefined) throw new Error(`route ${request.routeOptions.url} takes worker calls without the workerCall guard`);
    return worker;
  };

  // Encapsulated so that every route here answers errors through the mapper, on any server that mounts it.
  void app.register(async (scope) => {
    scope.setErrorHandler((error, request, reply) => sendApiError(request, reply, error));

    scope.post<{ Body: Static<typeof JobBody> }>('/api/v1/jobs', { schema: { body: JobBody }, config: { access: ACCESS.developer } }, async (request, reply) => {
      const { job, created } = await coordinator.submit(request.body, callerOf(request));
      return reply.status(created ? 201 : 200).send(presentJob(job, coordinator.executionsOf(job.id), false));
    });

    scope.get<{ Querystring: { status?: JobStatus; limit?: number } }>(
      '/api/v1/jobs',
      { schema: { querystring: Type.Object({ status: Type.Optional(JobStatusSchema), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }, { additionalProperties: false }) }, config: { access: ACCESS.viewer } },
      async (request) => {
        const jobs = coordinator.listJobs({ ...(request.query.status ? { status: request.query.status } : {}), limit: request.query.limit ?? 100 });
        return { count: jobs.length, total: coordinator.jobCounts().total, jobs: jobs.map(({ job, executions }) => presentJob(job, executions, false)) };
      },
    );

    scope.get<{ Params: { id: string } }>('/api/v1/jobs/:id', { schema: { params: Type.Object({ id: Uuid }) }, config: { access: ACCESS.viewer } }, async (request) => {
      const found = await coordinator.findJob(request.params.id);
      if (!found) throw jobNotKnown(request.params.id);
      return presentJob(found.job, found.executions, true);
    });

    scope.get<{ Params: { id: string } }>('/api/v1/jobs/:id/executions', { schema: { params: Type.Object({ id: Uuid }) }, config: { access: ACCESS.viewer } }, async (request) => {
      const found = await coordinator.findJob(request.params.id);
      if (!found) throw jobNotKnown(request.params.id);
      return { job_id: found.job.id, count: found.executions.length, executions: found.executions.map((e) => presentExecution(e, true)) };
    });

    /** Which replica this is and whether it leads (the standby keeps a warm view and answers reads). */
    scope.get('/api/v1/coordinator', { config: { access: ACCESS.viewer } }, async () => coordinator.role());

    scope.post<{ Body: Static<typeof RegisterBody> }>('/api/v1/nodes/register', { schema: { body: RegisterBody }, config: { access: ACCESS.workerRegistration } }, async (request, reply) => {
      coordinator.assertLeading();
      const caller = principalOf(request);
      // A worker's own credential re-registers that worker only: it cannot enrol others (one registration, one party).
      if (caller.role === 'node' && request.body.id !== caller.nodeId) {
        throw new JobsError('FORBIDDEN', `a worker credential re-registers its own node (${caller.nodeId}) only; registering a new worker needs an enrolment token`);
      }
      if (caller.role === 'enrolment' && request.body.region !== undefined && request.body.region !== caller.geozone) {
        throw new JobsError('FORBIDDEN', `body/region: enrolment token ${caller.keyId} enrols workers into ${caller.geozone}, not ${request.body.region}`);
      }
      const registration = caller.role === 'enrolment' && request.body.region === undefined && caller.geozone !== undefined ? { ...request.body, region: caller.geozone } : request.body;
      const as = request.body.id === undefined ? undefined : authenticateReregistration(coordinator.worker(request.body.id), bearerFromHeader(request.headers.authorization));
      const { worker, credential, created } = await coordinator.register(registration, as, caller.role === 'node' ? null : caller.keyId, callerOf(request));
      return reply.status(created ? 201 : 200).send({ node: publicWorker(worker), credential, stream: WORKER_STREAM_PATH });
    });

    scope.post<{ Params: { id: string }; Body: Static<typeof HeartbeatBody> }>(
      '/api/v1/nodes/:id/heartbeat',
      { schema: { params: Type.Object({ id: Type.String({ minLength: 1 }) }), body: HeartbeatBody }, ...workerCall<FastifyRequest<{ Params: { id: string } }>>((r) => r.params.id) },
      async (request) => ({ node: publicWorker(await coordinator.heartbeat(workerOf(request), request.body ?? {})) }),
    );

    scope.get<{ Params: { id: string } }>(
      '/api/v1/nodes/:id/pending-jobs',
      { schema: { params: Type.Object({ id: Type.String({ minLength: 1 }) }) }, ...workerCall<FastifyRequest<{ Params: { id: string } }>>((r) => r.params.id) },
      async (request) => {
        const jobs = await coordinator.pendingFor(workerOf(request));
        return { count: jobs.length, jobs };
      },
    );

    scope.post<{ Body: Static<typeof ResultBody> }>(
      '/api/v1/worker/result',
      { schema: { body: ResultBody }, bodyLimit: RESULT_BODY_LIMIT, ...workerCall<FastifyRequest<{ Body: Static<typeof ResultBody> }>>((r) => r.body.node_id) },
      async (request, reply) => {
        const { node_id: _nodeId, ...result } = request.body;
        const outcome = await coordinator.submitResult(workerOf(request), result);
        const body = { execution: presentExecution(outcome.execution, false), job_status: outcome.job.status, duplicate: outcome.kind === 'duplicate', late: outcome.kind === 'recorded' && outcome.late };
        return reply.status(outcome.kind === 'duplicate' ? 200 : 201).send(body);
      },
    );

    scope.get<{ Querystring: { node_id: string } }>(
      WORKER_STREAM_PATH,
      { websocket: true, schema: { querystring: Type.Object({ node_id: Type.String({ minLength: 1 }) }) }, ...workerCall<FastifyRequest<{ Querystring: { node_id: string } }>>((r) => r.query.node_id) },
      (socket, request) => {
        deps.workers.handle(socket, workerOf(request));
      },
    );
  });
}

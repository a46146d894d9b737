/**
 * The training bridge's API (issue 13): submit a training job, list and read them, read a job's
 * history, and ask for a cancel. The server stores the submission (`training_jobs`, version 1) and
 * publishes it on `arc.job.submission`; from there the bridge (src/training/bridge.ts, in this
 * process or an `arcnet bridge` elsewhere) classifies and drives it, and is the only writer of the
 * document after. A cancel is a request in the KV store (`training/cancel/<id>`) that the job's
 * owner acts on, so the API never writes a document the bridge owns.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Clock } from '../core/clock.ts';
import { ArcError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import { topics } from '../contracts/topics.ts';
import type { DocumentStore, KvStore } from '../store/ports.ts';
import { CANCEL_PREFIX, TRAINING_COLLECTION, TRAINING_FINAL, submissionMessage, type TrainingRecord, type TrainingStatus } from '../training/model.ts';
import { ACCESS } from '../access/policy.ts';
import { principalOf } from '../access/principal.ts';
import { sendApiError } from './errors.ts';

export interface TrainingRoutesDeps {
  readonly bus: MessageBus;
  readonly documents: DocumentStore;
  readonly kv: KvStore;
  readonly clock: Clock;
}

const Uuid = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' });
const Uri = Type.String({ minLength: 1, maxLength: 4_096 });
/** A batch script of a training job: 256 KiB is far more than any real one. */
export const MAX_SCRIPT_BYTES = 256 * 1024;
/** Slurm's own limit is a year; a month is more than any job here should ask. */
const MAX_TIME_LIMIT_MINUTES = 30 * 24 * 60;

const STATUSES: readonly TrainingStatus[] = ['submitted', 'waiting', 'pending', 'transferring', 'queued', 'running', 'completed', 'failed', 'cancelled'];

export const TrainingBody = Type.Object(
  {
    id: Type.Optional(Uuid),
    datasetUri: Uri,
    datasetSizeGb: Type.Number({ minimum: 0, maximum: 1e9 }),
    estimatedFlops: Type.Number({ minimum: 0, maximum: 1e30 }),
    urgency: Type.Optional(Type.Union([Type.Literal('critical'), Type.Literal('normal'), Type.Literal('low')])),
    checkpointUri: Type.Optional(Uri),
    target: Type.Optional(Type.Union([Type.Literal('hpc'), Type.Literal('federated')])),
    script: Type.Optional(Type.String({ minLength: 3, maxLength: MAX_SCRIPT_BYTES })),
    timeLimitMinutes: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TIME_LIMIT_MINUTES })),
    datasetSha256: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{64}$' })),
    sourceNodeId: Type.Optional(Uuid),
    geozone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' })),
  },
  { additionalProperties: false },
);
export type TrainingBody = Static<typeof TrainingBody>;

const CancelBody = Type.Object({ reason: Type.Optional(Type.String({ minLength: 1, maxLength: 1_000 })) }, { additionalProperties: false });

const invalid = (message: string): ArcError => new ArcError('INVALID_INPUT', message, { retryable: false });
const notKnown = (id: string): ArcError => new ArcError('NOT_FOUND', `no training job ${id}`, { retryable: false });

/** The URI schemes the movers take: `file://` (POSIX, an absolute path) and `globus://<endpoint>/<path>`. */
function checkUri(field: string, uri: string): void {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw invalid(`body/${field} must be a URI such as file:///data/set.bin, got "${uri}"`);
  }
  if (url.protocol === 'file:') {
    if (url.host !== '' && url.host !== 'localhost') throw invalid(`body/${field}: a file:// URI names a path on this machine, not host "${url.host}"`);
    if (url.pathname === '/' || url.pathname.endsWith('/')) throw invalid(`body/${field} must name a file, not a directory: "${uri}"`);
    return;
  }
  if (url.protocol === 'globus:' && field === 'datasetUri') return;
  throw invalid(`body/${field}: ${url.protocol.replace(':', '')}:// is not a scheme ArcNet moves (file://${field === 'datasetUri' ? ', globus://' : ''})`);
}

/** The sentence a submission's validation gives beyond the schema (which names the field the same way). */
function checkSubmission(body: TrainingBody): void {
  checkUri('datasetUri', body.datasetUri);
  if (body.checkpointUri !== undefined) checkUri('checkpointUri', body.checkpointUri);
  if (body.script !== undefined && !body.script.startsWith('#!')) throw invalid('body/script must start with #! (a batch script names its interpreter)');
  if (body.script !== undefined && Buffer.byteLength(body.script) > MAX_SCRIPT_BYTES) throw invalid(`body/script is over ${MAX_SCRIPT_BYTES} bytes`);
}

function sameSubmission(a: TrainingRecord, b: TrainingBody): boolean {
  return a.datasetUri === b.datasetUri && a.datasetSizeGb === b.datasetSizeGb && a.estimatedFlops === b.estimatedFlops && a.requestedTarget === b.target && a.script === b.script && a.datasetSha256 === b.datasetSha256?.toLowerCase();
}

export function registerTrainingRoutes(app: FastifyInstance, deps: TrainingRoutesDeps): void {
  const { bus, documents, kv, clock } = deps;

  void app.register(async (scope) => {
    scope.setErrorHandler((error, request, reply) => sendApiError(request, reply, error));

    scope.post<{ Body: TrainingBody }>('/api/v1/training', { schema: { body: TrainingBody }, config: { access: ACCESS.developer } }, async (request, reply) => {
      const body = request.body;
      checkSubmission(body);
      const id = body.id ?? newId();
      const now = new Date(clock.now()).toISOString();
      const record: TrainingRecord = {
        id,
        datasetUri: body.datasetUri,
        datasetSizeGb: body.datasetSizeGb,
        estimatedFlops: body.estimatedFlops,
        ...(body.checkpointUri === undefined ? {} : { checkpointUri: body.checkpointUri }),
        ...(body.urgency === undefined ? {} : { urgency: body.urgency }),
        ...(body.target === undefined ? {} : { requestedTarget: body.target }),
        ...(body.sourceNodeId === undefined ? {} : { sourceNodeId: body.sourceNodeId }),
        ...(body.geozone === undefined ? {} : { geozone: body.geozone }),
        ...(body.script === undefined ? {} : { script: body.script }),
        ...(body.timeLimitMinutes === undefined ? {} : { timeLimitMinutes: body.timeLimitMinutes }),
        ...(body.datasetSha256 === undefined ? {} : { datasetSha256: body.datasetSha256.toLowerCase() }),
        submittedBy: principalOf(request).name,
        submittedAt: now,
        status: 'submitted',
        target: null,
        routingReason: null,
        classifiedAt: null,
        hpc: null,
        updatedAt: now,
      };
      const written = await documents.put(TRAINING_COLLECTION, id, record, { expectedVersion: 0 });
      if (!written.ok) {
        // The same submission again (a client retrying) is answered with the job; a different one under its id is refused.
        const existing = await documents.get<TrainingRecord>(TRAINING_COLLECTION, id);
        if (existing?.body && sameSubmission(existing.body, body)) return reply.status(200).send(existing.body);
        throw new ArcError('CONFLICT', `training job ${id} exists with a different submission`, { retryable: false });
      }
      // Stored first: a publish lost here (or with the in-memory bus in a restart) is found by the bridge's scan.
      await bus.publish(topics.jobSubmission, 'TrainingJob', submissionMessage(record));
      return reply.status(202).send(record);
    });

    scope.get<{ Querystring: { status?: TrainingStatus; limit?: number } }>(
      '/api/v1/training',
      {
        schema: { querystring: Type.Object({ status: Type.Optional(Type.Union(STATUSES.map((s) => Type.Literal(s)))), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000 })) }, { additionalProperties: false }) },
        config: { access: ACCESS.viewer },
      },
      async (request) => {
        const all = (await documents.list<TrainingRecord>(TRAINING_COLLECTION)).flatMap((d) => (d.body ? [d.body] : []));
        const wanted = request.query.status === undefined ? all : all.filter((r) => r.status === request.query.status);
        const jobs = wanted.sort((a, b) => (a.submittedAt < b.submittedAt ? 1 : a.submittedAt > b.submittedAt ? -1 : a.id.localeCompare(b.id))).slice(0, request.query.limit ?? 100);
        return { count: jobs.length, total: all.length, jobs: jobs.map(({ script: _script, ...rest }) => rest) };
      },
    );

    scope.get<{ Params: { id: string } }>('/api/v1/training/:id', { schema: { params: Type.Object({ id: Uuid }) }, config: { access: ACCESS.viewer } }, async (request) => {
      const found = await documents.get<TrainingRecord>(TRAINING_COLLECTION, request.params.id);
      if (!found?.body) throw notKnown(request.params.id);
      return found.body;
    });

    /** Every stored state, with when it was true and when it was stored (the documents are bitemporal). */
    scope.get<{ Params: { id: string } }>('/api/v1/training/:id/history', { schema: { params: Type.Object({ id: Uuid }) }, config: { access: ACCESS.viewer } }, async (request) => {
      const versions = await documents.history<TrainingRecord>(TRAINING_COLLECTION, request.params.id);
      if (versions.length === 0) throw notKnown(request.params.id);
      return {
        id: request.params.id,
        versions: versions.map((v) => ({
          version: v.version,
          validFrom: new Date(v.validFrom).toISOString(),
          txTime: new Date(v.txTime).toISOString(),
          status: v.body?.status ?? null,
          reason: v.body?.hpc?.reason ?? v.body?.reason ?? null,
          progress: v.body?.hpc?.progress ?? null,
          bytesTransferred: v.body?.hpc?.bytesTransferred ?? null,
        })),
      };
    });

    scope.post<{ Params: { id: string }; Body: Static<typeof CancelBody> }>(
      '/api/v1/training/:id/cancel',
      { schema: { params: Type.Object({ id: Uuid }), body: CancelBody }, config: { access: ACCESS.developer } },
      async (request, reply) => {
        const { id } = request.params;
        const found = await documents.get<TrainingRecord>(TRAINING_COLLECTION, id);
        if (!found?.body) throw notKnown(id);
        if (TRAINING_FINAL.has(found.body.status)) throw new ArcError('CONFLICT', `training job ${id} has already ended (${found.body.status})`, { retryable: false });
        const by = principalOf(request).name;
        const reason = request.body?.reason ?? `cancelled by ${by}`;
        await kv.put(`${CANCEL_PREFIX}${id}`, { reason, requestedAt: new Date(clock.now()).toISOString(), by });
        return reply.status(202).send({ id, status: found.body.status, cancelRequested: reason });
      },
    );
  });
}

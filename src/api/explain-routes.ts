/**
 * "Why this node": `GET /api/v1/inference/:id/explain` recomputes a routing decision from its
 * decision record (`src/inference/decision-log.ts`) and the node documents valid at its decision
 * time (`src/inference/explain.ts`); `GET /api/v1/jobs/:id/explain` does the same for each execution
 * of a job from the worker documents valid when it was scheduled (`src/jobs/explain.ts`). Both read
 * only the store, so they answer after a restart; the routes do the reads, the explainers are pure.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ACCESS } from '../access/policy.ts';
import type { DocumentStore } from '../store/ports.ts';
import type { NodeState } from '../mesh/node.ts';
import { NODES_COLLECTION } from '../mesh/aggregator.ts';
import type { DecisionLog } from '../inference/decision-log.ts';
import { explainPlacement } from '../inference/explain.ts';
import { DEFAULT_INFERENCE_PROFILE, inferenceProfile, type InferenceProfileConfig } from '../inference/profile.ts';
import { WORKERS_COLLECTION, type Coordinator } from '../jobs/coordinator.ts';
import type { WorkerRecord } from '../jobs/model.ts';
import { explainJob, type HeldExecution } from '../jobs/explain.ts';
import { jobProfile } from '../jobs/profile.ts';

export interface ExplainRoutesDeps {
  readonly documents: DocumentStore;
  /** Where this process records decisions (the inference module's tracker); no inference route without it. */
  readonly decisions?: DecisionLog;
  /** The inference profile the scheduler runs (the configuration's placement), the seed's when absent. */
  readonly placement?: InferenceProfileConfig;
  readonly coordinator?: Pick<Coordinator, 'findJob' | 'listJobs' | 'config'>;
}

const Params = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false });
/** Jobs whose executions give the allocations of other work at each placement (the coordinator's recent-job book holds 10,000). */
const RECENT_JOBS = 10_000;

const notFound = (what: string): { statusCode: number; error: string; message: string } => ({ statusCode: 404, error: 'Not Found', message: what });

export function registerExplainRoutes(app: FastifyInstance, deps: ExplainRoutesDeps): void {
  const { decisions, coordinator, documents } = deps;
  if (decisions) {
    const profile = inferenceProfile(deps.placement ?? DEFAULT_INFERENCE_PROFILE);
    app.get<{ Params: Static<typeof Params> }>('/api/v1/inference/:id/explain', { schema: { params: Params }, config: { access: ACCESS.viewer } }, async (request, reply) => {
      const { id } = request.params;
      const decision = await decisions.get(id);
      if (!decision) return reply.status(404).send(notFound(`inference request ${id} has no recorded decision (never decided, or decided before decisions were recorded)`));
      const nodes = (await documents.list<NodeState>(NODES_COLLECTION, { asOf: decision.decidedAt })).flatMap((v) => (v.body ? [v.body] : []));
      return explainPlacement({ decision, nodes, profile, asOf: decision.decidedAt });
    });
  }
  if (coordinator) {
    const profile = jobProfile(coordinator.config.profile);
    app.get<{ Params: Static<typeof Params> }>('/api/v1/jobs/:id/explain', { schema: { params: Params }, config: { access: ACCESS.viewer } }, async (request, reply) => {
      const { id } = request.params;
      const found = await coordinator.findJob(id);
      if (!found) return reply.status(404).send(notFound(`job ${id} is not known`));
      const recent = coordinator.listJobs({ limit: RECENT_JOBS });
      const held: HeldExecution[] = recent.flatMap(({ job, executions }) => executions.map((execution) => ({ execution, cpu: job.required_cpu, memoryGb: job.required_memory })));
      // One read per distinct placement time (a round's executions share one).
      const workersAt = new Map<string, readonly WorkerRecord[]>();
      const byTime = new Map<string, readonly WorkerRecord[]>();
      for (const execution of found.executions) {
        let workers = byTime.get(execution.scheduled_at);
        if (!workers) {
          workers = (await documents.list<WorkerRecord>(WORKERS_COLLECTION, { asOf: Date.parse(execution.scheduled_at) })).flatMap((v) => (v.body ? [v.body] : []));
          byTime.set(execution.scheduled_at, workers);
        }
        workersAt.set(execution.id, workers);
      }
      return explainJob({ job: found.job, executions: found.executions, workersAt, held, profile, recentJobs: recent.length });
    });
  }
}

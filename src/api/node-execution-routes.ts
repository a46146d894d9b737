/**
 * `GET /api/v1/nodes/:id/executions`: a worker's recent job executions, newest first, for the
 * console's node page. Read from the coordinator's in-memory book of recent jobs (its last 10,000),
 * not from the store: it answers in the time a list does and never scans the executions collection.
 * Results and logs are left out (they can be megabytes); `GET /api/v1/jobs/:id/executions` has them.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Coordinator } from '../jobs/coordinator.ts';
import type { JobExecution } from '../jobs/model.ts';
import { ACCESS } from '../access/policy.ts';

const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) }, { additionalProperties: false });
const Query = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }, { additionalProperties: false });

/** How many recent jobs are searched for the node's executions. */
const JOBS_SEARCHED = 10_000;

export function registerNodeExecutionRoutes(app: FastifyInstance, coordinator: Pick<Coordinator, 'listJobs' | 'worker'>): void {
  app.get<{ Params: Static<typeof Params>; Querystring: Static<typeof Query> }>(
    '/api/v1/nodes/:id/executions',
    { schema: { params: Params, querystring: Query }, config: { access: ACCESS.viewer } },
    async (request, reply) => {
      const { id } = request.params;
      const limit = request.query.limit ?? 50;
      if (!coordinator.worker(id)) return reply.status(404).send({ statusCode: 404, error: 'Not Found', message: `node ${id} is not a registered worker: it has no job executions` });
      const found: { execution: JobExecution; jobName: string }[] = [];
      for (const { job, executions } of coordinator.listJobs({ limit: JOBS_SEARCHED })) {
        for (const execution of executions) if (execution.node_id === id) found.push({ execution, jobName: job.name });
      }
      found.sort((a, b) => (a.execution.scheduled_at < b.execution.scheduled_at ? 1 : a.execution.scheduled_at > b.execution.scheduled_at ? -1 : 0));
      const executions = found.slice(0, limit).map(({ execution, jobName }) => {
        const { logs: _logs, result: _result, ...rest } = execution;
        return { ...rest, job_name: jobName };
      });
      return { node_id: id, count: executions.length, executions };
    },
  );
}

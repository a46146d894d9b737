/**
 * The verified-jobs module (seed 004): the coordinator, the worker gateway it pushes executions
 * through, and the observer that turns its outcomes into metrics. It contributes the jobs API's
 * routes and the workers that the node list and `/stats` merge with telemetry nodes (ADR 0007).
 */
import type { Engines } from '../engines.ts';
import { Coordinator, type CoordinatorConfig } from '../../jobs/coordinator.ts';
import { WorkerGateway } from '../../api/worker-gateway.ts';
import { registerJobRoutes } from '../../api/job-routes.ts';
import type { ArcMetrics } from '../../api/metrics.ts';
import type { AuditLog } from '../../access/audit.ts';
import type { ModuleHandle } from './module.ts';

export interface JobsOptions {
  readonly config: CoordinatorConfig;
  readonly metrics: ArcMetrics;
  /** Where the coordinator records submissions, registrations, reputation and status changes (the access module's). */
  readonly audit?: AuditLog;
}

export interface JobsModule extends ModuleHandle {
  readonly coordinator: Coordinator;
  readonly workers: WorkerGateway;
}

export async function startJobsModule(engines: Engines, options: JobsOptions): Promise<JobsModule> {
  const { stores, clock, logger } = engines;
  const { metrics } = options;
  const workers = new WorkerGateway(logger.child({ component: 'workers' }));
  const coordinator = new Coordinator({
    documents: stores.documents,
    clock,
    logger: logger.child({ component: 'coordinator' }),
    channel: workers,
    config: options.config,
    ...(options.audit ? { audit: options.audit } : {}),
    // On PostgreSQL several coordinators may run: the `coordinator` lease picks the one that writes, fenced (ADR 0011).
    // Embedded SQLite holds its data-directory lock, so this process is the only writer.
    ...(engines.kinds.store === 'postgres' ? { leases: stores.leases } : {}),
    instanceId: engines.instanceId,
    observer: {
      consensus: (outcome) => metrics.consensus.inc({ outcome }),
      executionFinished: (execution) => {
        if (execution.duration_ms !== null) metrics.executionDuration.observe({ status: execution.status }, execution.duration_ms / 1000);
      },
    },
  });
  workers.bind({ connected: (nodeId) => coordinator.workerConnected(nodeId), acknowledged: (nodeId, executionId) => coordinator.acknowledge(nodeId, executionId) });
  metrics.attachJobs(coordinator);
  await coordinator.start();
  const jobs = { coordinator, workers };
  return {
    name: 'jobs',
    coordinator,
    workers,
    api: { jobs, routes: [(app) => registerJobRoutes(app, jobs)] },
    health: () => {
      const counts = coordinator.jobCounts();
      const details = { leadership: coordinator.role(), jobs: { total: counts.total, ...counts.byStatus }, workersConnected: workers.connected };
      // A standby serves reads but answers writes 503 NOT_LEADER: it is alive (/health), not ready for writes (/ready).
      if (!coordinator.leading) return { ready: false, notReady: 'standing by: another replica holds the coordinator lease', details };
      return { ready: true, details };
    },
    stop: () => coordinator.stop(),
  };
}

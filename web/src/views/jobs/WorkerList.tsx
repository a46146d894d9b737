/** Seed 004's worker list: status, reputation, success rate, resources, credits. */
import type { RestNode } from '../../api/types.ts';
import { percent } from '../../lib/format.ts';
import { nodeHref } from '../../shell/route.ts';

export function WorkerList({ workers }: { workers: readonly RestNode[] }) {
  return (
    <section aria-labelledby="workers-title">
      <h2 id="workers-title">Workers <span className="muted">({workers.length})</span></h2>
      {workers.length === 0 && <p className="muted">No workers registered. Start one with <code>arcnet worker</code>.</p>}
      <ul className="workers">
        {workers.map((worker) => {
          const status = worker.worker_status ?? worker.status;
          const run = worker.total_jobs_run ?? 0;
          return (
            <li key={worker.id} className="card worker" data-testid="worker" data-worker-id={worker.id} data-status={status}>
              <div className="worker-head">
                <a href={nodeHref(worker.id)}>{worker.name}</a>
                <span className={`badge status-${status}`}>{status}</span>
              </div>
              <dl className="facts compact">
                <dt>Reputation</dt><dd data-field="reputation">{worker.reputation_score ?? worker.reputation ?? '–'}</dd>
                <dt>Success</dt><dd data-field="success-rate">{run > 0 ? percent((worker.successful_jobs_run ?? 0) / run) : '–'} of {run}</dd>
                <dt>Resources</dt><dd>{worker.cpu_cores ?? worker.capacity?.cpuCores ?? '–'} cores · {worker.memory_gb ?? worker.capacity?.memoryGb ?? '–'} GB{worker.gpu_enabled ? ` · GPU ${worker.gpu_model ?? ''}` : ''}</dd>
                <dt>Credits</dt><dd>{worker.credits_earned ?? 0}</dd>
                <dt>Region</dt><dd>{worker.region ?? worker.geozone}</dd>
              </dl>
            </li>
          );
        })}
      </ul>
    </section>
  );
}

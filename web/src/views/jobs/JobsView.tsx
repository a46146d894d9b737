/**
 * Seed 004's dashboard inside the console: stat cards, workers, recent jobs with their executions,
 * and a form to submit one. `/stats`, the jobs and the node list are polled every 2 s while the
 * view is open (the node list is merged into the feed's nodes as well, for the status bar). A job's executions come with `GET /api/v1/jobs/:id`: fetched for the newest jobs,
 * and once only for a job that has finished (it will not change).
 */
import { useRef } from 'react';
import { apiGet, query } from '../../api/client.ts';
import { useFeedStore } from '../../feed/context.ts';
import { toMeshNode } from '../../feed/rest-node.ts';
import type { Job, JobList, NodeList } from '../../api/types.ts';
import { usePoll } from '../../lib/usePoll.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { JobCard } from './JobCard.tsx';
import { JobForm } from './JobForm.tsx';
import { StatCards } from './StatCards.tsx';
import { WorkerList } from './WorkerList.tsx';

const JOBS_SHOWN = 20;
const DETAILED = 10;
const FINAL = new Set(['completed', 'failed']);

export function JobsView() {
  const key = useApiKey();
  const store = useFeedStore();
  const finished = useRef(new Map<string, Job>());
  const stats = usePoll((signal) => apiGet<unknown>('/stats', key, signal), 2000, [key]);
  const nodes = usePoll(async (signal) => {
    const list = await apiGet<NodeList>('/api/v1/nodes', key, signal);
    // Into the feed's nodes too: the status bar counts them, and beside these cards it must be as fresh.
    store.mergeRest(list.nodes.map(toMeshNode));
    return list;
  }, 2000, [key, store]);
  const jobs = usePoll(async (signal) => {
    const list = await apiGet<JobList>(`/api/v1/jobs${query({ limit: JOBS_SHOWN })}`, key, signal);
    return Promise.all(
      list.jobs.map(async (job, index) => {
        const done = finished.current.get(job.id);
        if (done) return done;
        if (index >= DETAILED) return job;
        const detail = await apiGet<Job>(`/api/v1/jobs/${job.id}`, key, signal).catch(() => job);
        if (FINAL.has(detail.status)) finished.current.set(job.id, detail);
        return detail;
      }),
    );
  }, 2000, [key]);

  // Registered seed 004 workers carry `worker_status`; telemetry-only nodes carry the seed's other fields too, but run no jobs.
  const workers = (nodes.data?.nodes ?? []).filter((n) => n.worker_status !== undefined);
  const names = new Map((nodes.data?.nodes ?? []).map((n) => [n.id, n.name]));
  const workerName = (id: string) => names.get(id) ?? id.slice(0, 8);

  return (
    <section className="page jobs-page" aria-labelledby="jobs-title">
      <h1 id="jobs-title">Jobs</h1>
      {stats.error && <p role="alert" className="alert">Stats: {stats.error.message}</p>}
      <StatCards stats={stats.data} />
      <div className="jobs-columns">
        <div>
          <JobForm jobs={jobs.data} onSubmitted={() => jobs.refresh()} />
          <WorkerList workers={workers} />
        </div>
        <section aria-labelledby="recent-jobs-title">
          <h2 id="recent-jobs-title">Recent jobs</h2>
          {jobs.error && <p role="alert" className="alert">Jobs: {jobs.error.message}</p>}
          {jobs.data?.length === 0 && <p className="muted">No jobs yet: submit one.</p>}
          <ul className="jobs">
            {(jobs.data ?? []).map((job) => <JobCard key={job.id} job={job} workerName={workerName} />)}
          </ul>
        </section>
      </div>
    </section>
  );
}

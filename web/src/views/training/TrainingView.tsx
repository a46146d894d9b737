/**
 * Training jobs (issue 13): the submit form and the jobs, newest first. `GET /api/v1/training` is
 * polled every 2 s while the view is open; an HPC job's state and transfer progress move with the
 * feed's `hpc` messages between polls (and a console that connects mid-job has them from the
 * snapshot). HPC jobs the feed knows that the list does not (past its limit, or a server without
 * the list) are shown from the feed alone.
 */
import type { Identity } from '../../auth/whoami.ts';
import { apiGet, query } from '../../api/client.ts';
import type { TrainingList } from '../../api/types.ts';
import { useFeed } from '../../feed/context.ts';
import { usePoll } from '../../lib/usePoll.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { NotAvailable } from '../NotAvailable.tsx';
import { trainingRows } from './merge.ts';
import { TrainingForm } from './TrainingForm.tsx';
import { TrainingJobCard } from './TrainingJobCard.tsx';

const JOBS_SHOWN = 50;

export function TrainingView({ identity }: { identity: Identity }) {
  const key = useApiKey();
  const { state } = useFeed();
  const jobs = usePoll((signal) => apiGet<TrainingList>(`/api/v1/training${query({ limit: JOBS_SHOWN })}`, key, signal), 2000, [key]);
  const rows = trainingRows(jobs.data?.jobs ?? null, state.hpc);
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row.status, (counts.get(row.status) ?? 0) + 1);

  return (
    <section className="page training-page" aria-labelledby="training-title">
      <h1 id="training-title">Training</h1>
      {jobs.missing && <NotAvailable what="The training API" route="GET /api/v1/training" />}
      {jobs.error && !jobs.missing && <p role="alert" className="alert">Training jobs: {jobs.error.message}</p>}
      <div className="jobs-columns">
        <div>
          <TrainingForm rows={rows} onSubmitted={() => jobs.refresh()} />
          {identity.role === 'viewer' && <p className="muted">Signed in as a viewer: submitting and cancelling need a developer key.</p>}
        </div>
        <section aria-labelledby="training-jobs-title">
          <h2 id="training-jobs-title">
            Jobs
            {rows.length > 0 && (
              <span className="muted heading-note">
                {' '}{rows.length}{[...counts].map(([status, n]) => ` · ${n} ${status}`).join('')}
                {jobs.data && jobs.data.count < jobs.data.total ? ` (the newest ${jobs.data.count} of ${jobs.data.total} listed)` : ''}
              </span>
            )}
          </h2>
          {rows.length === 0 && !jobs.loading && <p className="muted">No training jobs yet: submit one.</p>}
          <ul className="jobs training-jobs" data-testid="training-jobs">
            {rows.map((row) => <TrainingJobCard key={row.id} row={row} onChanged={() => jobs.refresh()} />)}
          </ul>
        </section>
      </div>
    </section>
  );
}

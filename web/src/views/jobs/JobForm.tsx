/** Submit a job (seed 004's fields); it then shows in the list and runs live, and so does its confirmation. */
import { useState, type FormEvent } from 'react';
import { ApiError, apiPost } from '../../api/client.ts';
import type { Job } from '../../api/types.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { verdictOf } from './verdict.ts';

/** Splits a command line on spaces, keeping "double quoted" parts whole. */
export function splitCommand(line: string): string[] {
  const parts: string[] = [];
  for (const match of line.matchAll(/"([^"]*)"|(\S+)/g)) parts.push(match[1] ?? match[2]!);
  return parts;
}

/** `jobs` is the list the view polls: the confirmation follows the submitted job's status in it. */
export function JobForm({ jobs, onSubmitted }: { jobs: readonly Job[] | null; onSubmitted: (job: Job) => void }) {
  const key = useApiKey();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [submitted, setSubmitted] = useState<Job | null>(null);

  // The POST's answer until the polled list has the job.
  const current = submitted === null ? null : (jobs?.find((job) => job.id === submitted.id) ?? submitted);

  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const text = (name: string) => String(form.get(name) ?? '').trim();
    const body = {
      name: text('name'),
      docker_image: text('docker_image'),
      command: splitCommand(text('command')),
      ...(text('redundancy') ? { redundancy: Number(text('redundancy')) } : {}),
      ...(text('consensus') ? { consensus: Number(text('consensus')) } : {}),
    };
    setBusy(true);
    setError(null);
    setSubmitted(null);
    apiPost<Job>('/api/v1/jobs', key, body)
      .then((job) => {
        setSubmitted(job);
        onSubmitted(job);
      })
      .catch((caught: unknown) => setError(caught instanceof ApiError ? caught.message : String(caught)))
      .finally(() => setBusy(false));
  };

  return (
    <form className="card job-form" data-testid="job-form" onSubmit={submit}>
      <h2>Submit a job</h2>
      <label>Name <input name="name" required defaultValue="hello" /></label>
      <label>Image <input name="docker_image" required defaultValue="alpine:3.20" /></label>
      <label className="wide">Command <input name="command" required defaultValue="echo hello" placeholder="space separated; quote parts with spaces" /></label>
      <label>Redundancy <input name="redundancy" type="number" min={1} defaultValue={2} /></label>
      <label>Consensus <input name="consensus" type="number" min={1} defaultValue={2} /></label>
      <button type="submit" disabled={busy}>{busy ? 'Submitting…' : 'Submit'}</button>
      {error !== null && <p role="alert" className="alert wide">{error}</p>}
      {current !== null && (
        <p className="ok-text wide" data-testid="job-submitted" data-job-id={current.id} data-status={current.status}>
          Submitted <strong>{current.name}</strong> ({current.id.slice(0, 8)}): {current.status}
          {(current.status === 'completed' || current.status === 'failed') && ` — ${verdictOf(current)}`}
        </p>
      )}
    </form>
  );
}

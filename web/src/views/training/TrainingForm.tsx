/**
 * Submit a training job (`POST /api/v1/training`): the dataset, its size and the FLOPs the bridge
 * classifies by, urgency, an explicit target, and where the checkpoint goes. The server's own
 * message (which field, which rule) is shown when it refuses.
 */
import { useState, type FormEvent } from 'react';
import { ApiError, apiPost } from '../../api/client.ts';
import type { TrainingJobRecord } from '../../api/types.ts';
import { useApiKey } from '../../shell/api-key.ts';
import type { TrainingRow } from './merge.ts';

/** A number as typed (`1e18`, `2.5`); NaN when it is not one, which the server refuses by name. */
const numberOf = (text: string): number => (text === '' ? Number.NaN : Number(text));

/** `rows` is what the view lists: the confirmation follows the submitted job's state there. */
export function TrainingForm({ rows, onSubmitted }: { rows: readonly TrainingRow[]; onSubmitted: (job: TrainingJobRecord) => void }) {
  const key = useApiKey();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [submitted, setSubmitted] = useState<TrainingJobRecord | null>(null);

  const listed = submitted === null ? undefined : rows.find((row) => row.id === submitted.id);

  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const text = (name: string) => String(form.get(name) ?? '').trim();
    const body = {
      datasetUri: text('datasetUri'),
      datasetSizeGb: numberOf(text('datasetSizeGb')),
      estimatedFlops: numberOf(text('estimatedFlops')),
      ...(text('urgency') ? { urgency: text('urgency') } : {}),
      ...(text('target') ? { target: text('target') } : {}),
      ...(text('checkpointUri') ? { checkpointUri: text('checkpointUri') } : {}),
    };
    // JSON has no NaN: a field that is not a number is sent as text, so the server names it.
    const sent = Object.fromEntries(Object.entries(body).map(([name, value]) => [name, typeof value === 'number' && Number.isNaN(value) ? text(name) : value]));
    setBusy(true);
    setError(null);
    setSubmitted(null);
    apiPost<TrainingJobRecord>('/api/v1/training', key, sent)
      .then((job) => {
        setSubmitted(job);
        onSubmitted(job);
      })
      .catch((caught: unknown) => setError(caught instanceof ApiError ? caught.message : String(caught)))
      .finally(() => setBusy(false));
  };

  return (
    <form className="card job-form training-form" data-testid="training-form" onSubmit={submit}>
      <h2>Submit a training job</h2>
      <label className="wide">Dataset URI <input name="datasetUri" required defaultValue="file:///data/train.bin" placeholder="file:///path or globus://endpoint/path" /></label>
      <label>Size (GB) <input name="datasetSizeGb" required inputMode="decimal" defaultValue="10" /></label>
      <label>FLOPs <input name="estimatedFlops" required inputMode="decimal" defaultValue="1e15" title="over 1e18 goes to HPC" /></label>
      <label>Urgency
        <select name="urgency" defaultValue="">
          <option value="">(none)</option>
          <option value="low">low</option>
          <option value="normal">normal</option>
          <option value="critical">critical</option>
        </select>
      </label>
      <label>Target
        <select name="target" defaultValue="">
          <option value="">classify (bridge decides)</option>
          <option value="hpc">hpc</option>
          <option value="federated">federated</option>
        </select>
      </label>
      <label className="wide">Checkpoint URI <input name="checkpointUri" placeholder="optional: file:///path (default: the staging directory)" /></label>
      <button type="submit" disabled={busy}>{busy ? 'Submitting…' : 'Submit'}</button>
      {error !== null && <p role="alert" className="alert wide">{error}</p>}
      {submitted !== null && (
        <p className="ok-text wide" data-testid="training-submitted" data-job-id={submitted.id} data-status={listed?.status ?? submitted.status}>
          Submitted {submitted.id.slice(0, 8)}: {listed === undefined || listed.target === null ? `${submitted.status}; the bridge classifies it next` : `${listed.status}, sent ${listed.target}`}.
        </p>
      )}
    </form>
  );
}

/**
 * One training job: status (with why), where the bridge sent it and why, the transfer's progress
 * (live from the feed's `hpc` messages between polls), bytes moved, the Slurm job id, the
 * checkpoint, and a cancel button while it has not ended. Cancelling needs a developer key; the
 * server's refusal is shown as it says it.
 */
import { useState } from 'react';
import { ApiError, apiPost } from '../../api/client.ts';
import { bytes, dateTime, shortId } from '../../lib/format.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { FINAL_STATUSES, type TrainingRow } from './merge.ts';

export function HpcProgress({ progress }: { progress: number }) {
  const share = Math.max(0, Math.min(1, progress));
  return (
    <span className="hpc-progress" data-testid="hpc-progress" data-progress={share.toFixed(4)} role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(share * 100)} aria-label="transfer progress">
      <span className="hpc-progress-fill" style={{ width: `${share * 100}%` }} />
    </span>
  );
}

export function TrainingJobCard({ row, onChanged }: { row: TrainingRow; onChanged: () => void }) {
  const key = useApiKey();
  const [cancelling, setCancelling] = useState(false);
  const [cancelError, setCancelError] = useState<string | null>(null);
  const [cancelAsked, setCancelAsked] = useState<string | null>(null);
  const final = FINAL_STATUSES.has(row.status);

  const cancel = () => {
    setCancelling(true);
    setCancelError(null);
    apiPost<{ cancelRequested: string }>(`/api/v1/training/${row.id}/cancel`, key, {})
      .then((answer) => {
        setCancelAsked(answer.cancelRequested);
        onChanged();
      })
      .catch((caught: unknown) => setCancelError(caught instanceof ApiError ? caught.message : String(caught)))
      .finally(() => setCancelling(false));
  };

  return (
    <li className="card training-job" data-testid="training-job" data-job-id={row.id} data-status={row.status} data-target={row.target ?? ''} data-feed-only={String(row.feedOnly)}>
      <div className="job-head">
        <strong title={row.id}>{shortId(row.id)}</strong>
        <span className={`badge training-${row.status}`}>{row.status}</span>
        <span className={`badge target-${row.target ?? 'none'}`} data-testid="training-target">{row.target ?? 'unclassified'}</span>
        {row.urgency && <span className="muted">urgency {row.urgency}</span>}
        <span className="spacer" />
        <span className="muted">{row.submittedBy ? `${row.submittedBy} · ` : ''}{row.submittedAt ? dateTime(row.submittedAt) : 'from the feed'}</span>
      </div>
      {row.routingReason && <p className="routing-reason" data-testid="routing-reason">{row.routingReason}</p>}
      {row.reason && <p className={row.status === 'failed' ? 'error-text' : 'muted'} data-testid="training-reason">{row.reason}</p>}
      <dl className="training-facts">
        {row.datasetUri && <><dt>Dataset</dt><dd><code>{row.datasetUri}</code> · {row.datasetSizeGb} GB</dd></>}
        {!row.datasetUri && <><dt>Dataset</dt><dd>{row.datasetSizeGb} GB</dd></>}
        {row.estimatedFlops !== null && <><dt>FLOPs</dt><dd>{row.estimatedFlops.toExponential(2)}</dd></>}
        {row.progress !== null && (
          <>
            <dt>Transfer</dt>
            <dd className="transfer">
              <HpcProgress progress={row.progress} />
              <span>{Math.round(row.progress * 100)} % · {bytes(row.bytesTransferred)}{row.totalBytes !== null ? ` of ${bytes(row.totalBytes)}` : ''}</span>
            </dd>
          </>
        )}
        {row.schedulerJobId && <><dt>Slurm job</dt><dd data-testid="slurm-job-id"><code>{row.schedulerJobId}</code></dd></>}
        {row.checkpoint && <><dt>Checkpoint</dt><dd><code>{row.checkpoint}</code></dd></>}
      </dl>
      {!final && !row.feedOnly && (
        <div className="job-actions">
          <button type="button" data-testid="training-cancel" onClick={cancel} disabled={cancelling || cancelAsked !== null}>
            {cancelling ? 'Cancelling…' : cancelAsked !== null ? 'Cancel requested' : 'Cancel'}
          </button>
          {cancelAsked !== null && <span className="muted">{cancelAsked}: the job's owner acts on it</span>}
          {cancelError !== null && <span role="alert" className="error-text">{cancelError}</span>}
        </div>
      )}
    </li>
  );
}

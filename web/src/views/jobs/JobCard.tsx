/**
 * One job: status, image, redundancy/consensus, the verdict, each execution with its result hash
 * and verdict, a preview of the result, and on demand why each execution went to its worker.
 */
import { useState } from 'react';
import type { JobExplanation } from '../../../../src/contracts/console.ts';
import { ApiError, apiGet } from '../../api/client.ts';
import type { Job } from '../../api/types.ts';
import { clock, shortId } from '../../lib/format.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { nodeHref } from '../../shell/route.ts';
import { Decision } from '../explain/Decision.tsx';
import { verdictOf } from './verdict.ts';

const PREVIEW_CHARS = 400;

function preview(job: Job): string | null {
  if (job.result === null) return null;
  const text = job.result_encoding === 'base64' ? `(base64) ${job.result}` : job.result;
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text;
}

export function JobCard({ job, workerName }: { job: Job; workerName: (id: string) => string }) {
  const key = useApiKey();
  const [explanation, setExplanation] = useState<JobExplanation | null>(null);
  const [explainError, setExplainError] = useState<string | null>(null);
  const explain = () => {
    setExplainError(null);
    apiGet<JobExplanation>(`/api/v1/jobs/${job.id}/explain`, key)
      .then(setExplanation)
      .catch((error: unknown) => setExplainError(error instanceof ApiError && error.routeMissing ? 'Explanations are not available on this server.' : error instanceof Error ? error.message : String(error)));
  };
  const result = preview(job);
  return (
    <li className="card job" data-testid="job" data-job-id={job.id} data-status={job.status}>
      <div className="job-head">
        <strong>{job.name}</strong>
        <span className={`badge job-${job.status}`}>{job.status}</span>
        <code className="muted">{job.docker_image}</code>
        <span className="muted">n={job.redundancy} k={job.consensus}</span>
        <span className="spacer" />
        <span className="muted" title={job.id}>{shortId(job.id)} · {clock(job.submitted_at)}</span>
      </div>
      <p className="verdict" data-testid="verdict">{verdictOf(job)}</p>
      <p className="muted command"><code>{job.command.join(' ')}</code></p>
      {job.executions && job.executions.length > 0 && (
        <table className="data compact executions">
          <thead><tr><th>Execution</th><th>Worker</th><th>Status</th><th>Result hash</th><th>Verdict</th><th className="num">Exit</th></tr></thead>
          <tbody>
            {job.executions.map((e) => (
              <tr key={e.id} data-testid="execution" data-execution-id={e.id} data-hash={e.result_hash ?? ''} data-status={e.status}>
                <td title={e.id}>#{e.attempt} {shortId(e.id)}</td>
                <td><a href={nodeHref(e.node_id)}>{workerName(e.node_id)}</a></td>
                <td><span className={`badge exec-${e.status}`}>{e.status}</span></td>
                <td><code title={e.result_hash ?? ''}>{e.result_hash ? `${e.result_hash.slice(0, 16)}…` : '–'}</code></td>
                <td className={e.verdict === 'disagree' ? 'warn-text' : ''}>{e.verdict ?? '–'}{e.error_message ? `: ${e.error_message}` : ''}</td>
                <td className="num">{e.exit_code ?? '–'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {result !== null && <pre className="result-preview" data-testid="result-preview">{result}</pre>}
      <div className="job-actions">
        <button type="button" onClick={explain}>Why these workers?</button>
        {explainError && <span className="error-text">{explainError}</span>}
      </div>
      {explanation && (
        <div className="job-explain" data-testid="job-explain">
          {explanation.executions.map((execution) => (
            <details key={execution.executionId} open data-execution-id={execution.executionId}>
              <summary>Execution {shortId(execution.executionId)} → {workerName(execution.workerId)} at {clock(execution.placedAt)}</summary>
              <Decision
                filters={execution.filters}
                candidates={execution.candidates.map((c) => ({ id: c.workerId, name: c.workerName, score: c.score, terms: c.terms, chosen: c.chosen }))}
              />
            </details>
          ))}
          {explanation.executions.length === 0 && <p className="muted">No executions placed yet.</p>}
        </div>
      )}
    </li>
  );
}

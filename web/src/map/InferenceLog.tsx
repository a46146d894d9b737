/** The latest requests, newest first; each opens "why this node". */
import type { InferenceEntry } from '../feed/state.ts';
import { clock, ms } from '../lib/format.ts';
import { explainHref } from '../shell/route.ts';

interface InferenceLogProps {
  entries: readonly InferenceEntry[];
  nodeName: (id: string) => string;
}

export function InferenceLog({ entries, nodeName }: InferenceLogProps) {
  return (
    <section className="inference-log" aria-labelledby="inference-log-title">
      <h2 id="inference-log-title">Requests</h2>
      {entries.length === 0 && <p className="muted">No requests yet.</p>}
      <ol data-testid="inference-log">
        {entries.map((entry) => (
          <li key={entry.requestId} data-request-id={entry.requestId} data-status={entry.status}>
            <a href={explainHref(entry.requestId)} title="Why this node?">
              <span className={`dot priority-${entry.priority}`} aria-label={entry.priority} />
              <span className="log-main">
                <span className="log-model">{entry.modelId}</span>
                <span className="muted">
                  {entry.requesterGeozone ?? '?'}
                  {entry.status === 'rejected' ? ' ✕ rejected' : ` → ${entry.targetNodeId ? nodeName(entry.targetNodeId) : '?'}`}
                  {entry.forwarded && <strong className="forwarded"> forwarded</strong>}
                </span>
                {entry.reason && <span className="muted log-reason">{entry.reason}</span>}
              </span>
              <span className="log-side">
                <span className={`badge req-${entry.status}`}>{entry.status}</span>
                <span className="muted">{entry.latencyMs !== null ? ms(entry.latencyMs) : clock(entry.timestamp)}</span>
              </span>
            </a>
          </li>
        ))}
      </ol>
    </section>
  );
}

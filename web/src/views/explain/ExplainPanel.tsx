/**
 * "Why this node?" for one inference request (`GET /api/v1/inference/:id/explain`): the
 * scheduler's decision recomputed from the node documents as of then, and whether the
 * recomputation agrees with what the scheduler recorded.
 */
import type { PlacementExplanation } from '../../../../src/contracts/console.ts';
import { apiGet } from '../../api/client.ts';
import { useFeed } from '../../feed/context.ts';
import { dateTime } from '../../lib/format.ts';
import { usePoll } from '../../lib/usePoll.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { nodeHref } from '../../shell/route.ts';
import { Panel } from '../Panel.tsx';
import { Decision } from './Decision.tsx';

interface ExplainPanelProps {
  requestId: string;
  onClose: () => void;
}

export function ExplainPanel({ requestId, onClose }: ExplainPanelProps) {
  const key = useApiKey();
  const poll = usePoll((signal) => apiGet<PlacementExplanation>(`/api/v1/inference/${encodeURIComponent(requestId)}/explain`, key, signal), 0, [key, requestId]);
  const explanation = poll.data;
  const { state } = useFeed();
  const nodeName = (id: string) => state.nodes.get(id)?.name || explanation?.candidates.find((c) => c.nodeId === id)?.nodeName || id.slice(0, 8);
  return (
    <Panel title="Why this node?" onClose={onClose}>
      <div
        data-testid="explain"
        data-request-id={requestId}
        data-chosen={explanation?.chosen?.nodeId ?? ''}
        data-agrees={String(explanation?.agrees ?? false)}
        data-loaded={String(explanation !== null)}
      >
        <p className="muted">Request <code>{requestId}</code></p>
        {poll.loading && <p className="muted">Loading…</p>}
        {poll.missing && <p className="notice">Explanations are not available on this server (<code>GET /api/v1/inference/:id/explain</code> answered 404).</p>}
        {poll.error && !poll.missing && <p role="alert" className="alert">{poll.error.message}</p>}
        {explanation && (
          <>
            <dl className="facts">
              <dt>Model</dt><dd>{explanation.subject.modelId}</dd>
              <dt>From</dt><dd>{explanation.subject.requesterGeozone} · {explanation.subject.priority}</dd>
              <dt>Decided</dt><dd>{dateTime(explanation.decidedAt)}</dd>
              <dt>Basis</dt><dd>{explanation.basis.nodesSeen} nodes as of {dateTime(explanation.basis.asOf)}</dd>
              <dt>Outcome</dt><dd><span className={`badge req-${explanation.outcome}`}>{explanation.outcome}</span></dd>
              <dt>Chosen</dt>
              <dd>
                {explanation.chosen ? (
                  <>
                    <a href={nodeHref(explanation.chosen.nodeId)}>{explanation.chosen.nodeName}</a> ({explanation.chosen.geozone}, score {explanation.chosen.score.toFixed(1)})
                    {explanation.chosen.forwarded && <strong className="forwarded"> forwarded out of {explanation.subject.requesterGeozone}</strong>}
                  </>
                ) : 'none'}
              </dd>
              <dt>Recorded</dt>
              <dd>{explanation.recorded.nodeId ? <a href={nodeHref(explanation.recorded.nodeId)}>{nodeName(explanation.recorded.nodeId)}</a> : 'rejected'}{explanation.recorded.reason ? `: ${explanation.recorded.reason}` : ''}</dd>
              <dt>Agrees</dt>
              <dd className={explanation.agrees ? 'ok-text' : 'warn-text'}>{explanation.agrees ? 'yes: the recomputation picks the same node' : 'no: the recomputation picks differently'}</dd>
            </dl>
            <Decision
              filters={explanation.filters}
              candidates={explanation.candidates.map((c) => ({ id: c.nodeId, name: c.nodeName, geozone: c.geozone, score: c.score, terms: c.terms, chosen: c.chosen }))}
            />
          </>
        )}
      </div>
    </Panel>
  );
}

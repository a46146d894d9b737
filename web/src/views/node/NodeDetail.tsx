/**
 * One node: telemetry history (from the bitemporal history versions), models loaded and datasets
 * hot, its current reservation with the fencing token, recent inference work, and, when it is also
 * a seed 004 worker, its reputation, job counts and recent executions.
 */
import { useMemo } from 'react';
import { apiGet, query } from '../../api/client.ts';
import type { Execution, InferenceRecord, NodeDetailAnswer } from '../../api/types.ts';
import { useFeed } from '../../feed/context.ts';
import { clock, dateTime, integer, ms, percent } from '../../lib/format.ts';
import { usePoll } from '../../lib/usePoll.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { explainHref } from '../../shell/route.ts';
import { Panel } from '../Panel.tsx';
import { HistoryChart } from './HistoryChart.tsx';

interface NodeDetailProps {
  nodeId: string;
  onClose: () => void;
}

const NO_HISTORY: NonNullable<NodeDetailAnswer['history']> = [];

const pct = (value: number | undefined): number | null => (value === undefined ? null : value * 100);

export function NodeDetail({ nodeId, onClose }: NodeDetailProps) {
  const key = useApiKey();
  const { state } = useFeed();
  const id = encodeURIComponent(nodeId);
  const detail = usePoll((signal) => apiGet<NodeDetailAnswer>(`/api/v1/nodes/${id}?history=true`, key, signal), 5000, [key, nodeId]);
  const work = usePoll(
    (signal) => apiGet<{ requests: InferenceRecord[] }>(`/api/v1/inference${query({ nodeId })}`, key, signal).then((a) => a.requests),
    5000,
    [key, nodeId],
  );
  const node = detail.data;
  // Only a registered seed 004 worker has `worker_status` (and job executions to list).
  const isWorker = node?.worker_status !== undefined;
  const executions = usePoll(
    (signal) => (isWorker ? apiGet<{ executions: (Execution & { job_name?: string })[] }>(`/api/v1/nodes/${id}/executions${query({ limit: 20 })}`, key, signal).then((a) => a.executions) : Promise.resolve([])),
    5000,
    [key, nodeId, isWorker],
  );
  const live = state.nodes.get(nodeId);

  const history = node?.history ?? NO_HISTORY;
  const times = useMemo(() => history.map((v) => Date.parse(v.validFrom) / 1000), [history]);
  const series = useMemo(
    () => [
      { label: 'GPU', colorVar: '--chart-gpu', values: history.map((v) => pct(v.gpuUtilization)) },
      { label: 'Battery', colorVar: '--chart-battery', values: history.map((v) => pct(v.batteryLevel)) },
    ],
    [history],
  );
  // An older server ignores `nodeId`: keep only this node's requests either way.
  const recent = (work.data ?? []).filter((r) => r.nodeId === nodeId).slice(0, 20);
  const status = live?.status ?? node?.status;
  const models = live?.modelsLoaded ?? node?.modelsLoaded ?? [];
  const datasets = live?.datasetsHot ?? node?.datasetsHot ?? [];

  return (
    <Panel title={live?.name || node?.name || 'Node'} onClose={onClose}>
      <div data-testid="node-detail" data-node-id={nodeId} data-status={status ?? ''}>
        {detail.error && <p role="alert" className="alert">{detail.error.message}</p>}
        {!node && detail.loading && <p className="muted">Loading…</p>}
        {node && (
          <>
            <dl className="facts">
              <dt>Status</dt><dd><span className={`badge status-${status}`}>{status}</span></dd>
              <dt>Zone</dt><dd>{node.geozone}</dd>
              <dt>Energy</dt><dd><span className={`badge energy-${live?.energySource ?? node.energySource}`}>{live?.energySource ?? node.energySource ?? '–'}</span></dd>
              <dt>GPU</dt><dd>{percent(live?.gpuUtilization ?? node.gpuUtilization)} · {node.capacity?.gpus ?? 0} GPUs · {integer(live?.gpuMemoryFreeGb ?? node.gpuMemoryFreeGb)} GB free</dd>
              <dt>Battery</dt><dd>{percent(live?.batteryLevel ?? node.batteryLevel)}</dd>
              <dt>CPU</dt><dd>{percent(live?.cpuLoad ?? node.cpuLoad)} of {node.capacity?.cpuCores ?? node.cpu_cores ?? '–'} cores · {node.capacity?.memoryGb ?? node.memory_gb ?? '–'} GB</dd>
              <dt>Last seen</dt><dd>{dateTime(live?.lastSeen || node.lastSeen)}</dd>
              <dt>Tags</dt><dd>{(node.tags ?? []).join(', ') || '–'}</dd>
              <dt>Id</dt><dd><code>{nodeId}</code></dd>
            </dl>
            {node.reservation ? (
              <p className="reservation" data-testid="reservation" data-fencing-token={node.reservation.fencingToken}>
                Reserved for request <a href={explainHref(node.reservation.requestId)}>{node.reservation.requestId.slice(0, 8)}</a>, fencing token <code>{node.reservation.fencingToken}</code>, until {clock(node.reservation.expiresAt)}
              </p>
            ) : (
              <p className="muted">No reservation.</p>
            )}
            <h3>History</h3>
            {history.length > 0 ? (
              <HistoryChart title={`GPU and battery, ${history.length} versions`} times={times} series={series} />
            ) : (
              <p className="muted">No history versions.</p>
            )}
            <h3>Models loaded</h3>
            <ul className="chips" data-testid="models-loaded">{models.length ? models.map((m) => <li key={m}>{m}</li>) : <li className="muted">none</li>}</ul>
            <h3>Datasets hot</h3>
            <ul className="chips" data-testid="datasets-hot">{datasets.length ? datasets.map((d) => <li key={d}>{d}</li>) : <li className="muted">none</li>}</ul>
            {isWorker && (
              <section data-testid="worker-stats">
                <h3>Worker</h3>
                <dl className="facts">
                  <dt>Reputation</dt><dd data-testid="reputation">{node.reputation_score ?? node.reputation ?? '–'}</dd>
                  <dt>Jobs run</dt><dd data-testid="jobs-run">{node.total_jobs_run ?? 0} ({node.successful_jobs_run ?? 0} successful, {node.failed_jobs ?? 0} failed)</dd>
                  <dt>Credits</dt><dd>{node.credits_earned ?? 0}</dd>
                  <dt>Worker status</dt><dd>{node.worker_status ?? '–'}</dd>
                </dl>
                <h4>Recent executions</h4>
                <ul className="plain" data-testid="node-executions">
                  {(executions.data ?? []).map((e) => (
                    <li key={e.id}>{clock(e.scheduled_at)} {e.job_name ?? e.job_id.slice(0, 8)} · <span className={`badge exec-${e.status}`}>{e.status}</span> {e.verdict && <span className="muted">verdict {e.verdict}</span>}</li>
                  ))}
                  {executions.data?.length === 0 && <li className="muted">none</li>}
                </ul>
              </section>
            )}
          </>
        )}
        <h3>Recent work</h3>
        <ul className="plain" data-testid="recent-work">
          {recent.map((r) => (
            <li key={r.id} data-request-id={r.id}>
              <a href={explainHref(r.id)}>{clock(r.submittedAt)} {r.modelId}</a> · {r.requesterGeozone} · <span className={`badge req-${r.status}`}>{r.status}</span> {r.latencyMs !== undefined && <span className="muted">{ms(r.latencyMs)}</span>}
            </li>
          ))}
          {recent.length === 0 && <li className="muted">No recent requests on this node.</li>}
        </ul>
      </div>
    </Panel>
  );
}

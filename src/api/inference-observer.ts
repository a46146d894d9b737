/**
 * Turns what the tracker sees (dispatches, rejections, results, system events) into the metrics, the
 * live figures and the console feed. Any process that serves the API wires one, whatever runs the
 * scheduler.
 */
import type { RequestRecord, TrackerListener } from '../inference/tracker.ts';
import type { ArcMetrics } from './metrics.ts';
import type { ConsoleHub } from './console-hub.ts';
import type { NodeView } from './server.ts';

export function inferenceObserver(metrics: ArcMetrics, hub: ConsoleHub, nodes: Pick<NodeView, 'get'>): TrackerListener {
  return {
    dispatched: (record, dispatch) => {
      metrics.totals.requests++;
      metrics.totals.dispatched++;
      if (record.forwarded) metrics.totals.forwarded++;
      metrics.requestRate.mark();
      metrics.requests.inc({ geozone: record.requesterGeozone ?? 'unknown', status: 'dispatched' });
      if (hub.active) hub.inference({
        requestId: record.id,
        targetNodeId: dispatch.nodeId,
        modelId: dispatch.modelId,
        priority: dispatch.priority ?? 'normal',
        status: 'dispatched',
        timestamp: dispatch.dispatchedAt,
        ...feedPlaces(record, nodes.get(dispatch.nodeId)?.geozone),
      });
    },
    rejected: (record) => {
      metrics.totals.requests++;
      metrics.totals.rejected++;
      metrics.requestRate.mark();
      metrics.requests.inc({ geozone: record.requesterGeozone ?? 'unknown', status: 'rejected' });
      if (hub.active) hub.rejection({
        requestId: record.id,
        requesterGeozone: record.requesterGeozone ?? 'unknown',
        modelId: record.modelId ?? 'unknown',
        priority: record.priority ?? 'normal',
        reason: record.reason ?? 'no node could take it',
        timestamp: new Date().toISOString(),
      });
    },
    finished: (record, result) => {
      metrics.totals[result.status]++;
      metrics.requests.inc({ geozone: record.requesterGeozone ?? 'unknown', status: result.status });
      const node = nodes.get(result.nodeId);
      if (result.status === 'completed') {
        metrics.latencySamples.add(result.latencyMs);
        metrics.inferenceLatency.observe({ geozone: node?.geozone ?? 'unknown' }, result.latencyMs);
      }
      if (hub.active) hub.inference({
        requestId: record.id,
        targetNodeId: result.nodeId,
        modelId: record.modelId ?? 'unknown',
        priority: record.priority ?? 'normal',
        status: result.status,
        latencyMs: result.latencyMs,
        timestamp: result.completedAt,
        ...feedPlaces(record, node?.geozone),
      });
    },
    event: (event) => hub.system(event),
  };
}

/** Where a request came from and went, for the console's arcs (fields left out when not known). */
function feedPlaces(record: RequestRecord, nodeGeozone: string | undefined): { requesterGeozone?: string; targetGeozone?: string; forwarded?: boolean } {
  const targetGeozone = record.geozone ?? nodeGeozone;
  return {
    ...(record.requesterGeozone === undefined ? {} : { requesterGeozone: record.requesterGeozone }),
    ...(targetGeozone === undefined ? {} : { targetGeozone }),
    ...(record.requesterGeozone === undefined || targetGeozone === undefined ? {} : { forwarded: record.requesterGeozone !== targetGeozone }),
  };
}

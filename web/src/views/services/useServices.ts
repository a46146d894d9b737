/**
 * The Services view's data, polled every second while the view is mounted and the tab visible: the
 * cluster status, the blueprints as applied, the nodes, then each slice's detail (for its endpoints).
 * The feed carries no services data, so this is the only source. A slice whose detail read fails
 * (removed between the two reads, say) is noted with why, not a failure of the whole round.
 */
import { ApiError, apiGet } from '../../api/client.ts';
import type { Blueprint, BlueprintList, ClusterNodes, ServicesStatus, SliceAnswer } from '../../api/services.ts';
import { usePageVisible } from '../../lib/usePageVisible.ts';
import { usePoll, type Poll } from '../../lib/usePoll.ts';
import { useApiKey } from '../../shell/api-key.ts';

export const SERVICES_POLL_MS = 1_000;

export interface ServicesSnapshot {
  readonly status: ServicesStatus;
  /** Blueprints by name, as applied (run kind, required tags). */
  readonly blueprints: ReadonlyMap<string, Blueprint>;
  readonly nodes: ClusterNodes;
  /** `GET /api/v1/slices/:artifact` per artifact a blueprint names. */
  readonly slices: ReadonlyMap<string, SliceAnswer>;
  /** Artifacts whose detail could not be read this round, with the server's message. */
  readonly sliceErrors: ReadonlyMap<string, string>;
}

export async function loadServices(key: string, signal: AbortSignal): Promise<ServicesSnapshot> {
  const [status, blueprints, nodes] = await Promise.all([
    apiGet<ServicesStatus>('/api/v1/status', key, signal),
    apiGet<BlueprintList>('/api/v1/blueprints', key, signal),
    apiGet<ClusterNodes>('/api/v1/cluster/nodes', key, signal),
  ]);
  const artifacts = [...new Set(status.blueprints.flatMap((b) => b.slices.map((s) => s.artifact)))];
  const details = await Promise.allSettled(artifacts.map((artifact) => apiGet<SliceAnswer>(`/api/v1/slices/${encodeURIComponent(artifact)}`, key, signal)));
  const slices = new Map<string, SliceAnswer>();
  const sliceErrors = new Map<string, string>();
  details.forEach((outcome, i) => {
    const artifact = artifacts[i]!;
    if (outcome.status === 'fulfilled') slices.set(artifact, outcome.value);
    else sliceErrors.set(artifact, outcome.reason instanceof ApiError ? outcome.reason.message : String(outcome.reason));
  });
  return { status, blueprints: new Map(blueprints.blueprints.map((b) => [b.name, b])), nodes, slices, sliceErrors };
}

export function useServices(): Poll<ServicesSnapshot> {
  const key = useApiKey();
  const visible = usePageVisible();
  return usePoll((signal) => loadServices(key, signal), SERVICES_POLL_MS, [key], visible);
}

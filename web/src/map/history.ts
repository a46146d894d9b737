/**
 * Time travel: the mesh as it was at a past moment (`asOf`, valid time) or as the store knew it
 * then (`knownAt`, transaction time), from `GET /api/v1/nodes`. Slider moves are debounced, so
 * dragging does not send a request per pixel.
 */
import { useEffect, useState } from 'react';
import { apiGet, query } from '../api/client.ts';
import type { NodeList } from '../api/types.ts';
import { toMeshNode } from '../feed/rest-node.ts';
import type { MeshNode } from '../feed/state.ts';

export type TimeMode = 'live' | 'asOf' | 'knownAt';

const DEBOUNCE_MS = 250;

export interface PastMesh {
  nodes: ReadonlyMap<string, MeshNode> | null;
  /** The instant the shown nodes are for, once they arrived. */
  at: string | null;
  loading: boolean;
  error: string | null;
}

export function usePastMesh(key: string, mode: TimeMode, at: number): PastMesh {
  const [result, setResult] = useState<PastMesh>({ nodes: null, at: null, loading: false, error: null });
  useEffect(() => {
    if (mode === 'live') {
      setResult({ nodes: null, at: null, loading: false, error: null });
      return;
    }
    const controller = new AbortController();
    const iso = new Date(at).toISOString();
    setResult((previous) => ({ ...previous, loading: true }));
    const timer = setTimeout(() => {
      apiGet<NodeList>(`/api/v1/nodes${query({ [mode]: iso })}`, key, controller.signal)
        .then((list) => {
          const nodes = new Map<string, MeshNode>();
          for (const row of list.nodes) nodes.set(row.id, toMeshNode(row));
          setResult({ nodes, at: iso, loading: false, error: null });
        })
        .catch((error: unknown) => {
          if (controller.signal.aborted) return;
          setResult((previous) => ({ ...previous, loading: false, error: error instanceof Error ? error.message : String(error) }));
        });
    }, DEBOUNCE_MS);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [key, mode, at]);
  return result;
}

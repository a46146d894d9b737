/**
 * Merges `GET /api/v1/nodes` into the feed's nodes: at sign-in, after every new feed session (a
 * snapshot replaces the nodes) and every 30 s. The feed knows the nodes that send telemetry; the
 * node list also has seed 004 workers that send none, and fills in what seed 001's feed omits.
 */
import { useEffect } from 'react';
import { apiGet } from '../api/client.ts';
import type { NodeList } from '../api/types.ts';
import { toMeshNode } from './rest-node.ts';
import type { FeedStore } from './store.ts';

const EVERY_MS = 30_000;
// Long enough for the snapshot after a new session's hello to have been applied.
const AFTER_SESSION_MS = 500;

export function useRestNodes(store: FeedStore, key: string): void {
  useEffect(() => {
    let controller = new AbortController();
    const load = () => {
      controller.abort();
      controller = new AbortController();
      apiGet<NodeList>('/api/v1/nodes', key, controller.signal)
        .then((list) => store.mergeRest(list.nodes.map(toMeshNode)))
        .catch(() => undefined);
    };
    load();
    const timer = setInterval(load, EVERY_MS);
    let session = store.getSnapshot().state.session;
    let pending: ReturnType<typeof setTimeout> | null = null;
    const unsubscribe = store.subscribe(() => {
      const next = store.getSnapshot().state.session;
      if (next === session) return;
      session = next;
      if (pending !== null) clearTimeout(pending);
      pending = setTimeout(load, AFTER_SESSION_MS);
    });
    return () => {
      controller.abort();
      clearInterval(timer);
      if (pending !== null) clearTimeout(pending);
      unsubscribe();
    };
  }, [store, key]);
}

/** The bottom bar: feed state and the figures read at a glance (nodes online, requests per second). */
import { useFeed, useFeedStore } from '../feed/context.ts';
import { fixed, integer } from '../lib/format.ts';
import { useRate } from '../lib/useRate.ts';
import { FeedStatus } from './FeedStatus.tsx';

export function StatusBar() {
  const { state, status } = useFeed();
  const store = useFeedStore();
  const requestsPerSecond = useRate(() => store.getSnapshot().state.counts.requests);
  // The feed's nodes merged with GET /api/v1/nodes (useRestNodes: every 30 s and after each new
  // session; every 2 s while the Jobs view polls it): telemetry nodes plus workers that send none,
  // the set /stats counts. Counted here rather than read from /stats, which the bar would have to
  // poll: the merged set moves with the feed between reads and needs no request of its own.
  let online = 0;
  for (const node of state.nodes.values()) if (node.status !== 'offline') online++;
  return (
    <footer className="status-bar">
      <FeedStatus status={status} state={state} />
      <span data-testid="nodes-online" data-value={online}>{integer(online)} / {integer(state.nodes.size)} nodes online</span>
      <span data-testid="requests-per-second" data-value={requestsPerSecond.toFixed(1)}>{fixed(requestsPerSecond)} requests/s</span>
      <span>{integer(state.counts.rejected)} rejected</span>
      {state.counts.folded > 0 && <span className="muted" title="inference messages the server counted instead of sending, at this console's rate">{integer(state.counts.folded)} folded</span>}
      <span className="muted keys-hint">keys: 1–6 views · / search · t theme · Esc close</span>
    </footer>
  );
}

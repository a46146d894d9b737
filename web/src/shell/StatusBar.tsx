/** The bottom bar: feed state and the figures read at a glance (nodes online, requests per second). */
import { useFeed, useFeedStore } from '../feed/context.ts';
import { fixed, integer } from '../lib/format.ts';
import { useRate } from '../lib/useRate.ts';
import { FeedStatus } from './FeedStatus.tsx';

export function StatusBar() {
  const { state, status } = useFeed();
  const store = useFeedStore();
  const requestsPerSecond = useRate(() => store.getSnapshot().state.counts.requests);
  let online = 0;
  for (const node of state.nodes.values()) if (node.status !== 'offline') online++;
  return (
    <footer className="status-bar">
      <FeedStatus status={status} state={state} />
      <span data-testid="nodes-online" data-value={online}>{integer(online)} / {integer(state.nodes.size)} nodes online</span>
      <span data-testid="requests-per-second" data-value={requestsPerSecond.toFixed(1)}>{fixed(requestsPerSecond)} requests/s</span>
      <span>{integer(state.counts.rejected)} rejected</span>
      {state.counts.folded > 0 && <span className="muted" title="inference messages the server counted instead of sending, at this console's rate">{integer(state.counts.folded)} folded</span>}
      <span className="muted keys-hint">keys: 1–4 views · / search · t theme · Esc close</span>
    </footer>
  );
}

/** The feed's connection state and sequence position: what an operator (and a test) checks first. */
import type { SocketStatus } from '../feed/socket.ts';
import type { FeedState } from '../feed/state.ts';
import { useNow } from '../lib/useNow.ts';

interface FeedStatusProps {
  status: SocketStatus;
  state: FeedState;
}

export function FeedStatus({ status, state }: FeedStatusProps) {
  const now = useNow(500, status.state === 'reconnecting');
  const label =
    status.state === 'live'
      ? 'live'
      : status.state === 'connecting'
        ? 'connecting…'
        : status.retryAt === null
          ? 'reconnecting…' // open again, waiting for its hello
          : `reconnecting in ${Math.max(0, Math.ceil((status.retryAt - now) / 1000))} s…`;
  const title = [
    state.session ? `session ${state.session}` : 'no session yet',
    state.lastSeq !== null ? `seq ${state.lastSeq}` : 'unsequenced feed',
    `${state.gaps} gaps`,
    `${state.resyncs} resyncs${state.lastResync ? ` (last: ${state.lastResync})` : ''}`,
    status.lastClose ? `last close: ${status.lastClose}` : '',
  ].filter(Boolean).join(' · ');
  return (
    <span
      className={`feed-status feed-${status.state}`}
      data-testid="feed-status"
      data-state={status.state}
      data-session={state.session ?? ''}
      data-seq={state.lastSeq ?? ''}
      data-gaps={state.gaps}
      data-resyncs={state.resyncs}
      data-server-instance={state.serverInstance ?? ''}
      title={title}
      role="status"
    >
      <span className="dot" aria-hidden="true" />
      {label}
      {state.gaps > 0 && <strong className="warn-text"> · {state.gaps} gaps</strong>}
    </span>
  );
}

/**
 * The one WebSocket to `/telemetry`. It reconnects on its own with exponential backoff
 * (0.5 s doubling to 10 s, with jitter so a restarted server is not hit by every console at once)
 * and asks to resume where it stopped (`session` + `since`), so a short outage loses nothing.
 * Messages are handed over in batches, at most one per ~16 ms, so the reducer copies state once
 * per batch and not once per message.
 */
import type { ConnectionState, IncomingMessage } from './state.ts';

export interface SocketStatus {
  state: ConnectionState;
  /** When the next attempt starts (Date.now() clock), while reconnecting. */
  retryAt: number | null;
  /** Connection attempts that failed in a row. */
  failures: number;
  lastClose: string | null;
}

export interface FeedSocketOptions {
  key: string;
  inferencePerSecond: number;
  /** Where to resume: the session and the last seq applied, or null for a new session. */
  resumeFrom: () => { session: string; since: number } | null;
  onBatch: (messages: IncomingMessage[]) => void;
  onStatus: (status: SocketStatus) => void;
  /** Called after repeated failures to open: the key may have been revoked. */
  onRepeatedFailure: () => void;
}

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const BATCH_MS = 16;
const FAILURES_BEFORE_CHECK = 3;

export function backoffDelay(failures: number, random: number = Math.random()): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, failures - 1));
  // ±25 % jitter, never past the ceiling.
  return Math.min(BACKOFF_MAX_MS, Math.round(base * (0.75 + random * 0.5)));
}

export function feedUrl(location: Pick<Location, 'protocol' | 'host'>, key: string, inferencePerSecond: number, resume: { session: string; since: number } | null): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const params = new URLSearchParams({ key, inferencePerSecond: String(inferencePerSecond) });
  if (resume) {
    params.set('session', resume.session);
    params.set('since', String(resume.since));
  }
  return `${scheme}//${location.host}/telemetry?${params.toString()}`;
}

export class FeedSocket {
  private readonly options: FeedSocketOptions;
  private socket: WebSocket | null = null;
  private queue: IncomingMessage[] = [];
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private status: SocketStatus = { state: 'connecting', retryAt: null, failures: 0, lastClose: null };

  constructor(options: FeedSocketOptions) {
    this.options = options;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    this.flush();
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, 'console closed');
  }

  private setStatus(patch: Partial<SocketStatus>): void {
    this.status = { ...this.status, ...patch };
    this.options.onStatus(this.status);
  }

  private connect(): void {
    this.retryTimer = null;
    if (this.status.state !== 'reconnecting') this.setStatus({ state: 'connecting', retryAt: null });
    const url = feedUrl(window.location, this.options.key, this.options.inferencePerSecond, this.options.resumeFrom());
    const socket = new WebSocket(url);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      // Open, not yet live for the console: the store shows `live` once this connection's hello is applied (connectionState in state.ts).
      this.setStatus({ state: 'live', retryAt: null, failures: 0 });
    };
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== 'string') return;
      try {
        this.queue.push(JSON.parse(event.data) as IncomingMessage);
      } catch {
        return; // Not JSON: nothing the console can show.
      }
      this.flushTimer ??= setTimeout(() => this.flush(), BATCH_MS);
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return;
      this.socket = null;
      // What arrived before the close is applied before the resume point is read.
      this.flush();
      if (this.stopped) return;
      const failures = opened ? 1 : this.status.failures + 1;
      const delay = backoffDelay(failures);
      this.setStatus({ state: 'reconnecting', retryAt: Date.now() + delay, failures, lastClose: event.reason || `code ${event.code}` });
      if (!opened && failures % FAILURES_BEFORE_CHECK === 0) this.options.onRepeatedFailure();
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
  }

  private flush(): void {
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.options.onBatch(batch);
  }
}

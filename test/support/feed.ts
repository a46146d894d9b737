/**
 * The console's feed (`/telemetry`) as a Node client sees it: every message kept in order with its
 * sequence number, so a test can check that a session's numbers run on without a gap, and reconnect
 * with `?session=&since=` as the console does.
 */
import WebSocket from 'ws';
import type { FeedMessage } from '../../src/contracts/console.ts';
import { until } from './until.ts';

export class FeedClient {
  readonly messages: FeedMessage[] = [];
  readonly socket: WebSocket;
  private closedAt: number | undefined;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.on('message', (data: Buffer) => this.messages.push(JSON.parse(data.toString()) as FeedMessage));
    socket.on('close', () => (this.closedAt = Date.now()));
  }

  /** Opens `/telemetry` with the key in the query (a browser cannot set headers on a WebSocket), resuming a session when given one. */
  static async connect(url: string, key: string, resume?: { session: string; since: number }): Promise<FeedClient> {
    const address = new URL('/telemetry', url.replace(/^http/, 'ws'));
    address.searchParams.set('key', key);
    if (resume) {
      address.searchParams.set('session', resume.session);
      address.searchParams.set('since', String(resume.since));
    }
    const socket = new WebSocket(address);
    const client = new FeedClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
      socket.once('unexpected-response', (_request, response) => reject(new Error(`feed refused the connection: HTTP ${response.statusCode}`)));
    });
    return client;
  }

  get closed(): boolean {
    return this.closedAt !== undefined;
  }

  hello(): Extract<FeedMessage, { type: 'hello' }> | undefined {
    return this.messages.find((m): m is Extract<FeedMessage, { type: 'hello' }> => m.type === 'hello');
  }

  lastSeq(): number {
    return this.messages.at(-1)?.seq ?? 0;
  }

  /** Where the first gap is (the seq expected and the one received), or undefined when the numbers run on one by one. */
  firstGap(): { expected: number; got: number } | undefined {
    for (let i = 1; i < this.messages.length; i++) {
      const expected = this.messages[i - 1]!.seq + 1;
      if (this.messages[i]!.seq !== expected) return { expected, got: this.messages[i]!.seq };
    }
    return undefined;
  }

  waitFor(predicate: (messages: readonly FeedMessage[]) => boolean, what: string, timeoutMs = 10_000): Promise<true> {
    return until(() => predicate(this.messages), what, timeoutMs, { intervalMs: 20 });
  }

  close(): Promise<void> {
    if (this.closed || this.socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.close();
    });
  }
}

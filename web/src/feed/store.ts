/**
 * Holds the feed state outside React. The reducer runs on every batch; React hears about it at
 * most four times a second (the views are read by people), while the map's canvas takes the
 * inference traffic as it arrives (`onTraffic`) and reads nodes on its own frame loop.
 */
import type { FeedInference, FeedRejection } from '../../../src/contracts/console.ts';
import { FeedSocket, type SocketStatus } from './socket.ts';
import { applyMessages, connectionClosed, connectionState, initialFeedState, mergeRestNodes, type FeedState, type IncomingMessage, type MeshNode } from './state.ts';

export type TrafficMessage = Omit<FeedInference, 'seq'> | Omit<FeedRejection, 'seq'>;

export interface FeedSnapshot {
  state: FeedState;
  status: SocketStatus;
}

const PUBLISH_MS = 250;
export const INFERENCE_PER_SECOND = 200;

export class FeedStore {
  private state: FeedState = initialFeedState();
  private status: SocketStatus = { state: 'connecting', retryAt: null, failures: 0, lastClose: null };
  private published: FeedSnapshot = { state: this.state, status: this.status };
  private readonly listeners = new Set<() => void>();
  private readonly trafficListeners = new Set<(messages: readonly TrafficMessage[]) => void>();
  private publishTimer: ReturnType<typeof setTimeout> | null = null;
  private socket: FeedSocket | null = null;

  /** For useSyncExternalStore: the same object until the next publish. */
  readonly getSnapshot = (): FeedSnapshot => this.published;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** The current nodes, fresher than the published snapshot: for the canvas' frame loop. */
  currentNodes(): ReadonlyMap<string, MeshNode> {
    return this.state.nodes;
  }

  onTraffic(listener: (messages: readonly TrafficMessage[]) => void): () => void {
    this.trafficListeners.add(listener);
    return () => this.trafficListeners.delete(listener);
  }

  connect(key: string, onRepeatedFailure: () => void): void {
    this.socket?.stop();
    this.socket = new FeedSocket({
      key,
      inferencePerSecond: INFERENCE_PER_SECOND,
      resumeFrom: () => (this.state.session !== null && this.state.lastSeq !== null ? { session: this.state.session, since: this.state.lastSeq } : null),
      onBatch: (batch) => this.apply(batch),
      onStatus: (status) => {
        this.status = status;
        // The socket flushed the closed connection's messages before saying so.
        if (status.state !== 'live') this.state = connectionClosed(this.state);
        this.publishNow();
      },
      onRepeatedFailure,
    });
    this.socket.start();
  }

  disconnect(): void {
    this.socket?.stop();
    this.socket = null;
  }

  apply(batch: readonly IncomingMessage[]): void {
    this.state = applyMessages(this.state, batch);
    const traffic: TrafficMessage[] = [];
    for (const message of batch) if (message.type === 'inference' || message.type === 'rejection') traffic.push(message);
    if (traffic.length > 0) for (const listener of this.trafficListeners) listener(traffic);
    this.schedulePublish();
  }

  mergeRest(nodes: Parameters<typeof mergeRestNodes>[1]): void {
    this.state = mergeRestNodes(this.state, nodes);
    this.schedulePublish();
  }

  private schedulePublish(): void {
    this.publishTimer ??= setTimeout(() => this.publishNow(), PUBLISH_MS);
  }

  private publishNow(): void {
    if (this.publishTimer !== null) clearTimeout(this.publishTimer);
    this.publishTimer = null;
    const shown = connectionState(this.status.state, this.state);
    this.published = { state: this.state, status: shown === this.status.state ? this.status : { ...this.status, state: shown } };
    for (const listener of this.listeners) listener();
  }
}

/**
 * Delivers each dispatch only to its node (DESIGN §4): the topic `arc.command.dispatch.{geozone}` is
 * kept, but instead of every node reading every dispatch of its zone, this router reads the topic
 * once per process holding sessions (a server replica, a simulator) and hands each dispatch to the
 * session of the node it names: an agent's WebSocket, or a simulated node.
 *
 * With several such processes, the telemetry each publishes for its nodes carries its endpoint id in
 * a header; the scheduler copies it onto the dispatch, so exactly one router answers for it. That
 * router fails a dispatch for a node whose session has gone at once with the reason, rather than
 * letting it wait out the reservation; the others ignore it.
 */
import type { Clock } from '../core/clock.ts';
import type { InferenceDispatch } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { Consumer } from '../bus/ports.ts';

export type DispatchHandler = (dispatch: InferenceDispatch) => void;

/** Header naming the process holding a node's session, on its telemetry and then on its dispatches. */
export const HEADER_ENDPOINT = 'arc-endpoint';

export class DispatchRouter {
  /** This process's endpoint id; put in the headers of the telemetry it publishes for its sessions. */
  readonly endpoint: string;
  readonly telemetryHeaders: Readonly<Record<string, string>>;
  private readonly sessions = new Map<string, DispatchHandler>();
  private consumer: Consumer | undefined;
  private readonly bus: MessageBus;
  private readonly clock: Clock;

  constructor(bus: MessageBus, clock: Clock, endpoint: string) {
    this.bus = bus;
    this.clock = clock;
    this.endpoint = endpoint;
    this.telemetryHeaders = { [HEADER_ENDPOINT]: endpoint };
  }

  async start(geozones: readonly string[], group: string): Promise<void> {
    this.consumer = await this.bus.subscribe(group, geozones.map((z) => topics.dispatch(z)), 'InferenceDispatch', (d, meta) => this.route(d, meta.record.headers[HEADER_ENDPOINT]), { startAt: 'latest' });
  }

  async stop(): Promise<void> {
    await this.consumer?.close();
  }

  /** Binds a node's session; returns the function that unbinds exactly this session. */
  attach(nodeId: string, handler: DispatchHandler): () => void {
    this.sessions.set(nodeId, handler);
    return () => {
      if (this.sessions.get(nodeId) === handler) this.sessions.delete(nodeId);
    };
  }

  private async route(dispatch: InferenceDispatch, endpoint: string | undefined): Promise<void> {
    const session = this.sessions.get(dispatch.nodeId);
    if (session) {
      session(dispatch);
      return;
    }
    // Another process answers for it; without a header nobody can tell, and the reservation's TTL ends it.
    if (endpoint !== this.endpoint) return;
    await this.bus.publish(topics.inferenceResult, 'InferenceResult', {
      schemaVersion: 1,
      requestId: dispatch.requestId,
      nodeId: dispatch.nodeId,
      latencyMs: 0,
      status: 'failed',
      completedAt: new Date(this.clock.now()).toISOString(),
      ...(dispatch.fencingToken === undefined ? {} : { fencingToken: dispatch.fencingToken }),
      error: `node ${dispatch.nodeId} has no live session on ${this.endpoint} (it disconnected after its last telemetry)`,
    });
  }
}

/**
 * Delivers each dispatch only to its node (DESIGN §4): the topic `arc.command.dispatch.{geozone}` is
 * kept, but instead of every node reading every dispatch of its zone, this router reads the topic
 * once per server and hands each dispatch to the session of the node it names: an agent's
 * WebSocket, or a simulated node in this process. A dispatch for a node with no session here fails
 * at once with the reason, rather than waiting out the reservation.
 */
import type { Clock } from '../core/clock.ts';
import type { InferenceDispatch } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { Consumer } from '../bus/ports.ts';

export type DispatchHandler = (dispatch: InferenceDispatch) => void;

export class DispatchRouter {
  private readonly sessions = new Map<string, DispatchHandler>();
  private consumer: Consumer | undefined;
  private readonly bus: MessageBus;
  private readonly clock: Clock;

  constructor(bus: MessageBus, clock: Clock) {
    this.bus = bus;
    this.clock = clock;
  }

  async start(geozones: readonly string[], group: string): Promise<void> {
    this.consumer = await this.bus.subscribe(group, geozones.map((z) => topics.dispatch(z)), 'InferenceDispatch', (d) => this.route(d), { startAt: 'latest' });
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

  private async route(dispatch: InferenceDispatch): Promise<void> {
    const session = this.sessions.get(dispatch.nodeId);
    if (session) {
      session(dispatch);
      return;
    }
    await this.bus.publish(topics.inferenceResult, 'InferenceResult', {
      schemaVersion: 1,
      requestId: dispatch.requestId,
      nodeId: dispatch.nodeId,
      latencyMs: 0,
      status: 'failed',
      completedAt: new Date(this.clock.now()).toISOString(),
      ...(dispatch.fencingToken === undefined ? {} : { fencingToken: dispatch.fencingToken }),
      error: `node ${dispatch.nodeId} has no live session on this server`,
    });
  }
}

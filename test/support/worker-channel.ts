/**
 * An in-memory WorkerChannel for tests that play workers in-process (the coordinator's). It is an
 * adapter, not a stub: it passes the same contract as the API's WorkerGateway
 * (`test/contract/worker-channel.contract.ts`). A worker has a session only once `connect`ed;
 * offers to a worker without one return false and are not recorded, as the gateway would not have
 * delivered them either.
 */
import type { WorkerSessionHooks } from '../../src/api/worker-gateway.ts';
import type { ExecutionAssignment } from '../../src/jobs/model.ts';
import type { WorkerChannel } from '../../src/jobs/ports.ts';
import type { Delivered, WorkerSession } from '../contract/worker-channel.contract.ts';

export class InMemoryWorkerSession implements WorkerSession {
  readonly received: Delivered[] = [];
  readonly closed: Promise<void>;
  private markClosed: () => void = () => undefined;
  private open = true;
  private readonly channel: RecordingWorkerChannel;
  readonly nodeId: string;

  constructor(channel: RecordingWorkerChannel, nodeId: string) {
    this.channel = channel;
    this.nodeId = nodeId;
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  ack(executionId: string): void {
    if (this.open) this.channel.acknowledgedOn(this, executionId);
  }

  async disconnect(): Promise<void> {
    this.end();
  }

  drop(): void {
    this.end();
  }

  /** Ends the session (either side); the channel forgets it if it is still the worker's current one. */
  end(): void {
    if (!this.open) return;
    this.open = false;
    this.channel.ended(this);
    this.markClosed();
  }
}

export class RecordingWorkerChannel implements WorkerChannel {
  /** Offers delivered to a live session, in order (offers that returned false are not here). */
  readonly offers: { nodeId: string; assignment: ExecutionAssignment }[] = [];
  /** Cancels delivered to a live session. */
  readonly cancels: { nodeId: string; executionId: string; reason: string }[] = [];
  private readonly sessions = new Map<string, InMemoryWorkerSession>();
  private hooks: WorkerSessionHooks | undefined;

  bind(hooks: WorkerSessionHooks): void {
    this.hooks = hooks;
  }

  /** Opens a session for the worker, replacing (and closing) an older one, and announces it. */
  connect(nodeId: string): InMemoryWorkerSession {
    const session = new InMemoryWorkerSession(this, nodeId);
    const previous = this.sessions.get(nodeId);
    this.sessions.set(nodeId, session);
    previous?.end();
    this.hooks?.connected(nodeId);
    return session;
  }

  /** The worker's session ends (it stopped, or its connection dropped). */
  disconnect(nodeId: string): void {
    this.sessions.get(nodeId)?.end();
  }

  offer(nodeId: string, assignment: ExecutionAssignment): boolean {
    const session = this.sessions.get(nodeId);
    if (!session) return false;
    session.received.push({ kind: 'execution', assignment });
    this.offers.push({ nodeId, assignment });
    return true;
  }

  cancel(nodeId: string, executionId: string, reason: string): void {
    const session = this.sessions.get(nodeId);
    if (!session) return;
    session.received.push({ kind: 'cancel', executionId, reason });
    this.cancels.push({ nodeId, executionId, reason });
  }

  /** What the worker received while connected, in order. */
  forNode(nodeId: string): ExecutionAssignment[] {
    return this.offers.filter((o) => o.nodeId === nodeId).map((o) => o.assignment);
  }

  /** @internal called by a session */
  ended(session: InMemoryWorkerSession): void {
    if (this.sessions.get(session.nodeId) === session) this.sessions.delete(session.nodeId);
  }

  /** @internal called by a session */
  acknowledgedOn(session: InMemoryWorkerSession, executionId: string): void {
    void this.hooks?.acknowledged(session.nodeId, executionId);
  }
}

/**
 * Server side of the worker push session (protocol in `src/jobs/protocol.ts`): the coordinator's
 * WorkerChannel. One live session per worker; a newer session replaces an older one, so a worker
 * that reconnected is never sent work on the connection it abandoned.
 */
import type { WebSocket, RawData } from 'ws';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import type { ExecutionAssignment } from '../jobs/model.ts';
import type { WorkerChannel } from '../jobs/ports.ts';
import type { ServerToWorker } from '../jobs/protocol.ts';
import { ClientErrorLog } from './client-errors.ts';

export interface WorkerSessionHooks {
  /** A session for this worker opened (after authentication). */
  connected(nodeId: string): void;
  acknowledged(nodeId: string, executionId: string): Promise<void>;
}

export class WorkerGateway implements WorkerChannel {
  private readonly sessions = new Map<string, WebSocket>();
  private readonly logger: Logger;
  private hooks: WorkerSessionHooks | undefined;

  constructor(logger: Logger) {
    this.logger = logger;
  }

  /** Set once the coordinator exists (it needs this gateway as its channel first). */
  bind(hooks: WorkerSessionHooks): void {
    this.hooks = hooks;
  }

  get connected(): number {
    return this.sessions.size;
  }

  offer(nodeId: string, assignment: ExecutionAssignment): boolean {
    return this.send(nodeId, { type: 'execution', assignment });
  }

  cancel(nodeId: string, executionId: string, reason: string): void {
    this.send(nodeId, { type: 'cancel', execution_id: executionId, reason });
  }

  private send(nodeId: string, message: ServerToWorker): boolean {
    const socket = this.sessions.get(nodeId);
    if (!socket || socket.readyState !== socket.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  /** Takes an authenticated session. */
  handle(socket: WebSocket, nodeId: string): void {
    const previous = this.sessions.get(nodeId);
    if (previous && previous !== socket) previous.close(4001, 'replaced by a newer session of this worker');
    this.sessions.set(nodeId, socket);
    const reply = (message: ServerToWorker): void => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
    };
    reply({ type: 'welcome', node_id: nodeId });
    this.logger.info({ node: nodeId }, 'worker session opened');
    this.hooks?.connected(nodeId);
    // The worker is told what was wrong; the log hears of it at most every 10 s per session (./client-errors.ts).
    const clientErrors = new ClientErrorLog(this.logger, { node: nodeId });
    socket.on('message', (raw: RawData) => {
      let frame: { type?: unknown; execution_id?: unknown };
      try {
        frame = JSON.parse(raw.toString()) as typeof frame;
      } catch {
        clientErrors.note('frame is not valid JSON');
        return reply({ type: 'error', message: 'frame is not valid JSON' });
      }
      if (frame?.type !== 'ack' || typeof frame.execution_id !== 'string' || frame.execution_id.length > 128) {
        const message = `unknown frame ${JSON.stringify(frame?.type)?.slice(0, 64)}: a worker sends only {"type":"ack","execution_id":…} (an id of at most 128 characters); results go to POST /api/v1/worker/result`;
        clientErrors.note(message);
        return reply({ type: 'error', message });
      }
      this.hooks?.acknowledged(nodeId, frame.execution_id).catch((error: unknown) => this.logger.warn({ node: nodeId, err: errorMessage(error) }, 'could not record an acknowledgement'));
    });
    socket.on('close', () => {
      if (this.sessions.get(nodeId) === socket) this.sessions.delete(nodeId);
      this.logger.info({ node: nodeId }, 'worker session closed');
    });
    socket.on('error', () => socket.terminate());
  }

  closeAll(): void {
    for (const socket of this.sessions.values()) socket.close(1012, 'server restarting');
    this.sessions.clear();
  }
}

/**
 * The worker's push session on WebSocket `/api/v1/worker/stream`, authenticated like every worker
 * call (`Authorization: Bearer <credential>`, `?node_id=`). Results still go over
 * `POST /api/v1/worker/result`, so a worker that cannot hold a session loses nothing by polling.
 *
 *   server → worker  { type: 'welcome', node_id }
 *   server → worker  { type: 'execution', assignment: ExecutionAssignment }   (also on reconnect)
 *   server → worker  { type: 'cancel', execution_id, reason }
 *   worker → server  { type: 'ack', execution_id }                            (received; now running)
 *   server → worker  { type: 'error', message }
 */
import type { ExecutionAssignment } from './model.ts';

export const WORKER_STREAM_PATH = '/api/v1/worker/stream';

export type ServerToWorker =
  | { type: 'welcome'; node_id: string }
  | { type: 'execution'; assignment: ExecutionAssignment }
  | { type: 'cancel'; execution_id: string; reason: string }
  | { type: 'error'; message: string };

export type WorkerToServer = { type: 'ack'; execution_id: string };

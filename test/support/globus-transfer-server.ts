/**
 * A local stand-in for the Globus Transfer API (v0.10), for the Globus mover's contract run: the
 * service cannot be reached from here, so this implements the documented behaviour of the endpoints
 * the mover calls and moves real bytes between local directories, each mapped as an endpoint.
 *
 *   GET  /submission_id                       {DATA_TYPE: submission_id, value}
 *   POST /transfer                            202 {code: Accepted, task_id}; the same submission_id
 *                                             again: 200 {code: Duplicate, the same task_id}, never a second task
 *   GET  /task/<id>                           the task document: status ACTIVE|INACTIVE|SUCCEEDED|FAILED,
 *                                             nice_status, faults, bytes_transferred, fatal_error {code, description}
 *   GET  /task/<id>/event_list                events newest first: {code, is_error, description, details, time}
 *   POST /task/<id>/cancel                    {code: Canceled} or, once it ended, {code: TaskComplete}
 *   GET  /operation/endpoint/<id>/ls?path=    the directory's file_list (name, type, size)
 *
 * As Globus does, a task meeting an error keeps status ACTIVE, counts a fault, shows the error's
 * class in nice_status (FILE_NOT_FOUND, PERMISSION_DENIED, VERIFY_CHECKSUM, CONNECT_FAILED) and
 * retries after a pause, for as long as its deadline allows; it restarts a file from its last
 * checkpoint (`chunkBytes`). Requests need `Authorization: Bearer <token>`. Faults are injected per
 * next task: a connection fault mid-task that clears, or a byte flipped in flight (caught by
 * verify_checksum). The rate is settable, so a test's task lasts long enough to watch.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, readdirSync, statSync, writeSync, ftruncateSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import type { AddressInfo } from 'node:net';

export interface GlobusServerOptions {
  /** Endpoint (collection) id → the directory its paths are rooted at. */
  readonly endpoints: Readonly<Record<string, string>>;
  readonly token: string;
  /** Bytes per second a task moves (default: as fast as the disk). */
  readonly bytesPerSecond?: number;
  /** A restarted file resumes from a multiple of this (Globus's restart markers). */
  readonly chunkBytes?: number;
  /** How long a task waits after an error before it tries again. */
  readonly retryAfterMs?: number;
}

export type InjectedFault =
  /** Once `afterFraction` has moved, the task reports CONNECT_FAILED for `forMs`, then carries on from its checkpoint. */
  | { readonly kind: 'transient'; readonly afterFraction: number; readonly forMs: number }
  /** One byte of the second chunk is flipped on its way: verify_checksum catches it. */
  | { readonly kind: 'corrupt' };

interface TaskEvent {
  readonly DATA_TYPE: 'event';
  readonly code: string;
  readonly is_error: boolean;
  readonly description: string;
  readonly details: string;
  readonly time: string;
}

interface Task {
  readonly taskId: string;
  readonly submissionId: string;
  readonly sourceEndpoint: string;
  readonly destinationEndpoint: string;
  readonly sourcePath: string;
  readonly destinationPath: string;
  readonly verifyChecksum: boolean;
  readonly externalChecksum: string | undefined;
  readonly requestTime: string;
  readonly deadline: string | null;
  readonly label: string | null;
  status: 'ACTIVE' | 'INACTIVE' | 'SUCCEEDED' | 'FAILED';
  niceStatus: string | null;
  fatalError: { code: string; description: string } | null;
  faults: number;
  bytesTransferred: number;
  bytesChecksummed: number;
  size: number | null;
  completionTime: string | null;
  events: TaskEvent[];
  fault: InjectedFault | undefined;
  faultFiredAt: number | undefined;
  retryAt: number;
  lastStep: number;
}

const iso = (ms = Date.now()): string => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '+00:00');

export class GlobusTransferServer {
  readonly tasks = new Map<string, Task>();
  private readonly issued = new Set<string>();
  private readonly bySubmission = new Map<string, string>();
  private readonly server: Server;
  private readonly options: GlobusServerOptions;
  private readonly ticker: NodeJS.Timeout;
  private bytesPerSecond: number | undefined;
  private nextFault: InjectedFault | undefined;
  /** Every request seen, `METHOD path`, for tests that count calls. */
  readonly requests: string[] = [];
  url = '';

  private constructor(options: GlobusServerOptions) {
    this.options = options;
    this.bytesPerSecond = options.bytesPerSecond;
    this.server = createServer((request, response) => void this.handle(request, response));
    this.ticker = setInterval(() => this.tick(), 20);
  }

  static async start(options: GlobusServerOptions): Promise<GlobusTransferServer> {
    const server = new GlobusTransferServer(options);
    await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', resolve));
    server.url = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}/v0.10`;
    return server;
  }

  setRate(bytesPerSecond: number | undefined): void {
    this.bytesPerSecond = bytesPerSecond;
  }

  injectNext(fault: InjectedFault): void {
    this.nextFault = fault;
  }

  async close(): Promise<void> {
    clearInterval(this.ticker);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private get chunkBytes(): number {
    return this.options.chunkBytes ?? 256 * 1024;
  }

  private localPath(endpoint: string, path: string): string | undefined {
    const root = this.options.endpoints[endpoint];
    if (root === undefined) return undefined;
    return join(root, normalize(`/${path}`));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://localhost');
    this.requests.push(`${request.method} ${url.pathname}`);
    const send = (status: number, body: unknown): void => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    const error = (status: number, code: string, message: string): void =>
      send(status, { code, message, request_id: randomUUID().slice(0, 9), resource: url.pathname });
    if (request.headers.authorization !== `Bearer ${this.options.token}`) return error(401, 'AuthenticationFailed', 'No valid bearer token was given');
    const path = url.pathname.replace(/^\/v0\.10/, '');
    let body: Record<string, unknown> = {};
    if (request.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      try {
        body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>) : {};
      } catch {
        return error(400, 'ClientError.BadRequest', 'The body is not JSON');
      }
    }
    let match: RegExpMatchArray | null;
    if (request.method === 'GET' && path === '/submission_id') {
      const value = randomUUID();
      this.issued.add(value);
      return send(200, { DATA_TYPE: 'submission_id', value });
    }
    if (request.method === 'POST' && path === '/transfer') return this.submit(body, send, error);
    if (request.method === 'GET' && (match = path.match(/^\/task\/([^/]+)$/))) {
      const task = this.tasks.get(match[1]!);
      return task ? send(200, this.document(task)) : error(404, 'TaskNotFound', `Task ${match[1]} not found`);
    }
    if (request.method === 'GET' && (match = path.match(/^\/task\/([^/]+)\/event_list$/))) {
      const task = this.tasks.get(match[1]!);
      if (!task) return error(404, 'TaskNotFound', `Task ${match[1]} not found`);
      const limit = Number(url.searchParams.get('limit') ?? 10);
      const events = [...task.events].reverse();
      return send(200, { DATA_TYPE: 'event_list', limit, offset: 0, total: events.length, DATA: events.slice(0, limit) });
    }
    if (request.method === 'POST' && (match = path.match(/^\/task\/([^/]+)\/cancel$/))) {
      const task = this.tasks.get(match[1]!);
      if (!task) return error(404, 'TaskNotFound', `Task ${match[1]} not found`);
      const resource = `/task/${task.taskId}/cancel`;
      if (task.status === 'SUCCEEDED' || task.status === 'FAILED') {
        return send(200, { DATA_TYPE: 'result', code: 'TaskComplete', message: 'The task completed before the cancel request was processed.', resource, request_id: randomUUID().slice(0, 9) });
      }
      this.finish(task, 'FAILED', { code: 'CANCELED', description: 'The task was canceled by its owner' });
      return send(200, { DATA_TYPE: 'result', code: 'Canceled', message: 'The task has been cancelled successfully.', resource, request_id: randomUUID().slice(0, 9) });
    }
    if (request.method === 'GET' && (match = path.match(/^\/operation\/endpoint\/([^/]+)\/ls$/))) {
      const dir = this.localPath(match[1]!, url.searchParams.get('path') ?? '/');
      if (dir === undefined) return error(404, 'EndpointNotFound', `No endpoint ${match[1]}`);
      try {
        const DATA = readdirSync(dir, { withFileTypes: true }).map((entry) => ({
          DATA_TYPE: 'file', name: entry.name, type: entry.isDirectory() ? 'dir' : 'file', size: entry.isFile() ? statSync(join(dir, entry.name)).size : 0,
        }));
        return send(200, { DATA_TYPE: 'file_list', path: url.searchParams.get('path'), DATA });
      } catch (failure) {
        const code = (failure as { code?: string }).code;
        if (code === 'ENOENT') return error(404, 'ClientError.NotFound', `Directory '${url.searchParams.get('path')}' not found on endpoint ${match[1]}`);
        if (code === 'EACCES' || code === 'EPERM') return error(403, 'EndpointPermissionDenied', `Permission denied listing '${url.searchParams.get('path')}'`);
        throw failure;
      }
    }
    return error(404, 'ClientError.NotFound', `No resource ${request.method} ${path}`);
  }

  private submit(body: Record<string, unknown>, send: (status: number, body: unknown) => void, error: (status: number, code: string, message: string) => void): void {
    if (body.DATA_TYPE !== 'transfer') return error(400, 'ClientError.BadRequest', "DATA_TYPE must be 'transfer'");
    const submissionId = body.submission_id;
    if (typeof submissionId !== 'string' || !this.issued.has(submissionId)) return error(400, 'ClientError.BadRequest', 'submission_id is missing or was not issued by GET /submission_id');
    const existing = this.bySubmission.get(submissionId);
    if (existing !== undefined) {
      // Documented: a submission id is executed once however often it is submitted; the answer says Duplicate.
      return send(200, { DATA_TYPE: 'transfer_result', code: 'Duplicate', message: `A transfer with submission id ${submissionId} was already accepted`, submission_id: submissionId, task_id: existing, resource: '/transfer', request_id: randomUUID().slice(0, 9) });
    }
    const source = body.source_endpoint;
    const destination = body.destination_endpoint;
    if (typeof source !== 'string' || this.options.endpoints[source] === undefined) return error(404, 'ClientError.NotFound', `Source endpoint ${String(source)} not found`);
    if (typeof destination !== 'string' || this.options.endpoints[destination] === undefined) return error(404, 'ClientError.NotFound', `Destination endpoint ${String(destination)} not found`);
    const items = body.DATA;
    if (!Array.isArray(items) || items.length !== 1) return error(400, 'ClientError.BadRequest', 'this stand-in moves exactly one transfer_item per task');
    const item = items[0] as Record<string, unknown>;
    if (item.DATA_TYPE !== 'transfer_item' || typeof item.source_path !== 'string' || typeof item.destination_path !== 'string') {
      return error(400, 'ClientError.BadRequest', 'DATA[0] must be a transfer_item with source_path and destination_path');
    }
    if (item.checksum_algorithm !== undefined && item.checksum_algorithm !== 'SHA256') return error(400, 'ClientError.BadRequest', 'this stand-in verifies SHA256 only');
    const taskId = randomUUID();
    const task: Task = {
      taskId, submissionId, sourceEndpoint: source, destinationEndpoint: destination,
      sourcePath: item.source_path, destinationPath: item.destination_path,
      verifyChecksum: body.verify_checksum === true,
      externalChecksum: typeof item.external_checksum === 'string' ? item.external_checksum : undefined,
      requestTime: iso(), deadline: typeof body.deadline === 'string' ? body.deadline : null, label: typeof body.label === 'string' ? body.label : null,
      status: 'ACTIVE', niceStatus: 'Queued', fatalError: null, faults: 0, bytesTransferred: 0, bytesChecksummed: 0, size: null, completionTime: null,
      events: [], fault: this.nextFault, faultFiredAt: undefined, retryAt: 0, lastStep: Date.now(),
    };
    this.nextFault = undefined;
    this.tasks.set(taskId, task);
    this.bySubmission.set(submissionId, taskId);
    this.event(task, 'STARTED', false, 'started', '');
    send(202, { DATA_TYPE: 'transfer_result', code: 'Accepted', message: 'The transfer has been accepted and a task has been created and queued for execution', submission_id: submissionId, task_id: taskId, resource: '/transfer', request_id: randomUUID().slice(0, 9) });
  }

  private document(task: Task): Record<string, unknown> {
    return {
      DATA_TYPE: 'task', task_id: task.taskId, type: 'TRANSFER', status: task.status, nice_status: task.niceStatus, fatal_error: task.fatalError,
      label: task.label, request_time: task.requestTime, completion_time: task.completionTime, deadline: task.deadline,
      source_endpoint_id: task.sourceEndpoint, destination_endpoint_id: task.destinationEndpoint, verify_checksum: task.verifyChecksum,
      faults: task.faults, files: 1, files_transferred: task.status === 'SUCCEEDED' ? 1 : 0, files_skipped: 0, directories: 0,
      bytes_transferred: task.bytesTransferred, bytes_checksummed: task.bytesChecksummed, subtasks_total: 1,
      subtasks_succeeded: task.status === 'SUCCEEDED' ? 1 : 0, subtasks_failed: 0, is_ok: task.niceStatus === 'OK' || task.niceStatus === 'Queued' ? true : task.status === 'ACTIVE' ? false : null,
    };
  }

  private event(task: Task, code: string, isError: boolean, description: string, details: string): void {
    task.events.push({ DATA_TYPE: 'event', code, is_error: isError, description, details, time: iso() });
  }

  private finish(task: Task, status: 'SUCCEEDED' | 'FAILED', fatal: { code: string; description: string } | null): void {
    task.status = status;
    task.niceStatus = null;
    task.fatalError = fatal;
    task.completionTime = iso();
    this.event(task, status === 'SUCCEEDED' ? 'SUCCEEDED' : fatal!.code, status === 'FAILED', status === 'SUCCEEDED' ? 'succeeded' : fatal!.description, '');
  }

  /** An error the task retries: ACTIVE, one more fault, the class in nice_status, back to the last checkpoint. */
  private fault(task: Task, niceStatus: string, description: string, details: string, now: number): void {
    task.faults++;
    task.niceStatus = niceStatus;
    task.bytesTransferred = Math.floor(task.bytesTransferred / this.chunkBytes) * this.chunkBytes;
    task.retryAt = now + (this.options.retryAfterMs ?? 500);
    this.event(task, niceStatus, true, description, details);
  }

  private tick(): void {
    const now = Date.now();
    for (const task of this.tasks.values()) {
      if (task.status !== 'ACTIVE') continue;
      if (now < task.retryAt) {
        task.lastStep = now;
        continue;
      }
      try {
        this.step(task, now);
      } catch (failure) {
        const code = (failure as { code?: string }).code;
        const side = (failure as { side?: string }).side ?? 'source';
        const file = side === 'source' ? task.sourcePath : task.destinationPath;
        const message = failure instanceof Error ? failure.message : String(failure);
        if (code === 'ENOENT') this.fault(task, 'FILE_NOT_FOUND', 'No such file or directory', `File: ${file}\nMessage: ${message}`, now);
        else if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') this.fault(task, 'PERMISSION_DENIED', 'Permission denied', `File: ${file}\nMessage: ${message}`, now);
        else this.fault(task, 'ENDPOINT_ERROR', 'Error on the endpoint', `File: ${file}\nMessage: ${message}`, now);
      }
      task.lastStep = now;
    }
  }

  private step(task: Task, now: number): void {
    const source = this.localPath(task.sourceEndpoint, task.sourcePath)!;
    const destination = this.localPath(task.destinationEndpoint, task.destinationPath)!;
    if (task.fault?.kind === 'transient' && task.faultFiredAt !== undefined) {
      if (now < task.faultFiredAt + task.fault.forMs) return;
      task.fault = undefined;
    }
    const size = statSync(source).size;
    task.size = size;
    if (task.niceStatus !== 'OK') {
      task.niceStatus = 'OK';
      task.lastStep = now;
    }
    const elapsed = Math.max(1, now - task.lastStep);
    const budget = this.bytesPerSecond === undefined ? 64 * 1024 * 1024 : Math.max(1, Math.floor((this.bytesPerSecond * elapsed) / 1_000));
    const end = Math.min(size, task.bytesTransferred + budget);
    if (end > task.bytesTransferred || size === 0) {
      const input = openSync(source, 'r');
      try {
        mkdirSync(dirname(destination), { recursive: true });
        let output: number;
        try {
          output = openSync(destination, task.bytesTransferred === 0 ? 'w' : 'r+');
        } catch (failure) {
          throw Object.assign(failure as Error, { side: 'destination' });
        }
        try {
          const bytes = Buffer.alloc(end - task.bytesTransferred);
          readSync(input, bytes, 0, bytes.length, task.bytesTransferred);
          const flip = this.chunkBytes + 3;
          if (task.fault?.kind === 'corrupt' && task.bytesTransferred <= flip && flip < end) {
            bytes[flip - task.bytesTransferred] = bytes[flip - task.bytesTransferred]! ^ 0xff;
            task.fault = undefined;
          }
          writeSync(output, bytes, 0, bytes.length, task.bytesTransferred);
          if (task.bytesTransferred === 0) ftruncateSync(output, bytes.length);
        } finally {
          closeSync(output);
        }
      } finally {
        closeSync(input);
      }
      task.bytesTransferred = end;
    }
    if (task.fault?.kind === 'transient' && task.faultFiredAt === undefined && task.bytesTransferred >= size * task.fault.afterFraction) {
      task.faultFiredAt = now;
      this.fault(task, 'CONNECT_FAILED', 'Could not connect to the destination endpoint', `Endpoint: ${task.destinationEndpoint}`, now);
      task.retryAt = now;
      return;
    }
    if (task.bytesTransferred < size) return;
    if (task.verifyChecksum || task.externalChecksum !== undefined) {
      const arrived = createHash('sha256').update(readFileSync(destination)).digest('hex');
      const expected = task.externalChecksum ?? createHash('sha256').update(readFileSync(source)).digest('hex');
      task.bytesChecksummed = size;
      if (arrived !== expected.toLowerCase()) {
        // Globus retries the file from the start after a checksum failure.
        this.fault(task, 'VERIFY_CHECKSUM', 'Checksum verification failed', `File: ${task.destinationPath}\nMessage: SHA256 ${arrived} differs from the source's ${expected}`, now);
        task.bytesTransferred = 0;
        return;
      }
    }
    this.finish(task, 'SUCCEEDED', null);
  }
}

/**
 * The Globus data mover: has the Globus Transfer service (API v0.10) move a dataset between two
 * endpoints (collections), e.g. ArcNet's dataset store and the HPC system's (`--globus-endpoint`,
 * seed 000's `:bridge {:globus-endpoint …}`), and watches the task to its end.
 *
 * Exactly once: a submission id is obtained and journaled *before* the transfer is submitted, and
 * the task id after, so a bridge killed at any point resumes the same task: with a task id it polls
 * it; with only a submission id it submits again, which Globus answers `Duplicate` with the task it
 * already made, never a second one.
 *
 * Failing fast: Globus keeps a task ACTIVE through errors, retrying until its deadline (a day or
 * more), and says what it is stuck on in `nice_status`. A missing source (FILE_NOT_FOUND), a
 * permission error (PERMISSION_DENIED) or a checksum difference (VERIFY_CHECKSUM) will not heal by
 * waiting, so on the first poll that shows one this mover cancels the task and fails with the code
 * and the reason from the task's event list. Other faults (CONNECT_FAILED, ENDPOINT_ERROR, Queued)
 * are left to Globus's own retries. `transferTimeoutMs` (`transfer-timeout-ms`) bounds the whole
 * transfer from its first submission, across restarts (the journal keeps when that was): past it,
 * the task is cancelled and the transfer fails TIMEOUT.
 *
 * Checksums: `verify_checksum` with SHA256; when the spec names the source's SHA-256 it goes along
 * as the item's `external_checksum`, Globus verifies the destination against it, and the outcome
 * reports it. Globus reports no checksum value itself, so without one the outcome's sha256 is empty.
 *
 * The HTTP client is in this file (not a module beside it) because the lint's domain/adapter zones
 * see every `globus*` file under src/training as an adapter, and an adapter importing another is
 * refused there.
 */
import type { DataMover, TransferFailureCode, TransferJournal, TransferOptions, TransferOutcome, TransferSpec } from './ports.ts';

export const GLOBUS_TRANSFER_API = 'https://transfer.api.globusonline.org/v0.10';

/** The task document fields this mover reads (GET /task/<id>). */
export interface GlobusTask {
  readonly task_id: string;
  readonly status: 'ACTIVE' | 'INACTIVE' | 'SUCCEEDED' | 'FAILED';
  readonly nice_status: string | null;
  readonly faults: number;
  readonly bytes_transferred: number;
  readonly fatal_error: { readonly code: string; readonly description: string } | null;
}

export interface GlobusEvent {
  readonly code: string;
  readonly is_error: boolean;
  readonly description: string;
  readonly details: string;
  readonly time: string;
}

export interface GlobusMoverOptions {
  /** Default the Globus Transfer API; tests point it at a local stand-in. */
  readonly baseUrl?: string;
  /** An access token with the transfer scope, or where to get a fresh one. */
  readonly token: string | (() => Promise<string>);
  readonly journal: TransferJournal;
  /** The endpoint a destination given as a bare absolute path lands on (`--globus-endpoint`). */
  readonly defaultEndpoint?: string;
  /** Bounds a whole transfer (seed 000 `transfer-timeout-ms`, default one hour). */
  readonly transferTimeoutMs?: number;
  /** How often the task is polled and progress reported (default 1 s: the port promises at least 1 Hz). */
  readonly pollIntervalMs?: number;
  readonly verifyChecksum?: boolean;
  /** Per HTTP request (default 30 s). */
  readonly requestTimeoutMs?: number;
  /** Attempts for a request that met a network error, 429 or 5xx (default 5, backoff from 200 ms). */
  readonly requestAttempts?: number;
}

/** What the journal keeps per transfer. */
type Notes = {
  readonly submissionId?: string;
  readonly taskId?: string;
  /** Epoch ms of the first submission: the timeout runs from here, across restarts. */
  readonly startedAt?: number;
  readonly cancelled?: boolean;
};

/** nice_status / fatal_error codes that waiting does not cure, and what the port calls them. */
const FINAL: Readonly<Record<string, TransferFailureCode>> = {
  FILE_NOT_FOUND: 'SOURCE_MISSING',
  PERMISSION_DENIED: 'PERMISSION',
  VERIFY_CHECKSUM: 'CHECKSUM_MISMATCH',
  CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH',
  QUOTA_EXCEEDED: 'REMOTE_FAULT',
  NO_SPACE_LEFT: 'REMOTE_FAULT',
  CANCELED: 'CANCELLED',
  EXPIRED: 'TIMEOUT',
};

class GlobusHttpError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

class Failure extends Error {
  readonly code: TransferFailureCode;

  constructor(code: TransferFailureCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** `globus://<endpoint>/<path>`, or a bare absolute path on `defaultEndpoint`. */
function endpointPath(uri: string, what: string, defaultEndpoint: string | undefined): { endpoint: string; path: string } {
  const match = /^globus:\/\/([^/]+)(\/.*)$/.exec(uri);
  if (match) return { endpoint: decodeURIComponent(match[1]!), path: match[2]! };
  if (uri.startsWith('/') && defaultEndpoint) return { endpoint: defaultEndpoint, path: uri };
  throw new Failure('INVALID_REQUEST', `the ${what} ${uri} is not globus://<endpoint>/<path>${defaultEndpoint ? ' or an absolute path' : ''}`);
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

export class GlobusDataMover implements DataMover {
  readonly name = 'globus';
  private readonly options: GlobusMoverOptions;
  private readonly baseUrl: string;
  private readonly running = new Map<string, { controller: AbortController; cancelled: boolean; promise: Promise<TransferOutcome> }>();

  constructor(options: GlobusMoverOptions) {
    this.options = options;
    this.baseUrl = (options.baseUrl ?? GLOBUS_TRANSFER_API).replace(/\/$/, '');
  }

  transfer(spec: TransferSpec, options: TransferOptions = {}): Promise<TransferOutcome> {
    const existing = this.running.get(spec.transferId);
    if (existing) return existing.promise;
    const controller = new AbortController();
    const onAbort = (): void => controller.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) controller.abort();
    const entry = {
      controller,
      cancelled: false,
      promise: Promise.resolve() as Promise<unknown> as Promise<TransferOutcome>,
    };
    entry.promise = this.run(spec, options, controller.signal, () => entry.cancelled).finally(() => {
      options.signal?.removeEventListener('abort', onAbort);
      this.running.delete(spec.transferId);
    });
    this.running.set(spec.transferId, entry);
    return entry.promise;
  }

  async cancel(transferId: string): Promise<void> {
    const notes = ((await this.options.journal.load(transferId)) ?? {}) as Notes;
    await this.options.journal.save(transferId, { ...notes, cancelled: true });
    if (notes.taskId) await this.cancelTask(notes.taskId, new AbortController().signal);
    const entry = this.running.get(transferId);
    if (entry) {
      entry.cancelled = true;
      entry.controller.abort();
      await entry.promise;
    }
  }

  private async run(spec: TransferSpec, options: TransferOptions, signal: AbortSignal, cancelled: () => boolean): Promise<TransferOutcome> {
    let notes: Notes = {};
    try {
      const source = endpointPath(spec.source, 'source', undefined);
      const destination = endpointPath(spec.destination, 'destination', this.options.defaultEndpoint);
      notes = ((await this.options.journal.load(spec.transferId)) ?? {}) as Notes;
      if (notes.cancelled) {
        if (notes.taskId) await this.cancelTask(notes.taskId, signal);
        return { status: 'failed', code: 'CANCELLED', reason: `transfer ${spec.transferId} was cancelled` };
      }
      const totalBytes = await this.sizeOf(source, spec, notes.taskId === undefined, signal);
      if (notes.taskId === undefined) {
        if (notes.submissionId === undefined) {
          const { value } = await this.request<{ value: string }>('GET', '/submission_id', undefined, signal);
          notes = { submissionId: value, startedAt: Date.now() };
          // Journaled before submitting: a restart submits this same id, which Globus executes once.
          await this.options.journal.save(spec.transferId, notes);
        }
        const deadline = new Date((notes.startedAt ?? Date.now()) + this.timeoutMs + 60_000).toISOString();
        const item: Record<string, unknown> = { DATA_TYPE: 'transfer_item', source_path: source.path, destination_path: destination.path };
        if (spec.sha256 !== undefined) Object.assign(item, { external_checksum: spec.sha256.toLowerCase(), checksum_algorithm: 'SHA256' });
        const result = await this.request<{ code: string; task_id: string }>('POST', '/transfer', {
          DATA_TYPE: 'transfer',
          submission_id: notes.submissionId,
          source_endpoint: source.endpoint,
          destination_endpoint: destination.endpoint,
          label: `arcnet ${spec.transferId}`.slice(0, 128),
          verify_checksum: this.options.verifyChecksum ?? true,
          // Globus's own bound, a minute past ours, so an orphaned task does not run on for days.
          deadline,
          DATA: [item],
        }, signal);
        notes = { ...notes, taskId: result.task_id };
        await this.options.journal.save(spec.transferId, notes);
      }
      return await this.watch(spec, notes.taskId!, notes.startedAt ?? Date.now(), totalBytes, options, signal);
    } catch (error) {
      if (signal.aborted) {
        if (cancelled()) return { status: 'failed', code: 'CANCELLED', reason: `transfer ${spec.transferId} was cancelled` };
        return { status: 'failed', code: 'CANCELLED', reason: `transfer ${spec.transferId} was stopped by its caller; a later transfer of it polls task ${notes.taskId ?? '(not yet submitted)'} again` };
      }
      if (error instanceof Failure) return { status: 'failed', code: error.code, reason: error.message };
      if (error instanceof GlobusHttpError) {
        const code: TransferFailureCode = error.status === 401 || error.status === 403 ? 'PERMISSION' : error.status === 400 || error.status === 404 ? 'INVALID_REQUEST' : 'REMOTE_FAULT';
        return { status: 'failed', code, reason: `Globus answered ${error.status} ${error.code}: ${error.message}` };
      }
      return { status: 'failed', code: 'REMOTE_FAULT', reason: `Globus could not be reached: ${error instanceof Error ? error.message : String(error)}` };
    }
  }

  private get timeoutMs(): number {
    return this.options.transferTimeoutMs ?? 3_600_000;
  }

  /** The source's size from a listing of its directory; a first submission fails SOURCE_MISSING at once when it is not there. */
  private async sizeOf(source: { endpoint: string; path: string }, spec: TransferSpec, beforeSubmission: boolean, signal: AbortSignal): Promise<number | null> {
    const slash = source.path.lastIndexOf('/');
    const dir = source.path.slice(0, slash) || '/';
    const name = source.path.slice(slash + 1);
    let listing: { DATA: { name: string; type: string; size: number }[] };
    try {
      listing = await this.request('GET', `/operation/endpoint/${encodeURIComponent(source.endpoint)}/ls?path=${encodeURIComponent(dir)}`, undefined, signal);
    } catch (error) {
      if (error instanceof GlobusHttpError && error.status === 404 && beforeSubmission) throw new Failure('SOURCE_MISSING', `the source ${spec.source} does not exist (${error.message})`);
      if (error instanceof GlobusHttpError && error.status === 403 && beforeSubmission) throw new Failure('PERMISSION', `the source ${spec.source} may not be read (${error.message})`);
      if (error instanceof GlobusHttpError && error.status < 500) return spec.expectedBytes ?? null;
      throw error;
    }
    const entry = listing.DATA.find((e) => e.name === name && e.type === 'file');
    if (!entry && beforeSubmission) throw new Failure('SOURCE_MISSING', `the source ${spec.source} does not exist on endpoint ${source.endpoint}`);
    return entry?.size ?? spec.expectedBytes ?? null;
  }

  private async watch(spec: TransferSpec, taskId: string, startedAt: number, totalBytes: number | null, options: TransferOptions, signal: AbortSignal): Promise<TransferOutcome> {
    const interval = this.options.pollIntervalMs ?? 1_000;
    let last = 0;
    for (;;) {
      const task = await this.request<GlobusTask>('GET', `/task/${taskId}`, undefined, signal);
      const bytes = task.status === 'SUCCEEDED' && totalBytes !== null ? totalBytes : task.bytes_transferred;
      // Globus restarts a file from its last checkpoint after a fault: progress reported never goes back.
      last = Math.max(last, bytes);
      options.onProgress?.({ bytesTransferred: last, totalBytes, progress: task.status === 'SUCCEEDED' ? 1 : totalBytes ? Math.min(1, last / totalBytes) : 0 });
      if (task.status === 'SUCCEEDED') {
        return { status: 'completed', bytesTransferred: totalBytes ?? task.bytes_transferred, sha256: spec.sha256?.toLowerCase() ?? '', bytesResent: 0 };
      }
      if (task.status === 'FAILED') {
        const code = task.fatal_error?.code ?? 'UNKNOWN';
        return { status: 'failed', code: FINAL[code] ?? 'REMOTE_FAULT', reason: `Globus task ${taskId} failed: ${code}${task.fatal_error ? ` (${task.fatal_error.description})` : ''}` };
      }
      const final = task.nice_status === null ? undefined : FINAL[task.nice_status];
      if (final !== undefined) {
        const event = await this.lastError(taskId, signal);
        await this.cancelTask(taskId, signal);
        const what = final === 'SOURCE_MISSING' ? `the source ${spec.source} is missing` : final === 'PERMISSION' ? `permission denied moving ${spec.source} to ${spec.destination}` : final === 'CHECKSUM_MISMATCH' ? `${spec.destination} did not verify against the source's checksum` : `the task cannot finish`;
        return {
          status: 'failed', code: final,
          reason: `${what}: Globus task ${taskId} is stuck on ${task.nice_status} after ${task.faults} fault(s)${event ? ` (${event.description}; ${event.details.replace(/\n/g, ' ').trim()})` : ''}; cancelled it rather than let Globus retry until its deadline`,
        };
      }
      if (Date.now() - startedAt > this.timeoutMs) {
        await this.cancelTask(taskId, signal);
        return { status: 'failed', code: 'TIMEOUT', reason: `transfer ${spec.transferId} ran over its ${this.timeoutMs} ms limit (Globus task ${taskId} ${task.status}, ${task.nice_status ?? ''}, ${last} bytes); cancelled the task` };
      }
      await sleep(interval, signal);
      signal.throwIfAborted();
    }
  }

  private async lastError(taskId: string, signal: AbortSignal): Promise<GlobusEvent | undefined> {
    try {
      const list = await this.request<{ DATA: GlobusEvent[] }>('GET', `/task/${taskId}/event_list?limit=10`, undefined, signal);
      return list.DATA.find((event) => event.is_error);
    } catch {
      return undefined;
    }
  }

  /** Cancels a task; one that has ended already (`TaskComplete`) is not an error. */
  private async cancelTask(taskId: string, signal: AbortSignal): Promise<void> {
    await this.request<{ code: string }>('POST', `/task/${taskId}/cancel`, {}, signal);
  }

  private async token(): Promise<string> {
    return typeof this.options.token === 'string' ? this.options.token : this.options.token();
  }

  /** One API call, retried with backoff on a network error, 429 or 5xx; any other error status throws GlobusHttpError. */
  private async request<T>(method: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal): Promise<T> {
    const attempts = this.options.requestAttempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted();
      let response: Response;
      try {
        response = await fetch(`${this.baseUrl}${path}`, {
          method,
          headers: { authorization: `Bearer ${await this.token()}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.any([signal, AbortSignal.timeout(this.options.requestTimeoutMs ?? 30_000)]),
        });
      } catch (error) {
        if (signal.aborted || attempt >= attempts) throw error;
        await sleep(200 * 2 ** (attempt - 1), signal);
        continue;
      }
      const text = await response.text();
      if (response.ok) return JSON.parse(text) as T;
      if ((response.status === 429 || response.status >= 500) && attempt < attempts) {
        await sleep(200 * 2 ** (attempt - 1), signal);
        continue;
      }
      let code = 'Unknown';
      let message = text.slice(0, 500);
      try {
        const parsed = JSON.parse(text) as { code?: string; message?: string };
        code = parsed.code ?? code;
        message = parsed.message ?? message;
      } catch {
        // Not JSON: keep the text.
      }
      throw new GlobusHttpError(response.status, code, `${method} ${path}: ${message}`);
    }
  }
}

/**
 * The worker role of the node agent (seed 004's worker, pushed instead of polling): registers and
 * keeps its credential, heartbeats every 30 s with CPU and memory use and active executions, takes
 * executions pushed over its session (polling pending-jobs only while the session is down), runs
 * each in a container, and reports stdout, logs and exit status. Results are retried until the
 * coordinator has them: a worker never drops a finished execution because the server was away.
 *
 * Given several coordinator replicas (`--server a,b`), it talks to one at a time and moves to the
 * next when the one it uses cannot be reached, does not answer in time, or answers 503 NOT_LEADER;
 * its push session follows (ADR 0011). Results it holds go to whichever replica leads.
 *
 * Given trusted signer keys or told to require signatures (`--trusted-signers`, `--require-signed-jobs`),
 * it verifies each assignment's signature itself before it creates a container (`src/jobs/signing.ts`):
 * the coordinator is not trusted to have checked, nor the path from it. A refused assignment is
 * reported as a failed execution saying why, and nothing runs.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { WebSocket, type RawData } from 'ws';
import { backoffDelay } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { silentLogger } from '../core/logging.ts';
import { defaultHttpClient, type HttpClient } from '../core/http-client.ts';
import type { ExecutionAssignment, ResultEncoding, WorkerResult } from '../jobs/model.ts';
import { WORKER_STREAM_PATH, type ServerToWorker, type WorkerToServer } from '../jobs/protocol.ts';
import { checkSignature, signedSpecOfAssignment, type SigningPolicy } from '../jobs/signing.ts';
import type { ContainerOutcome, ContainerRuntime } from './ports.ts';

export interface WorkerOptions {
  /** The coordinator's URL, or several separated by commas (its replicas on PostgreSQL). */
  readonly serverUrl: string;
  readonly id?: string;
  readonly name: string;
  readonly region?: string;
  readonly cpuCores: number;
  readonly memoryGb: number;
  readonly gpuModel?: string;
  readonly runtime: ContainerRuntime;
  /** Where the id and credential are kept, so a restarted worker keeps its reputation. */
  readonly stateFile?: string;
  /** Lets a new worker register (an enrolment token, or an operator key); unused once it holds its credential. */
  readonly enrolmentToken?: string;
  readonly heartbeatIntervalMs?: number;
  /** Polling period for pending-jobs while the push session is down. */
  readonly pollIntervalMs?: number;
  readonly logger?: Logger;
  readonly random?: () => number;
  /** How long a call or a session's opening may take before that server counts as unreachable (default 10 s). */
  readonly requestTimeoutMs?: number;
  /** How calls and the push session connect (`https://` with a CA and client certificate: src/core/http-client.ts). */
  readonly http?: HttpClient;
  /**
   * Submitter keys this worker trusts, and whether it refuses unsigned jobs. Without either (no keys,
   * not required) it runs what its coordinator sends, as before signing existed.
   */
  readonly signing?: SigningPolicy;
}

interface WorkerState {
  readonly id: string;
  readonly credential: string;
}

/** Refused registration (a credential that no longer matches): restarting will not help. */
export class WorkerRefused extends Error {}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const MAX_LOG_BYTES = 256 * 1024;

function encodeBytes(bytes: Uint8Array): { text: string; encoding: ResultEncoding } {
  try {
    return { text: utf8.decode(bytes), encoding: 'utf8' };
  } catch {
    return { text: Buffer.from(bytes).toString('base64'), encoding: 'base64' };
  }
}

function logText(bytes: Uint8Array): string {
  const tail = bytes.length > MAX_LOG_BYTES ? bytes.subarray(bytes.length - MAX_LOG_BYTES) : bytes;
  return Buffer.from(tail).toString('utf8');
}

/**
 * Why this worker must not run an assignment, or undefined when it may: with a policy that trusts
 * keys or requires signatures, the signature must verify by a trusted key over the signed fields the
 * assignment carries (the job id among them, so it cannot be another job's signature).
 */
export function signatureRefusal(assignment: ExecutionAssignment, policy: SigningPolicy | undefined): string | undefined {
  if (!policy || (policy.trusted.size === 0 && !policy.required)) return undefined;
  if (!assignment.signature) return policy.required ? `job ${String(assignment.job_id).slice(0, 100)} is not signed, and this worker requires signed jobs: refused to run` : undefined;
  const spec = signedSpecOfAssignment(assignment);
  // Bounded: the ids in the sentence are the coordinator's word, and the result must fit the result route's limit.
  if (!spec) return `signature by key "${String(assignment.signature.key_id).slice(0, 100)}" cannot be checked: the assignment lacks the signed fields name, redundancy, consensus and max_executions: refused to run`;
  const check = checkSignature(spec, assignment.signature, policy);
  return check.ok ? undefined : `${check.reason.slice(0, 2000)}: refused to run`;
}

/** What the coordinator is told about one container run; undefined when there is nothing to tell (cancelled). */
export function reportOf(assignment: ExecutionAssignment, outcome: ContainerOutcome): WorkerResult | undefined {
  const memoryMb = Math.round(assignment.required_memory * 1024);
  switch (outcome.kind) {
    case 'cancelled':
      return undefined;
    case 'not-started':
      return { execution_id: assignment.execution_id, status: 'failed', error_message: `container did not start: ${outcome.reason}` };
    case 'timed-out':
      return {
        execution_id: assignment.execution_id,
        status: 'timed_out',
        duration_ms: outcome.durationMs,
        error_message: `container ran past its timeout of ${assignment.timeout_seconds} s and was killed`,
        logs: logText(outcome.stderr),
      };
    case 'exited': {
      const { text, encoding } = encodeBytes(outcome.stdout);
      const base = { execution_id: assignment.execution_id, exit_code: outcome.exitCode, duration_ms: outcome.durationMs, logs: logText(outcome.stderr) };
      if (outcome.exitCode === 0 && !outcome.oomKilled) {
        return { ...base, status: 'completed', result: text, result_encoding: encoding, result_hash: createHash('sha256').update(outcome.stdout).digest('hex') };
      }
      const reason = outcome.oomKilled || outcome.exitCode === 137
        ? `container exceeded its memory limit of ${memoryMb} MB and was killed (exit ${outcome.exitCode})`
        : `container exited with code ${outcome.exitCode}`;
      return { ...base, status: 'failed', error_message: reason };
    }
  }
}

export class Worker {
  private readonly options: WorkerOptions;
  private readonly logger: Logger;
  private readonly random: () => number;
  private state: WorkerState | undefined;
  private socket: WebSocket | undefined;
  private stopping = false;
  private attempt = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly running = new Map<string, AbortController>();
  /** Executions already run here: a re-offer after a reconnect must not run one twice. */
  private readonly seen = new Set<string>();
  private readonly outbox = new Map<string, WorkerResult>();
  private flushing: Promise<void> | undefined;
  private readonly tasks = new Set<Promise<void>>();
  private readonly servers: readonly string[];
  private readonly http: HttpClient;
  /** The server calls go to now. */
  private current = 0;
  /** The server the push session is with. */
  private sessionServer = 0;
  /** Sessions that failed in a row, across servers: backoff starts once every server failed. */
  private sessionFailures = 0;
  private readonly requestTimeoutMs: number;

  constructor(options: WorkerOptions) {
    this.options = options;
    this.logger = (options.logger ?? silentLogger).child({ role: 'worker', node: options.name });
    this.random = options.random ?? Math.random;
    this.servers = options.serverUrl.split(',').map((url) => url.trim()).filter((url) => url.length > 0);
    if (this.servers.length === 0) throw new Error('a worker needs a server URL');
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.http = options.http ?? defaultHttpClient;
  }

  /** The server calls go to now. */
  get server(): string {
    return this.servers[this.current]!;
  }

  /** Moves on from server `from` (unreachable, or not leading), unless another call already did; the session follows. */
  private rotate(from: number, why: string): void {
    if (this.servers.length < 2 || this.current !== from) return;
    this.current = (from + 1) % this.servers.length;
    this.logger.info({ from: this.servers[from], to: this.server, why }, 'moving to the next coordinator');
    if (this.socket && this.sessionServer !== this.current) this.socket.terminate();
  }

  get id(): string | undefined {
    return this.state?.id;
  }

  get sessionOpen(): boolean {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  get active(): readonly string[] {
    return [...this.running.keys()];
  }

  /** Registers (or re-registers with the stored credential) and starts heartbeats and the session. */
  async start(): Promise<void> {
    await this.options.runtime.ping();
    this.state = this.loadState();
    await this.register();
    // A worker killed mid-execution leaves its containers; the coordinator re-offers that work, so they go.
    const removed = await this.options.runtime.removeLeftovers?.({ 'arcnet.node': this.state!.id }).catch(() => 0);
    if (removed) this.logger.info({ removed }, 'removed containers left by an earlier run of this worker');
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.options.heartbeatIntervalMs ?? 30_000);
    this.connect();
    this.schedulePoll();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.pollTimer);
    clearTimeout(this.reconnectTimer);
    for (const controller of this.running.values()) controller.abort();
    this.socket?.close(1000, 'worker stopping');
    await Promise.allSettled([...this.tasks]);
    await this.flush();
  }

  private loadState(): WorkerState | undefined {
    if (!this.options.stateFile) return undefined;
    try {
      const parsed = JSON.parse(readFileSync(this.options.stateFile, 'utf8')) as Partial<WorkerState>;
      return typeof parsed.id === 'string' && typeof parsed.credential === 'string' ? { id: parsed.id, credential: parsed.credential } : undefined;
    } catch {
      return undefined;
    }
  }

  private saveState(state: WorkerState): void {
    if (!this.options.stateFile) return;
    mkdirSync(dirname(this.options.stateFile), { recursive: true });
    const temporary = `${this.options.stateFile}.tmp`;
    writeFileSync(temporary, JSON.stringify(state), { mode: 0o600 });
    renameSync(temporary, this.options.stateFile);
  }

  /**
   * One API call, to the current server; with several servers, one that cannot be reached, times
   * out or answers NOT_LEADER is left for the next, within this call.
   */
  private async call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    // Its own credential once registered; before that, the enrolment token (or operator key) that lets it register.
    const bearer = this.state?.credential ?? this.options.enrolmentToken;
    if (bearer !== undefined) headers['authorization'] = `Bearer ${bearer}`;
    let answer: { status: number; body: Record<string, unknown> } | undefined;
    let failure: unknown;
    for (let tried = 0; tried < this.servers.length; tried++) {
      const at = this.current;
      try {
        const response = await this.http.fetch(new URL(path, this.servers[at]), { method, headers, signal: AbortSignal.timeout(this.requestTimeoutMs), ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
        const text = await response.text();
        let parsed: Record<string, unknown> = {};
        try {
          parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        } catch {
          parsed = { message: text };
        }
        answer = { status: response.status, body: parsed };
        if (response.status !== 503 || parsed['code'] !== 'NOT_LEADER') return answer;
        this.rotate(at, 'not the leader');
      } catch (error) {
        failure = error;
        this.rotate(at, errorMessage(error));
      }
    }
    if (answer) return answer;
    throw failure;
  }

  private async register(): Promise<void> {
    const id = this.state?.id ?? this.options.id;
    const body = {
      ...(id ? { id } : {}),
      name: this.options.name,
      ...(this.options.region ? { region: this.options.region } : {}),
      cpu_cores: this.options.cpuCores,
      memory_gb: this.options.memoryGb,
      gpu_enabled: this.options.gpuModel !== undefined,
      ...(this.options.gpuModel ? { gpu_model: this.options.gpuModel } : {}),
    };
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await this.call('POST', '/api/v1/nodes/register', body);
        if (response.status === 200 || response.status === 201) {
          const node = response.body['node'] as { id: string };
          this.state = { id: node.id, credential: String(response.body['credential']) };
          this.saveState(this.state);
          this.logger.info({ nodeId: node.id, reregistered: response.status === 200 }, 'worker registered');
          return;
        }
        if (response.status === 401 || response.status === 403 || response.status === 400 || response.status === 409) {
          throw new WorkerRefused(`registration refused (${response.status}): ${String(response.body['message'] ?? 'no message')}`);
        }
        throw new Error(`registration answered ${response.status}: ${String(response.body['message'] ?? '')}`);
      } catch (error) {
        if (error instanceof WorkerRefused || this.stopping) throw error;
        const delay = backoffDelay(attempt, 250, 10_000, this.random);
        this.logger.warn({ err: errorMessage(error), retryInMs: delay }, 'cannot register yet; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  private async heartbeat(): Promise<void> {
    if (!this.state || this.stopping) return;
    const cores = Math.max(1, cpus().length);
    const beat = { cpu_usage: Math.min(1, loadavg()[0]! / cores), memory_usage: 1 - freemem() / totalmem(), active_jobs: this.active };
    try {
      const response = await this.call('POST', `/api/v1/nodes/${this.state.id}/heartbeat`, beat);
      // The coordinator lost this worker (a fresh store): register again rather than beat into the void.
      if (response.status === 404) await this.register();
      else if (response.status >= 400) this.logger.warn({ status: response.status, message: response.body['message'] }, 'heartbeat refused');
    } catch (error) {
      this.logger.warn({ err: errorMessage(error) }, 'heartbeat failed; the next one retries');
    }
    void this.flush();
  }

  private connect(): void {
    if (this.stopping || !this.state) return;
    const at = this.current;
    const url = new URL(WORKER_STREAM_PATH, this.servers[at]);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('node_id', this.state.id);
    const socket = this.http.webSocket(url, { headers: { authorization: `Bearer ${this.state.credential}` }, handshakeTimeout: this.requestTimeoutMs });
    this.socket = socket;
    this.sessionServer = at;
    let opened = false;
    socket.on('open', () => {
      opened = true;
      this.attempt = 0;
      this.sessionFailures = 0;
      this.logger.info({ server: this.servers[at] }, 'push session open');
      void this.flush();
    });
    socket.on('message', (raw: RawData) => this.onFrame(raw));
    socket.on('unexpected-response', (_request, response) => {
      this.logger.warn({ status: response.statusCode, server: this.servers[at] }, 'push session refused');
      socket.terminate();
    });
    socket.on('error', (error) => this.logger.debug({ err: errorMessage(error) }, 'push session error'));
    socket.on('close', () => {
      if (this.socket === socket) this.socket = undefined;
      if (this.stopping) return;
      // A refused or lost session moves to the next server; back off only once every server failed in a row.
      this.rotate(at, opened ? 'push session closed' : 'push session refused');
      if (!opened) this.sessionFailures++;
      const roundDone = this.sessionFailures > 0 && this.sessionFailures % this.servers.length === 0;
      const delay = this.servers.length > 1 && !roundDone ? 50 : backoffDelay(this.attempt++, 250, 10_000, this.random);
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private onFrame(raw: RawData): void {
    let frame: ServerToWorker;
    try {
      frame = JSON.parse(raw.toString()) as ServerToWorker;
    } catch {
      return;
    }
    if (frame.type === 'execution') this.take(frame.assignment, true);
    else if (frame.type === 'cancel') {
      const controller = this.running.get(frame.execution_id);
      if (controller) {
        this.logger.info({ execution: frame.execution_id, reason: frame.reason }, 'execution cancelled by the coordinator');
        controller.abort();
      }
    } else if (frame.type === 'error') this.logger.warn({ message: frame.message }, 'coordinator reported an error');
  }

  /** Polls pending-jobs only while the push session is down. */
  private schedulePoll(): void {
    if (this.stopping) return;
    this.pollTimer = setTimeout(() => {
      const poll = this.sessionOpen ? Promise.resolve() : this.poll();
      void poll.finally(() => this.schedulePoll());
    }, this.options.pollIntervalMs ?? 10_000);
  }

  private async poll(): Promise<void> {
    if (!this.state) return;
    try {
      const response = await this.call('GET', `/api/v1/nodes/${this.state.id}/pending-jobs`);
      if (response.status !== 200) return;
      for (const assignment of (response.body['jobs'] as ExecutionAssignment[]) ?? []) this.take(assignment, false);
    } catch (error) {
      this.logger.debug({ err: errorMessage(error) }, 'poll failed');
    }
  }

  private take(assignment: ExecutionAssignment, pushed: boolean): void {
    if (this.seen.has(assignment.execution_id) || this.stopping) return;
    this.seen.add(assignment.execution_id);
    if (pushed && this.sessionOpen) {
      const ack: WorkerToServer = { type: 'ack', execution_id: assignment.execution_id };
      this.socket!.send(JSON.stringify(ack));
    }
    const controller = new AbortController();
    this.running.set(assignment.execution_id, controller);
    this.logger.info({ execution: assignment.execution_id, job: assignment.job_id, image: assignment.docker_image }, 'running execution');
    const task = this.execute(assignment, controller.signal).finally(() => {
      this.running.delete(assignment.execution_id);
      this.tasks.delete(task);
    });
    this.tasks.add(task);
  }

  private async execute(assignment: ExecutionAssignment, signal: AbortSignal): Promise<void> {
    const refusal = signatureRefusal(assignment, this.options.signing);
    if (refusal) {
      this.logger.warn({ execution: assignment.execution_id, job: assignment.job_id, reason: refusal }, 'execution refused: its signature does not hold');
      this.outbox.set(assignment.execution_id, { execution_id: assignment.execution_id, status: 'failed', error_message: refusal });
      await this.flush();
      return;
    }
    const outcome = await this.options.runtime.run({
      image: assignment.docker_image,
      command: assignment.command,
      env: assignment.environment,
      ...(assignment.input_data === null ? {} : { input: Buffer.from(assignment.input_data, 'utf8') }),
      memoryBytes: Math.round(assignment.required_memory * 1024 ** 3),
      cpus: assignment.required_cpu,
      network: assignment.network,
      timeoutMs: assignment.timeout_seconds * 1000,
      labels: { 'arcnet.execution': assignment.execution_id, 'arcnet.job': assignment.job_id, 'arcnet.node': this.state?.id ?? '' },
      signal,
    });
    const report = reportOf(assignment, outcome);
    if (!report) return;
    this.logger.info({ execution: assignment.execution_id, status: report.status, exitCode: report.exit_code, error: report.error_message }, 'execution finished');
    this.outbox.set(report.execution_id, report);
    await this.flush();
  }

  /** Sends every finished result; keeps those the server could not take for the next try. */
  private flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      for (const [id, report] of [...this.outbox]) {
        if (!this.state) break;
        try {
          const response = await this.call('POST', '/api/v1/worker/result', { node_id: this.state.id, ...report });
          if (response.status < 500) {
            // 4xx will not improve with retrying (the execution is unknown or not ours): drop it, loudly.
            if (response.status >= 400) this.logger.warn({ execution: id, status: response.status, message: response.body['message'] }, 'result refused');
            this.outbox.delete(id);
          }
        } catch (error) {
          this.logger.warn({ execution: id, err: errorMessage(error) }, 'could not deliver a result; will retry');
          setTimeout(() => void this.flush(), backoffDelay(this.attempt, 500, 10_000, this.random)).unref();
          break;
        }
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }
}

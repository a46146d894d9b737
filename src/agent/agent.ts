/**
 * The node agent's session with the server: hello → welcome, telemetry on a timer, dispatches run
 * on the backend concurrently, results sent back. The session survives server restarts by
 * reconnecting with jittered exponential backoff; results finished meanwhile wait in a bounded queue.
 */
import { WebSocket, type RawData } from 'ws';
import type { InferenceDispatch, InferenceResult, NodeTelemetry } from '../contracts/messages.ts';
import { validateMessage } from '../contracts/validation.ts';
import { backoffDelay } from '../core/clock.ts';
import { ArcError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { silentLogger } from '../core/logging.ts';
import { defaultHttpClient, type HttpClient } from '../core/http-client.ts';
import type { InferenceBackend, InferenceRun } from './ports.ts';
import { AGENT_PATH, type AgentIdentity, type AgentToServer } from './protocol.ts';
import { resultOfRun } from './result.ts';

export type AgentState = 'connecting' | 'connected' | 'disconnected' | 'refused' | 'stopped';

export interface AgentStatus {
  readonly state: AgentState;
  /** Why the session ended or was refused. */
  readonly error?: string;
  /** For `disconnected`: how long until the next attempt. */
  readonly retryInMs?: number;
}

export interface AgentOptions {
  /** The server's HTTP address, e.g. `http://127.0.0.1:8080`; the agent speaks WebSocket on `/agent`. */
  readonly serverUrl: string;
  readonly identity: AgentIdentity;
  readonly backend: InferenceBackend;
  /** Source of each report; `undefined` skips the report (a simulated node that has gone silent). */
  readonly telemetry: () => NodeTelemetry | undefined;
  /** Report period; when unset the server's welcome decides, falling back to 10 s. */
  readonly telemetryIntervalMs?: number;
  readonly logger?: Logger;
  readonly onStatus?: (status: AgentStatus) => void;
  /** Results kept while disconnected (default 10 000); beyond that the oldest are dropped. */
  readonly maxQueuedResults?: number;
  readonly backoffBaseMs?: number;
  readonly backoffCapMs?: number;
  /** How long to wait for the welcome after connecting before trying again (default 10 s). */
  readonly helloTimeoutMs?: number;
  /** Ping period for noticing a dead connection the OS has not reported (default 15 s). */
  readonly pingIntervalMs?: number;
  readonly random?: () => number;
  /** How the session connects (`wss://` with a CA and client certificate: src/core/http-client.ts); default plain, system CAs. */
  readonly http?: HttpClient;
  /**
   * What the agent proves itself with (`Authorization: Bearer …` on the upgrade): the node's key,
   * or an enrolment token (or operator key) the first time, which the server trades for the node's key.
   */
  readonly token?: string;
  /**
   * The enrolment token to fall back on when `token` (a kept node key) is refused: a server that lost
   * its data no longer knows the key, and enrolling again is what the operator would do by hand.
   */
  readonly enrolmentToken?: string;
  /** Called with the node key the server issues at enrolment, so it can be kept for later runs. */
  readonly onCredential?: (key: string) => void;
  /** Other families' frames on the session (the services runner's). */
  readonly extensions?: readonly AgentExtension[];
}

/**
 * A family's frames on the session (types starting with `prefix`, e.g. `services.`): told when a
 * session is welcomed and when it ends, so it can resubscribe after a reconnect.
 */
export interface AgentExtension {
  readonly prefix: string;
  /** A session was welcomed; `send` writes a frame on it and says false once it has closed. */
  sessionStarted(send: (frame: object) => boolean): void;
  onFrame(frame: Readonly<Record<string, unknown>>): void;
  sessionEnded(): void;
}

export interface AgentExit {
  readonly reason: 'stopped' | 'refused';
  readonly error?: string;
}

const DEFAULT_TELEMETRY_INTERVAL_MS = 10_000;

/** `http://host:port/base` → `ws://host:port/base/agent`. */
export function agentSocketUrl(serverUrl: string): string {
  const url = new URL(serverUrl);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new RangeError(`server URL "${serverUrl}" must be http(s) or ws(s)`);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${AGENT_PATH}`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

export class Agent {
  readonly url: string;
  private readonly options: AgentOptions;
  private readonly logger: Logger;
  private token: string | undefined;
  private readonly random: () => number;
  private socket: WebSocket | undefined;
  private welcomed = false;
  private stopping = false;
  private started = false;
  private attempt = 0;
  private sessions = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private telemetryTimer: NodeJS.Timeout | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private readonly queue: InferenceResult[] = [];
  private readonly inFlight = new Map<string, AbortController>();
  private readonly runs = new Set<Promise<void>>();
  private firstWelcome: { resolve: () => void; reject: (error: Error) => void } | undefined;
  private finish!: (exit: AgentExit) => void;
  /** Settles when the agent stops for good: stop(), or the server refusing its identity. */
  readonly finished: Promise<AgentExit>;

  private counters = {
    dispatchesReceived: 0,
    resultsSent: 0,
    resultsDropped: 0,
    telemetrySent: 0,
    badFrames: 0,
  };

  constructor(options: AgentOptions) {
    this.options = options;
    this.url = agentSocketUrl(options.serverUrl);
    this.logger = (options.logger ?? silentLogger).child({ node: options.identity.name });
    this.random = options.random ?? Math.random;
    this.token = options.token;
    this.finished = new Promise((resolve) => {
      this.finish = resolve;
    });
  }

  get connected(): boolean {
    return this.welcomed && this.socket?.readyState === WebSocket.OPEN;
  }
  get dispatchesReceived(): number {
    return this.counters.dispatchesReceived;
  }
  get resultsSent(): number {
    return this.counters.resultsSent;
  }
  /** Sessions re-established after the first welcome. */
  get reconnects(): number {
    return Math.max(0, this.sessions - 1);
  }
  get resultsQueued(): number {
    return this.queue.length;
  }
  get resultsDropped(): number {
    return this.counters.resultsDropped;
  }
  get telemetrySent(): number {
    return this.counters.telemetrySent;
  }
  get badFrames(): number {
    return this.counters.badFrames;
  }
  get running(): number {
    return this.inFlight.size;
  }

  /** Connects and resolves on the first welcome; rejects if the server refuses the identity or stop() comes first. */
  start(): Promise<void> {
    if (this.started) return Promise.reject(new ArcError('CONFLICT', 'agent already started', { retryable: false }));
    this.started = true;
    const welcomed = new Promise<void>((resolve, reject) => {
      this.firstWelcome = { resolve, reject };
    });
    this.connect();
    return welcomed;
  }

  /** Cancels running work, closes the session and stops reconnecting. */
  async stop(): Promise<void> {
    if (this.stopping) {
      await this.finished;
      return;
    }
    this.stopping = true;
    this.shutdown({ reason: 'stopped' }, new ArcError('CLOSED', 'agent stopped before the server welcomed it', { retryable: false }));
    for (const controller of this.inFlight.values()) controller.abort();
    await Promise.allSettled([...this.runs]);
    await this.closeSocket();
    this.status({ state: 'stopped' });
  }

  private connect(): void {
    if (this.stopping) return;
    this.status({ state: 'connecting' });
    const socket = (this.options.http ?? defaultHttpClient).webSocket(this.url, {
      handshakeTimeout: this.options.helloTimeoutMs ?? 10_000,
      ...(this.token === undefined ? {} : { headers: { authorization: `Bearer ${this.token}` } }),
    });
    this.socket = socket;
    this.welcomed = false;
    let alive = true;
    let lastError: string | undefined;
    socket.on('open', () => {
      this.send(socket, { type: 'hello', node: this.options.identity });
      this.helloTimer = setTimeout(() => {
        this.logger.warn({ url: this.url }, 'no welcome from the server; reconnecting');
        socket.terminate();
      }, this.options.helloTimeoutMs ?? 10_000);
    });
    socket.on('message', (data, isBinary) => this.onFrame(socket, data, isBinary));
    socket.on('unexpected-response', (_request, response) => {
      // 401/403 on the upgrade: the key is missing, wrong or revoked; asking again will not change that.
      let body = '';
      response.on('data', (chunk: Buffer) => {
        if (body.length < 4096) body += chunk.toString();
      });
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        let text = `HTTP ${status}`;
        try {
          text = `HTTP ${status}: ${(JSON.parse(body) as { message?: string }).message ?? body}`;
        } catch {
          if (body.length > 0) text = `HTTP ${status}: ${body}`;
        }
        const enrolment = this.options.enrolmentToken;
        if (status === 401 && enrolment !== undefined && this.token !== enrolment) {
          this.logger.warn({ url: this.url, error: text }, 'the kept node key was refused; enrolling again with the enrolment token');
          this.token = enrolment;
          lastError = text;
          socket.terminate();
        } else if (status === 401 || status === 403) this.onRefused(socket, text);
        else {
          lastError = text;
          socket.terminate();
        }
      });
    });
    socket.on('pong', () => {
      alive = true;
    });
    socket.on('error', (error) => {
      // 'close' always follows; logging here keeps the cause (ECONNREFUSED, handshake timeout).
      this.logger.debug({ url: this.url, err: errorMessage(error) }, 'agent socket error');
      lastError = errorMessage(error);
    });
    socket.on('close', (code, reason) => {
      if (this.socket !== socket) return;
      this.endSession();
      this.socket = undefined;
      if (this.stopping) return;
      const why = lastError ?? `closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`;
      const delay = backoffDelay(this.attempt++, this.options.backoffBaseMs ?? 250, this.options.backoffCapMs ?? 10_000, this.random);
      this.logger.info({ url: this.url, retryInMs: delay, why }, 'agent disconnected; reconnecting');
      this.status({ state: 'disconnected', error: why, retryInMs: delay });
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined;
        this.connect();
      }, delay);
    });
    this.pingTimer = setInterval(() => {
      if (socket.readyState !== WebSocket.OPEN) return;
      if (!alive) {
        this.logger.warn({ url: this.url }, 'server stopped answering pings; reconnecting');
        socket.terminate();
        return;
      }
      alive = false;
      socket.ping();
    }, this.options.pingIntervalMs ?? 15_000);
  }

  private onFrame(socket: WebSocket, data: RawData, isBinary: boolean): void {
    if (socket !== this.socket) return;
    let frame: unknown;
    try {
      if (isBinary) throw new Error('binary frame');
      frame = JSON.parse(rawText(data));
    } catch (error) {
      this.badFrame(`unparseable frame: ${errorMessage(error)}`);
      return;
    }
    if (typeof frame !== 'object' || frame === null || typeof (frame as { type?: unknown }).type !== 'string') {
      this.badFrame('frame without a type');
      return;
    }
    const message = frame as Record<string, unknown>;
    switch (message['type']) {
      case 'welcome':
        this.onWelcome(socket, message);
        return;
      case 'error': {
        const text = typeof message['message'] === 'string' ? message['message'] : JSON.stringify(message);
        if (this.welcomed) {
          this.logger.warn({ error: text }, 'server rejected a frame');
          return;
        }
        this.onRefused(socket, text);
        return;
      }
      case 'dispatch':
        this.onDispatch(message['dispatch']);
        return;
      default: {
        const type = message['type'] as string;
        const extension = this.options.extensions?.find((e) => type.startsWith(e.prefix));
        if (extension && this.welcomed) return extension.onFrame(message);
        this.badFrame(`unknown frame type "${String(message['type'])}"`);
      }
    }
  }

  private onWelcome(socket: WebSocket, message: Record<string, unknown>): void {
    if (this.welcomed) return;
    clearTimeout(this.helloTimer);
    const credential = message['credential'];
    if (typeof credential === 'string' && credential.length > 0) {
      // Enrolled: from now on the node's own key is what proves it, on this run's reconnects and, kept, on later runs.
      this.token = credential;
      this.options.onCredential?.(credential);
    }
    this.welcomed = true;
    this.attempt = 0;
    this.sessions++;
    const offered = message['telemetryIntervalMs'];
    const interval =
      this.options.telemetryIntervalMs ?? (typeof offered === 'number' && offered > 0 ? offered : DEFAULT_TELEMETRY_INTERVAL_MS);
    this.logger.info({ url: this.url, session: this.sessions, queued: this.queue.length }, 'agent welcomed');
    this.status({ state: 'connected' });
    this.sendTelemetry(socket);
    this.telemetryTimer = setInterval(() => this.sendTelemetry(socket), interval);
    this.flushQueue(socket);
    for (const extension of this.options.extensions ?? []) {
      extension.sessionStarted((frame) => {
        if (socket !== this.socket || socket.readyState !== WebSocket.OPEN) return false;
        socket.send(JSON.stringify(frame));
        return true;
      });
    }
    const first = this.firstWelcome;
    this.firstWelcome = undefined;
    first?.resolve();
  }

  private onRefused(socket: WebSocket, text: string): void {
    const error = `server at ${this.url} refused node ${this.options.identity.name} (${this.options.identity.id}): ${text}`;
    this.logger.error({ url: this.url, error: text }, 'server refused the agent');
    // A refused identity would be refused again; retrying in a loop only hides the problem.
    this.stopping = true;
    this.shutdown({ reason: 'refused', error }, new ArcError('INVALID_INPUT', error, { retryable: false }));
    for (const controller of this.inFlight.values()) controller.abort();
    socket.close(1000, 'refused');
    this.status({ state: 'refused', error });
  }

  private onDispatch(payload: unknown): void {
    const checked = validateMessage('InferenceDispatch', payload);
    if (!checked.ok) {
      this.badFrame(`invalid dispatch: ${checked.error}`);
      return;
    }
    const dispatch = checked.value;
    if (dispatch.nodeId !== this.options.identity.id) {
      this.badFrame(`dispatch ${dispatch.requestId} is for node ${dispatch.nodeId}, not this node`);
      return;
    }
    if (this.inFlight.has(dispatch.requestId)) {
      // A redelivery after a reconnect: the run already under way will answer it.
      this.logger.debug({ requestId: dispatch.requestId }, 'duplicate dispatch ignored');
      return;
    }
    this.counters.dispatchesReceived++;
    const controller = new AbortController();
    this.inFlight.set(dispatch.requestId, controller);
    const run = this.execute(dispatch, controller.signal).finally(() => {
      this.inFlight.delete(dispatch.requestId);
      this.runs.delete(run);
    });
    this.runs.add(run);
  }

  private async execute(dispatch: InferenceDispatch, signal: AbortSignal): Promise<void> {
    const started = performance.now();
    let outcome: InferenceRun;
    try {
      outcome = await this.options.backend.run(dispatch, signal);
    } catch (error) {
      outcome = { ok: false, latencyMs: Math.round(performance.now() - started), error: `backend ${this.options.backend.kind} threw: ${errorMessage(error)}` };
    }
    if (signal.aborted && this.stopping) return;
    this.deliver(resultOfRun(dispatch, this.options.identity.id, outcome, Date.now()));
  }

  private deliver(result: InferenceResult): void {
    const socket = this.socket;
    if (socket && this.connected) {
      this.sendResult(socket, result);
      return;
    }
    this.queue.push(result);
    const max = this.options.maxQueuedResults ?? 10_000;
    while (this.queue.length > max) {
      const dropped = this.queue.shift();
      this.counters.resultsDropped++;
      this.logger.warn({ requestId: dropped?.requestId }, 'result queue full; dropped the oldest result');
    }
  }

  private flushQueue(socket: WebSocket): void {
    while (this.queue.length > 0 && socket.readyState === WebSocket.OPEN) {
      const result = this.queue.shift();
      if (result) this.sendResult(socket, result);
    }
  }

  private sendResult(socket: WebSocket, result: InferenceResult): void {
    if (this.send(socket, { type: 'result', result })) this.counters.resultsSent++;
    else this.queue.unshift(result);
  }

  private sendTelemetry(socket: WebSocket): void {
    let telemetry: NodeTelemetry | undefined;
    try {
      telemetry = this.options.telemetry();
    } catch (error) {
      this.logger.error({ err: errorMessage(error) }, 'telemetry source threw; report skipped');
      return;
    }
    if (telemetry === undefined) return;
    const checked = validateMessage('NodeTelemetry', telemetry);
    if (!checked.ok) {
      this.logger.error({ error: checked.error }, 'telemetry is not a valid NodeTelemetry v2; report skipped');
      return;
    }
    if (this.send(socket, { type: 'telemetry', telemetry })) this.counters.telemetrySent++;
  }

  private send(socket: WebSocket, message: AgentToServer): boolean {
    if (socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  private status(status: AgentStatus): void {
    try {
      this.options.onStatus?.(status);
    } catch (error) {
      this.logger.warn({ err: errorMessage(error) }, 'onStatus callback threw');
    }
  }

  private badFrame(reason: string): void {
    this.counters.badFrames++;
    this.logger.warn({ reason }, 'ignored a bad frame from the server');
  }

  private endSession(): void {
    if (this.welcomed) for (const extension of this.options.extensions ?? []) extension.sessionEnded();
    this.welcomed = false;
    clearTimeout(this.helloTimer);
    clearInterval(this.telemetryTimer);
    clearInterval(this.pingTimer);
    this.helloTimer = this.telemetryTimer = this.pingTimer = undefined;
  }

  private shutdown(exit: AgentExit, startError: Error): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const first = this.firstWelcome;
    this.firstWelcome = undefined;
    first?.reject(startError);
    this.finish(exit);
  }

  private closeSocket(): Promise<void> {
    const socket = this.socket;
    this.endSession();
    if (!socket || socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const force = setTimeout(() => socket.terminate(), 2000);
      socket.once('close', () => {
        clearTimeout(force);
        resolve();
      });
      if (socket.readyState === WebSocket.CONNECTING) socket.terminate();
      else if (socket.readyState === WebSocket.OPEN) socket.close(1000, 'agent stopping');
    });
  }
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}

/**
 * What a WebSocket client gets wrong is the client's problem, not the server's: a frame that is not
 * JSON, an unknown frame type, a message that fails its schema, a frame the protocol forbids
 * (`ws` refuses bad UTF-8, an unmasked or oversized frame), a connection dropped mid-frame. The
 * client is told (an error frame, or the close code `ws` sends); the log gets a warning, at most one
 * per session (or, for transport errors, per server) every 10 s, carrying how many were suppressed
 * since the last one, and the rest at debug. An attacker cannot fill the log or page anyone. Failures
 * of the server itself (a publish that throws, a handler bug) stay at error.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { Logger } from '../core/logging.ts';

export const CLIENT_ERROR_WARN_INTERVAL_MS = 10_000;

/** Rate-limited logging of one session's (or one server's) client errors. */
export class ClientErrorLog {
  private readonly logger: Logger;
  private readonly fields: Readonly<Record<string, unknown>>;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastWarnAt = Number.NEGATIVE_INFINITY;
  private suppressed = 0;

  constructor(logger: Logger, fields: Readonly<Record<string, unknown>> = {}, options: { readonly intervalMs?: number; readonly now?: () => number } = {}) {
    this.logger = logger;
    this.fields = fields;
    this.intervalMs = options.intervalMs ?? CLIENT_ERROR_WARN_INTERVAL_MS;
    this.now = options.now ?? Date.now;
  }

  /** A client protocol error: `problem` says what the client sent wrong. */
  note(problem: string, detail: Readonly<Record<string, unknown>> = {}): void {
    const at = this.now();
    if (at - this.lastWarnAt >= this.intervalMs) {
      this.logger.warn({ ...this.fields, ...detail, problem, suppressed: this.suppressed }, 'client protocol error');
      this.lastWarnAt = at;
      this.suppressed = 0;
      return;
    }
    this.suppressed++;
    this.logger.debug({ ...this.fields, ...detail, problem }, 'client protocol error');
  }
}

/** Errors of the connection itself that only mean the peer went away. */
const PEER_GONE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT']);

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * `@fastify/websocket`'s `errorHandler`: called for an error on an open socket and for a handler that
 * throws. Its default logs every one at error, so a client sending a bad frame looked like an outage.
 */
export function websocketErrorHandler(logger: Logger): (error: Error, socket: WebSocket, request: FastifyRequest, reply: FastifyReply) => void {
  const clients = new ClientErrorLog(logger);
  return (error, socket, request) => {
    const code = codeOf(error);
    const where = { path: request.routeOptions.url ?? request.url, remote: request.ip };
    if (code?.startsWith('WS_ERR_') === true) clients.note(error.message, { ...where, code });
    else if (code !== undefined && PEER_GONE.has(code)) logger.debug({ ...where, code }, 'websocket peer went away');
    else logger.error({ ...where, err: error }, 'websocket handler failed');
    socket.terminate();
  };
}

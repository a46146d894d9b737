/**
 * The one place an error becomes an HTTP answer. Domain code throws ArcError with a code and
 * whether a retry helps (`src/core/errors.ts`); Fastify's own errors (schema validation, bad JSON,
 * body too large) carry a status. Every route answers the same body:
 *
 *   { statusCode, error, code, message, retryable }
 *
 * with `WWW-Authenticate` on 401 and `Retry-After` when a retry helps. Used by the server's error
 * handler and by the job routes' scope, so no route answers an error its own way.
 *
 *   code                 status                         retryable (default)
 *   INVALID_INPUT        400 Bad Request                no
 *   UNAUTHENTICATED      401 Unauthorized               no
 *   FORBIDDEN            403 Forbidden                  no
 *   NOT_FOUND            404 Not Found                  no
 *   CONFLICT             409 Conflict                   as the error says
 *   TOO_LARGE            413 Payload Too Large          no
 *   RATE_LIMITED         429 Too Many Requests          yes, after the Retry-After it names
 *   NOT_LEADER           503 Service Unavailable        yes: another replica takes the call
 *   STALE_FENCING_TOKEN  503 Service Unavailable        yes, for the client: the leader takes it
 *   UNAVAILABLE, CLOSED  503 Service Unavailable        as the error says
 *   TIMEOUT              504 Gateway Timeout            as the error says
 *   INTERNAL, other      500 Internal Server Error      no
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ArcError, type ErrorCode } from '../core/errors.ts';

export interface ApiErrorBody {
  readonly statusCode: number;
  readonly error: string;
  readonly code: ErrorCode;
  readonly message: string;
  readonly retryable: boolean;
}

export interface ApiError {
  readonly status: number;
  readonly body: ApiErrorBody;
  readonly headers: Readonly<Record<string, string>>;
}

export const STATUS_OF_CODE: Readonly<Record<ErrorCode, number>> = {
  INVALID_INPUT: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  TOO_LARGE: 413,
  RATE_LIMITED: 429,
  NOT_LEADER: 503,
  STALE_FENCING_TOKEN: 503,
  UNAVAILABLE: 503,
  CLOSED: 503,
  TIMEOUT: 504,
  INTERNAL: 500,
};

/** For errors that carry only a status (Fastify's, or a plain `statusCode`): the code it stands for. */
function codeOfStatus(status: number): ErrorCode {
  switch (status) {
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 409:
      return 'CONFLICT';
    case 413:
      return 'TOO_LARGE';
    case 429:
      return 'RATE_LIMITED';
    case 503:
      return 'UNAVAILABLE';
    case 504:
      return 'TIMEOUT';
    default:
      return status < 500 ? 'INVALID_INPUT' : 'INTERNAL';
  }
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' && status >= 400 && status < 600 ? status : undefined;
}

/** The answer for an error: status, body and headers. */
export function apiError(error: unknown): ApiError {
  let status: number;
  let code: ErrorCode;
  let retryable: boolean;
  let message = error instanceof Error ? error.message : String(error);
  if (error instanceof ArcError) {
    code = error.code;
    status = STATUS_OF_CODE[code];
    // A deposed writer must not retry its own write, but the client's call succeeds against the leader.
    retryable = code === 'STALE_FENCING_TOKEN' ? true : error.retryable;
  } else {
    status = statusOf(error) ?? 500;
    code = codeOfStatus(status);
    retryable = status === 503;
  }
  if (status >= 500 && code === 'INTERNAL') message = `internal error: ${message}`;
  const headers: Record<string, string> = {};
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="arcnet"';
  const retryAfter = (error as { retryAfterS?: unknown } | null)?.retryAfterS;
  if (typeof retryAfter === 'number' && Number.isFinite(retryAfter)) headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfter)));
  else if (retryable) headers['retry-after'] = '1';
  return { status, headers, body: { statusCode: status, error: STATUS_CODES[status] ?? 'Error', code, message, retryable } };
}

/** Sends the answer for an error; failures of the server itself (500) are logged with the request. */
export function sendApiError(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const answer = apiError(error);
  if (answer.status === 500) request.log.error({ err: error }, 'request failed');
  return reply.status(answer.status).headers(answer.headers).send(answer.body);
}

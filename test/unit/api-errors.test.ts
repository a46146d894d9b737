/**
 * The one mapper from errors to HTTP answers (`src/api/errors.ts`): every code has its status, the
 * body has one shape, and Fastify's own errors (which carry a status) get the code it stands for.
 */
import { describe, expect, it } from 'vitest';
import { ArcError, StaleFencingTokenError, type ErrorCode } from '../../src/core/errors.ts';
import { JobsError } from '../../src/jobs/errors.ts';
import { apiError, STATUS_OF_CODE } from '../../src/api/errors.ts';

describe('API error mapper', () => {
  it('maps every code to its status, with one body shape and the headers a client acts on', () => {
    const table: [ErrorCode, number, boolean][] = [
      ['INVALID_INPUT', 400, false], ['UNAUTHENTICATED', 401, false], ['FORBIDDEN', 403, false], ['NOT_FOUND', 404, false], ['CONFLICT', 409, true],
      ['TOO_LARGE', 413, false], ['NOT_LEADER', 503, true], ['UNAVAILABLE', 503, true], ['CLOSED', 503, false], ['TIMEOUT', 504, true], ['INTERNAL', 500, false],
    ];
    for (const [code, status, retryable] of table) {
      const answer = apiError(new ArcError(code, `because ${code}`, code === 'CLOSED' ? { retryable: false } : {}));
      expect(answer.status, code).toBe(status);
      expect(STATUS_OF_CODE[code]).toBe(status);
      expect(answer.body).toEqual({ statusCode: status, error: expect.any(String), code, message: code === 'INTERNAL' ? `internal error: because ${code}` : `because ${code}`, retryable });
      expect(answer.headers['retry-after'], code).toBe(retryable ? '1' : undefined);
      expect(answer.headers['www-authenticate'], code).toBe(code === 'UNAUTHENTICATED' ? 'Bearer realm="arcnet"' : undefined);
    }
    expect(apiError(new JobsError('CONFLICT', 'exists with another image')).body).toMatchObject({ statusCode: 409, error: 'Conflict', retryable: false });
    expect(apiError(new JobsError('NOT_LEADER', 'standing by', { retryable: true })).body).toMatchObject({ statusCode: 503, error: 'Service Unavailable', retryable: true });
    // A deposed writer must not retry its write; the client's call succeeds against the leader.
    expect(apiError(new StaleFencingTokenError('coordinator', 1, 2)).body).toMatchObject({ statusCode: 503, code: 'STALE_FENCING_TOKEN', retryable: true });
  });

  it("gives errors that carry only a status (Fastify's) the code it stands for, and anything else a 500", () => {
    const fastify = (statusCode: number, message: string) => Object.assign(new Error(message), { statusCode });
    expect(apiError(fastify(400, 'body/name must be string')).body).toEqual({ statusCode: 400, error: 'Bad Request', code: 'INVALID_INPUT', message: 'body/name must be string', retryable: false });
    expect(apiError(fastify(413, 'Request body is too large')).body).toMatchObject({ statusCode: 413, error: 'Payload Too Large', code: 'TOO_LARGE' });
    expect(apiError(fastify(415, 'Unsupported Media Type')).body).toMatchObject({ statusCode: 415, code: 'INVALID_INPUT' });
    expect(apiError(new Error('boom')).body).toEqual({ statusCode: 500, error: 'Internal Server Error', code: 'INTERNAL', message: 'internal error: boom', retryable: false });
    expect(apiError('not even an error').status).toBe(500);
  });
});

/**
 * The jobs context's refusals: what went wrong as an ArcError code, and whether the same call may
 * succeed later. No HTTP here: `src/api/errors.ts` maps codes to statuses, for every route alike.
 */
import { ArcError, type ErrorCode } from '../core/errors.ts';

/** The codes the jobs context refuses with. */
export type JobsErrorCode = Extract<ErrorCode, 'INVALID_INPUT' | 'UNAUTHENTICATED' | 'FORBIDDEN' | 'NOT_FOUND' | 'CONFLICT' | 'TOO_LARGE' | 'NOT_LEADER'>;

/** An expected refusal. Not retryable unless said so: the caller must change something first. */
export class JobsError extends ArcError {
  constructor(code: JobsErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(code, message, { retryable: options.retryable ?? false, ...(options.cause === undefined ? {} : { cause: options.cause }) });
    this.name = 'JobsError';
  }
}

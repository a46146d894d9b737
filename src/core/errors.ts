/**
 * Errors that say when they happen and whether a retry helps (the Temporal/NATS style).
 * Expected outcomes (no candidate, lease held elsewhere) are statuses, not errors; these are for
 * what the caller cannot plan around, and for refusals a caller is told about.
 *
 * Domain code says what went wrong (a code) and whether the same call may succeed later; it never
 * names an HTTP status. The API edge alone maps codes to statuses (`src/api/errors.ts`).
 */
export type ErrorCode =
  | 'INVALID_INPUT'
  /** The caller did not say who it is (no credential). */
  | 'UNAUTHENTICATED'
  /** The caller said who it is, and that identity may not do this. */
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  /** The input is over a size limit. */
  | 'TOO_LARGE'
  /** The caller sent more than its share; it may retry after the time the answer names. */
  | 'RATE_LIMITED'
  | 'STALE_FENCING_TOKEN'
  /** This replica does not hold the writer's lease: another replica does, or soon will. */
  | 'NOT_LEADER'
  | 'UNAVAILABLE'
  | 'TIMEOUT'
  | 'CLOSED'
  | 'INTERNAL';

const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set(['UNAVAILABLE', 'TIMEOUT', 'CONFLICT', 'NOT_LEADER', 'RATE_LIMITED']);

export class ArcError extends Error {
  readonly code: ErrorCode;
  /** True when the same call may succeed later without any change by the caller. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ArcError';
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
  }
}

/** Thrown by a store when a write carries a fencing token older than the lease's current one. */
export class StaleFencingTokenError extends ArcError {
  constructor(lease: string, token: number, current: number | undefined) {
    super(
      'STALE_FENCING_TOKEN',
      `write rejected: fencing token ${token} for lease "${lease}" is stale (current ${current ?? 'none'}); the writer was deposed and must not retry`,
      { retryable: false },
    );
    this.name = 'StaleFencingTokenError';
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

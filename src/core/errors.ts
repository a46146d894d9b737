/**
 * Errors that say when they happen and whether a retry helps (the Temporal/NATS style).
 * Expected outcomes (no candidate, lease held elsewhere) are statuses, not errors; these are for
 * what the caller cannot plan around.
 */
export type ErrorCode =
  | 'INVALID_INPUT'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'STALE_FENCING_TOKEN'
  | 'UNAVAILABLE'
  | 'TIMEOUT'
  | 'CLOSED'
  | 'INTERNAL';

export class ArcError extends Error {
  readonly code: ErrorCode;
  /** True when the same call may succeed later without any change by the caller. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ArcError';
    this.code = code;
    this.retryable = options.retryable ?? (code === 'UNAVAILABLE' || code === 'TIMEOUT' || code === 'CONFLICT');
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

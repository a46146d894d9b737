/**
 * A worker's result as the coordinator takes it in: the returned bytes are decoded and hashed here,
 * by the coordinator (DESIGN §4: seed 004 trusts the worker's hash); the worker's own hash is kept for
 * audit only. Pure; the size limit is the one refusal.
 */
import { createHash } from 'node:crypto';
import { JobsError } from './errors.ts';
import type { ResultEncoding, WorkerResult } from './model.ts';

/** A report ready for the planner: checked, hashed by the coordinator, every field present. */
export interface Report {
  readonly execution_id: string;
  readonly status: 'completed' | 'failed' | 'timed_out';
  /** SHA-256 of the returned bytes, computed here; null unless completed. */
  readonly result_hash: string | null;
  readonly result: string | null;
  readonly result_encoding: ResultEncoding | null;
  /** What the worker claimed the hash was: recorded, never trusted. */
  readonly claimed_hash: string | null;
  readonly exit_code: number | null;
  readonly duration_ms: number | null;
  readonly error_message: string | null;
  readonly logs: string | null;
}

function decodeResult(result: string | undefined, encoding: ResultEncoding | undefined): Buffer {
  if (result === undefined) return Buffer.alloc(0);
  return encoding === 'base64' ? Buffer.from(result, 'base64') : Buffer.from(result, 'utf8');
}

export function reportFrom(result: WorkerResult, maxResultBytes: number): Report {
  const bytes = decodeResult(result.result, result.result_encoding);
  if (bytes.length > maxResultBytes) throw new JobsError('TOO_LARGE', `result of ${bytes.length} bytes is over the limit of ${maxResultBytes}`);
  const completed = result.status === 'completed';
  return {
    execution_id: result.execution_id,
    status: result.status,
    result_hash: completed ? createHash('sha256').update(bytes).digest('hex') : null,
    result: result.result ?? null,
    result_encoding: result.result === undefined ? null : (result.result_encoding ?? 'utf8'),
    claimed_hash: result.result_hash ?? null,
    exit_code: result.exit_code ?? null,
    duration_ms: result.duration_ms ?? null,
    error_message: result.error_message ?? (completed ? null : `execution ${result.status.replace('_', ' ')}`),
    logs: result.logs ?? null,
  };
}

/**
 * Checks and encodings every state-store adapter applies the same way, so a bad argument gets the
 * same INVALID_INPUT message whichever adapter is behind the port.
 */
import { ArcError } from '../core/errors.ts';

export function encode(value: unknown, what: string): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new ArcError('INVALID_INPUT', `${what} is not JSON-serialisable`);
  return text;
}

/** A stored JSON column; SQL NULL (null, or undefined from some drivers) is no value. */
export function decode<T>(text: unknown): T | undefined {
  return text === null || text === undefined ? undefined : (JSON.parse(text as string) as T);
}

export function requireTime(value: number, what: string): number {
  if (!Number.isSafeInteger(value)) throw new ArcError('INVALID_INPUT', `${what} must be an integer number of milliseconds, got ${value}`);
  return value;
}

export function requireLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new ArcError('INVALID_INPUT', `limit must be a positive integer, got ${limit}`);
  return limit;
}

export function requireExpected(value: number | undefined, what: string): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
    throw new ArcError('INVALID_INPUT', `${what} must be a non-negative integer, got ${value}`);
  }
}

export function requireTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new ArcError('INVALID_INPUT', `ttlMs must be a positive integer, got ${ttlMs}`);
}

/**
 * acquireMany's checks, made before any adapter touches its store so a bad batch acquires nothing. A
 * name given twice has no single-call meaning (the second request would see the first's grant), and
 * PostgreSQL's ON CONFLICT DO UPDATE cannot touch one row twice in a statement, so it is refused.
 */
export function requireAcquireBatch(requests: readonly { readonly name: string; readonly ttlMs: number }[]): void {
  const names = new Set<string>();
  for (const request of requests) {
    requireTtl(request.ttlMs);
    if (names.has(request.name)) {
      throw new ArcError('INVALID_INPUT', `acquireMany requests lease "${request.name}" more than once; each lease may appear once per batch`, {
        retryable: false,
      });
    }
    names.add(request.name);
  }
}

/**
 * The smallest string greater than every string starting with `prefix`, in code-point order (SQLite's
 * BINARY collation, PostgreSQL's COLLATE "C"): prefix scans become an index range instead of LIKE.
 */
export function prefixUpperBound(prefix: string): string | undefined {
  const points = Array.from(prefix, (c) => c.codePointAt(0) ?? 0);
  while (points.length > 0) {
    let last = points.pop() ?? 0;
    if (last < 0x10ffff) {
      last += 1;
      if (last >= 0xd800 && last <= 0xdfff) last = 0xe000;
      points.push(last);
      return String.fromCodePoint(...points);
    }
  }
  return undefined;
}

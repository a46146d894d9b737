/**
 * The instants ArcNet accepts from outside: `asOf`/`knownAt` on the API, and every timestamp a node,
 * worker or producer puts in a message. One range for all of them, 1970-01-01T00:00:00.000Z to
 * 9999-12-31T23:59:59.999Z, because every place an instant goes can hold it: a JavaScript Date
 * (±8.64e15 ms, so `toISOString()` never throws), an SQLite integer, a PostgreSQL `timestamptz`
 * (4713 BC to 294276 AD) and a four-digit ISO-8601 year. Outside it an instant is refused with a
 * message naming the range, never stored and never a crash.
 */

export const MIN_INSTANT_MS = 0;
export const MAX_INSTANT_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
export const INSTANT_RANGE = '1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z';

// Date.parse takes almost anything in V8 ("1" is the year 2001), so a text must look like ISO-8601 first.
const ISO_8601 = /^(?:\d{4}|[+-]\d{6})-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;
const EPOCH_MS = /^\d{1,20}$/;

export function inInstantRange(ms: number): boolean {
  return Number.isInteger(ms) && ms >= MIN_INSTANT_MS && ms <= MAX_INSTANT_MS;
}

export type ParsedInstant = { readonly ok: true; readonly ms: number } | { readonly ok: false; readonly problem: string };

/** `toISOString()`'s own shape, `2026-12-02T01:23:45.678Z`: what every ArcNet producer sends. */
function isCanonical(text: string): boolean {
  return text.length === 24 && text.charCodeAt(4) === 45 && text.charCodeAt(7) === 45 && text.charCodeAt(10) === 84 && text.charCodeAt(13) === 58 && text.charCodeAt(16) === 58 && text.charCodeAt(19) === 46 && text.charCodeAt(23) === 90;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** The decimal number in `length` characters of `text` from `at`; NaN if one is not a digit. */
function digitsAt(text: string, at: number, length: number): number {
  let value = 0;
  for (let i = at; i < at + length; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return Number.NaN;
    value = value * 10 + digit;
  }
  return value;
}

/** A canonical text's day exists in its month: Date.parse rolls February 30th over into March. */
function canonicalDayExists(text: string): boolean {
  const year = digitsAt(text, 0, 4);
  const month = digitsAt(text, 5, 2);
  const day = digitsAt(text, 8, 2);
  if (!(month >= 1 && month <= 12 && day >= 1)) return false;
  const leapDay = month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 1 : 0;
  return day <= DAYS_IN_MONTH[month - 1]! + leapDay;
}

/**
 * `parseInstant(text).ok` without building its answer: the check the message schemas run on every
 * timestamp, allocation-free for what every ArcNet producer sends.
 */
export function isInstant(text: string): boolean {
  if (isCanonical(text) && canonicalDayExists(text) && inInstantRange(Date.parse(text))) return true;
  return parseInstant(text).ok;
}

/** An ISO-8601 instant, or epoch milliseconds when `epochMs` (a query's `asOf=1700000000000`). */
export function parseInstant(text: string, options: { readonly epochMs?: boolean } = {}): ParsedInstant {
  // The hot path (every message on the bus carries one or two): no regular expressions, no Date.
  if (isCanonical(text) && canonicalDayExists(text)) {
    const ms = Date.parse(text);
    if (inInstantRange(ms)) return { ok: true, ms };
  }
  let ms: number;
  if (options.epochMs === true && EPOCH_MS.test(text)) ms = Number(text);
  else if (ISO_8601.test(text)) ms = Date.parse(text);
  else return { ok: false, problem: `"${clip(text)}" is not an ISO-8601 instant${options.epochMs === true ? ' or epoch milliseconds' : ''} (from ${INSTANT_RANGE})` };
  // An extended year past Date's ±275760 parses to NaN: out of range too, not a typo.
  if (Number.isNaN(ms) && /^[+-]\d{6}/.test(text)) return { ok: false, problem: `"${clip(text)}" is outside the supported range ${INSTANT_RANGE}` };
  if (Number.isNaN(ms)) return { ok: false, problem: `"${clip(text)}" is not a valid date (from ${INSTANT_RANGE})` };
  if (!inInstantRange(ms)) return { ok: false, problem: `"${clip(text)}" is outside the supported range ${INSTANT_RANGE}` };
  // Date.parse rolls February 30th over into March; a day past its month's end is not a date.
  if (!dayExists(text)) return { ok: false, problem: `"${clip(text)}" is not a valid date (from ${INSTANT_RANGE})` };
  return { ok: true, ms };
}

function dayExists(text: string): boolean {
  const match = /^([+-]?\d{4,6})-(\d{2})-(\d{2})/.exec(text);
  if (match === null) return true;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return day >= 1 && day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Echoing a client's text back is fine; echoing a megabyte of it is not. */
function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}

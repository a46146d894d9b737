/** Plain tables and colours for the terminal; colour only when the stream is a TTY and NO_COLOR is unset. */

const useColour = (stream: NodeJS.WriteStream): boolean => Boolean(stream.isTTY) && !process.env['NO_COLOR'];

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, grey: 90, bold: 1 } as const;
export type Colour = keyof typeof CODES;

export function colour(text: string, name: Colour, stream: NodeJS.WriteStream = process.stdout): string {
  return useColour(stream) ? `\x1b[${CODES[name]}m${text}\x1b[0m` : text;
}

export function statusColour(status: string): Colour {
  if (status === 'online' || status === 'completed' || status === 'dispatched') return 'green';
  if (status === 'offline' || status === 'failed' || status === 'rejected') return 'red';
  if (status === 'busy' || status === 'draining' || status === 'pending') return 'yellow';
  return 'grey';
}

const ANSI = /\x1b\[[0-9;]*m/g;

export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').replace(ANSI, '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((cell, i) => cell + ' '.repeat(Math.max(0, widths[i]! - cell.replace(ANSI, '').length))).join('  ').trimEnd();
  return [line(headers.map((h) => colour(h, 'bold'))), ...rows.map(line)].join('\n');
}

export function truncateId(id: string, length = 8): string {
  return id.length > length ? id.slice(0, length) : id;
}

export function percent(value: number): string {
  return `${Math.round(value * 100)}%`;
}

/** "12s ago", "5m ago", "3h ago"; older than a day (or in the future, clocks differ) as an ISO time. */
export function ago(iso: string, now = Date.now()): string {
  const then = Date.parse(iso);
  if (!Number.isFinite(then)) return iso;
  const seconds = Math.round((now - then) / 1000);
  if (seconds < -5 || seconds >= 86_400) return new Date(then).toISOString().replace(/\.\d{3}Z$/, 'Z');
  if (seconds < 60) return `${Math.max(0, seconds)}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  return `${Math.floor(seconds / 3600)}h ago`;
}

/**
 * One terminal-safe line: newlines, tabs and other control characters escaped (text from workers is
 * untrusted and could carry terminal escape sequences), cut to `max` characters with "…".
 */
export function oneLine(text: string, max = Infinity): string {
  const escaped = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  return escaped.length > max ? `${escaped.slice(0, Math.max(0, max - 1))}…` : escaped;
}

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

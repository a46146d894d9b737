/**
 * The two byte formats the Docker Engine API speaks besides JSON, written here rather than pulled in:
 * a ustar archive (what `PUT /containers/{id}/archive` takes) and the multiplexed log stream (what
 * `GET /containers/{id}/logs` returns for a container without a TTY).
 */

export interface TarEntry {
  /** Relative path, `/`-separated, at most 100 bytes: the ustar name field without the prefix split. */
  readonly name: string;
  readonly type: 'file' | 'directory';
  readonly mode: number;
  /** File contents; ignored for directories. */
  readonly data?: Uint8Array;
}

const BLOCK = 512;
const encoder = new TextEncoder();

function octal(header: Uint8Array, offset: number, width: number, value: number): void {
  // width - 1 digits then a NUL, the form every tar reader accepts.
  const digits = value.toString(8).padStart(width - 1, '0');
  if (digits.length > width - 1) throw new RangeError(`tar field overflow: ${value} does not fit ${width - 1} octal digits`);
  header.set(encoder.encode(digits), offset);
}

/** A ustar archive of `entries` in order, owned by root, dated at the epoch so equal inputs give equal bytes. */
export function ustarArchive(entries: readonly TarEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const name = encoder.encode(entry.type === 'directory' && !entry.name.endsWith('/') ? `${entry.name}/` : entry.name);
    if (name.length === 0 || name.length > 100) throw new RangeError(`tar entry name must be 1..100 bytes: "${entry.name}"`);
    const data = entry.type === 'file' ? (entry.data ?? new Uint8Array(0)) : new Uint8Array(0);
    const header = new Uint8Array(BLOCK);
    header.set(name, 0);
    octal(header, 100, 8, entry.mode & 0o7777);
    octal(header, 108, 8, 0);
    octal(header, 116, 8, 0);
    octal(header, 124, 12, data.length);
    octal(header, 136, 12, 0);
    header[156] = entry.type === 'directory' ? 0x35 : 0x30; // '5' or '0'
    header.set(encoder.encode('ustar\u000000'), 257);
    // The checksum is computed with its own field read as eight spaces.
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.set(encoder.encode(`${sum.toString(8).padStart(6, '0')}\u0000 `), 148);
    parts.push(header, data);
    const padding = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (padding) parts.push(new Uint8Array(padding));
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return concat(parts);
}

export interface DemultiplexedOutput {
  readonly stdout: Uint8Array;
  readonly stderr: Uint8Array;
}

/**
 * Splits a multiplexed log stream into stdout and stderr. Each frame is an 8-byte header (stream id
 * 1 = stdout, 2 = stderr, three zero bytes, big-endian payload length) then the payload. A truncated
 * last frame keeps what arrived; frames for other stream ids (0, stdin) are dropped.
 */
export function demultiplexDockerStream(bytes: Uint8Array): DemultiplexedOutput {
  const stdout: Uint8Array[] = [];
  const stderr: Uint8Array[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  while (offset + 8 <= bytes.length) {
    const stream = bytes[offset];
    const length = view.getUint32(offset + 4, false);
    const payload = bytes.subarray(offset + 8, Math.min(offset + 8 + length, bytes.length));
    if (stream === 1) stdout.push(payload);
    else if (stream === 2) stderr.push(payload);
    offset += 8 + length;
  }
  return { stdout: concat(stdout), stderr: concat(stderr) };
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

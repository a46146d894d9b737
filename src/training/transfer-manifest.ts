/**
 * The POSIX mover's chunk manifest: what a killed copy left behind, and what a restarted one may
 * keep of it. The destination is written as `<dest>.partial`; beside it `<dest>.arcnet-transfer.json`
 * records, after each chunk's bytes are fsynced, that chunk's SHA-256. A restart keeps exactly the
 * recorded chunks (truncating the partial file to their end), so the one chunk in flight when the
 * process died is the most that is sent again.
 *
 * Everything here but the path helpers is pure: `planResume` decides from the manifest, the source's
 * stat and the partial file's length, and says why when it starts over.
 */

export const MANIFEST_VERSION = 1;

export interface SourceIdentity {
  readonly size: number;
  /** Integer milliseconds: a changed mtime means the bytes already copied may no longer be the source's. */
  readonly mtimeMs: number;
}

export interface TransferManifest {
  readonly version: typeof MANIFEST_VERSION;
  readonly transferId: string;
  readonly source: SourceIdentity;
  readonly chunkBytes: number;
  /** SHA-256 (hex) of chunks 0..n-1, each recorded only once its bytes were fsynced in the partial file. */
  readonly chunks: readonly string[];
  /** Set by `cancel`: a later `transfer` of this id resolves CANCELLED instead of starting over. */
  readonly cancelled?: boolean;
}

export const partialPath = (destination: string): string => `${destination}.partial`;
export const manifestPath = (destination: string): string => `${destination}.arcnet-transfer.json`;

export function chunkCount(size: number, chunkBytes: number): number {
  return Math.ceil(size / chunkBytes);
}

/** Byte range of chunk `index`: the last chunk is short unless the size divides evenly. */
export function chunkRange(index: number, size: number, chunkBytes: number): { readonly offset: number; readonly length: number } {
  const offset = index * chunkBytes;
  return { offset, length: Math.max(0, Math.min(chunkBytes, size - offset)) };
}

const HEX64 = /^[0-9a-f]{64}$/;
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** The manifest in `text`, or undefined when it is not one (torn, foreign, another version): the caller starts over. */
export function parseManifest(text: string): TransferManifest | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const m = value as Record<string, unknown>;
  const source = m.source as Record<string, unknown> | undefined;
  if (m.version !== MANIFEST_VERSION || typeof m.transferId !== 'string') return undefined;
  if (typeof source !== 'object' || source === null || !isCount(source.size) || !isCount(source.mtimeMs)) return undefined;
  if (!isCount(m.chunkBytes) || m.chunkBytes === 0) return undefined;
  if (!Array.isArray(m.chunks) || !m.chunks.every((c) => typeof c === 'string' && HEX64.test(c))) return undefined;
  if (m.chunks.length > chunkCount(source.size, m.chunkBytes)) return undefined;
  return {
    version: MANIFEST_VERSION,
    transferId: m.transferId,
    source: { size: source.size, mtimeMs: source.mtimeMs },
    chunkBytes: m.chunkBytes,
    chunks: m.chunks as string[],
    ...(m.cancelled === true ? { cancelled: true } : {}),
  };
}

export function serializeManifest(manifest: TransferManifest): string {
  return `${JSON.stringify(manifest)}\n`;
}

export interface ResumeInput {
  readonly transferId: string;
  readonly source: SourceIdentity;
  readonly chunkBytes: number;
  /** The manifest found beside the destination, if any (already parsed). */
  readonly manifest: TransferManifest | undefined;
  /** Length of `<dest>.partial`, or undefined when there is none. */
  readonly partialBytes: number | undefined;
}

export type ResumePlan =
  | { readonly kind: 'cancelled' }
  /** Start from byte 0; `reason` says why what was there is not kept (undefined for a first start). */
  | { readonly kind: 'fresh'; readonly reason: string | undefined }
  /**
   * Keep chunks 0..chunksKept-1 (their hashes are `manifest.chunks`), truncate the partial file to
   * `keepBytes`; `resentBytes` of what is there beyond that will be sent again.
   */
  | { readonly kind: 'resume'; readonly chunksKept: number; readonly keepBytes: number; readonly resentBytes: number };

/** What a (re)started transfer keeps of an earlier attempt. */
export function planResume(input: ResumeInput): ResumePlan {
  const { manifest, partialBytes } = input;
  if (manifest === undefined) {
    return { kind: 'fresh', reason: partialBytes === undefined ? undefined : 'a partial file without a readable manifest: starting over' };
  }
  if (manifest.transferId !== input.transferId) {
    return { kind: 'fresh', reason: `the partial file belongs to transfer ${manifest.transferId}: starting over` };
  }
  if (manifest.cancelled) return { kind: 'cancelled' };
  if (manifest.source.size !== input.source.size || manifest.source.mtimeMs !== input.source.mtimeMs) {
    return {
      kind: 'fresh',
      reason: `the source changed since the copy began (size ${manifest.source.size} -> ${input.source.size}, mtime ${manifest.source.mtimeMs} -> ${input.source.mtimeMs}): starting over`,
    };
  }
  if (manifest.chunkBytes !== input.chunkBytes) {
    return { kind: 'fresh', reason: `the chunk size changed (${manifest.chunkBytes} -> ${input.chunkBytes} bytes): starting over` };
  }
  if (partialBytes === undefined) {
    return { kind: 'fresh', reason: manifest.chunks.length > 0 ? 'the manifest lists chunks but the partial file is gone: starting over' : undefined };
  }
  // Chunks are recorded only after their bytes were fsynced, so a shorter file means something else
  // truncated it: keep the recorded chunks that are wholly there.
  let chunksKept = manifest.chunks.length;
  while (chunksKept > 0 && chunkRange(chunksKept - 1, input.source.size, input.chunkBytes).offset + chunkRange(chunksKept - 1, input.source.size, input.chunkBytes).length > partialBytes) {
    chunksKept--;
  }
  const keepBytes = chunksKept === 0 ? 0 : Math.min(chunksKept * input.chunkBytes, input.source.size);
  return { kind: 'resume', chunksKept, keepBytes, resentBytes: Math.max(0, Math.min(partialBytes, input.source.size) - keepBytes) };
}

/**
 * The POSIX data mover: copies a file within this machine's filesystems (a dataset onto the HPC
 * system's scratch, mounted here) in chunks, each chunk's SHA-256 recorded in a manifest beside the
 * destination once its bytes are fsynced, so a copy killed with the bridge resumes sending at most
 * the one chunk it was in (./transfer-manifest.ts).
 *
 * Checksums: each chunk is hashed as it is read; with `verifyChecksum` (the default, like Globus's
 * verify_checksum) it is read back from the destination after its fsync and hashed again, and a
 * difference fails the transfer CHECKSUM_MISMATCH at once, naming the chunk. The whole-file SHA-256
 * is a running hash over the verified bytes. Node cannot serialise a Hash, so a resumed copy rehashes
 * the chunks it keeps from the partial file, checking each against the manifest: reading them back is
 * cheaper than sending them again, and it catches a partial file changed while no one watched.
 *
 * Failures are final and quick: a missing source, a permission error, a full disk or a checksum
 * difference resolves `failed` with the reason the moment it is seen (Globus would keep such a task
 * ACTIVE for up to a day). Errors a retry may cure (EAGAIN, EBUSY, EINTR, ETIMEDOUT, and EIO, which
 * network and parallel filesystems report across a server failover) retry the chunk with backoff,
 * up to a bound. ENOSPC and EDQUOT are not transient: nothing frees the space while we wait.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, mkdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DataMover, TransferFailureCode, TransferJournal, TransferOptions, TransferOutcome, TransferProgress, TransferSpec } from './ports.ts';
import { chunkCount, chunkRange, manifestPath, parseManifest, partialPath, planResume, serializeManifest, type SourceIdentity, type TransferManifest } from './transfer-manifest.ts';

export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;
/** The unit of one read or write: large enough to be near `cp`, small enough to read ahead while hashing. */
const MAX_SLICE_BYTES = 8 * 1024 * 1024;

const TRANSIENT = new Set(['EAGAIN', 'EBUSY', 'EINTR', 'ETIMEDOUT', 'EIO']);
const PERMISSION = new Set(['EACCES', 'EPERM', 'EROFS']);
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);

export interface SliceWrite {
  readonly chunk: number;
  /** Byte offset of `bytes` in the file. */
  readonly offset: number;
  /** The bytes about to be written (already hashed as the source's): a test may change or throw. */
  readonly bytes: Uint8Array;
}

export interface PosixMoverOptions {
  /** Default 64 MiB. */
  readonly chunkBytes?: number;
  /** Read each chunk back after its fsync and compare hashes (default true). */
  readonly verifyChecksum?: boolean;
  /** Caps the copy rate (a shared filesystem, or a test that needs a transfer to last). */
  readonly maxBytesPerSecond?: number;
  readonly retry?: { readonly attempts: number; readonly baseMs: number; readonly capMs: number };
  /** How often `onProgress` is called while bytes move (default 500 ms; the port promises at least 1 Hz). */
  readonly progressIntervalMs?: number;
  /** Where `cancel` finds a transfer this process is not running (a restarted bridge cancelling). */
  readonly journal?: TransferJournal;
  /** Test seam: runs before each slice is written, after it was hashed. */
  readonly beforeWrite?: (write: SliceWrite) => void | Promise<void>;
}

/** A failure that ends the attempt, with the port's code. */
class TransferFailure extends Error {
  readonly code: TransferFailureCode;

  constructor(code: TransferFailureCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** Thrown inside a chunk for an error a retry may cure. */
class TransientError extends Error {
  readonly errno: string;

  constructor(errno: string, message: string) {
    super(message);
    this.errno = errno;
  }
}

const errnoOf = (error: unknown): string | undefined =>
  typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string' ? (error as { code: string }).code : undefined;

/** The port's reading of a filesystem error on `path` (the source or the destination). */
function classify(error: unknown, side: 'source' | 'destination', path: string): Error {
  if (error instanceof TransferFailure || error instanceof TransientError) return error;
  const code = errnoOf(error);
  const detail = error instanceof Error ? error.message : String(error);
  if (code === 'ENOENT' && side === 'source') return new TransferFailure('SOURCE_MISSING', `the source ${path} does not exist`);
  if (code !== undefined && PERMISSION.has(code)) return new TransferFailure('PERMISSION', `permission denied on the ${side} ${path} (${code})`);
  if (code !== undefined && NO_SPACE.has(code)) return new TransferFailure('REMOTE_FAULT', `no space left for the destination ${path} (${code}): not retried, nothing frees it while we wait`);
  if (code !== undefined && TRANSIENT.has(code)) return new TransientError(code, `${code} on the ${side} ${path}: ${detail}`);
  return new TransferFailure('REMOTE_FAULT', `${side} ${path}: ${detail}`);
}

function localPath(uri: string, what: string): string {
  if (uri.startsWith('file://')) return fileURLToPath(uri);
  if (uri.startsWith('/')) return uri;
  throw new TransferFailure('INVALID_REQUEST', `the ${what} ${uri} is not a file:// URI or an absolute path`);
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

async function readFully(handle: FileHandle, buffer: Uint8Array, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function statOrUndefined(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/** Writes the manifest so that a crash leaves the old one or the new one, never half of either. */
async function saveManifest(path: string, manifest: TransferManifest): Promise<void> {
  const temporary = `${path}.tmp`;
  const handle = await open(temporary, 'w');
  try {
    await handle.writeFile(serializeManifest(manifest));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
}

async function loadManifest(path: string): Promise<TransferManifest | undefined> {
  try {
    return parseManifest(await readFile(path, 'utf8'));
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw error;
  }
}

interface Running {
  readonly controller: AbortController;
  cancelled: boolean;
  readonly promise: Promise<TransferOutcome>;
}

export class PosixDataMover implements DataMover {
  readonly name = 'posix';
  private readonly chunkBytes: number;
  private readonly sliceBytes: number;
  private readonly running = new Map<string, Running>();

  private readonly options: PosixMoverOptions;

  constructor(options: PosixMoverOptions = {}) {
    this.options = options;
    this.chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(this.chunkBytes) || this.chunkBytes <= 0) throw new Error(`chunkBytes must be a positive integer, not ${this.chunkBytes}`);
    this.sliceBytes = Math.min(this.chunkBytes, MAX_SLICE_BYTES);
  }

  transfer(spec: TransferSpec, options: TransferOptions = {}): Promise<TransferOutcome> {
    // A second call for a transfer already running here joins it rather than racing it on the same files.
    const existing = this.running.get(spec.transferId);
    if (existing) return existing.promise;
    const controller = new AbortController();
    const onAbort = (): void => controller.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) controller.abort();
    const entry: Running = {
      controller,
      cancelled: false,
      promise: this.run(spec, options, controller.signal, () => entry.cancelled).finally(() => {
        options.signal?.removeEventListener('abort', onAbort);
        this.running.delete(spec.transferId);
      }),
    };
    this.running.set(spec.transferId, entry);
    return entry.promise;
  }

  async cancel(transferId: string): Promise<void> {
    const entry = this.running.get(transferId);
    if (entry) {
      entry.cancelled = true;
      entry.controller.abort();
      await entry.promise;
      return;
    }
    const destination = (await this.options.journal?.load(transferId))?.destination;
    if (typeof destination === 'string') await this.tombstone(transferId, destination, undefined);
  }

  /** Marks the transfer cancelled beside its destination (so a later `transfer` resolves CANCELLED) and frees the partial file. */
  private async tombstone(transferId: string, destination: string, source: SourceIdentity | undefined): Promise<void> {
    const existing = await loadManifest(manifestPath(destination));
    const identity = source ?? existing?.source ?? { size: 0, mtimeMs: 0 };
    await mkdir(dirname(destination), { recursive: true });
    await saveManifest(manifestPath(destination), { version: 1, transferId, source: identity, chunkBytes: this.chunkBytes, chunks: [], cancelled: true });
    await rm(partialPath(destination), { force: true });
  }

  private async run(spec: TransferSpec, options: TransferOptions, signal: AbortSignal, cancelled: () => boolean): Promise<TransferOutcome> {
    let destination: string | undefined;
    let source: SourceIdentity | undefined;
    let timer: NodeJS.Timeout | undefined;
    const progress = { bytesTransferred: 0, totalBytes: null as number | null };
    const report = (): void => {
      const { bytesTransferred, totalBytes } = progress;
      const value: TransferProgress = { bytesTransferred, totalBytes, progress: totalBytes === null ? 0 : totalBytes === 0 ? 1 : Math.min(1, bytesTransferred / totalBytes) };
      options.onProgress?.(value);
    };
    try {
      const sourcePath = localPath(spec.source, 'source');
      destination = localPath(spec.destination, 'destination');
      await this.options.journal?.save(spec.transferId, { destination });
      timer = setInterval(report, this.options.progressIntervalMs ?? 500);
      timer.unref();
      for (let attempt = 1; ; attempt++) {
        const result = await this.copy(spec, sourcePath, destination, progress, signal);
        source = result.source;
        if (result.kind === 'done') {
          report();
          return result.outcome;
        }
        // The source changed under the copy: the bytes sent so far are not all one version of it.
        if (attempt >= 3) throw new TransferFailure('REMOTE_FAULT', `the source ${sourcePath} kept changing during the copy (${attempt} attempts)`);
      }
    } catch (error) {
      if (signal.aborted) {
        if (cancelled()) {
          if (destination !== undefined) await this.tombstone(spec.transferId, destination, source).catch(() => undefined);
          return { status: 'failed', code: 'CANCELLED', reason: `transfer ${spec.transferId} was cancelled` };
        }
        return { status: 'failed', code: 'CANCELLED', reason: `transfer ${spec.transferId} was stopped by its caller; a later transfer of it resumes from its last chunk` };
      }
      if (error instanceof TransferFailure) return { status: 'failed', code: error.code, reason: error.message };
      if (error instanceof TransientError) return { status: 'failed', code: 'REMOTE_FAULT', reason: error.message };
      return { status: 'failed', code: 'REMOTE_FAULT', reason: error instanceof Error ? error.message : String(error) };
    } finally {
      if (timer) clearInterval(timer);
    }
  }

  private async copy(
    spec: TransferSpec,
    sourcePath: string,
    destination: string,
    progress: { bytesTransferred: number; totalBytes: number | null },
    signal: AbortSignal,
  ): Promise<{ kind: 'done'; outcome: TransferOutcome; source: SourceIdentity } | { kind: 'source-changed'; source: SourceIdentity }> {
    let input: FileHandle;
    try {
      input = await open(sourcePath, 'r');
    } catch (error) {
      throw classify(error, 'source', sourcePath);
    }
    let output: FileHandle | undefined;
    try {
      const info = await input.stat().catch((error: unknown) => Promise.reject(classify(error, 'source', sourcePath)));
      if (!info.isFile()) throw new TransferFailure('INVALID_REQUEST', `the source ${sourcePath} is not a regular file`);
      const source: SourceIdentity = { size: info.size, mtimeMs: Math.trunc(info.mtimeMs) };
      progress.totalBytes = source.size;
      const partial = partialPath(destination);
      const manifestFile = manifestPath(destination);
      let plan;
      try {
        await mkdir(dirname(destination), { recursive: true });
        plan = planResume({ transferId: spec.transferId, source, chunkBytes: this.chunkBytes, manifest: await loadManifest(manifestFile), partialBytes: await statOrUndefined(partial) });
      } catch (error) {
        throw classify(error, 'destination', destination);
      }
      if (plan.kind === 'cancelled') throw new TransferFailure('CANCELLED', `transfer ${spec.transferId} was cancelled`);
      let chunks: string[] = [];
      let resent = 0;
      try {
        if (plan.kind === 'fresh') {
          output = await open(partial, 'w+');
        } else {
          output = await open(partial, 'r+');
          await output.truncate(plan.keepBytes);
          resent = plan.resentBytes;
          chunks = (await loadManifest(manifestFile))!.chunks.slice(0, plan.chunksKept);
        }
        await saveManifest(manifestFile, { version: 1, transferId: spec.transferId, source, chunkBytes: this.chunkBytes, chunks });
      } catch (error) {
        throw classify(error, 'destination', partial);
      }

      const buffers = [new Uint8Array(this.sliceBytes), new Uint8Array(this.sliceBytes)] as const;
      // The chunks kept from an earlier attempt: rehashed from the partial file, each checked against
      // its recorded hash; from the first that differs, the rest are sent again. `wholeAtChunk` is the
      // whole-file hash over the chunks accepted so far (a copy is advanced, kept only if it matches).
      let wholeAtChunk = createHash('sha256');
      const recorded = chunks.length;
      for (let index = 0; index < recorded; index++) {
        const { offset, length } = chunkRange(index, source.size, this.chunkBytes);
        const next = wholeAtChunk.copy();
        const hash = await this.hashRange(output, offset, length, buffers[0], next).catch((error: unknown) => Promise.reject(classify(error, 'destination', partial)));
        if (hash !== chunks[index]) {
          for (let k = index; k < recorded; k++) resent += chunkRange(k, source.size, this.chunkBytes).length;
          chunks = chunks.slice(0, index);
          await output.truncate(offset);
          break;
        }
        wholeAtChunk = next;
      }
      const kept = chunks.length;
      progress.bytesTransferred = Math.min(kept * this.chunkBytes, source.size);

      const started = Date.now();
      let sentThisRun = 0;
      const total = chunkCount(source.size, this.chunkBytes);
      const retry = this.options.retry ?? { attempts: 5, baseMs: 100, capMs: 5_000 };
      for (let index = kept; index < total; index++) {
        const { offset, length } = chunkRange(index, source.size, this.chunkBytes);
        for (let attempt = 1; ; attempt++) {
          signal.throwIfAborted();
          const running = wholeAtChunk.copy();
          try {
            const hash = await this.copyChunk(index, input, output, offset, length, buffers, running, sourcePath, partial, signal, (bytes) => {
              sentThisRun += bytes;
              progress.bytesTransferred = offset + bytes;
              return this.throttle(started, sentThisRun, signal);
            });
            chunks.push(hash);
            wholeAtChunk = running;
            break;
          } catch (error) {
            const failure = classify(error, 'destination', partial);
            if (signal.aborted) throw failure;
            if (!(failure instanceof TransientError)) throw failure;
            if (attempt >= retry.attempts) throw new TransferFailure('REMOTE_FAULT', `${failure.message}: still failing after ${attempt} attempts at chunk ${index}`);
            // What this chunk wrote before the error is written again.
            resent += Math.max(0, progress.bytesTransferred - offset);
            progress.bytesTransferred = offset;
            await sleep(Math.min(retry.capMs, retry.baseMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2), signal);
          }
        }
        try {
          await saveManifest(manifestFile, { version: 1, transferId: spec.transferId, source, chunkBytes: this.chunkBytes, chunks });
        } catch (error) {
          throw classify(error, 'destination', manifestFile);
        }
      }

      const after = await input.stat();
      if (after.size !== source.size || Math.trunc(after.mtimeMs) !== source.mtimeMs) {
        await output.close();
        output = undefined;
        await rm(manifestFile, { force: true });
        return { kind: 'source-changed', source };
      }
      const sha256 = wholeAtChunk.digest('hex');
      if (spec.sha256 !== undefined && spec.sha256.toLowerCase() !== sha256) {
        throw new TransferFailure('CHECKSUM_MISMATCH', `the source ${sourcePath} has SHA-256 ${sha256}, not the ${spec.sha256} the transfer was given`);
      }
      try {
        await output.sync();
        await output.close();
        output = undefined;
        await rename(partial, destination);
        await syncDirectory(dirname(destination));
        await rm(manifestFile, { force: true });
      } catch (error) {
        throw classify(error, 'destination', destination);
      }
      return { kind: 'done', source, outcome: { status: 'completed', bytesTransferred: source.size, sha256, bytesResent: resent } };
    } finally {
      await output?.close().catch(() => undefined);
      await input.close().catch(() => undefined);
    }
  }

  /**
   * One chunk: read ahead slice by slice (the next read runs while this slice is hashed and
   * written), fsync, then read it back and compare when verifying. Resolves the chunk's SHA-256.
   */
  private async copyChunk(
    index: number,
    input: FileHandle,
    output: FileHandle,
    offset: number,
    length: number,
    buffers: readonly [Uint8Array, Uint8Array],
    whole: Hash,
    sourcePath: string,
    partial: string,
    signal: AbortSignal,
    sent: (bytesOfChunk: number) => Promise<void>,
  ): Promise<string> {
    const chunkHash = createHash('sha256');
    const verify = this.options.verifyChecksum ?? true;
    const read = (slice: number): Promise<number> => {
      const at = slice * this.sliceBytes;
      const size = Math.min(this.sliceBytes, length - at);
      return readFully(input, buffers[slice % 2]!, size, offset + at).then((got) => {
        if (got < size) throw new TransferFailure('REMOTE_FAULT', `the source ${sourcePath} ended at byte ${offset + at + got} while being copied: it is being changed`);
        return got;
      }, (error: unknown) => Promise.reject(classify(error, 'source', sourcePath)));
    };
    const slices = Math.ceil(length / this.sliceBytes);
    let pending = slices > 0 ? read(0) : Promise.resolve(0);
    for (let slice = 0; slice < slices; slice++) {
      const got = await pending;
      const bytes = buffers[slice % 2]!.subarray(0, got);
      if (slice + 1 < slices) pending = read(slice + 1);
      // An error in this slice must not leave the read ahead rejecting unobserved.
      try {
        chunkHash.update(bytes);
        // Verifying, the whole-file hash runs over the bytes read back; otherwise over the source's.
        if (!verify) whole.update(bytes);
        if (this.options.beforeWrite) await this.options.beforeWrite({ chunk: index, offset: offset + slice * this.sliceBytes, bytes });
        await writeFully(output, bytes, offset + slice * this.sliceBytes);
        await sent(slice * this.sliceBytes + got);
        signal.throwIfAborted();
      } catch (error) {
        await pending.catch(() => undefined);
        throw error;
      }
    }
    await output.sync();
    const hash = chunkHash.digest('hex');
    if (verify) {
      const back = await this.hashRange(output, offset, length, buffers[0], whole).catch((error: unknown) => Promise.reject(classify(error, 'destination', partial)));
      if (back !== hash) throw new TransferFailure('CHECKSUM_MISMATCH', `chunk ${index} (bytes ${offset}..${offset + length}) of ${partial} reads back with SHA-256 ${back}, not the source's ${hash}`);
    }
    return hash;
  }

  /** SHA-256 of a byte range of `handle`, feeding the same bytes into `whole`. */
  private async hashRange(handle: FileHandle, offset: number, length: number, buffer: Uint8Array, whole: Hash): Promise<string> {
    const hash = createHash('sha256');
    for (let at = 0; at < length; ) {
      const got = await readFully(handle, buffer, Math.min(buffer.length, length - at), offset + at);
      if (got === 0) break;
      const bytes = buffer.subarray(0, got);
      hash.update(bytes);
      whole.update(bytes);
      at += got;
    }
    return hash.digest('hex');
  }

  private async throttle(started: number, sent: number, signal: AbortSignal): Promise<void> {
    const rate = this.options.maxBytesPerSecond;
    if (!rate) return;
    const due = started + (sent / rate) * 1_000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait, signal);
  }
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

/** fsync of the directory makes the rename itself durable. */
async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

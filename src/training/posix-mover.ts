/**
 * The POSIX data mover: copies a file within this machine's filesystems (a dataset onto the HPC
 * system's scratch, mounted here) in chunks, each chunk's SHA-256 recorded in a manifest beside the
 * destination once its bytes are fsynced, so a copy killed with the bridge resumes sending at most
 * the one chunk it was in (./transfer-manifest.ts).
 *
 * Pipeline: the source is read in slices (up to 8 MiB) into a small pool of SharedArrayBuffers;
 * each slice is hashed by two worker threads at once, one running the chunk's SHA-256 and one the
 * whole file's (SHA-256 is sequential per stream, so two streams are what two cores can share),
 * while earlier slices are written and later ones read. When a chunk's bytes are written its commit
 * (its hash, an fsync, the manifest) runs while the next chunk is read and hashed ahead; the next
 * chunk's first write waits for that commit, so the partial file never holds more than one
 * unrecorded chunk and a resume resends at most one. SHA-256 at ~1.5 GB/s a core is the ceiling:
 * two streams over every byte on two cores cannot beat one core's hash rate, whatever `cp` does.
 *
 * Checksums: the chunk and whole-file SHA-256 are of the source's bytes as read. With
 * `verifyChecksum` (the default, like Globus's verify_checksum) every slice is read back from the
 * destination right after it is written and compared byte for byte with the source bytes that were
 * hashed, so the destination's bytes are the ones the hashes describe; a difference fails the
 * transfer CHECKSUM_MISMATCH at once, naming the chunk and byte. Said plainly: that read-back is
 * served from the page cache (Node has no O_DIRECT reads with aligned buffers, nor fadvise to drop
 * the pages), so it verifies what the kernel holds for the file and will write out, not the disk's
 * media. It catches a wrong offset or short write of ours, another writer in the partial file, and
 * anything that changes the bytes between our read and the destination's cache (the test seam
 * `beforeWrite` models that); it does not catch a disk or controller that corrupts on the way
 * down. It is kept on by default because a byte comparison costs a memcpy and a memcmp (~10 GB/s),
 * not a third SHA-256 pass. Off, nothing compares the destination with the source during the copy:
 * hashing the same buffer twice before writing it would only detect our own memory changing, so the
 * mover does not pretend to. Node cannot serialise a Hash, so a resumed copy rehashes the chunks it
 * keeps from the partial file (after a restart, from disk unless still cached), checking each
 * against the manifest: reading them back is cheaper than sending them again, and it catches a
 * partial file changed while no one watched.
 *
 * Failures are final and quick: a missing source, a permission error, a full disk or a checksum
 * difference resolves `failed` with the reason the moment it is seen (Globus would keep such a task
 * ACTIVE for up to a day). Errors a retry may cure (EAGAIN, EBUSY, EINTR, ETIMEDOUT, and EIO, which
 * network and parallel filesystems report across a server failover) retry the chunk with backoff,
 * up to a bound; a failed fsync or manifest write retries the chunk it was committing. ENOSPC and
 * EDQUOT are not transient: nothing frees the space while we wait.
 */
import { open, mkdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { DataMover, TransferFailureCode, TransferJournal, TransferOptions, TransferOutcome, TransferProgress, TransferSpec } from './ports.ts';
import { chunkCount, chunkRange, manifestPath, parseManifest, partialPath, planResume, serializeManifest, type SourceIdentity, type TransferManifest } from './transfer-manifest.ts';

export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;
/** The unit of one read or write: large enough to be near `cp`, small enough to read ahead while hashing. */
const MAX_SLICE_BYTES = 8 * 1024 * 1024;
/** Slices in flight (read ahead, being hashed, being written): 4 x 8 MiB shared buffers per transfer. */
const POOL_SLICES = 4;

const TRANSIENT = new Set(['EAGAIN', 'EBUSY', 'EINTR', 'ETIMEDOUT', 'EIO']);
const PERMISSION = new Set(['EACCES', 'EPERM', 'EROFS']);
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);

export interface SliceWrite {
  readonly chunk: number;
  /** Byte offset of `bytes` in the file. */
  readonly offset: number;
  /** A copy of the bytes about to be written (the source's were hashed): a test may change them (what lands changes) or throw. */
  readonly bytes: Uint8Array;
}

export interface PosixMoverOptions {
  /** Default 64 MiB. */
  readonly chunkBytes?: number;
  /** The unit of one read, hash update and write (default the chunk, at most 8 MiB). */
  readonly sliceBytes?: number;
  /** Read each slice back after writing it and compare it with the source's bytes (default true; from the page cache, see above). */
  readonly verifyChecksum?: boolean;
  /** Caps the copy rate (a shared filesystem, or a test that needs a transfer to last). */
  readonly maxBytesPerSecond?: number;
  readonly retry?: { readonly attempts: number; readonly baseMs: number; readonly capMs: number };
  /** How often `onProgress` is called while bytes move (default 500 ms; the port promises at least 1 Hz). */
  readonly progressIntervalMs?: number;
  /** Where `cancel` finds a transfer this process is not running (a restarted bridge cancelling). */
  readonly journal?: TransferJournal;
  /** Test seam: runs before each slice is written, on a copy of it (costs a memcpy per slice when set). */
  readonly beforeWrite?: (write: SliceWrite) => void | Promise<void>;
  /** Test seam: runs before chunk `chunk`'s fsync (the next chunk is reading ahead meanwhile); may throw. */
  readonly beforeCommit?: (chunk: number) => void | Promise<void>;
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

/**
 * The hashing worker (a script, so it loads the same from source, a build or a test runner): named
 * SHA-256 streams, updated from a SharedArrayBuffer the main thread read into (no copy), in the
 * order the messages were posted. `copy` snapshots a stream (the whole-file hash at a chunk's start,
 * so a retried chunk rolls it back); a message without an id gets no answer, and an error it meets
 * is answered to the next one that has an id.
 */
const HASHER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
let failed;
const stream = (key) => { let hash = hashes.get(key); if (!hash) hashes.set(key, (hash = createHash('sha256'))); return hash; };
parentPort.on('message', (m) => {
  let value;
  try {
    if (m.op === 'update') { const bytes = new Uint8Array(m.buffer, 0, m.length); for (const key of m.keys) stream(key).update(bytes); }
    else if (m.op === 'copy') hashes.set(m.to, stream(m.from).copy());
    else if (m.op === 'digest') { value = stream(m.key).digest('hex'); hashes.delete(m.key); }
    else if (m.op === 'drop') { for (const key of [...hashes.keys()]) if (key.startsWith(m.prefix)) hashes.delete(key); }
  } catch (error) { failed ??= String(error && error.message || error); }
  if (m.id === undefined) return;
  if (failed !== undefined) parentPort.postMessage({ id: m.id, error: failed });
  else parentPort.postMessage({ id: m.id, value });
});`;

type HasherMessage =
  | { readonly op: 'update'; readonly buffer: SharedArrayBuffer; readonly length: number; readonly keys: readonly string[] }
  | { readonly op: 'copy'; readonly from: string; readonly to: string }
  | { readonly op: 'digest'; readonly key: string }
  | { readonly op: 'drop'; readonly prefix: string };

/** One hashing worker thread: its streams run on a core of their own. */
class Hasher {
  private readonly worker = new Worker(HASHER_SOURCE, { eval: true });
  private readonly waiting = new Map<number, { resolve: (value: string) => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private broken: Error | undefined;

  constructor() {
    this.worker.on('message', (m: { id: number; value?: string; error?: string }) => {
      const waiter = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.error !== undefined) waiter?.reject(new Error(`hashing worker: ${m.error}`));
      else waiter?.resolve(m.value ?? '');
    });
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => this.fail(new Error(`the hashing worker exited (code ${code})`)));
  }

  /** Posted in order with the rest; no answer. */
  send(message: HasherMessage): void {
    if (this.broken === undefined) this.worker.postMessage(message);
  }

  /** Posted in order with the rest; resolves once the worker has done it (and all before it). */
  call(message: HasherMessage): Promise<string> {
    if (this.broken !== undefined) return Promise.reject(this.broken);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id });
    });
  }

  async close(): Promise<void> {
    this.fail(new Error('the hashing worker was closed'));
    await this.worker.terminate();
  }

  private fail(error: Error): void {
    this.broken ??= error;
    for (const waiter of this.waiting.values()) waiter.reject(this.broken);
    this.waiting.clear();
  }
}

/** The shared slice buffers a transfer reads into; `acquire` waits while all are in flight. */
class SlicePool {
  private readonly free: SharedArrayBuffer[] = [];
  private readonly waiters: ((buffer: SharedArrayBuffer) => void)[] = [];

  constructor(count: number, bytes: number) {
    for (let i = 0; i < count; i++) this.free.push(new SharedArrayBuffer(bytes));
  }

  acquire(): Promise<SharedArrayBuffer> {
    const buffer = this.free.pop();
    return buffer ? Promise.resolve(buffer) : new Promise((resolve) => this.waiters.push(resolve));
  }

  release(buffer: SharedArrayBuffer): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(buffer);
    else this.free.push(buffer);
  }
}

/** What one transfer attempt hashes with: the whole-file stream on one worker, the chunks' on the other. */
interface Hashing {
  readonly whole: Hasher;
  readonly chunks: Hasher;
  readonly pool: SlicePool;
  /** Where a slice is read back to (the write stage runs one slice at a time). */
  readonly back: Uint8Array;
  /** Where the `beforeWrite` seam gets its copy. */
  readonly scratch: Uint8Array | undefined;
}

/** The previous chunk's commit failed while this one read ahead: the caller redoes that chunk. */
class GateClosed extends Error {}

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
    this.sliceBytes = Math.min(this.chunkBytes, options.sliceBytes ?? MAX_SLICE_BYTES);
    if (!Number.isSafeInteger(this.sliceBytes) || this.sliceBytes <= 0) throw new Error(`sliceBytes must be a positive integer, not ${this.sliceBytes}`);
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
    let hashing: Hashing | undefined;
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
      const out = output;
      const sliceBytes = Math.max(1, Math.min(this.sliceBytes, source.size));
      hashing = {
        whole: new Hasher(),
        chunks: new Hasher(),
        pool: new SlicePool(POOL_SLICES, sliceBytes),
        back: new Uint8Array(sliceBytes),
        scratch: this.options.beforeWrite ? new Uint8Array(sliceBytes) : undefined,
      };
      const { whole } = hashing;
      // The whole-file stream is 'whole'; 'm<k>' is it as it was when chunk k began, 'c<k>' is chunk k's.
      const begin = (index: number): void => {
        whole.send({ op: 'copy', from: 'whole', to: `m${index}` });
        whole.send({ op: 'drop', prefix: `m${index - 2}` });
      };
      const rollBack = (index: number): void => {
        whole.send({ op: 'copy', from: `m${index}`, to: 'whole' });
        hashing!.chunks.send({ op: 'drop', prefix: 'c' });
      };

      // The chunks kept from an earlier attempt: rehashed from the partial file, each checked against
      // its recorded hash; from the first that differs, the rest are sent again.
      const recorded = chunks.length;
      for (let index = 0; index < recorded; index++) {
        const { offset, length } = chunkRange(index, source.size, this.chunkBytes);
        begin(index);
        await this.slices(hashing, index, offset, length, { handle: out, side: 'destination', path: partial }, undefined, signal);
        const hash = await hashing.chunks.call({ op: 'digest', key: `c${index}` });
        if (hash !== chunks[index]) {
          for (let k = index; k < recorded; k++) resent += chunkRange(k, source.size, this.chunkBytes).length;
          chunks = chunks.slice(0, index);
          rollBack(index);
          await out.truncate(offset).catch((error: unknown) => Promise.reject(classify(error, 'destination', partial)));
          break;
        }
      }
      const kept = chunks.length;
      progress.bytesTransferred = Math.min(kept * this.chunkBytes, source.size);

      const started = Date.now();
      let sentThisRun = 0;
      const total = chunkCount(source.size, this.chunkBytes);
      const retry = this.options.retry ?? { attempts: 5, baseMs: 100, capMs: 5_000 };
      const attempts = new Map<number, number>();
      // Chunk k's commit: its hash, an fsync, the manifest naming it. Runs while chunk k+1 reads ahead.
      const commitChunk = async (index: number): Promise<void> => {
        const hash = await hashing!.chunks.call({ op: 'digest', key: `c${index}` });
        try {
          await this.options.beforeCommit?.(index);
          await out.sync();
          await saveManifest(manifestFile, { version: 1, transferId: spec.transferId, source, chunkBytes: this.chunkBytes, chunks: [...chunks, hash] });
        } catch (error) {
          throw classify(error, 'destination', partial);
        }
        chunks.push(hash);
      };
      let commit: { readonly index: number; readonly promise: Promise<void> } | undefined;
      let index = kept;
      for (;;) {
        try {
          signal.throwIfAborted();
          if (index < total) {
            const { offset, length } = chunkRange(index, source.size, this.chunkBytes);
            begin(index);
            await this.slices(hashing, index, offset, length, { handle: input, side: 'source', path: sourcePath }, {
              output: out,
              partial,
              gate: commit?.promise,
              sent: (bytes) => {
                sentThisRun += bytes;
                progress.bytesTransferred += bytes;
                return this.throttle(started, sentThisRun, signal);
              },
            }, signal);
            const promise = commitChunk(index);
            promise.catch(() => undefined);
            commit = { index, promise };
            index++;
            continue;
          }
          if (commit) await commit.promise;
          break;
        } catch (error) {
          // Whichever failed, the chunk being committed first: nothing of the next one is written before it is.
          let failed = index;
          let cause = error;
          if (commit) {
            const settled = await commit.promise.then(() => undefined, (reason: unknown) => ({ reason }));
            if (settled) {
              failed = commit.index;
              cause = settled.reason;
            }
            commit = undefined;
          }
          if (cause instanceof GateClosed) cause = error;
          const failure = classify(cause, 'destination', partial);
          if (signal.aborted) throw failure;
          if (!(failure instanceof TransientError)) throw failure;
          const attempt = (attempts.get(failed) ?? 0) + 1;
          attempts.set(failed, attempt);
          if (attempt >= retry.attempts) throw new TransferFailure('REMOTE_FAULT', `${failure.message}: still failing after ${attempt} attempts at chunk ${failed}`);
          // What was written from this chunk on is written again.
          const { offset } = chunkRange(failed, source.size, this.chunkBytes);
          resent += Math.max(0, progress.bytesTransferred - offset);
          progress.bytesTransferred = offset;
          rollBack(failed);
          index = failed;
          await sleep(Math.min(retry.capMs, retry.baseMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2), signal);
        }
      }

      const after = await input.stat();
      if (after.size !== source.size || Math.trunc(after.mtimeMs) !== source.mtimeMs) {
        await output.close();
        output = undefined;
        await rm(manifestFile, { force: true });
        return { kind: 'source-changed', source };
      }
      const sha256 = await whole.call({ op: 'digest', key: 'whole' });
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
      if (hashing) await Promise.all([hashing.whole.close(), hashing.chunks.close()]);
    }
  }

  /**
   * One chunk through the pipeline: slices are read in order into the pool's buffers, each is posted
   * to both hashing workers as soon as it is read, and (copying) written in order once `gate` (the
   * previous chunk's commit) has resolved, each read back and compared while the next is written
   * (when verifying). Resolves when every slice is hashed, written and compared; on the first error, stops issuing, waits for what is in
   * flight (no buffer is still in use) and rejects with it. Chunk `index`'s hash is left in 'c<index>'.
   */
  private async slices(
    hashing: Hashing,
    index: number,
    offset: number,
    length: number,
    from: { readonly handle: FileHandle; readonly side: 'source' | 'destination'; readonly path: string },
    copy: { readonly output: FileHandle; readonly partial: string; readonly gate: Promise<void> | undefined; readonly sent: (bytes: number) => Promise<void> } | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const verify = this.options.verifyChecksum ?? true;
    const sliceBytes = hashing.back.length;
    let failure: { readonly error: unknown } | undefined;
    const fail = (error: unknown): void => void (failure ??= { error });
    let lastRead: Promise<boolean> = Promise.resolve(true);
    let lastWrite: Promise<unknown> = copy?.gate?.catch(() => fail(new GateClosed())) ?? Promise.resolve();
    let lastVerify: Promise<unknown> = Promise.resolve();
    const inFlight: Promise<void>[] = [];
    for (let at = 0; at < length && failure === undefined; at += sliceBytes) {
      const buffer = await hashing.pool.acquire();
      if (failure !== undefined) {
        hashing.pool.release(buffer);
        break;
      }
      const size = Math.min(sliceBytes, length - at);
      const position = offset + at;
      const bytes = new Uint8Array(buffer, 0, size);
      const read = lastRead.then(async (ok) => {
        if (!ok || failure !== undefined) return false;
        try {
          signal.throwIfAborted();
          const got = await readFully(from.handle, bytes, size, position);
          if (got < size) {
            throw new TransferFailure(
              'REMOTE_FAULT',
              from.side === 'source'
                ? `the source ${from.path} ended at byte ${position + got} while being copied: it is being changed`
                : `the partial file ${from.path} ended at byte ${position + got} while its chunks were rehashed`,
            );
          }
          return true;
        } catch (error) {
          fail(classify(error, from.side, from.path));
          return false;
        }
      });
      const hashed = read.then(async (ok) => {
        if (!ok) return;
        try {
          await Promise.all([
            hashing.whole.call({ op: 'update', buffer, length: size, keys: ['whole'] }),
            hashing.chunks.call({ op: 'update', buffer, length: size, keys: [`c${index}`] }),
          ]);
        } catch (error) {
          fail(error);
        }
      });
      const written = copy === undefined ? Promise.resolve(false) : Promise.all([lastWrite, read]).then(async ([, ok]) => {
        if (!ok || failure !== undefined) return false;
        try {
          signal.throwIfAborted();
          let out: Uint8Array = bytes;
          if (this.options.beforeWrite && hashing.scratch) {
            out = hashing.scratch.subarray(0, size);
            out.set(bytes);
            await this.options.beforeWrite({ chunk: index, offset: position, bytes: out });
          }
          await writeFully(copy.output, out, position);
          await copy.sent(size);
          return true;
        } catch (error) {
          fail(classify(error, 'destination', copy.partial));
          return false;
        }
      });
      // The read-back of this slice runs while the next one is written.
      const verified = copy === undefined || !verify ? written : Promise.all([lastVerify, written]).then(async ([, ok]) => {
        if (!ok || failure !== undefined) return false;
        try {
          const back = hashing.back.subarray(0, size);
          const got = await readFully(copy.output, back, size, position);
          if (got !== size || Buffer.compare(back, bytes) !== 0) {
            let differs = 0;
            while (differs < got && back[differs] === bytes[differs]) differs++;
            throw new TransferFailure(
              'CHECKSUM_MISMATCH',
              `chunk ${index} (bytes ${offset}..${offset + length}) of ${copy.partial} reads back different from the source at byte ${position + differs}${got !== size ? ` (${got} of ${size} bytes there)` : ''}: its SHA-256 would not be the source's`,
            );
          }
          return true;
        } catch (error) {
          fail(classify(error, 'destination', copy.partial));
          return false;
        }
      });
      lastRead = read;
      lastWrite = written;
      lastVerify = verified;
      inFlight.push(Promise.all([hashed, written, verified]).then(() => hashing.pool.release(buffer)));
    }
    await Promise.all(inFlight);
    await lastWrite;
    if (failure !== undefined) throw failure.error;
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

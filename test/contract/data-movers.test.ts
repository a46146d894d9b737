/**
 * The DataMover contract run against the POSIX mover (temp directories on this disk) and the Globus
 * mover (against the local Transfer API server moving bytes between two temp directories mapped as
 * two endpoints), plus what only one of them has.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { dataMoverContract, type MoverHarness, type Place } from './data-mover.contract.ts';
import { FileJournal } from '../support/file-journal.ts';
import { GlobusTransferServer } from '../support/globus-transfer-server.ts';
import { PosixDataMover, type SliceWrite } from '../../src/training/posix-mover.ts';
import { GlobusDataMover, type GlobusMoverOptions } from '../../src/training/globus-mover.ts';
import { manifestPath, parseManifest, partialPath } from '../../src/training/transfer-manifest.ts';
import type { TransferSpec } from '../../src/training/ports.ts';

const CHILD = join(import.meta.dirname, '../support/mover-child.ts');
const isRoot = process.getuid?.() === 0;
/** The nobody user: as root, modes stop nobody's reads only, so an unreadable source is tested under that effective uid. */
const NOBODY = 65534;

/**
 * Runs `run` with the effective uid of nobody when this process is root (its real uid stays 0, so it
 * can switch back), so the file modes the test sets are what the kernel enforces; a plain user's
 * process runs it as it is. This test file's process is its own (vitest's forks pool).
 */
/**
 * As root, lets nobody (see `unprivileged`) reach the scratch tree and write where the mover keeps its
 * journal and its output, so the one thing refused under that uid is the unreadable source itself.
 */
async function openToNobody(root: string, writable: readonly string[]): Promise<void> {
  if (!isRoot) return;
  await chmod(root, 0o755);
  for (const dir of writable) await chmod(dir, 0o777);
}

async function unprivileged<T>(run: () => Promise<T>): Promise<T> {
  if (!isRoot || process.seteuid === undefined) return run();
  process.seteuid(NOBODY);
  try {
    return await run();
  } finally {
    process.seteuid(0);
  }
}
const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Makes `dir` unwritable even for root (chattr +i) or, for anyone else, by its mode. */
async function denyWrites(dir: string): Promise<(() => Promise<void>) | string> {
  if (!isRoot) {
    await chmod(dir, 0o555);
    return () => chmod(dir, 0o755);
  }
  try {
    execFileSync('chattr', ['+i', dir], { stdio: 'pipe' });
  } catch (error) {
    return `running as root, where modes do not stop writes, and chattr +i failed here: ${(error as Error).message}`;
  }
  return async () => void execFileSync('chattr', ['-i', dir], { stdio: 'pipe' });
}

/** Spawns the mover child with `config`, SIGKILLs it once its progress reaches `fraction`, resolves when it is gone. */
export async function killMidway(config: Record<string, unknown>, fraction: number): Promise<void> {
  const child = spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let killed = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    for (const line of chunk.toString().split('\n')) {
      if (!line.startsWith('progress ')) continue;
      const progress = (JSON.parse(line.slice('progress '.length)) as { progress: number }).progress;
      if (progress >= fraction && !killed) {
        killed = true;
        child.kill('SIGKILL');
      }
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
  if (!killed) throw new Error(`the mover child ended before it was killed:\n${output}`);
}

/** `sliceBytes` below the chunk size runs each chunk as several slices through the mover's pipeline. */
async function posixHarness(sliceBytes?: number): Promise<MoverHarness & { root: string }> {
  const root = await mkdtemp(join(tmpdir(), 'arcnet-posix-mover-'));
  const journalDir = join(root, 'journal');
  await mkdir(join(root, 'src'), { recursive: true });
  await mkdir(journalDir);
  await mkdir(join(root, 'dst'));
  await openToNobody(root, [journalDir, join(root, 'dst')]);
  const journal = new FileJournal(journalDir);
  const chunkBytes = 256 * 1024;
  let corrupt = false;
  let transient = false;
  const restores: (() => Promise<void>)[] = [];
  const beforeWrite = (write: SliceWrite): void => {
    if (write.chunk !== 1) return;
    if (corrupt) {
      corrupt = false;
      write.bytes[7] = write.bytes[7]! ^ 0xff;
    }
    if (transient) {
      transient = false;
      throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
    }
  };
  const place = (path: string): Place => ({ uri: pathToFileURL(path).href, path });
  return {
    root,
    chunkBytes,
    mover: (options = {}) => new PosixDataMover({ chunkBytes, sliceBytes, journal, beforeWrite, maxBytesPerSecond: options.bytesPerSecond, progressIntervalMs: 200, retry: { attempts: 4, baseMs: 20, capMs: 200 } }),
    source: async (name, bytes) => {
      const path = join(root, 'src', name);
      await writeFile(path, bytes);
      return place(path);
    },
    missingSource: (name) => place(join(root, 'src', name)),
    destination: (name) => place(join(root, 'dst', name)),
    deniedDestination: async (name) => {
      const dir = join(root, 'locked');
      await mkdir(dir, { recursive: true });
      const restore = await denyWrites(dir);
      if (typeof restore === 'string') return restore;
      restores.push(restore);
      return { place: place(join(dir, name)), restore: async () => { await restore(); restores.splice(restores.indexOf(restore), 1); } };
    },
    unreadableSource: async (name, bytes) => {
      const path = join(root, 'src', name);
      await writeFile(path, bytes);
      await chmod(path, 0o000);
      return { place: place(path), restore: () => chmod(path, 0o644), during: unprivileged };
    },
    corruptNext: () => void (corrupt = true),
    transientFaultNext: () => void (transient = true),
    runAndKill: (spec, fraction, bytesPerSecond) =>
      killMidway({ mover: 'posix', options: { chunkBytes, sliceBytes, maxBytesPerSecond: bytesPerSecond, progressIntervalMs: 50 }, journalDir, spec }, fraction),
    close: async () => {
      for (const restore of [...restores]) await restore();
      await rm(root, { recursive: true, force: true });
    },
  };
}

dataMoverContract('posix', () => posixHarness());
dataMoverContract('posix (64 KiB slices of 256 KiB chunks)', () => posixHarness(64 * 1024));

describe('POSIX mover', () => {
  let harness: Awaited<ReturnType<typeof posixHarness>> | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('computes the SHA-256 itself when the spec gives none, and leaves no partial file or manifest', async () => {
    harness = await posixHarness();
    const bytes = randomBytes(harness.chunkBytes * 3 + 17);
    const source = await harness.source('a.bin', bytes);
    const destination = harness.destination('a.bin');
    const outcome = await harness.mover().transfer({ transferId: 'a', source: source.uri, destination: destination.uri });
    expect(outcome).toEqual({ status: 'completed', bytesTransferred: bytes.length, sha256: sha(bytes), bytesResent: 0 });
    await expect(readFile(partialPath(destination.path))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(readFile(manifestPath(destination.path))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('moves an empty file', async () => {
    harness = await posixHarness();
    const source = await harness.source('empty.bin', new Uint8Array());
    const destination = harness.destination('empty.bin');
    const outcome = await harness.mover().transfer({ transferId: 'e', source: source.uri, destination: destination.uri });
    expect(outcome).toEqual({ status: 'completed', bytesTransferred: 0, sha256: sha(new Uint8Array()), bytesResent: 0 });
    expect((await readFile(destination.path)).length).toBe(0);
  });

  it('resends what a torn chunk left and rehashes the kept ones; restarts from zero when the source changed', async () => {
    harness = await posixHarness();
    const { chunkBytes } = harness;
    const bytes = randomBytes(chunkBytes * 4);
    const source = await harness.source('r.bin', bytes);
    const destination = harness.destination('r.bin');
    const spec: TransferSpec = { transferId: 'r', source: source.uri, destination: destination.uri };
    await harness.runAndKill(spec, 0.6, chunkBytes * 3);
    const manifest = parseManifest(await readFile(manifestPath(destination.path), 'utf8'))!;
    expect(manifest.chunks.length).toBeGreaterThan(0);
    // A byte changed in a kept chunk is caught on resume and that chunk is sent again.
    const partial = await readFile(partialPath(destination.path));
    partial[3] = partial[3]! ^ 0x01;
    await writeFile(partialPath(destination.path), partial);
    const resumed = await harness.mover().transfer(spec);
    expect(resumed).toMatchObject({ status: 'completed', sha256: sha(bytes) });
    expect(Buffer.compare(await readFile(destination.path), bytes)).toBe(0);

    // A source changed since the manifest: nothing of the old copy is kept.
    await rm(destination.path);
    await harness.runAndKill({ ...spec, transferId: 'r2' }, 0.5, chunkBytes * 3);
    const changed = randomBytes(chunkBytes * 4);
    await writeFile(source.path, changed);
    const again = await harness.mover().transfer({ ...spec, transferId: 'r2' });
    expect(again).toMatchObject({ status: 'completed', sha256: sha(changed), bytesResent: 0 });
    expect(Buffer.compare(await readFile(destination.path), changed)).toBe(0);
  });

  it('retries a chunk that fails mid-way (slices before written, after hashed ahead): the whole-file hash rolls back', async () => {
    harness = await posixHarness();
    const { chunkBytes } = harness;
    const slice = chunkBytes / 4;
    const bytes = randomBytes(chunkBytes * 4 + 1_000);
    const source = await harness.source('w.bin', bytes);
    const destination = harness.destination('w.bin');
    let thrown = false;
    const mover = new PosixDataMover({
      chunkBytes,
      sliceBytes: slice,
      retry: { attempts: 3, baseMs: 5, capMs: 10 },
      beforeWrite: (write) => {
        if (write.chunk === 2 && write.offset === chunkBytes * 2 + slice * 2 && !thrown) {
          thrown = true;
          throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
        }
      },
    });
    const outcome = await mover.transfer({ transferId: 'w', source: source.uri, destination: destination.uri });
    expect(thrown).toBe(true);
    expect(outcome).toEqual({ status: 'completed', bytesTransferred: bytes.length, sha256: sha(bytes), bytesResent: slice * 2 });
    expect(Buffer.compare(await readFile(destination.path), bytes)).toBe(0);
  });

  it('redoes a chunk whose fsync fails while the next one reads ahead, and nothing of the next is written before it commits', async () => {
    harness = await posixHarness();
    const { chunkBytes } = harness;
    const bytes = randomBytes(chunkBytes * 4);
    const source = await harness.source('g.bin', bytes);
    const destination = harness.destination('g.bin');
    let failed = false;
    const writes: number[] = [];
    const mover = new PosixDataMover({
      chunkBytes,
      sliceBytes: chunkBytes / 4,
      retry: { attempts: 3, baseMs: 5, capMs: 10 },
      beforeWrite: (write) => void writes.push(write.chunk),
      beforeCommit: async (chunk) => {
        if (chunk !== 1 || failed) return;
        failed = true;
        // Long enough for chunk 2 to read and hash ahead; it must not write.
        await new Promise((resolve) => setTimeout(resolve, 50));
        throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
      },
    });
    const outcome = await mover.transfer({ transferId: 'g', source: source.uri, destination: destination.uri });
    expect(outcome).toEqual({ status: 'completed', bytesTransferred: bytes.length, sha256: sha(bytes), bytesResent: chunkBytes });
    expect(Buffer.compare(await readFile(destination.path), bytes)).toBe(0);
    expect(writes).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
  });

  it('without read-back (verifyChecksum false), bytes changed on the way land unnoticed: the hashes are the source\'s', async () => {
    harness = await posixHarness();
    const bytes = randomBytes(harness.chunkBytes * 3);
    const source = await harness.source('u.bin', bytes);
    const destination = harness.destination('u.bin');
    const mover = new PosixDataMover({ chunkBytes: harness.chunkBytes, verifyChecksum: false, beforeWrite: (write) => void (write.chunk === 1 && (write.bytes[0] = write.bytes[0]! ^ 0xff)) });
    const outcome = await mover.transfer({ transferId: 'u', source: source.uri, destination: destination.uri });
    expect(outcome).toMatchObject({ status: 'completed', sha256: sha(bytes) });
    const landed = await readFile(destination.path);
    expect(landed[harness.chunkBytes]).toBe(bytes[harness.chunkBytes]! ^ 0xff);
  });

  it('gives up on a transient error that does not clear, with the reason', async () => {
    harness = await posixHarness();
    const bytes = randomBytes(harness.chunkBytes * 2);
    const source = await harness.source('f.bin', bytes);
    const mover = new PosixDataMover({
      chunkBytes: harness.chunkBytes,
      retry: { attempts: 3, baseMs: 5, capMs: 10 },
      beforeWrite: () => { throw Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' }); },
    });
    const outcome = await mover.transfer({ transferId: 'f', source: source.uri, destination: harness.destination('f.bin').uri });
    expect(outcome).toMatchObject({ status: 'failed', code: 'REMOTE_FAULT' });
    expect(outcome.status === 'failed' && outcome.reason).toMatch(/EBUSY.*after 3 attempts at chunk 0/);
  });

  it('fails at once on a full disk (ENOSPC is not transient)', async () => {
    harness = await posixHarness();
    const source = await harness.source('n.bin', randomBytes(harness.chunkBytes * 2));
    let calls = 0;
    const mover = new PosixDataMover({
      chunkBytes: harness.chunkBytes,
      beforeWrite: () => { calls++; throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }); },
    });
    const outcome = await mover.transfer({ transferId: 'n', source: source.uri, destination: harness.destination('n.bin').uri });
    expect(outcome).toMatchObject({ status: 'failed', code: 'REMOTE_FAULT' });
    expect(outcome.status === 'failed' && outcome.reason).toContain('ENOSPC');
    expect(calls).toBe(1);
  });

  it('cancels through the journal a transfer this process is not running', async () => {
    harness = await posixHarness();
    const { chunkBytes } = harness;
    const bytes = randomBytes(chunkBytes * 4);
    const source = await harness.source('c.bin', bytes);
    const destination = harness.destination('c.bin');
    const spec: TransferSpec = { transferId: 'c', source: source.uri, destination: destination.uri };
    await harness.runAndKill(spec, 0.3, chunkBytes * 3);
    await harness.mover().cancel('c');
    await expect(readFile(partialPath(destination.path))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await harness.mover().transfer(spec)).toMatchObject({ status: 'failed', code: 'CANCELLED' });
  });

  it('refuses a source that is not a file:// URI or absolute path, or not a regular file', async () => {
    harness = await posixHarness();
    const mover = harness.mover();
    expect(await mover.transfer({ transferId: 'x', source: 'globus://ep/a', destination: harness.destination('x').uri })).toMatchObject({ status: 'failed', code: 'INVALID_REQUEST' });
    expect(await mover.transfer({ transferId: 'y', source: pathToFileURL(dirname(harness.destination('y').path)).href.replace(/dst$/, 'src'), destination: harness.destination('y').uri }))
      .toMatchObject({ status: 'failed', code: 'INVALID_REQUEST' });
  });

  it('notices a source that shrinks while it is copied', async () => {
    harness = await posixHarness();
    const bytes = randomBytes(harness.chunkBytes * 4);
    const source = await harness.source('s.bin', bytes);
    let shrunk = false;
    const mover = new PosixDataMover({
      chunkBytes: harness.chunkBytes,
      beforeWrite: async (write) => { if (write.chunk === 1 && !shrunk) { shrunk = true; await truncate(source.path, harness!.chunkBytes * 2 + 5); } },
    });
    const outcome = await mover.transfer({ transferId: 's', source: source.uri, destination: harness.destination('s.bin').uri });
    // Either the short read is seen (a failure naming it) or the changed size restarts the copy.
    if (outcome.status === 'completed') expect(outcome.bytesTransferred).toBe(harness.chunkBytes * 2 + 5);
    else expect(outcome.reason).toMatch(/changed|ended at byte/);
  });

  it('names the transfer id in what it keeps beside the destination', async () => {
    harness = await posixHarness();
    const source = await harness.source('m.bin', randomBytes(harness.chunkBytes * 4));
    const destination = harness.destination('m.bin');
    const id = randomUUID();
    await harness.runAndKill({ transferId: id, source: source.uri, destination: destination.uri }, 0.4, harness.chunkBytes * 3);
    expect(parseManifest(await readFile(manifestPath(destination.path), 'utf8'))).toMatchObject({ transferId: id, chunkBytes: harness.chunkBytes });
  });
});

const SOURCE_ENDPOINT = 'arcnet-datasets';
const HPC_ENDPOINT = 'ornl-frontier';
const TOKEN = 'test-transfer-token';

async function globusHarness(): Promise<MoverHarness & { server: GlobusTransferServer; journal: FileJournal; root: string; options: (extra?: Partial<GlobusMoverOptions>) => GlobusMoverOptions }> {
  const root = await mkdtemp(join(tmpdir(), 'arcnet-globus-mover-'));
  const journalDir = join(root, 'journal');
  for (const dir of ['src', 'dst', 'journal']) await mkdir(join(root, dir));
  await openToNobody(root, [journalDir, join(root, 'dst')]);
  const journal = new FileJournal(journalDir);
  const chunkBytes = 256 * 1024;
  const server = await GlobusTransferServer.start({ endpoints: { [SOURCE_ENDPOINT]: join(root, 'src'), [HPC_ENDPOINT]: join(root, 'dst') }, token: TOKEN, chunkBytes, retryAfterMs: 300 });
  const restores: (() => Promise<void>)[] = [];
  const options = (extra: Partial<GlobusMoverOptions> = {}): GlobusMoverOptions =>
    ({ baseUrl: server.url, token: TOKEN, journal, defaultEndpoint: HPC_ENDPOINT, pollIntervalMs: 100, transferTimeoutMs: 60_000, ...extra });
  const inSource = (name: string): Place => ({ uri: `globus://${SOURCE_ENDPOINT}/${name}`, path: join(root, 'src', name) });
  return {
    server, journal, root, options, chunkBytes,
    mover: (rate = {}) => {
      server.setRate(rate.bytesPerSecond);
      return new GlobusDataMover(options());
    },
    source: async (name, bytes) => {
      await writeFile(join(root, 'src', name), bytes);
      return inSource(name);
    },
    missingSource: inSource,
    destination: (name) => ({ uri: `globus://${HPC_ENDPOINT}/${name}`, path: join(root, 'dst', name) }),
    deniedDestination: async (name) => {
      const dir = join(root, 'dst', 'locked');
      await mkdir(dir, { recursive: true });
      const restore = await denyWrites(dir);
      if (typeof restore === 'string') return restore;
      restores.push(restore);
      return { place: { uri: `globus://${HPC_ENDPOINT}/locked/${name}`, path: join(dir, name) }, restore: async () => { await restore(); restores.splice(restores.indexOf(restore), 1); } };
    },
    unreadableSource: async (name, bytes) => {
      await writeFile(join(root, 'src', name), bytes);
      await chmod(join(root, 'src', name), 0o000);
      return { place: inSource(name), restore: () => chmod(join(root, 'src', name), 0o644), during: unprivileged };
    },
    corruptNext: () => server.injectNext({ kind: 'corrupt' }),
    transientFaultNext: () => server.injectNext({ kind: 'transient', afterFraction: 0.5, forMs: 1_500 }),
    runAndKill: async (spec, fraction, bytesPerSecond) => {
      server.setRate(bytesPerSecond);
      const { journal: _journal, ...childOptions } = options({ pollIntervalMs: 50 });
      await killMidway({ mover: 'globus', options: childOptions, journalDir, spec }, fraction);
    },
    tasksSubmitted: () => server.tasks.size,
    close: async () => {
      for (const restore of [...restores]) await restore();
      await server.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

dataMoverContract('globus (local Transfer API server)', globusHarness);

describe('Globus mover', () => {
  let harness: Awaited<ReturnType<typeof globusHarness>> | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('resubmits a journaled submission id after a kill before the task id was saved: Globus answers Duplicate, one task', async () => {
    harness = await globusHarness();
    const bytes = randomBytes(harness.chunkBytes * 3);
    const source = await harness.source('d.bin', bytes);
    const destination = harness.destination('d.bin');
    // What a bridge killed right after its POST /transfer left: the submission id journaled, the task made, its id not saved.
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const { value } = (await (await fetch(`${harness.server.url}/submission_id`, { headers })).json()) as { value: string };
    await harness.journal.save('d', { submissionId: value, startedAt: Date.now() });
    const first = await fetch(`${harness.server.url}/transfer`, {
      method: 'POST', headers,
      body: JSON.stringify({ DATA_TYPE: 'transfer', submission_id: value, source_endpoint: SOURCE_ENDPOINT, destination_endpoint: HPC_ENDPOINT, verify_checksum: true, DATA: [{ DATA_TYPE: 'transfer_item', source_path: '/d.bin', destination_path: '/d.bin' }] }),
    });
    expect(first.status).toBe(202);
    const outcome = await harness.mover().transfer({ transferId: 'd', source: source.uri, destination: destination.uri, sha256: sha(bytes) });
    expect(outcome).toMatchObject({ status: 'completed', sha256: sha(bytes) });
    expect(harness.server.tasks.size).toBe(1);
    expect(harness.server.requests.filter((r) => r === 'POST /v0.10/transfer')).toHaveLength(2);
    expect(await harness.journal.load('d')).toMatchObject({ submissionId: value, taskId: [...harness.server.tasks.keys()][0] });
  });

  it('fails SOURCE_MISSING within seconds when the source vanishes mid-task (Globus would retry FILE_NOT_FOUND until its deadline)', async () => {
    harness = await globusHarness();
    const source = await harness.source('v.bin', randomBytes(harness.chunkBytes * 4));
    const mover = harness.mover({ bytesPerSecond: harness.chunkBytes });
    let moving = false;
    const running = mover.transfer({ transferId: 'v', source: source.uri, destination: harness.destination('v.bin').uri }, { onProgress: (p) => void (moving ||= p.bytesTransferred > 0) });
    while (!moving) await new Promise((resolve) => setTimeout(resolve, 20));
    await rm(source.path);
    const removed = Date.now();
    const outcome = await running;
    expect(outcome).toMatchObject({ status: 'failed', code: 'SOURCE_MISSING', reason: expect.stringContaining('FILE_NOT_FOUND') });
    expect(outcome.status === 'failed' && outcome.reason).toContain('v.bin');
    expect(Date.now() - removed).toBeLessThan(3_000);
    expect([...harness.server.tasks.values()][0]).toMatchObject({ status: 'FAILED', fatalError: { code: 'CANCELED' } });
  });

  it('fails TIMEOUT past transfer-timeout-ms and cancels the task', async () => {
    harness = await globusHarness();
    const source = await harness.source('slow.bin', randomBytes(harness.chunkBytes * 4));
    harness.server.setRate(64 * 1024);
    const mover = new GlobusDataMover(harness.options({ transferTimeoutMs: 600 }));
    const started = Date.now();
    const outcome = await mover.transfer({ transferId: 'slow', source: source.uri, destination: harness.destination('slow.bin').uri });
    expect(outcome).toMatchObject({ status: 'failed', code: 'TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(3_000);
    const [task] = [...harness.server.tasks.values()];
    expect(task).toMatchObject({ status: 'FAILED', fatalError: { code: 'CANCELED' } });
  });

  it('lands a bare destination path on the configured endpoint (--globus-endpoint), without a sha256 when given none', async () => {
    harness = await globusHarness();
    const bytes = randomBytes(1_000);
    const source = await harness.source('b.bin', bytes);
    const outcome = await harness.mover().transfer({ transferId: 'b', source: source.uri, destination: '/scratch/b.bin' });
    expect(outcome).toEqual({ status: 'completed', bytesTransferred: 1_000, sha256: '', bytesResent: 0 });
    expect(Buffer.compare(await readFile(join(harness.root, 'dst', 'scratch', 'b.bin')), bytes)).toBe(0);
  });

  it('fails PERMISSION on a token Globus refuses, and INVALID_REQUEST on an unknown endpoint', async () => {
    harness = await globusHarness();
    const source = await harness.source('k.bin', randomBytes(100));
    const refused = new GlobusDataMover(harness.options({ token: 'wrong' }));
    expect(await refused.transfer({ transferId: 'k', source: source.uri, destination: '/k.bin' })).toMatchObject({ status: 'failed', code: 'PERMISSION', reason: expect.stringContaining('401') });
    expect(await harness.mover().transfer({ transferId: 'k2', source: source.uri, destination: 'globus://nowhere/k.bin' })).toMatchObject({ status: 'failed', code: 'INVALID_REQUEST' });
  });
});

describe('POSIX mover leaves no destination file', () => {
  it('when the bytes arrive changed, or the transfer is cancelled', async () => {
    const harness = await posixHarness();
    try {
      const source = await harness.source('x.bin', randomBytes(harness.chunkBytes * 4));
      const destination = harness.destination('x.bin');
      harness.corruptNext();
      expect(await harness.mover().transfer({ transferId: 'x', source: source.uri, destination: destination.uri })).toMatchObject({ code: 'CHECKSUM_MISMATCH' });
      await expect(stat(destination.path)).rejects.toMatchObject({ code: 'ENOENT' });
      const mover = harness.mover({ bytesPerSecond: harness.chunkBytes * 2 });
      const running = mover.transfer({ transferId: 'y', source: source.uri, destination: destination.uri });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await mover.cancel('y');
      expect(await running).toMatchObject({ code: 'CANCELLED' });
      await expect(stat(destination.path)).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(stat(partialPath(destination.path))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await harness.close();
    }
  });
});

/**
 * The training bridge as a user runs it: `arcnet up` as a process with the Slurm cluster of
 * scripts/slurm.sh, real dataset files spanning many chunks (64 KiB here, copied at 1 MiB/s so a
 * transfer lasts long enough to watch and to kill), the `arcnet train` commands as processes, and
 * the console feed over its WebSocket. The bridge is SIGKILLed mid-transfer (the restart resumes,
 * re-sending at most one chunk) and between `sbatch` and storing the Slurm id (a wrapper `sbatch`
 * first on PATH holds its answer back; afterwards exactly one Slurm job carries the job's name).
 * A second suite wires the Globus mover (`--globus-endpoint`, `--globus-api` at the local Transfer
 * API server): a `globus://` dataset lands in the staging directory mapped as the HPC endpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { FeedHpc } from '../../src/contracts/console.ts';
import type { TrainingRecord } from '../../src/training/model.ts';
import { DEFAULT_SCRIPT } from '../../src/training/bridge.ts';
import { needEngines } from '../support/engines.ts';
import { GlobusTransferServer } from '../support/globus-transfer-server.ts';
import { FeedClient } from '../support/feed.ts';
import { CLI, freePort } from '../support/processes.ts';
import { SLURM_CONF } from '../support/slurm.ts';
import { until } from '../support/until.ts';

const slurm = needEngines('slurm');
const CHUNK = 64 * 1024;
const RATE = 1024 * 1024;

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe.skipIf(!slurm.available)(slurm.title('training bridge end to end: arcnet up, real Slurm, real files, SIGKILLs'), () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-bridge-e2e-'));
  const dataDir = join(dir, 'data');
  const datasets = join(dir, 'datasets');
  const staging = join(dir, 'staging');
  const wrapperBin = join(dir, 'bin');
  const ENV: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', SLURM_CONF };
  let port = 0;
  let url = '';
  let up: ChildProcess | undefined;
  let upOutput = '';
  const submitted: string[] = [];
  const strays: number[] = [];
  let timeLimited = '';

  function startUp(env: NodeJS.ProcessEnv = ENV): Promise<void> {
    upOutput = '';
    const args = ['up', '--port', String(port), '--data-dir', dataDir, '--nodes', '0', '--rate', '0', '--no-status', '--hpc-scheduler', 'slurm', '--staging-dir', staging, '--chunk-size', String(CHUNK), '--transfer-max-rate', String(RATE), '--hpc-poll-interval', '200', '--bridge-lease-ttl', '1000', '--log-level', 'info'];
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (chunk: Buffer) => (upOutput += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (upOutput += chunk.toString()));
    up = child;
    return until(() => /API and console feed: (http:\/\/127\.0\.0\.1:\d+)/.exec(upOutput)?.[1], 'arcnet up to print its URL', 30_000, { intervalMs: 50 }).then((found) => {
      url = found;
      ENV['ARCNET_API_KEY'] = readFileSync(join(dataDir, 'operator.key'), 'utf8').trim();
    });
  }

  async function stopUp(signal: NodeJS.Signals): Promise<void> {
    const child = up;
    up = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }

  const cli = (args: string[], timeoutMs = 30_000): Promise<Run> =>
    new Promise((resolve, reject) => {
      execFile(process.execPath, [CLI, ...args], { env: ENV, timeout: timeoutMs }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      });
    });

  const job = async (id: string): Promise<TrainingRecord> => {
    const response = await fetch(`${url}/api/v1/training/${id}`, { headers: { authorization: `Bearer ${ENV['ARCNET_API_KEY']}` } });
    if (response.status !== 200) throw new Error(`GET training ${id}: ${response.status}`);
    return (await response.json()) as TrainingRecord;
  };
  const waitFor = (id: string, status: string, timeoutMs: number): Promise<TrainingRecord> =>
    until(async () => {
      const record = await job(id);
      if (record.status !== status && ['completed', 'failed', 'cancelled'].includes(record.status)) throw new Error(`job ${id} ended ${record.status} (${record.hpc?.reason}), not ${status}`);
      return record.status === status ? record : undefined;
    }, `training job ${id} ${status}`, timeoutMs, { intervalMs: 100, retryOnError: true });

  async function submit(args: string[]): Promise<string> {
    const run = await cli(['train', 'submit', '--server', url, ...args]);
    expect(run.code, run.stderr).toBe(0);
    const id = /training job ([0-9a-f-]{36})/.exec(run.stdout)?.[1];
    expect(id, run.stdout).toBeDefined();
    submitted.push(id!);
    return id!;
  }

  function dataset(name: string, bytes: number): { path: string; sha256: string } {
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) data[i] = (i * 131 + (i >> 10)) & 0xff;
    const path = join(datasets, name);
    writeFileSync(path, data);
    return { path, sha256: createHash('sha256').update(data).digest('hex') };
  }

  /** Every Slurm job (running or ended) named for this training job. */
  const slurmJobsNamed = (id: string): string[] =>
    execFileSync('squeue', ['--states=all', '--noheader', `--name=arcnet-${id}`, '--format=%i'], { env: ENV, encoding: 'utf8' }).split('\n').map((s) => s.trim()).filter(Boolean);

  beforeAll(async () => {
    mkdirSync(datasets, { recursive: true });
    port = await freePort();
    await startUp();
  }, 60_000);

  afterAll(async () => {
    await stopUp('SIGTERM');
    for (const pid of strays) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // Only this suite's jobs: by the names it gave them.
    for (const id of submitted) execFile('scancel', [`--name=arcnet-${id}`], { env: ENV }, () => undefined);
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('starts a job that will exceed its one-minute Slurm time limit (checked last)', async () => {
    const set = dataset('slow.bin', 4096);
    const script = join(dir, 'sleep.sh');
    writeFileSync(script, '#!/bin/sh\necho sleeping past the limit\nsleep 300\n');
    timeLimited = await submit(['--dataset', set.path, '--size-gb', '1', '--flops', '1', '--target', 'hpc', '--script', script, '--time-limit', '1']);
  });

  it('moves a dataset of many chunks through every state; the Slurm job reads it and writes the checkpoint; the feed shows progress rising to 1', async () => {
    const set = dataset('set.bin', 2 * 1024 * 1024 + 5);
    const feed = await FeedClient.connect(url, ENV['ARCNET_API_KEY']!);
    try {
      // The default script a second slower: a job quicker than one poll interval would go from queued to completed unseen running.
      const script = join(dir, 'default-slower.sh');
      writeFileSync(script, DEFAULT_SCRIPT.replace('set -eu\n', 'set -eu\nsleep 1\n'));
      const id = await submit(['--dataset', set.path, '--size-gb', '250', '--flops', '1e15', '--geozone', 'CAISO', '--script', script, '--sha256', set.sha256.toUpperCase()]);
      const watch = cli(['train', 'get', id, '--watch', '--server', url, '--interval', '200'], 90_000);
      const done = await waitFor(id, 'completed', 60_000);
      expect(done).toMatchObject({ target: 'hpc', routingReason: 'dataset 250 GB is over the 100 GB HPC threshold' });
      expect(done.hpc).toMatchObject({ sha256: set.sha256, bytesTransferred: 2 * 1024 * 1024 + 5, progress: 1, bytesResent: 0, nativeState: 'COMPLETED', exitCode: 0 });
      expect(Object.keys(done.hpc!.timestamps)).toEqual(['pending', 'transferring', 'queued', 'running', 'completed']);
      const arrived = join(staging, id, 'set.bin');
      expect(createHash('sha256').update(readFileSync(arrived)).digest('hex')).toBe(set.sha256);
      const checkpoint = join(staging, id, 'checkpoint');
      expect(done.hpc!.checkpoint?.uri).toBe(pathToFileURL(checkpoint).href);
      expect(JSON.parse(readFileSync(checkpoint, 'utf8'))).toEqual({ jobId: id, datasetSha256: set.sha256 });

      const watched = await watch;
      expect(watched.code, watched.stderr).toBe(0);
      for (const status of ['transferring', 'queued', 'running', 'completed']) expect(watched.stdout).toMatch(new RegExp(`Z ${status} `));

      const hpc = await until(() => {
        const mine = feed.messages.filter((m): m is FeedHpc => m.type === 'hpc' && m.jobId === id);
        return mine.some((m) => m.status === 'completed') ? mine : undefined;
      }, 'the feed to show the job completed');
      expect(hpc[0]).toMatchObject({ datasetSizeGb: 250, sourceNodeId: '' });
      const progress = hpc.map((m) => m.progress);
      expect(progress.every((p, i) => i === 0 || p >= progress[i - 1]!)).toBe(true);
      expect(progress.some((p) => p > 0 && p < 1), `progress seen: ${progress.join(', ')}`).toBe(true);
      expect(hpc.at(-1)).toMatchObject({ status: 'completed', progress: 1, bytesTransferred: 2 * 1024 * 1024 + 5 });
      expect(hpc.map((m) => m.status).filter((s, i, all) => all.indexOf(s) === i)).toEqual(['pending', 'transferring', 'queued', 'running', 'completed']);
    } finally {
      await feed.close();
    }
  }, 120_000);

  it('SIGKILLed mid-transfer, the restarted bridge resumes the transfer, re-sending at most one chunk', async () => {
    const size = 4 * 1024 * 1024;
    const set = dataset('big.bin', size);
    const id = await submit(['--dataset', set.path, '--size-gb', '500', '--flops', '1']);
    await until(async () => {
      const record = await job(id);
      return record.hpc !== null && record.status === 'transferring' && record.hpc.progress >= 0.25;
    }, 'the transfer a quarter done', 30_000, { intervalMs: 50 });
    await stopUp('SIGKILL');
    // Counted here, not taken from the mover's word: what the killed copy left, and the least the restarted one keeps of it.
    const partial = join(staging, id, 'big.bin.partial');
    const leftBehind = statSync(partial).size;
    let kept = Number.POSITIVE_INFINITY;
    const watcher = setInterval(() => {
      try {
        kept = Math.min(kept, statSync(partial).size);
      } catch {
        // renamed into place at the end
      }
    }, 5);
    await startUp();
    const done = await waitFor(id, 'completed', 60_000);
    clearInterval(watcher);
    expect(leftBehind).toBeGreaterThanOrEqual(size / 4 - CHUNK);
    expect(kept).toBeLessThan(Number.POSITIVE_INFINITY);
    expect(leftBehind - kept, `left ${leftBehind} bytes, the restart kept ${kept}`).toBeLessThanOrEqual(CHUNK);
    expect(done.hpc!.bytesResent).toBeLessThanOrEqual(CHUNK);
    expect(done.hpc).toMatchObject({ sha256: set.sha256, bytesTransferred: size });
    expect(createHash('sha256').update(readFileSync(join(staging, id, 'big.bin'))).digest('hex')).toBe(set.sha256);
  }, 120_000);

  it('SIGKILLed between sbatch and storing the Slurm id, the restart finds the job by name: exactly one Slurm job', async () => {
    // A wrapper sbatch: submits for real, says so in a file, then holds its answer back.
    const realSbatch = execFileSync('sh', ['-c', 'command -v sbatch'], { encoding: 'utf8' }).trim();
    mkdirSync(wrapperBin, { recursive: true });
    const marker = join(dir, 'sbatch-done');
    // It never answers: `exec` makes the shell the sleep, so the pid in the marker is all there is to stop afterwards.
    writeFileSync(join(wrapperBin, 'sbatch'), `#!/bin/sh\nout=$(${realSbatch} "$@") || exit $?\necho "$$ $out" > ${marker}\nexec sleep 60\n`);
    chmodSync(join(wrapperBin, 'sbatch'), 0o755);
    await stopUp('SIGTERM');
    await startUp({ ...ENV, PATH: `${wrapperBin}${delimiter}${process.env['PATH'] ?? ''}` });

    const set = dataset('small.bin', 3 * CHUNK + 1);
    const id = await submit(['--dataset', set.path, '--size-gb', '1', '--flops', '1', '--target', 'hpc']);
    await until(() => existsSync(marker), 'the wrapped sbatch to have submitted', 30_000, { intervalMs: 20 });
    strays.push(Number(readFileSync(marker, 'utf8').split(' ')[0]));
    expect(slurmJobsNamed(id)).toHaveLength(1);
    await stopUp('SIGKILL');

    await startUp();
    const done = await waitFor(id, 'completed', 60_000);
    expect(slurmJobsNamed(id)).toEqual([done.hpc!.schedulerJobId]);
    const history = (await (await fetch(`${url}/api/v1/training/${id}/history`, { headers: { authorization: `Bearer ${ENV['ARCNET_API_KEY']}` } })).json()) as { versions: { status: string; reason: string | null }[] };
    expect(history.versions.some((v) => /^found Slurm job \d+ already submitted under this job's name/.test(v.reason ?? ''))).toBe(true);
  }, 120_000);

  it('a failing script fails with its exit code; a cancel from arcnet train cancel cancels on Slurm; a missing source fails within seconds', async () => {
    const set = dataset('tiny.bin', 1000);
    const failing = join(dir, 'fail.sh');
    writeFileSync(failing, '#!/bin/sh\necho "no luck" >&2\nexit 3\n');
    const sleepy = join(dir, 'sleepy.sh');
    writeFileSync(sleepy, '#!/bin/sh\nsleep 300\n');
    const fails = await submit(['--dataset', set.path, '--size-gb', '1', '--flops', '1', '--target', 'hpc', '--script', failing]);
    const cancels = await submit(['--dataset', set.path, '--size-gb', '1', '--flops', '1', '--target', 'hpc', '--script', sleepy]);
    const started = Date.now();
    const missing = await submit(['--dataset', join(datasets, 'not-there.bin'), '--size-gb', '1', '--flops', '1', '--target', 'hpc']);
    const gone = await waitFor(missing, 'failed', 10_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(gone.hpc?.reason).toMatch(/^transfer failed \(SOURCE_MISSING\): /);
    const mismatched = await submit(['--dataset', set.path, '--size-gb', '1', '--flops', '1', '--target', 'hpc', '--sha256', 'ab'.repeat(32)]);
    const refused = await waitFor(mismatched, 'failed', 10_000);
    expect(refused.hpc?.reason).toMatch(new RegExp(`^transfer failed \\(CHECKSUM_MISMATCH\\): .*has SHA-256 ${set.sha256}, not the ${'ab'.repeat(32)}`));
    expect(refused.hpc?.schedulerJobId).toBeNull();
    const malformed = await cli(['train', 'submit', '--dataset', set.path, '--size-gb', '1', '--flops', '1', '--sha256', 'xyz', '--server', url]);
    expect(malformed.code).not.toBe(0);
    expect(malformed.stderr).toMatch(/--sha256 must be 64 hex digits/);

    const failed = await waitFor(fails, 'failed', 60_000);
    expect(failed.hpc?.reason).toMatch(/^Slurm job \d+: .*exit code 3/);
    const watched = await cli(['train', 'get', fails, '--watch', '--server', url]);
    expect(watched.code).toBe(1);
    expect(watched.stdout).toMatch(/exit code 3/);

    const running = await waitFor(cancels, 'running', 60_000);
    const asked = await cli(['train', 'cancel', cancels, '--server', url, '--reason', 'no longer needed']);
    expect(asked.code, asked.stderr).toBe(0);
    const cancelled = await waitFor(cancels, 'cancelled', 30_000);
    expect(cancelled.hpc).toMatchObject({ reason: 'no longer needed', nativeState: 'CANCELLED', schedulerJobId: running.hpc!.schedulerJobId });
    expect((await cli(['train', 'cancel', cancels, '--server', url])).stderr).toMatch(/409: training job .* has already ended \(cancelled\)/);
  }, 120_000);

  it('the job over its time limit ends failed, saying TIMEOUT', async () => {
    const timedOut = await waitFor(timeLimited, 'failed', 180_000);
    expect(timedOut.hpc).toMatchObject({ nativeState: 'TIMEOUT' });
    expect(timedOut.hpc?.reason).toMatch(/^Slurm job \d+: TIMEOUT/);
  }, 200_000);
});

/**
 * The Globus mover wired in: `arcnet up` with `--globus-endpoint`, `--globus-api` pointing at the
 * local Transfer API server (test/support/globus-transfer-server.ts, which maps each endpoint id to a
 * directory: the datasets' endpoint to a directory of this test, the HPC endpoint to the bridge's
 * staging directory, so `--globus-staging-path /`), the token in a `--globus-token-file`, real Slurm.
 * A `globus://` dataset goes through Globus (one task), a `file://` one beside it through POSIX (none).
 */
describe.skipIf(!slurm.available)(slurm.title('training bridge end to end: a globus:// dataset through the Globus mover, arcnet up, real Slurm'), () => {
  const SOURCE_ENDPOINT = 'arcnet-datasets';
  const HPC_ENDPOINT = 'hpc-frontier';
  const TOKEN = 'e2e-globus-token';
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-bridge-globus-'));
  const datasets = join(dir, 'datasets');
  const staging = join(dir, 'staging');
  const ENV: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', SLURM_CONF, ARCNET_GLOBUS_TOKEN: '' };
  let server: GlobusTransferServer | undefined;
  let up: ChildProcess | undefined;
  let output = '';
  let url = '';
  const submitted: string[] = [];

  const api = (path: string): Promise<Response> => fetch(`${url}${path}`, { headers: { authorization: `Bearer ${ENV['ARCNET_API_KEY']}` } });
  const job = async (id: string): Promise<TrainingRecord> => (await (await api(`/api/v1/training/${id}`)).json()) as TrainingRecord;
  const ended = (id: string): Promise<TrainingRecord> =>
    until(async () => {
      const record = await job(id);
      return ['completed', 'failed', 'cancelled'].includes(record.status) ? record : undefined;
    }, `training job ${id} to end`, 60_000, { intervalMs: 100, retryOnError: true });
  const submit = async (args: string[]): Promise<string> => {
    const run = await new Promise<Run>((resolve, reject) =>
      execFile(process.execPath, [CLI, 'train', 'submit', '--server', url, ...args], { env: ENV, timeout: 30_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      }),
    );
    expect(run.code, run.stderr).toBe(0);
    const id = /training job ([0-9a-f-]{36})/.exec(run.stdout)![1]!;
    submitted.push(id);
    return id;
  };

  beforeAll(async () => {
    mkdirSync(datasets, { recursive: true });
    mkdirSync(staging, { recursive: true });
    server = await GlobusTransferServer.start({ endpoints: { [SOURCE_ENDPOINT]: datasets, [HPC_ENDPOINT]: staging }, token: TOKEN, bytesPerSecond: RATE / 2, chunkBytes: CHUNK });
    const tokenFile = join(dir, 'globus-token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const port = await freePort();
    const args = ['up', '--port', String(port), '--data-dir', join(dir, 'data'), '--nodes', '0', '--rate', '0', '--no-status', '--hpc-scheduler', 'slurm', '--staging-dir', staging, '--chunk-size', String(CHUNK), '--hpc-poll-interval', '200',
      '--globus-endpoint', HPC_ENDPOINT, '--globus-api', server.url, '--globus-token-file', tokenFile, '--globus-staging-path', '/', '--log-level', 'info'];
    up = spawn(process.execPath, [CLI, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    up.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    up.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    url = await until(() => /API and console feed: (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1], 'arcnet up to print its URL', 30_000, { intervalMs: 50 });
    ENV['ARCNET_API_KEY'] = readFileSync(join(dir, 'data', 'operator.key'), 'utf8').trim();
  }, 60_000);

  afterAll(async () => {
    if (up && up.exitCode === null && up.signalCode === null) {
      const exited = new Promise((resolve) => up!.once('exit', resolve));
      up.kill('SIGTERM');
      await exited;
    }
    await server?.close();
    for (const id of submitted) execFile('scancel', [`--name=arcnet-${id}`], { env: ENV }, () => undefined);
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('moves globus://<endpoint>/<path> through one Globus task into the staging directory, then runs it on Slurm; file:// still moves by POSIX', async () => {
    const health = (await (await fetch(`${url}/health`)).json()) as { modules: Record<string, Record<string, unknown>> };
    expect(health.modules['bridge']).toMatchObject({ mover: 'posix+globus', globusEndpoint: HPC_ENDPOINT, globus: `globus:// datasets move through ${server!.url} to endpoint ${HPC_ENDPOINT} at /` });

    const size = 2 * 1024 * 1024 + 7;
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (i * 97 + (i >> 12)) & 0xff;
    writeFileSync(join(datasets, 'set.bin'), data);
    const sha256 = createHash('sha256').update(data).digest('hex');
    writeFileSync(join(datasets, 'local.bin'), data.subarray(0, 5000));
    // A second slower than the default: a job quicker than one poll would go queued → completed unseen running.
    const script = join(dir, 'default-slower.sh');
    writeFileSync(script, DEFAULT_SCRIPT.replace('set -eu\n', 'set -eu\nsleep 1\n'));

    const viaGlobus = await submit(['--dataset', `globus://${SOURCE_ENDPOINT}/set.bin`, '--size-gb', '250', '--flops', '1e15', '--script', script]);
    const viaPosix = await submit(['--dataset', join(datasets, 'local.bin'), '--size-gb', '1', '--flops', '1', '--target', 'hpc']);
    // Mid-transfer, Globus's bytes_transferred shows as progress.
    const midway = await until(async () => {
      const record = await job(viaGlobus);
      return record.status === 'transferring' && record.hpc!.progress > 0 && record.hpc!.progress < 1 ? record : undefined;
    }, 'the Globus transfer under way', 30_000, { intervalMs: 50, retryOnError: true });
    expect(midway.hpc!.totalBytes).toBe(size);

    const done = await ended(viaGlobus);
    expect(done.status, done.hpc?.reason ?? '').toBe('completed');
    expect(Object.keys(done.hpc!.timestamps)).toEqual(['pending', 'transferring', 'queued', 'running', 'completed']);
    expect(done.hpc).toMatchObject({ datasetUri: `globus://${SOURCE_ENDPOINT}/set.bin`, datasetPath: join(staging, viaGlobus, 'set.bin'), bytesTransferred: size, progress: 1, bytesResent: 0, nativeState: 'COMPLETED', exitCode: 0 });
    // The file arrived where the HPC endpoint's directory is, and the Slurm job read those bytes.
    expect(createHash('sha256').update(readFileSync(join(staging, viaGlobus, 'set.bin'))).digest('hex')).toBe(sha256);
    expect(JSON.parse(readFileSync(join(staging, viaGlobus, 'checkpoint'), 'utf8'))).toEqual({ jobId: viaGlobus, datasetSha256: sha256 });
    const local = await ended(viaPosix);
    expect(local.status, local.hpc?.reason ?? '').toBe('completed');
    expect(local.hpc!.sha256).toBe(createHash('sha256').update(data.subarray(0, 5000)).digest('hex'));
    // One Globus task in all: the globus:// job's, submitted once; the file:// job never reached Globus.
    expect(server!.requests.filter((r) => r === 'POST /v0.10/transfer')).toHaveLength(1);
    expect(server!.requests.filter((r) => r.includes('/operation/endpoint/'))).toEqual([`GET /v0.10/operation/endpoint/${SOURCE_ENDPOINT}/ls`]);
  }, 90_000);

  it('a cancel mid-transfer cancels the Globus task too', async () => {
    const data = Buffer.alloc(8 * 1024 * 1024, 7);
    writeFileSync(join(datasets, 'long.bin'), data);
    const id = await submit(['--dataset', `globus://${SOURCE_ENDPOINT}/long.bin`, '--size-gb', '1', '--flops', '1', '--target', 'hpc']);
    await until(async () => {
      const record = await job(id);
      return record.status === 'transferring' && record.hpc!.progress > 0;
    }, 'the Globus transfer under way', 30_000, { intervalMs: 50, retryOnError: true });
    const asked = await fetch(`${url}/api/v1/training/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ENV['ARCNET_API_KEY']}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'not this one' }) });
    expect(asked.status).toBe(202);
    const record = await ended(id);
    expect(record.status).toBe('cancelled');
    expect(record.hpc).toMatchObject({ reason: 'not this one', schedulerJobId: null });
    // The task was asked to stop, not left to run on to its deadline. The bridge records the job
    // cancelled first and then carries out the plan's actions, so the cancel may reach Globus a moment later.
    await until(() => server!.requests.some((r) => /^POST \/v0\.10\/task\/[^/]+\/cancel$/.test(r)), 'the Globus task cancelled', 10_000, { intervalMs: 50 });
  }, 60_000);
});

/**
 * The training bridge through `startEmbedded` and its HTTP API, on the real engines: embedded SQLite
 * and the memory bus, the real POSIX mover on real files, and (second suite) the real Slurm of
 * scripts/slurm.sh. Submissions are validated (400 naming the field), classified with seed 000's
 * rules, federated jobs announced on `arc.scheduler.training`; without a scheduler HPC jobs wait in
 * pending and say why; with Slurm a job moves through every state, its script reads the dataset and
 * writes the checkpoint that is recorded; failures and cancels end in the right state with the reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { newId } from '../../src/core/ids.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { FederatedTask, HpcJob, SystemEvent } from '../../src/contracts/messages.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults, type BridgeSettings } from '../../src/main/config.ts';
import { TRAINING_COLLECTION, type TrainingRecord } from '../../src/training/model.ts';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { DEFAULT_BRIDGE_CONFIG, DEFAULT_SCRIPT, TrainingBridge } from '../../src/training/bridge.ts';
import { PosixDataMover } from '../../src/training/posix-mover.ts';
import { SlurmScheduler } from '../../src/training/slurm-scheduler.ts';
import { KvTransferJournal } from '../../src/main/modules/bridge.ts';
import { needEngines } from '../support/engines.ts';
import { SLURM_CONF } from '../support/slurm.ts';
import { until } from '../support/until.ts';

interface Harness {
  system: EmbeddedSystem;
  staging: string;
  call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }>;
  job(id: string): Promise<TrainingRecord>;
  waitFor(id: string, status: string, timeoutMs?: number): Promise<TrainingRecord>;
  stop(): Promise<void>;
}

async function harness(bridge: Partial<BridgeSettings>): Promise<Harness> {
  const staging = mkdtempSync(join(tmpdir(), 'arcnet-training-'));
  const system = await startEmbedded(
    withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 }, bridge: { stagingDir: join(staging, 'staging'), pollIntervalMs: 200, scanIntervalMs: 300, leaseTtlMs: 3_000, progressIntervalMs: 50, ...bridge } }),
  );
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const headers: Record<string, string> = { authorization: `Bearer ${system.operatorKey}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${system.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };
  const job = async (id: string): Promise<TrainingRecord> => (await call('GET', `/api/v1/training/${id}`)).json as unknown as TrainingRecord;
  const waitFor = (id: string, status: string, timeoutMs = 20_000): Promise<TrainingRecord> =>
    until(async () => {
      const record = await job(id);
      if (record.status !== status && ['completed', 'failed', 'cancelled'].includes(record.status)) throw new Error(`job ${id} ended ${record.status} (${record.hpc?.reason ?? record.reason}), not ${status}`);
      return record.status === status ? record : undefined;
    }, `training job ${id} ${status}`, timeoutMs, { intervalMs: 50 });
  return {
    system,
    staging,
    call,
    job,
    waitFor,
    stop: async () => {
      await system.stop();
      rmSync(staging, { recursive: true, force: true });
    },
  };
}

function dataset(dir: string, bytes: number, name = 'set.bin'): { uri: string; sha256: string } {
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 31 + (i >> 8)) & 0xff;
  const path = join(dir, name);
  writeFileSync(path, data);
  return { uri: pathToFileURL(path).href, sha256: createHash('sha256').update(data).digest('hex') };
}

describe('training API and classification (no HPC scheduler)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({ hpcScheduler: 'none' });
  });
  afterAll(async () => {
    await h.stop();
  });

  it('refuses bad submissions with a 400 naming the field', async () => {
    const ok = { datasetUri: 'file:///data/set.bin', datasetSizeGb: 1, estimatedFlops: 1e15 };
    const cases: [unknown, RegExp][] = [
      [{ ...ok, datasetUri: undefined }, /datasetUri/],
      [{ ...ok, datasetSizeGb: -1 }, /datasetSizeGb/],
      [{ ...ok, estimatedFlops: '1e18' }, /estimatedFlops/],
      [{ ...ok, urgency: 'asap' }, /urgency/],
      [{ ...ok, target: 'cloud' }, /target/],
      [{ ...ok, datasetUri: 'http://example.com/set.bin' }, /body\/datasetUri: http:\/\/ is not a scheme/],
      [{ ...ok, datasetUri: 'file:///data/' }, /body\/datasetUri must name a file/],
      [{ ...ok, checkpointUri: 'globus://ep/ckpt' }, /body\/checkpointUri/],
      [{ ...ok, script: 'echo hi' }, /body\/script must start with #!/],
      [{ ...ok, timeLimitMinutes: 0 }, /timeLimitMinutes/],
      [{ ...ok, datasetSha256: 'abc' }, /datasetSha256/],
      [{ ...ok, datasetSize: 3 }, /additional properties/],
    ];
    for (const [body, message] of cases) {
      const { status, json } = await h.call('POST', '/api/v1/training', body);
      expect(status, JSON.stringify(body)).toBe(400);
      expect(String(json['message'])).toMatch(message);
    }
    expect((await h.call('GET', `/api/v1/training/${newId()}`)).status).toBe(404);
    expect((await h.call('GET', '/api/v1/training/not-a-uuid')).status).toBe(400);
    expect((await h.call('GET', '/api/v1/training?status=bogus')).status).toBe(400);
  });

  it('classifies with seed 000\'s rules: federated jobs are announced on arc.scheduler.training and wait there', async () => {
    const tasks: FederatedTask[] = [];
    const consumer = await h.system.bus.subscribe('test-federated', [topics.federatedTraining], 'FederatedTask', (t) => void tasks.push(t), { startAt: 'latest' });
    try {
      const { status, json } = await h.call('POST', '/api/v1/training', { datasetUri: 'file:///data/small.bin', datasetSizeGb: 20, estimatedFlops: 5e17, urgency: 'normal' });
      expect(status).toBe(202);
      expect(json).toMatchObject({ status: 'submitted', target: null });
      const id = String(json['id']);
      const waiting = await h.waitFor(id, 'waiting');
      expect(waiting).toMatchObject({ target: 'federated', routingReason: 'federated: estimated 5e17 FLOPs is not over 1e18, dataset 20 GB is not over 100 GB, urgency normal is not critical' });
      await until(() => tasks.find((t) => t.trainingJobId === id), 'the FederatedTask');
      expect(tasks.find((t) => t.trainingJobId === id)).toMatchObject({ round: 0, datasetUri: 'file:///data/small.bin', partition: { index: 0, count: 1 } });
    } finally {
      await consumer.close();
    }
  });

  it('sends big, heavy or critical jobs to HPC with the rule in the reason, honours an explicit target, and waits in pending without a scheduler', async () => {
    const cases: [Record<string, unknown>, string, string][] = [
      [{ datasetSizeGb: 250, estimatedFlops: 1e15 }, 'hpc', 'dataset 250 GB is over the 100 GB HPC threshold'],
      [{ datasetSizeGb: 1, estimatedFlops: 2e18 }, 'hpc', 'estimated 2e18 FLOPs is over the 1e18 FLOPs HPC threshold'],
      [{ datasetSizeGb: 1, estimatedFlops: 1, urgency: 'critical' }, 'hpc', 'urgency critical goes to HPC'],
      [{ datasetSizeGb: 500, estimatedFlops: 1e20, target: 'federated' }, 'federated', 'the submitter asked for federated'],
      [{ datasetSizeGb: 1, estimatedFlops: 1, target: 'hpc' }, 'hpc', 'the submitter asked for HPC'],
    ];
    for (const [extra, target, reason] of cases) {
      const { json } = await h.call('POST', '/api/v1/training', { datasetUri: 'file:///data/set.bin', ...extra });
      const record = await h.waitFor(String(json['id']), target === 'hpc' ? 'pending' : 'waiting');
      expect(record).toMatchObject({ target, routingReason: reason });
      if (target === 'hpc') expect(record.hpc?.reason).toBe('no HPC scheduler configured: the job waits in pending for a bridge that has one');
    }
    const health = (await fetch(`${h.system.url}/health`).then((r) => r.json())) as { modules: Record<string, Record<string, unknown>> };
    expect(health.modules['bridge']).toMatchObject({ ready: true, scheduler: null, mover: 'posix', note: 'no HPC scheduler: jobs wait in pending' });
    const pending = await h.call('GET', '/api/v1/training?status=pending&limit=2');
    expect(pending.json).toMatchObject({ count: 2 });
  });

  it('answers a repeated submission with the job, refuses a different one under the same id', async () => {
    const id = newId();
    const body = { id, datasetUri: 'file:///data/set.bin', datasetSizeGb: 3, estimatedFlops: 1 };
    expect((await h.call('POST', '/api/v1/training', body)).status).toBe(202);
    expect((await h.call('POST', '/api/v1/training', body)).status).toBe(200);
    const conflict = await h.call('POST', '/api/v1/training', { ...body, datasetSizeGb: 4 });
    expect(conflict.status).toBe(409);
    expect(String(conflict.json['message'])).toMatch(/exists with a different submission/);
  });

  it('classifies a stored submission whose message was lost (the in-memory bus after a restart)', async () => {
    const id = newId();
    const old = new Date(Date.now() - 60_000).toISOString();
    await h.system.stores.documents.put<TrainingRecord>(TRAINING_COLLECTION, id, {
      id, datasetUri: 'file:///data/lost.bin', datasetSizeGb: 101, estimatedFlops: 0, submittedAt: old, status: 'submitted', target: null, routingReason: null, classifiedAt: null, hpc: null, updatedAt: old,
    });
    expect(await h.waitFor(id, 'pending')).toMatchObject({ routingReason: 'dataset 101 GB is over the 100 GB HPC threshold' });
  });

  it('cancels a job nobody drives, and refuses to cancel it twice', async () => {
    const { json } = await h.call('POST', '/api/v1/training', { datasetUri: 'file:///data/set.bin', datasetSizeGb: 300, estimatedFlops: 1 });
    const id = String(json['id']);
    await h.waitFor(id, 'pending');
    const asked = await h.call('POST', `/api/v1/training/${id}/cancel`, { reason: 'not needed any more' });
    expect(asked).toMatchObject({ status: 202, json: { cancelRequested: 'not needed any more' } });
    const cancelled = await h.waitFor(id, 'cancelled');
    expect(cancelled.hpc).toMatchObject({ status: 'cancelled', reason: 'not needed any more' });
    expect((await h.call('POST', `/api/v1/training/${id}/cancel`, {})).status).toBe(409);
    const history = await h.call('GET', `/api/v1/training/${id}/history`);
    expect((history.json['versions'] as { status: string }[]).map((v) => v.status)).toEqual(['submitted', 'pending', 'cancelled']);
  });
});

const slurm = needEngines('slurm');
/** The default script, a second slower: a job quicker than one poll interval goes from queued to completed unseen running. */
const SLOWER_DEFAULT = DEFAULT_SCRIPT.replace('set -eu\n', 'set -eu\nsleep 1\n');

describe.skipIf(!slurm.available)(slurm.title('training bridge on real Slurm and the POSIX mover'), () => {
  let h: Harness;
  let data: string;
  const hpc: HpcJob[] = [];
  const events: SystemEvent[] = [];
  beforeAll(async () => {
    h = await harness({ hpcScheduler: 'slurm', slurmConf: SLURM_CONF, chunkBytes: 64 * 1024 });
    data = mkdtempSync(join(tmpdir(), 'arcnet-dataset-'));
    await h.system.bus.subscribe('test-hpc', [topics.bridgePending, topics.bridgeIngress], 'HpcJob', (j) => void hpc.push(j), { startAt: 'latest' });
    await h.system.bus.subscribe('test-events', [topics.systemEvent], 'SystemEvent', (e) => void events.push(e), { startAt: 'latest' });
  });
  afterAll(async () => {
    await h?.stop();
    if (data) rmSync(data, { recursive: true, force: true });
  });

  it('moves a job through every state: the data arrives verified, the Slurm job reads it and writes the checkpoint that is recorded', async () => {
    const set = dataset(data, 1024 * 1024 + 17);
    const { json } = await h.call('POST', '/api/v1/training', { datasetUri: set.uri, datasetSizeGb: 250, estimatedFlops: 1, geozone: 'CAISO', script: SLOWER_DEFAULT });
    const id = String(json['id']);
    const done = await h.waitFor(id, 'completed', 60_000);
    expect(done.hpc).toMatchObject({ sha256: set.sha256, bytesTransferred: 1024 * 1024 + 17, progress: 1, nativeState: 'COMPLETED', exitCode: 0 });
    expect(Object.keys(done.hpc!.timestamps)).toEqual(['pending', 'transferring', 'queued', 'running', 'completed']);
    const checkpointPath = join(h.staging, 'staging', id, 'checkpoint');
    expect(done.hpc!.checkpoint).toMatchObject({ uri: pathToFileURL(checkpointPath).href });
    expect(JSON.parse(readFileSync(checkpointPath, 'utf8'))).toEqual({ jobId: id, datasetSha256: set.sha256 });
    const mine = hpc.filter((j) => j.id === id);
    expect(mine.map((j) => j.status).filter((s, i, all) => all.indexOf(s) === i)).toEqual(['pending', 'transferring', 'queued', 'running', 'completed']);
    const progress = mine.filter((j) => j.status === 'transferring').map((j) => j.progress ?? 0);
    expect(progress.every((p, i) => i === 0 || p >= progress[i - 1]!)).toBe(true);
    expect(mine.at(-1)).toMatchObject({ progress: 1, checkpointUri: pathToFileURL(checkpointPath).href, schedulerJobId: done.hpc!.schedulerJobId });
    expect(events.find((e) => e.subjectId === id)).toMatchObject({ kind: 'hpc.completed', geozone: 'CAISO' });
  });

  it('fails a job whose script fails, with Slurm\'s reason, and says so as hpc.failed with the geozone', async () => {
    const set = dataset(data, 4096, 'small.bin');
    const { json } = await h.call('POST', '/api/v1/training', { datasetUri: set.uri, datasetSizeGb: 1, estimatedFlops: 1, target: 'hpc', geozone: 'ERCOT', script: '#!/bin/sh\necho failing on purpose >&2\nexit 3\n' });
    const id = String(json['id']);
    const failed = await h.waitFor(id, 'failed', 60_000);
    expect(failed.hpc?.reason).toMatch(/^Slurm job \d+: .*exit code 3/);
    await until(() => events.find((e) => e.subjectId === id && e.kind === 'hpc.failed'), 'hpc.failed');
    expect(events.find((e) => e.subjectId === id && e.kind === 'hpc.failed')).toMatchObject({ severity: 'error', geozone: 'ERCOT' });
  });

  it('fails a job whose source is missing within seconds', async () => {
    const started = Date.now();
    const { json } = await h.call('POST', '/api/v1/training', { datasetUri: pathToFileURL(join(data, 'nowhere.bin')).href, datasetSizeGb: 1, estimatedFlops: 1, target: 'hpc' });
    const failed = await h.waitFor(String(json['id']), 'failed', 10_000);
    expect(failed.hpc?.reason).toMatch(/^transfer failed \(SOURCE_MISSING\)/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('with two bridge replicas, each job has one owner: one transfer, one Slurm job, one pass through the states', async () => {
    const { stores, bus } = h.system;
    const second = new TrainingBridge({
      bus,
      documents: stores.documents,
      kv: stores.kv,
      leases: stores.leases,
      clock: systemClock,
      logger: silentLogger,
      instanceId: 'replica-2',
      mover: new PosixDataMover({ journal: new KvTransferJournal(stores.kv), chunkBytes: 64 * 1024 }),
      scheduler: new SlurmScheduler({ slurmConf: SLURM_CONF }),
      config: { ...DEFAULT_BRIDGE_CONFIG, stagingDir: join(h.staging, 'staging'), pollIntervalMs: 200, scanIntervalMs: 300, leaseTtlMs: 3_000, progressIntervalMs: 50 },
    });
    await second.start();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) {
        const set = dataset(data, 200 * 1024 + i, `replica-${i}.bin`);
        ids.push(String((await h.call('POST', '/api/v1/training', { datasetUri: set.uri, datasetSizeGb: 1, estimatedFlops: 1, target: 'hpc', script: SLOWER_DEFAULT })).json['id']));
      }
      for (const id of ids) await h.waitFor(id, 'completed', 60_000);
      for (const id of ids) {
        const statuses = (await stores.documents.history<TrainingRecord>(TRAINING_COLLECTION, id)).map((v) => v.body!.status);
        // Progress rewrites repeat `transferring`; no state is ever entered twice.
        const entered = statuses.filter((s, i) => s !== statuses[i - 1]);
        expect(entered).toEqual(['submitted', 'pending', 'transferring', 'queued', 'running', 'completed']);
        const slurmJobs = execFileSync('squeue', ['--states=all', '--noheader', `--name=arcnet-${id}`, '--format=%i'], { env: { ...process.env, SLURM_CONF }, encoding: 'utf8' }).trim().split('\n');
        expect(slurmJobs).toHaveLength(1);
      }
    } finally {
      await second.stop();
    }
  });

  it('cancels a running job on Slurm and ends cancelled with the reason', async () => {
    const set = dataset(data, 4096, 'sleepy.bin');
    const { json } = await h.call('POST', '/api/v1/training', { datasetUri: set.uri, datasetSizeGb: 1, estimatedFlops: 1, target: 'hpc', script: '#!/bin/sh\nsleep 120\n' });
    const id = String(json['id']);
    const running = await h.waitFor(id, 'running', 60_000);
    expect((await h.call('POST', `/api/v1/training/${id}/cancel`, { reason: 'operator changed their mind' })).status).toBe(202);
    const cancelled = await h.waitFor(id, 'cancelled', 30_000);
    expect(cancelled.hpc).toMatchObject({ reason: 'operator changed their mind', nativeState: 'CANCELLED', schedulerJobId: running.hpc!.schedulerJobId });
  });
});

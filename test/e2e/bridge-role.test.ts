/**
 * `arcnet bridge` as a role on Kafka and PostgreSQL: two bridge processes and one `arcnet server`
 * (the training API: it stores each submission and publishes it on `arc.job.submission`, which the
 * bridges share through group arc-bridge), the Slurm cluster of scripts/slurm.sh, real `file://`
 * datasets of 16 chunks copied at 384 KiB/s so each transfer lasts a few seconds. The bridge holding
 * a job's lease is SIGKILLed mid-transfer; the survivor takes the lease (a higher fencing token) once
 * it lapses and resumes the transfer from the partial file. Every job completes once (one
 * `hpc.completed` event, one Slurm job named `arcnet-<id>`), and no job is ever driven by two live
 * bridges: each took ownership once, the killed bridge's jobs a second time only after it was dead.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, testSchemas } from '../support/postgres.ts';
import { KAFKA_BOOTSTRAP, kafkaServers } from '../support/kafka.ts';
import { SLURM_CONF } from '../support/slurm.ts';
import { until } from '../support/until.ts';
import { KafkaBus } from '../../src/bus/kafka.ts';
import { MessageBus } from '../../src/bus/typed-bus.ts';
import type { Consumer } from '../../src/bus/ports.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { SystemEvent } from '../../src/contracts/messages.ts';
import { openPostgresStores } from '../../src/store/postgres.ts';
import type { LeaseGrant, StateStores } from '../../src/store/ports.ts';
import { jobLeaseName, type TrainingRecord } from '../../src/training/model.ts';
import { DEFAULT_SCRIPT } from '../../src/training/bridge.ts';

const engines = needEngines('postgres', 'kafka', 'slurm');
const CHUNK = 64 * 1024;
const SIZE = 16 * CHUNK;
const RATE = 384 * 1024;
const LEASE_TTL = 1_500;
const ZONE = `TVA-${randomUUID().slice(0, 6)}`;

interface Owning {
  readonly bridge: number;
  readonly job: string;
  readonly time: number;
}

describe.skipIf(!engines.available)(engines.title('arcnet bridge replicas on Kafka and PostgreSQL with real Slurm: a SIGKILL mid-transfer'), () => {
  const schemas = testSchemas();
  const children: CliProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-bridge-role-'));
  const datasets = join(dir, 'datasets');
  const staging = join(dir, 'staging');
  const ids: string[] = [];
  let stores: StateStores | undefined;
  let client: KafkaBus | undefined;
  let readback: Consumer | undefined;

  afterAll(async () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((resolve) => child.once('exit', resolve));
      }
    }
    // Only this suite's Slurm jobs, by the names it gave them.
    for (const id of ids) {
      try {
        execFileSync('scancel', [`--name=arcnet-${id}`], { env: { ...process.env, SLURM_CONF } });
      } catch {
        // none left
      }
    }
    await readback?.close();
    await client?.close();
    await stores?.close();
    await schemas.dropAll();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('three HPC jobs across two bridges: the one owning a job is SIGKILLed mid-transfer, the survivor takes it over, each job completes once', async () => {
    mkdirSync(datasets, { recursive: true });
    const schema = await schemas.fresh();
    stores = await openPostgresStores({ url: POSTGRES_URL, schema });
    const engineFlags = ['--kafka', KAFKA_BOOTSTRAP, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--geozone', ZONE];

    const serverPort = await freePort();
    const server = startCli(['server', ...engineFlags, '--port', String(serverPort), '--insecure-no-auth', '--operator-key-file', join(dir, 'operator.key'), '--log-level', 'warn']);
    children.push(server);
    const bridgePorts = [await freePort(), await freePort()];
    const bridges = bridgePorts.map((port) => {
      const child = startCli(['bridge', ...engineFlags, '--http-port', String(port), '--hpc-scheduler', 'slurm', '--slurm-conf', SLURM_CONF, '--staging-dir', staging,
        '--chunk-size', String(CHUNK), '--transfer-max-rate', String(RATE), '--hpc-poll-interval', '200', '--bridge-lease-ttl', String(LEASE_TTL), '--log-level', 'info']);
      children.push(child);
      return child;
    });
    const url = `http://127.0.0.1:${serverPort}`;
    const instances = await Promise.all(bridgePorts.map((port) =>
      untilUp(async () => {
        const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { instanceId: string; modules: Record<string, { ready: boolean; scheduler?: string }> };
        return health.modules['bridge']?.ready && health.modules['bridge'].scheduler === 'slurm' ? health.instanceId : undefined;
      }, 'a bridge with Slurm', 60_000),
    ));
    await untilUp(async () => (await fetch(`${url}/ready`)).ok, 'the API server', 60_000);

    client = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: `e2e-bridge-${randomUUID().slice(0, 6)}` });
    const events: SystemEvent[] = [];
    readback = await new MessageBus(client).subscribe(`e2e-bridge-readback-${randomUUID()}`, [topics.systemEvent], 'SystemEvent', (e) => {
      if (e.kind.startsWith('hpc.')) events.push(e);
    }, { startAt: 'latest' });

    // The default script a second slower: a job quicker than one poll would go queued → completed unseen running.
    const script = DEFAULT_SCRIPT.replace('set -eu\n', 'set -eu\nsleep 1\n');
    const sums: string[] = [];
    for (let n = 0; n < 3; n++) {
      const data = Buffer.alloc(SIZE);
      for (let i = 0; i < SIZE; i++) data[i] = (i * 131 + n * 7 + (i >> 10)) & 0xff;
      const path = join(datasets, `set-${n}.bin`);
      writeFileSync(path, data);
      sums.push(createHash('sha256').update(data).digest('hex'));
      const response = await fetch(`${url}/api/v1/training`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ datasetUri: pathToFileURL(path).href, datasetSizeGb: 1, estimatedFlops: 1, target: 'hpc', script }),
      });
      expect(response.status, await response.clone().text()).toBe(202);
      ids.push(((await response.json()) as { id: string }).id);
    }
    const job = async (id: string): Promise<TrainingRecord> => (await (await fetch(`${url}/api/v1/training/${id}`)).json()) as TrainingRecord;
    const lease = (id: string): Promise<LeaseGrant | undefined> => stores!.leases.current(jobLeaseName(id));

    // A job a quarter to two thirds moved, and the bridge holding it.
    const { victim, before } = await until(async () => {
      for (const id of ids) {
        const record = await job(id);
        const held = await lease(id);
        if (record.status === 'transferring' && record.hpc!.progress >= 0.25 && record.hpc!.progress <= 0.67 && held && instances.includes(held.holder)) return { victim: id, before: held };
      }
      return undefined;
    }, 'a job mid-transfer', 30_000, { intervalMs: 50, retryOnError: true });
    const killedIndex = instances.indexOf(before.holder);
    const survivor = instances[1 - killedIndex]!;
    const killed = bridges[killedIndex]!;
    const killedGone = new Promise((resolve) => killed.once('exit', resolve));
    const killedAt = Date.now();
    killed.kill('SIGKILL');
    await killedGone;

    // The survivor takes the lease once it lapses (its scan runs every 5 s), under a higher fencing token.
    const after = await until(async () => {
      const held = await lease(victim);
      return held && held.holder === survivor ? held : undefined;
    }, 'the survivor to hold the killed bridge\'s job', 20_000, { intervalMs: 50 });
    expect(after.token).toBeGreaterThan(before.token);

    const done = await Promise.all(ids.map((id) =>
      until(async () => {
        const record = await job(id);
        return ['completed', 'failed', 'cancelled'].includes(record.status) ? record : undefined;
      }, `job ${id} to end`, 45_000, { intervalMs: 100, retryOnError: true }),
    ));
    for (const [n, record] of done.entries()) {
      expect(record.status, `${record.id}: ${record.hpc?.reason}`).toBe('completed');
      expect(Object.keys(record.hpc!.timestamps)).toEqual(['pending', 'transferring', 'queued', 'running', 'completed']);
      expect(record.hpc).toMatchObject({ sha256: sums[n], bytesTransferred: SIZE, progress: 1, nativeState: 'COMPLETED', exitCode: 0 });
      expect(record.hpc!.bytesResent).toBeLessThanOrEqual(CHUNK);
      expect(createHash('sha256').update(readFileSync(join(staging, record.id, `set-${n}.bin`))).digest('hex')).toBe(sums[n]);
      // One Slurm job per name: none submitted twice, by either bridge.
      const named = execFileSync('squeue', ['--states=all', '--noheader', `--name=arcnet-${record.id}`, '--format=%i'], { env: { ...process.env, SLURM_CONF }, encoding: 'utf8' }).split('\n').map((s) => s.trim()).filter(Boolean);
      expect(named).toEqual([record.hpc!.schedulerJobId]);
    }
    // The victim resumed from what the killed bridge left: at most one chunk sent again.
    expect(done[ids.indexOf(victim)]!.hpc!.bytesResent).toBeLessThanOrEqual(CHUNK);

    // Each job completed once, as the bus says it.
    const completed = await until(() => {
      const mine = events.filter((e) => e.kind === 'hpc.completed' && ids.includes(e.subjectId ?? ''));
      return mine.length >= 3 ? mine : undefined;
    }, 'three hpc.completed events', 10_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(completed.map((e) => e.subjectId).sort()).toEqual([...ids].sort());
    expect(events.filter((e) => ids.includes(e.subjectId ?? '') && e.kind !== 'hpc.completed')).toEqual([]);

    // Nobody drove a job beside another: each bridge's log says when it took a job; the killed bridge's jobs were taken again only after it died, and no live bridge lost one.
    const owning: Owning[] = bridges.flatMap((child, bridge) =>
      child.output().split('\n').flatMap((line) => {
        if (!line.startsWith('{')) return [];
        const entry = JSON.parse(line) as { msg?: string; job?: string; time?: number };
        return entry.msg === 'owning training job' && entry.job && ids.includes(entry.job) ? [{ bridge, job: entry.job, time: entry.time ?? 0 }] : [];
      }),
    );
    for (const id of ids) {
      const takers = owning.filter((o) => o.job === id);
      const byKilled = takers.filter((o) => o.bridge === killedIndex);
      const bySurvivor = takers.filter((o) => o.bridge !== killedIndex);
      expect(byKilled.length, `job ${id}: ${JSON.stringify(takers)}`).toBeLessThanOrEqual(1);
      expect(bySurvivor.length, `job ${id}: ${JSON.stringify(takers)}`).toBeLessThanOrEqual(1);
      if (byKilled.length === 1 && bySurvivor.length === 1) expect(bySurvivor[0]!.time).toBeGreaterThan(killedAt);
      expect(takers.length).toBeGreaterThanOrEqual(1);
    }
    expect(owning.some((o) => o.job === victim && o.bridge === killedIndex)).toBe(true);
    expect(owning.some((o) => o.job === victim && o.bridge !== killedIndex)).toBe(true);
    expect(bridges[1 - killedIndex]!.output()).not.toContain('stopped driving training job');
  }, 60_000);
});

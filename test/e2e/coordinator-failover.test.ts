/**
 * `arcnet coordinator` as two replicas on PostgreSQL, with three real `arcnet agent --worker`
 * processes running every execution in a real container (ADR 0011). A stream of n=3/k=2 jobs goes
 * to whichever replica leads; the leader is SIGKILLed mid-stream and the standby takes over.
 * Afterwards, read from the store itself: every job accepted reached exactly one verdict, every
 * worker's reputation and credits are exactly what the verdicts imply (nothing applied twice), no
 * result was lost. Then a leader is paused (SIGSTOP) with a write in flight, its lease lapses, the
 * other replica takes over, and when it resumes (SIGCONT) its write is refused by the database.
 *
 * To have the write in flight at the moment of the pause, the test holds a SHARE lock on the
 * schema's tables while the leader handles a submission (reads go on; the write waits inside
 * PostgreSQL), pauses the leader, lets the lease pass, then lets the write run: the fence is checked
 * in the write's own statement, against the lease as it is then.
 */
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { needEngines } from '../support/engines.ts';
import { adminConnection, POSTGRES_URL, testSchemas } from '../support/postgres.ts';
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { systemClock } from '../../src/core/clock.ts';
import { openPostgresStores } from '../../src/store/postgres.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { EXECUTIONS_COLLECTION, JOBS_COLLECTION, WORKERS_COLLECTION } from '../../src/jobs/coordinator.ts';
import type { StoredJob } from '../../src/jobs/job-plan.ts';
import type { Job, JobExecution, WorkerRecord } from '../../src/jobs/model.ts';
import { REPUTATION } from '../../src/jobs/model.ts';
import { keyedFromDir, operatorKeyIn } from '../support/api-key.ts';

const engines = needEngines('postgres', 'containers');
const SEED_LINE = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  -\n';
const JOBS = 30;
const KILL_AFTER = 10;

interface Role {
  instance: string;
  leading: boolean;
  fencingToken: number | null;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!engines.available)(engines.title('coordinator replicas on PostgreSQL with real workers: SIGKILL of the leader, a paused ex-leader fenced'), () => {
  const schemas = testSchemas();
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-coordinator-failover-'));
  const children: CliProcess[] = [];
  let stores: StateStores | undefined;
  afterAll(async () => {
    for (const child of children) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    await stores?.close();
    await schemas.dropAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('takes over within seconds of a SIGKILL, loses no job or result, applies every verdict once, and refuses a paused ex-leader its write', async () => {
    const started = Date.now();
    onTestFailed(() => {
      for (const child of children) console.log(`--- ${child.spawnargs.slice(2, 4).join(' ')} (pid ${child.pid}):\n${child.output().slice(-4_000)}`);
    });
    const schema = await schemas.fresh();
    const ports = [await freePort(), await freePort()];
    const urls = ports.map((port) => `http://127.0.0.1:${port}`);
    // Both replicas keep the operator key in one directory: the first to start writes it, the other adopts it.
    const keyDir = join(dir, 'keys');
    const api = keyedFromDir(keyDir);
    const coordinatorArgs = (port: number): string[] => ['coordinator', '--port', String(port), '--data-dir', keyDir, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--log-level', 'warn'];
    const replicas: CliProcess[] = [];
    const startReplica = (index: number): CliProcess => {
      const child = startCli(coordinatorArgs(ports[index]!));
      children.push(child);
      replicas[index] = child;
      return child;
    };
    const role = async (url: string): Promise<Role | undefined> => {
      try {
        const response = await api(`${url}/api/v1/coordinator`, { signal: AbortSignal.timeout(1_000) });
        return response.ok ? ((await response.json()) as Role) : undefined;
      } catch {
        return undefined;
      }
    };
    /** Which replica leads, as { index } (0 is a replica, not "not yet"). */
    const leaderIndex = async (): Promise<{ index: number } | undefined> => {
      const roles = await Promise.all(urls.map(role));
      const index = roles.findIndex((r) => r?.leading);
      return index < 0 ? undefined : { index };
    };
    /** A client of the replicas: tries each until one takes the job (201 new, 200 already there). */
    const submit = async (id: string): Promise<number> => {
      const body = JSON.stringify({ id, name: `stream ${id.slice(0, 8)}`, docker_image: TEST_IMAGE, command: ['sh', '-c', 'echo hello | sha256sum'], redundancy: 3, consensus: 2, required_cpu: 0.5 });
      const deadline = Date.now() + 30_000;
      for (let attempt = 0; ; attempt++) {
        const url = urls[attempt % urls.length]!;
        try {
          const response = await api(`${url}/api/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(5_000) });
          if (response.status === 201 || response.status === 200) return response.status;
          const answer = (await response.json()) as { code?: string; message?: string };
          if (response.status !== 503) throw new Error(`job ${id}: ${url} answered ${response.status} ${answer.message}`);
        } catch (error) {
          if (error instanceof Error && /answered/.test(error.message)) throw error;
        }
        if (Date.now() > deadline) throw new Error(`no replica took job ${id} within 30 s`);
        await sleep(attempt % urls.length === urls.length - 1 ? 100 : 0);
      }
    };

    // Two replicas started together: whichever takes the lease leads.
    startReplica(0);
    startReplica(1);
    const { index: first } = await untilUp(leaderIndex, 'one replica to lead', 60_000);
    const standby = 1 - first;
    await untilUp(async () => (await role(urls[standby]!))?.leading === false, 'the other replica to stand by', 30_000);
    // Both alive; only the leader is ready for writes.
    expect((await fetch(`${urls[standby]}/health`)).status).toBe(200);
    expect((await fetch(`${urls[standby]}/ready`)).status).toBe(503);
    expect((await fetch(`${urls[first]}/ready`)).status).toBe(200);

    const endpoint = testEngineEndpoint();
    for (const name of ['worker-a', 'worker-b', 'worker-c']) {
      children.push(
        startCli([
          'agent', '--worker', '--no-inference', '--server', urls.join(','), '--token', operatorKeyIn(keyDir), '--node-key', join(dir, `${name}.key`), '--name', name, '--docker-host', endpoint,
          '--worker-state', join(dir, `${name}.json`), '--cpus', '2', '--memory-gb', '2', '--heartbeat-interval', '500', '--log-level', 'warn',
        ]),
      );
    }
    await untilUp(async () => {
      const stats = (await (await api(`${urls[first]}/stats`)).json()) as { workers?: { online: number; busy: number; connected: number } };
      return stats.workers !== undefined && stats.workers.connected === 3;
    }, 'three workers with push sessions on the leader', 45_000);
    const ready = Date.now();

    // The stream; the leader dies after KILL_AFTER jobs were accepted.
    const accepted = new Map<string, number>();
    let killedAt = 0;
    let takeover: Promise<number> | undefined;
    for (let i = 0; i < JOBS; i++) {
      if (i === KILL_AFTER) {
        replicas[first]!.kill('SIGKILL');
        killedAt = Date.now();
        takeover = untilUp(async () => ((await role(urls[standby]!))?.leading ? Date.now() : undefined), 'the standby to take over', 30_000);
      }
      const id = randomUUID();
      accepted.set(id, await submit(id));
      await sleep(150);
    }
    const tookOverAt = await takeover!;
    const takeoverMs = tookOverAt - killedAt;
    const leader = urls[standby]!;
    interface JobView { id: string; status: string; result: string | null; executions: { status: string }[] }
    const finals = new Map<string, JobView>();
    await untilUp(async () => {
      for (const id of accepted.keys()) {
        if (finals.has(id)) continue;
        const job = (await (await api(`${leader}/api/v1/jobs/${id}`)).json()) as JobView;
        if (job.status === 'completed' || job.status === 'failed') finals.set(id, job);
      }
      return finals.size === accepted.size;
    }, 'every accepted job to reach a verdict', 60_000);
    const streamDone = Date.now();

    stores = await openPostgresStores({ url: POSTGRES_URL, schema, clock: systemClock });
    const store = stores;
    /**
     * One consistent cut of the three collections. They are read one list at a time, and late results
     * (a superseded execution that finished anyway, judged against the consensus) still land after
     * every job is final: a write between the executions read and the workers read would show the
     * worker's +5 without the verdict written with it in the same transaction. So read twice in a row
     * until nothing that counts changed in between (heartbeats move only last_heartbeat and load).
     */
    const snapshot = async (): Promise<{ jobs: Job[]; executions: JobExecution[]; workers: WorkerRecord[] }> => {
      const read = async () => ({
        jobs: await store.documents.list<StoredJob>(JOBS_COLLECTION),
        executions: await store.documents.list<JobExecution>(EXECUTIONS_COLLECTION),
        workers: await store.documents.list<WorkerRecord>(WORKERS_COLLECTION),
      });
      const fingerprint = (cut: Awaited<ReturnType<typeof read>>): string =>
        JSON.stringify([
          cut.jobs.map((v) => `${v.id}:${v.version}`),
          cut.executions.map((v) => `${v.id}:${v.version}`),
          cut.workers.map((v) => [v.id, v.body!.reputation_score, v.body!.credits_earned, v.body!.successful_jobs_run, v.body!.failed_jobs, v.body!.total_jobs_run, v.body!.status === 'offline']),
        ]);
      let previous = await read();
      for (let attempt = 0; attempt < 100; attempt++) {
        const next = await read();
        if (fingerprint(next) === fingerprint(previous)) return { jobs: previous.jobs.map((v) => v.body!.job), executions: previous.executions.map((v) => v.body!), workers: previous.workers.map((v) => v.body!) };
        const changed = next.executions.filter((v) => previous.executions.find((p) => p.id === v.id)?.version !== v.version).map((v) => `${v.id} v${v.version}@${v.txTime} ${v.body!.status}/${v.body!.verdict}`);
        console.log(`audit: the store changed between two reads (attempt ${attempt}; executions written meanwhile: ${changed.join(', ') || 'none'}); reading again`);
        await sleep(200);
        previous = await read();
      }
      throw new Error('the store never held still for the audit (jobs, executions and worker counters kept changing for 20 s)');
    };
    /** From the store itself: one verdict per job, each execution judged once, counters as the verdicts imply. */
    const audit = async (): Promise<{ jobs: number; executions: number; workers: WorkerRecord[] }> => {
      const { jobs, executions, workers } = await snapshot();
      for (const job of jobs) {
        const versions = (await store.documents.history<StoredJob>(JOBS_COLLECTION, job.id)).map((v) => v.body!.job);
        const decided = versions.findIndex((v) => v.status === 'completed' || v.status === 'failed');
        expect(decided, `job ${job.id} decided`).toBeGreaterThanOrEqual(0);
        for (const later of versions.slice(decided)) expect(later, `job ${job.id} decided once`).toMatchObject({ status: versions[decided]!.status, result_hash: versions[decided]!.result_hash, completed_at: versions[decided]!.completed_at });
        expect(job).toMatchObject({ status: 'completed', result: SEED_LINE });
      }
      for (const execution of executions) {
        const verdicts = (await store.documents.history<JobExecution>(EXECUTIONS_COLLECTION, execution.id)).map((v) => v.body!.verdict).filter((v) => v !== null);
        expect(new Set(verdicts).size, `execution ${execution.id} judged once`).toBeLessThanOrEqual(1);
        // No result lost: nothing failed or timed out (cancelled ones were superseded by a consensus).
        expect(['completed', 'cancelled'], `execution ${execution.id}: ${execution.error_message}`).toContain(execution.status);
      }
      const credits = new Map(jobs.map((j) => [j.id, j.credits_required]));
      for (const worker of workers) {
        const mine = executions.filter((e) => e.node_id === worker.id);
        const agree = mine.filter((e) => e.verdict === 'agree');
        const disagree = mine.filter((e) => e.verdict === 'disagree').length;
        const workerHistory = await store.documents.history<WorkerRecord>(WORKERS_COLLECTION, worker.id);
        const offline = workerHistory.filter((v, i, all) => v.body!.status === 'offline' && all[i - 1]?.body!.status !== 'offline').length;
        const implied = REPUTATION.start + REPUTATION.agree * agree.length + REPUTATION.disagree * disagree + REPUTATION.offline * offline;
        if (worker.reputation_score !== implied) {
          // Which write moved the reputation, and what each of this worker's executions looked like then.
          const lines = [`${worker.name}: reputation ${worker.reputation_score}, verdicts imply ${implied}; reputation changes:`];
          workerHistory.forEach((v, i) => {
            const before = workerHistory[i - 1]?.body?.reputation_score;
            if (before !== undefined && before !== v.body!.reputation_score) lines.push(`  v${v.version} txTime ${v.txTime} validFrom ${v.validFrom}: ${before} → ${v.body!.reputation_score}`);
          });
          for (const execution of mine) {
            const versions = await store.documents.history<JobExecution>(EXECUTIONS_COLLECTION, execution.id);
            lines.push(`  execution ${execution.id} (job ${execution.job_id}): ` + versions.map((v) => `v${v.version}@${v.txTime}/${v.validFrom} ${v.body!.status} reported=${v.body!.reported_at !== null} verdict=${v.body!.verdict}`).join('; '));
          }
          console.log(lines.join('\n'));
        }
        expect(worker.reputation_score, `${worker.name}'s reputation`).toBe(REPUTATION.start + REPUTATION.agree * agree.length + REPUTATION.disagree * disagree + REPUTATION.offline * offline);
        expect(worker.credits_earned, `${worker.name}'s credits`).toBe(agree.reduce((sum, e) => sum + credits.get(e.job_id)!, 0));
        expect(worker.successful_jobs_run, `${worker.name}'s successful jobs`).toBe(agree.length);
        expect(offline, `${worker.name} never went offline`).toBe(0);
      }
      return { jobs: jobs.length, executions: executions.length, workers };
    };
    const afterKill = await audit();
    expect(afterKill.jobs).toBe(accepted.size);
    expect([...accepted.values()].filter((s) => s === 201).length).toBeGreaterThanOrEqual(accepted.size - 1);

    // --- A paused ex-leader: the killed replica comes back as the standby; the leader is paused with a write in flight.
    startReplica(first);
    await untilUp(async () => (await role(urls[first]!))?.leading === false, 'the restarted replica to stand by', 30_000);
    const paused = replicas[standby]!;
    const pausedUrl = leader;
    const lockSql = adminConnection();
    const probeSql = adminConnection();
    const tables = (await probeSql<{ tablename: string }[]>`SELECT tablename FROM pg_tables WHERE schemaname = ${schema} AND tablename <> 'leases'`).map((r) => `"${schema}"."${r.tablename}"`);
    let unlock = (): void => undefined;
    let locked = (): void => undefined;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const lockHeld = lockSql.begin(async (tx) => {
      await tx.unsafe(`LOCK TABLE ${tables.join(', ')} IN SHARE MODE`);
      locked();
      await new Promise<void>((resolve) => (unlock = resolve));
    });
    await isLocked;
    const fencedId = randomUUID();
    const inFlight = api(`${pausedUrl}/api/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: fencedId, name: 'written by a paused leader', docker_image: TEST_IMAGE, command: ['sh', '-c', 'echo hello | sha256sum'], redundancy: 3, consensus: 2 }),
    });
    await untilUp(async () => {
      const [row] = await probeSql<{ waiting: number }[]>`SELECT count(*)::int AS waiting FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ${schema} AND NOT l.granted`;
      return row!.waiting > 0;
    }, "the leader's write to wait inside PostgreSQL", 15_000);
    paused.kill('SIGSTOP');
    const pausedAt = Date.now();
    await untilUp(async () => (await role(urls[first]!))?.leading, 'the other replica to take the lapsed lease', 30_000);
    const secondTakeoverMs = Date.now() - pausedAt;
    const [lease] = await probeSql<{ token: string; holder: string }[]>`SELECT token::text, holder FROM ${probeSql(schema)}.leases WHERE name = 'coordinator'`;
    unlock();
    await lockHeld;
    // The write runs now, in PostgreSQL, while its sender is still paused: the fence is checked against the new grant.
    await sleep(500);
    paused.kill('SIGCONT');
    const refused = await inFlight;
    const answer = (await refused.json()) as { code: string; message: string };
    expect(refused.status).toBe(503);
    expect(answer.code).toBe('NOT_LEADER');
    // The write refused may be this one, or a background write queued ahead of it (the coordinator
    // runs its writes one at a time); then this one finds the replica already standing by.
    expect(answer.message).toMatch(/deposed: the store refused its write|is standing by: another replica holds the coordinator lease/);
    // Either way the store's fence refused a write the paused leader sent; its log says so (pino
    // writes asynchronously, so the line may trail the answer).
    await untilUp(async () => /write refused by the store/.test(paused.output()), "the ex-leader's log of the refused write", 5_000);
    expect(await store.documents.get(JOBS_COLLECTION, fencedId)).toBeUndefined();
    await untilUp(async () => (await role(pausedUrl))?.leading === false, 'the resumed ex-leader to stand by', 15_000);
    // The replica that leads takes the same job, and the workers follow it there.
    expect(await submit(fencedId)).toBe(201);
    await untilUp(async () => {
      const job = (await (await api(`${urls[first]}/api/v1/jobs/${fencedId}`)).json()) as JobView;
      return job.status === 'completed';
    }, 'the re-submitted job to complete on the new leader', 30_000);
    const afterPause = await audit();
    expect(afterPause.jobs).toBe(accepted.size + 1);
    await lockSql.end({ timeout: 0 });
    await probeSql.end({ timeout: 0 });

    const reputations = afterPause.workers.map((w) => `${w.name} ${w.reputation_score} (${w.credits_earned} credits)`).join(', ');
    console.log(
      `coordinator failover: ${accepted.size} jobs accepted (${[...accepted.values()].filter((s) => s === 201).length} with 201), ${afterKill.executions} executions, every job completed once; ` +
        `SIGKILL → standby leading in ${takeoverMs} ms; SIGSTOP → other replica leading in ${secondTakeoverMs} ms (lease token ${lease?.token}, holder ${lease?.holder}); ` +
        `paused ex-leader's write refused (503 NOT_LEADER); workers ${reputations}; ` +
        `setup ${Math.round((ready - started) / 1000)} s, stream ${Math.round((streamDone - ready) / 1000)} s, total ${Math.round((Date.now() - started) / 1000)} s`,
    );
    expect(takeoverMs).toBeLessThan(10_000);
  }, 150_000);
});

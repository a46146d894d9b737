/**
 * Two coordinator replicas on one backing store (two SQLite stores on one file, as two processes
 * would open it), competing for the `coordinator` lease: one leads and writes with its fencing
 * token, the other stands by (NOT_LEADER to writes, a warm view for reads) and takes over when the
 * lease passes; a leader that was paused past its lease has its next write refused by the store and
 * steps down. The multi-process version, on PostgreSQL with real workers, is
 * test/e2e/coordinator-failover.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock, systemClock, type Clock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import type { LeaseStore, StateStores } from '../../src/store/ports.ts';
import { Coordinator, COORDINATOR_LEASE, JOBS_COLLECTION, type JobSubmission } from '../../src/jobs/coordinator.ts';
import { authenticateWorker } from '../../src/jobs/credentials.ts';
import type { JobsError } from '../../src/jobs/errors.ts';
import { RecordingWorkerChannel } from '../support/worker-channel.ts';
import { until } from '../support/until.ts';

const TTL = 300;
const job: JobSubmission = { name: 'failover', docker_image: 'arcnet/busybox:test', command: ['sh', '-c', 'echo hello | sha256sum'], redundancy: 3, consensus: 2 };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function sharedFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-coordinator-failover-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'arcnet.db');
}

async function replica(path: string, name: string, options: { clock?: Clock; leases?: (stores: StateStores) => LeaseStore } = {}) {
  const stores = openSqliteStores({ path, clock: systemClock });
  const channel = new RecordingWorkerChannel();
  const coordinator = new Coordinator({
    documents: stores.documents,
    leases: options.leases ? options.leases(stores) : stores.leases,
    instanceId: name,
    clock: options.clock ?? systemClock,
    logger: silentLogger,
    channel,
    config: { leaseTtlMs: TTL, standbyRefreshMs: 50, sweepIntervalMs: 20, cancelGraceMs: 0 },
  });
  channel.bind({ connected: (nodeId) => coordinator.workerConnected(nodeId), acknowledged: (nodeId, executionId) => coordinator.acknowledge(nodeId, executionId) });
  await coordinator.start();
  cleanups.push(async () => {
    await coordinator.stop();
    await stores.close();
  });
  return { coordinator, channel, stores };
}

const refusal = (p: Promise<unknown>): Promise<string | undefined> => p.then(() => undefined, (e: JobsError) => `${e.code} ${String(e.retryable)}`);

describe('coordinator replicas on one store', () => {
  it('lets one lead; the standby answers NOT_LEADER, keeps a warm view, and carries on with every job and worker when the leader goes', async () => {
    const path = sharedFile();
    const a = await replica(path, 'a');
    const b = await replica(path, 'b');
    expect(a.coordinator.role()).toMatchObject({ instance: 'a', leading: true, fencingToken: 1 });
    expect(b.coordinator.role()).toMatchObject({ instance: 'b', leading: false, fencingToken: null });
    const workers = [];
    for (let i = 0; i < 3; i++) {
      const { worker, credential } = await a.coordinator.register({ name: `w${i}`, cpu_cores: 2, memory_gb: 4 });
      workers.push({ id: worker.id, credential });
    }
    const { job: submitted } = await a.coordinator.submit(job);
    expect(await refusal(b.coordinator.submit(job))).toBe('NOT_LEADER true');
    expect(await refusal(b.coordinator.register({ name: 'elsewhere', cpu_cores: 1, memory_gb: 1 }))).toBe('NOT_LEADER true');
    // The standby's view follows the store.
    await until(() => b.coordinator.job(submitted.id)?.status === 'running', 'the standby to see the running job');
    expect([...b.coordinator.allWorkers()]).toHaveLength(3);
    const executions = a.coordinator.executionsOf(submitted.id);
    const first = workers.find((w) => w.id === executions[0]!.node_id)!;
    await a.coordinator.submitResult(authenticateWorker(a.coordinator.worker(first.id), first.id, first.credential), { execution_id: executions[0]!.id, status: 'completed', result: 'x' });

    await a.coordinator.stop();
    await until(() => b.coordinator.leading, 'the standby to take the lease');
    expect(b.coordinator.role().fencingToken).toBe(2);
    // The new leader's sessions get what their workers should run; the second result decides.
    const second = workers.find((w) => w.id === executions[1]!.node_id)!;
    const session = b.channel.connect(second.id);
    await until(() => session.received.length > 0, 'the execution offered by the new leader');
    const outcome = await b.coordinator.submitResult(authenticateWorker(b.coordinator.worker(second.id), second.id, second.credential), { execution_id: executions[1]!.id, status: 'completed', result: 'x' });
    expect(outcome.job.status).toBe('completed');
    expect(b.coordinator.worker(first.id)!.reputation_score).toBe(105);
    expect(b.coordinator.worker(second.id)!.reputation_score).toBe(105);
    expect(b.coordinator.worker(first.id)!.credits_earned).toBe(1);
  });

  it("refuses, in the store, a write by a leader paused past its lease, and that leader steps down", async () => {
    const path = sharedFile();
    // A paused process: its clock stands still and its lease renewal never comes back.
    const frozen = new ManualClock(Date.now());
    let paused = false;
    const stalled: (() => void)[] = [];
    const pausable = (stores: StateStores): LeaseStore => ({
      acquire: (name, holder, ttlMs) => stores.leases.acquire(name, holder, ttlMs),
      renew: (grant, ttlMs) => (paused ? new Promise((resolve) => stalled.push(() => resolve(undefined))) : stores.leases.renew(grant, ttlMs)),
      release: (grant) => stores.leases.release(grant),
      acquireMany: (requests) => stores.leases.acquireMany(requests),
      releaseMany: (grants) => stores.leases.releaseMany(grants),
      current: (name) => stores.leases.current(name),
    });
    const a = await replica(path, 'a', { clock: frozen, leases: pausable });
    // Resumed at the end: the stalled renewal answers that the grant was lost.
    cleanups.push(() => {
      paused = false;
      for (const resume of stalled.splice(0)) resume();
    });
    expect(a.coordinator.leading).toBe(true);
    paused = true;
    const b = await replica(path, 'b');
    await until(() => b.coordinator.leading, 'the standby to take the lapsed lease', 5_000);
    expect((await b.stores.leases.current(COORDINATOR_LEASE))?.holder).toBe('b');
    const changes: boolean[] = [];
    a.coordinator.onLeadershipChange((leading) => changes.push(leading));
    // The paused leader still believes it leads; its write goes out with its old token and the store refuses it.
    expect(a.coordinator.leading).toBe(true);
    const id = '00000000-0000-4000-8000-00000000f00d';
    expect(await refusal(a.coordinator.submit({ ...job, id }))).toBe('NOT_LEADER true');
    expect(changes).toEqual([false]);
    expect(a.coordinator.leading).toBe(false);
    expect(await b.stores.documents.get(JOBS_COLLECTION, id)).toBeUndefined();
    // The replica that leads takes the same job.
    expect((await b.coordinator.submit({ ...job, id })).created).toBe(true);
  });
});

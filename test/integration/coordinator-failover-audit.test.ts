/**
 * Why test/e2e/coordinator-failover.test.ts once saw "worker-c's reputation: expected 250 to be 245":
 * a superseded execution that finishes anyway still reports after its job is final, and is judged
 * late against the consensus (+5 and its verdict, in one write). The audit read the executions, then
 * the workers, one list at a time; a late result landing between the two reads shows the worker's +5
 * without the verdict that came with it. The store's history shows both changes are one write (one
 * txTime), so nothing was applied twice or lost; the audit now reads a consistent cut.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { Coordinator, EXECUTIONS_COLLECTION, WORKERS_COLLECTION } from '../../src/jobs/coordinator.ts';
import { authenticateWorker } from '../../src/jobs/credentials.ts';
import { REPUTATION, type JobExecution, type WorkerRecord } from '../../src/jobs/model.ts';
import { RecordingWorkerChannel } from '../support/worker-channel.ts';

const open: { coordinator: Coordinator; stores: StateStores }[] = [];
afterEach(async () => {
  for (const { coordinator, stores } of open.splice(0)) {
    await coordinator.stop();
    await stores.close();
  }
});

describe('a late result after the job is final', () => {
  it('moves the reputation and the verdict in one write; an audit reading executions before workers sees only the +5', async () => {
    const clock = new ManualClock();
    const stores = openSqliteStores({ path: ':memory:', clock });
    const channel = new RecordingWorkerChannel();
    const coordinator = new Coordinator({ documents: stores.documents, clock, logger: silentLogger, channel, config: { sweepIntervalMs: 10_000, cancelGraceMs: 0 } });
    channel.bind({ connected: (nodeId) => coordinator.workerConnected(nodeId), acknowledged: (nodeId, executionId) => coordinator.acknowledge(nodeId, executionId) });
    await coordinator.start();
    open.push({ coordinator, stores });
    const workers: { id: string; credential: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const { worker, credential } = await coordinator.register({ name: `w${i}`, cpu_cores: 2, memory_gb: 4 });
      workers.push({ id: worker.id, credential });
    }
    const { job } = await coordinator.submit({ name: 'hello', docker_image: 'arcnet/busybox:test', command: ['sh', '-c', 'echo hello | sha256sum'], redundancy: 3, consensus: 2 });
    const executions = coordinator.executionsOf(job.id);
    const as = (nodeId: string) => {
      const w = workers.find((x) => x.id === nodeId)!;
      return authenticateWorker(coordinator.worker(w.id), w.id, w.credential);
    };
    for (const execution of executions.slice(0, 2)) {
      clock.advance(10);
      await coordinator.submitResult(as(execution.node_id), { execution_id: execution.id, status: 'completed', result: 'hello\n' });
    }
    expect(coordinator.job(job.id)?.status).toBe('completed');
    const slow = executions[2]!;
    expect(coordinator.executionsOf(job.id)[2]).toMatchObject({ status: 'cancelled', verdict: null });

    // The old audit's order: executions first ...
    const executionsRead = (await stores.documents.list<JobExecution>(EXECUTIONS_COLLECTION)).map((v) => v.body!);
    // ... the superseded execution's result arrives (it finished before the cancel reached it) ...
    clock.advance(10);
    const late = await coordinator.submitResult(as(slow.node_id), { execution_id: slow.id, status: 'completed', result: 'hello\n' });
    expect(late.kind === 'recorded' && late.late).toBe(true);
    // ... then the workers.
    const workersRead = (await stores.documents.list<WorkerRecord>(WORKERS_COLLECTION)).map((v) => v.body!);
    const implied = (cut: readonly JobExecution[], nodeId: string): number => REPUTATION.start + REPUTATION.agree * cut.filter((e) => e.node_id === nodeId && e.verdict === 'agree').length;
    const slowWorker = workersRead.find((w) => w.id === slow.node_id)!;
    expect(slowWorker.reputation_score).toBe(REPUTATION.start + REPUTATION.agree);
    // The inconsistent cut: the +5 without its verdict, as CI reported (250 against 245).
    expect(implied(executionsRead, slow.node_id)).toBe(REPUTATION.start);

    // The store's history: the +5 and the verdict null → agree are the same write (one txTime), once each.
    const workerHistory = await stores.documents.history<WorkerRecord>(WORKERS_COLLECTION, slow.node_id);
    const raised = workerHistory.filter((v, i) => i > 0 && v.body!.reputation_score !== workerHistory[i - 1]!.body!.reputation_score);
    expect(raised.map((v) => v.body!.reputation_score)).toEqual([REPUTATION.start + REPUTATION.agree]);
    const executionHistory = await stores.documents.history<JobExecution>(EXECUTIONS_COLLECTION, slow.id);
    const judged = executionHistory.filter((v, i) => i > 0 && v.body!.verdict !== executionHistory[i - 1]!.body!.verdict);
    expect(judged.map((v) => [v.body!.verdict, v.body!.status])).toEqual([['agree', 'completed']]);
    expect(judged[0]!.txTime).toBe(raised[0]!.txTime);

    // A consistent cut agrees, for every worker.
    const executionsNow = (await stores.documents.list<JobExecution>(EXECUTIONS_COLLECTION)).map((v) => v.body!);
    for (const worker of (await stores.documents.list<WorkerRecord>(WORKERS_COLLECTION)).map((v) => v.body!)) {
      expect(worker.reputation_score, worker.name).toBe(implied(executionsNow, worker.id));
    }
  });
});

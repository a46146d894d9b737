/**
 * The coordinator on a real SQLite store with a manual clock, its workers played in-process through
 * the WorkerChannel port (the in-memory channel, which passes the same contract as the API's
 * WorkerGateway: test/contract/worker-channel.contract.ts): scheduling, k-of-n verification,
 * reputation, credits, stale workers, extras, supersession, late results, credentials, push
 * sessions and a restart from the store file.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { Coordinator, type CoordinatorConfig, type JobSubmission } from '../../src/jobs/coordinator.ts';
import { authenticateReregistration, authenticateWorker, type AuthenticatedWorker } from '../../src/jobs/credentials.ts';
import type { JobsError } from '../../src/jobs/errors.ts';
import { until } from '../support/until.ts';
import { RecordingWorkerChannel } from '../support/worker-channel.ts';

const HELLO_HASH_LINE = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  -\n';

const dirs: string[] = [];
const open: { coordinator: Coordinator; stores: StateStores }[] = [];
afterEach(async () => {
  for (const { coordinator, stores } of open.splice(0)) {
    await coordinator.stop();
    await stores.close();
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function start(config: Partial<CoordinatorConfig> = {}, path?: string, clock = new ManualClock()) {
  const stores = openSqliteStores({ path: path ?? ':memory:', clock });
  const channel = new RecordingWorkerChannel();
  const coordinator = new Coordinator({ documents: stores.documents, clock, logger: silentLogger, channel, config: { sweepIntervalMs: 10, cancelGraceMs: 0, ...config } });
  // Wired as embedded mode wires the WorkerGateway: a new session gets what its worker should run.
  channel.bind({ connected: (nodeId) => coordinator.workerConnected(nodeId), acknowledged: (nodeId, executionId) => coordinator.acknowledge(nodeId, executionId) });
  await coordinator.start();
  open.push({ coordinator, stores });
  return { coordinator, channel, clock, stores };
}

/** Registers workers, each then opening its push session on the channel, as a worker process does. */
async function workers({ coordinator, channel }: { coordinator: Coordinator; channel: RecordingWorkerChannel }, count: number, cpu = 2) {
  const out: { id: string; credential: string; name: string }[] = [];
  for (let i = 0; i < count; i++) {
    const { worker, credential } = await coordinator.register({ name: `w${i}`, cpu_cores: cpu, memory_gb: 4, region: 'CAISO' }, undefined);
    channel.connect(worker.id);
    out.push({ id: worker.id, credential, name: worker.name });
  }
  return out;
}

/** A worker call as the API edge passes it on: the credential checked once, before the coordinator sees it. */
const auth = (coordinator: Coordinator, w: { id: string; credential: string }): AuthenticatedWorker => authenticateWorker(coordinator.worker(w.id), w.id, w.credential);

const helloJob: JobSubmission = { name: 'hello', docker_image: 'arcnet/busybox:test', command: ['sh', '-c', 'echo hello | sha256sum'], redundancy: 3, consensus: 2 };
const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

describe('coordinator', () => {
  it('places n executions on n different workers at once and completes on k matching results, +5 each', async () => {
    const { coordinator, channel } = await start();
    const ws = await workers({ coordinator, channel }, 4);
    const { job } = await coordinator.submit(helloJob);
    expect(job.status).toBe('running');
    expect(coordinator.jobCounts()).toEqual({ total: 1, byStatus: { pending: 0, running: 1, completed: 0, failed: 0 } });
    const assigned = channel.offers.map((o) => o.nodeId);
    expect(new Set(assigned).size).toBe(3);
    for (const w of ws.filter((w) => assigned.includes(w.id))) {
      const [assignment] = channel.forNode(w.id);
      await coordinator.submitResult(auth(coordinator, w), { execution_id: assignment!.execution_id, status: 'completed', result: HELLO_HASH_LINE, result_hash: 'whatever-the-worker-claims' });
    }
    const found = await coordinator.findJob(job.id);
    expect(found!.job.status).toBe('completed');
    expect(found!.job.result).toBe(HELLO_HASH_LINE);
    // The coordinator's own hash of the bytes, not the worker's claim.
    expect(found!.job.result_hash).toBe(sha(HELLO_HASH_LINE));
    // The third result arrived after consensus (2 of 3) and is still scored.
    for (const id of assigned) {
      const worker = coordinator.worker(id)!;
      expect(worker.reputation_score).toBe(105);
      expect(worker.credits_earned).toBe(1);
      expect(worker.successful_jobs_run).toBe(1);
      expect(worker.status).toBe('online');
    }
    expect(found!.executions.every((e) => e.verdict === 'agree')).toBe(true);
    expect(coordinator.jobCounts()).toEqual({ total: 1, byStatus: { pending: 0, running: 0, completed: 1, failed: 0 } });
  });

  it('offers to a worker without a push session are not delivered; its next session gets what it should run', async () => {
    const { coordinator, channel } = await start();
    const ws = await workers({ coordinator, channel }, 3);
    const away = ws[2]!;
    channel.disconnect(away.id);
    const { job } = await coordinator.submit(helloJob);
    expect(channel.forNode(away.id)).toEqual([]);
    // Still its execution: it finds it by polling, or on its next session.
    const [polled] = await coordinator.pendingFor(auth(coordinator, away));
    expect(polled!.job_id).toBe(job.id);
    const session = channel.connect(away.id);
    await until(() => session.received.length > 0, 'the execution offered on the new session');
    expect(session.received).toEqual([{ kind: 'execution', assignment: polled }]);
    // Its acknowledgement over the session marks the execution running.
    session.ack(polled!.execution_id);
    await until(async () => (await coordinator.findJob(job.id))!.executions.find((e) => e.id === polled!.execution_id)?.status === 'running', 'the acknowledged execution to run');
  });

  it('outvotes a Byzantine worker (−10), cancels nothing left, and ranks it last afterwards', async () => {
    const { coordinator, channel } = await start();
    const ws = await workers({ coordinator, channel }, 3);
    const { job } = await coordinator.submit(helloJob);
    const liar = ws[2]!;
    for (const w of [liar, ws[0]!, ws[1]!]) {
      const [assignment] = channel.forNode(w.id);
      await coordinator.submitResult(auth(coordinator, w), { execution_id: assignment!.execution_id, status: 'completed', result: w === liar ? 'deadbeef  -\n' : HELLO_HASH_LINE });
    }
    const found = await coordinator.findJob(job.id);
    expect(found!.job.status).toBe('completed');
    expect(found!.job.result).toBe(HELLO_HASH_LINE);
    expect(coordinator.worker(liar.id)!.reputation_score).toBe(90);
    expect(coordinator.worker(ws[0]!.id)!.reputation_score).toBe(105);
    // A job needing two workers now goes to the two honest ones.
    channel.offers.length = 0;
    await coordinator.submit({ ...helloJob, redundancy: 2, consensus: 2 });
    expect(channel.offers.map((o) => o.nodeId).sort()).toEqual([ws[0]!.id, ws[1]!.id].sort());
  });

  it('supersedes an outstanding execution when consensus is reached, and cancels it on its worker', async () => {
    const { coordinator, channel } = await start();
    const ws = await workers({ coordinator, channel }, 3);
    const { job } = await coordinator.submit(helloJob);
    for (const w of ws.slice(0, 2)) {
      await coordinator.submitResult(auth(coordinator, w), { execution_id: channel.forNode(w.id)[0]!.execution_id, status: 'completed', result: 'same' });
    }
    const slow = ws[2]!;
    const slowExecution = channel.forNode(slow.id)[0]!.execution_id;
    expect(channel.cancels).toEqual([{ nodeId: slow.id, executionId: slowExecution, reason: 'superseded: consensus was reached without it' }]);
    expect(coordinator.worker(slow.id)!.status).toBe('online');
    // Its late result still counts: a liar pays even after the decision.
    const late = await coordinator.submitResult(auth(coordinator, slow), { execution_id: slowExecution, status: 'completed', result: 'different' });
    expect(late.kind === 'recorded' && late.late).toBe(true);
    expect(coordinator.worker(slow.id)!.reputation_score).toBe(90);
    const again = await coordinator.submitResult(auth(coordinator, slow), { execution_id: slowExecution, status: 'completed', result: 'different' });
    expect(again.kind).toBe('duplicate');
    expect(coordinator.worker(slow.id)!.reputation_score).toBe(90);
    expect((await coordinator.findJob(job.id))!.job.status).toBe('completed');
  });

  it('cancels a superseded execution only after a grace, so one about to finish still reports and is scored', async () => {
    const { coordinator, channel } = await start({ cancelGraceMs: 150 });
    const ws = await workers({ coordinator, channel }, 6);
    for (const round of [0, 1]) {
      channel.offers.length = 0;
      await coordinator.submit({ ...helloJob, name: `round ${round}` });
      const assigned = [...new Set(channel.offers.map((o) => o.nodeId))].map((id) => ws.find((w) => w.id === id)!);
      for (const w of assigned.slice(0, 2)) await coordinator.submitResult(auth(coordinator, w), { execution_id: channel.forNode(w.id).at(-1)!.execution_id, status: 'completed', result: 'same' });
      const third = assigned[2]!;
      const execution = channel.forNode(third.id).at(-1)!.execution_id;
      if (round === 0) {
        // Finishes within the grace: reported, scored, never cancelled.
        await coordinator.submitResult(auth(coordinator, third), { execution_id: execution, status: 'completed', result: 'same' });
        await new Promise((resolve) => setTimeout(resolve, 250));
        expect(channel.cancels).toEqual([]);
        expect(coordinator.worker(third.id)!.reputation_score).toBe(105);
      } else {
        expect(channel.cancels).toEqual([]);
        await until(() => channel.cancels.find((c) => c.executionId === execution), 'the cancel after the grace');
      }
    }
  });

  it('does not wait forever on a 1–1 split whose third worker died: it goes offline (−20) and an extra execution decides', async () => {
    const { coordinator, channel, clock } = await start({ staleAfterMs: 120_000 });
    const ws = await workers({ coordinator, channel }, 4);
    const { job } = await coordinator.submit(helloJob);
    const assigned = [...new Set(channel.offers.map((o) => o.nodeId))];
    const [a, b, dead] = assigned.map((id) => ws.find((w) => w.id === id)!);
    const spare = ws.find((w) => !assigned.includes(w.id))!;
    await coordinator.submitResult(auth(coordinator, a!), { execution_id: channel.forNode(a!.id)[0]!.execution_id, status: 'completed', result: 'x' });
    await coordinator.submitResult(auth(coordinator, b!), { execution_id: channel.forNode(b!.id)[0]!.execution_id, status: 'completed', result: 'y' });
    // Everyone but the dead worker keeps reporting.
    clock.advance(100_000);
    for (const w of [a!, b!, spare]) await coordinator.heartbeat(auth(coordinator, w), { cpu_usage: 0.1 });
    clock.advance(30_000);
    await until(() => coordinator.worker(dead!.id)!.status === 'offline', 'the silent worker to go offline');
    expect(coordinator.worker(dead!.id)!.reputation_score).toBe(80);
    const extra = await until(() => channel.forNode(spare.id)[0], 'an extra execution on the spare worker');
    await coordinator.submitResult(auth(coordinator, spare), { execution_id: extra.execution_id, status: 'completed', result: 'x' });
    const found = await coordinator.findJob(job.id);
    expect(found!.job.status).toBe('completed');
    expect(found!.job.result).toBe('x');
    expect(found!.executions.map((e) => e.status).sort()).toEqual(['completed', 'completed', 'completed', 'failed']);
    expect(found!.executions.find((e) => e.node_id === dead!.id)!.error_message).toMatch(/went silent for 130 s/);
  });

  it('fails a job with the reason once consensus is out of reach within max_executions', async () => {
    const { coordinator, channel } = await start();
    const ws = await workers({ coordinator, channel }, 3);
    const { job } = await coordinator.submit({ ...helloJob, max_executions: 3 });
    await coordinator.submitResult(auth(coordinator, ws[0]!), { execution_id: channel.forNode(ws[0]!.id)[0]!.execution_id, status: 'completed', result: 'x' });
    await coordinator.submitResult(auth(coordinator, ws[1]!), { execution_id: channel.forNode(ws[1]!.id)[0]!.execution_id, status: 'failed', exit_code: 137, error_message: 'container exceeded its memory limit' });
    await coordinator.submitResult(auth(coordinator, ws[2]!), { execution_id: channel.forNode(ws[2]!.id)[0]!.execution_id, status: 'completed', result: 'y' });
    const found = await coordinator.findJob(job.id);
    expect(found!.job.status).toBe('failed');
    expect(found!.job.error_message).toMatch(/out of reach: results split 1–1, 1 failed or timed out.*room for 0 more/);
    // Nobody is scored without a consensus.
    expect(ws.map((w) => coordinator.worker(w.id)!.reputation_score)).toEqual([100, 100, 100]);
  });

  it('abandons wanted executions no worker can take in time, so the job still ends', async () => {
    const { coordinator, channel, clock } = await start({ schedulingTimeoutMs: 60_000 });
    await workers({ coordinator, channel }, 1);
    const { job } = await coordinator.submit(helloJob);
    expect(job.status).toBe('running');
    clock.advance(61_000);
    const failed = await until(async () => {
      const found = await coordinator.findJob(job.id);
      return found?.job.status === 'failed' ? found.job : undefined;
    }, 'the starved job to fail');
    expect(failed.error_message).toMatch(/out of reach: 2 wanted executions found no worker within 60 s \(no candidate .* among 1 node: 1 node already running or having run this job\)/);
  });

  it('refuses bad submissions and results with a code and a message naming the problem; credentials are checked before any call', async () => {
    const { coordinator, channel } = await start();
    const [w, other] = await workers({ coordinator, channel }, 3);
    const refusal = async (p: Promise<unknown>) => p.then(() => undefined, (e: JobsError) => `${e.code} ${e.message}`);
    const check = (f: () => unknown): string | undefined => {
      try {
        f();
        return undefined;
      } catch (error) {
        return `${(error as JobsError).code} ${(error as JobsError).message}`;
      }
    };
    expect(await refusal(coordinator.submit({ ...helloJob, consensus: 4 }))).toMatch(/^INVALID_INPUT consensus 4 is more than redundancy 3/);
    expect(await refusal(coordinator.submit({ ...helloJob, required_cpu: -1 }))).toMatch(/^INVALID_INPUT required_cpu must not be negative/);
    expect(await refusal(coordinator.submit({ ...helloJob, command: [] }))).toMatch(/^INVALID_INPUT command must have at least one element/);
    expect(await refusal(coordinator.submit({ ...helloJob, redundancy: 99, consensus: 60 }))).toMatch(/^INVALID_INPUT redundancy 99 is above/);
    const fixed = { ...helloJob, id: '00000000-0000-4000-8000-0000000000aa' };
    expect((await coordinator.submit(fixed)).created).toBe(true);
    expect((await coordinator.submit(fixed)).created).toBe(false);
    expect(await refusal(coordinator.submit({ ...fixed, command: ['true'] }))).toMatch(/^CONFLICT job .* already exists with a different image or command/);
    const mine = channel.forNode(w!.id)[0]!;
    // The edge's check, done once per worker call.
    expect(check(() => authenticateWorker(coordinator.worker(w!.id), w!.id, undefined))).toMatch(/^UNAUTHENTICATED missing worker credential/);
    expect(check(() => authenticateWorker(coordinator.worker(w!.id), w!.id, other!.credential))).toMatch(/^FORBIDDEN the credential presented does not belong/);
    expect(check(() => authenticateWorker(coordinator.worker('00000000-0000-4000-8000-000000000001'), '00000000-0000-4000-8000-000000000001', w!.credential))).toMatch(/^NOT_FOUND node .* is not registered/);
    expect(check(() => authenticateReregistration(coordinator.worker(w!.id), 'arcw_wrong'))).toMatch(/^FORBIDDEN/);
    expect(check(() => authenticateReregistration(coordinator.worker(w!.id), undefined))).toMatch(/^UNAUTHENTICATED/);
    // What the coordinator itself refuses, for an authenticated worker.
    expect(await refusal(coordinator.submitResult(auth(coordinator, other!), { execution_id: mine.execution_id, status: 'completed', result: 'x' }))).toMatch(/^FORBIDDEN execution .* is assigned to node/);
    expect(await refusal(coordinator.submitResult(auth(coordinator, w!), { execution_id: '00000000-0000-4000-8000-000000000000', status: 'completed', result: 'x' }))).toMatch(/^NOT_FOUND execution .* is not known/);
    expect(await refusal(coordinator.submitResult(auth(coordinator, w!), { execution_id: mine.execution_id, status: 'completed', result: 'x'.repeat((4 << 20) + 1) }))).toMatch(/^TOO_LARGE result of/);
    expect(await refusal(coordinator.register({ id: w!.id, name: 'impostor', cpu_cores: 1, memory_gb: 1 }))).toMatch(/^UNAUTHENTICATED node .* is already registered/);
  });

  it('carries on after a restart from its store: open jobs, executions, reputation and credentials survive', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arcnet-coordinator-'));
    dirs.push(dir);
    const path = join(dir, 'arcnet.db');
    const clock = new ManualClock();
    const first = await start({}, path, clock);
    const ws = await workers(first, 3);
    const { job } = await first.coordinator.submit(helloJob);
    const [a, b] = ws;
    await first.coordinator.submitResult(auth(first.coordinator, a!), { execution_id: first.channel.forNode(a!.id)[0]!.execution_id, status: 'completed', result: 'x' });
    const bExecution = first.channel.forNode(b!.id)[0]!.execution_id;
    await first.coordinator.stop();
    await first.stores.close();
    open.splice(0);

    // Down for longer than the stale timeout: that silence is the coordinator's, not the workers'.
    clock.advance(200_000);
    const second = await start({}, path, clock);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(ws.map((w) => second.coordinator.worker(w.id)!.status)).not.toContain('offline');
    expect(second.coordinator.worker(a!.id)!.reputation_score).toBe(100);
    expect(second.coordinator.job(job.id)!.status).toBe('running');
    // The worker polls (it lost its push session in the restart) and still finds its execution.
    const pending = await second.coordinator.pendingFor(auth(second.coordinator, b!));
    expect(pending.map((p) => p.execution_id)).toEqual([bExecution]);
    // Or it opens a session on the restarted coordinator, which offers it the execution again.
    const session = second.channel.connect(b!.id);
    await until(() => session.received.length > 0, 'the execution offered again after the restart');
    expect(session.received.map((d) => (d.kind === 'execution' ? d.assignment.execution_id : d.kind))).toEqual([bExecution]);
    await second.coordinator.submitResult(auth(second.coordinator, b!), { execution_id: bExecution, status: 'completed', result: 'x' });
    expect(second.coordinator.job(job.id)!.status).toBe('completed');
    expect(second.coordinator.worker(a!.id)!.reputation_score).toBe(105);
    expect(second.coordinator.jobCounts()).toEqual({ total: 1, byStatus: { pending: 0, running: 0, completed: 1, failed: 0 } });
  });
});

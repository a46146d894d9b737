/**
 * Seed 004 end to end, as an operator runs it: `arcnet coordinator` and real `arcnet agent --worker`
 * processes running every execution in a real container through the Docker Engine API (Podman's
 * service in CI). A Byzantine worker is a raw HTTP client, as a real one would be: it does not run
 * our software.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startCli as start, untilUp } from '../support/processes.ts';

const until = <T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> => untilUp(probe, what, timeoutMs);
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { needEngines } from '../support/engines.ts';
import { DockerRuntime } from '../../src/agent/docker-runtime.ts';
import { operatorKeyIn } from '../support/api-key.ts';
import { readFileSync } from 'node:fs';

const SEED_HASH = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03';
const engine = needEngines('containers');
const endpoint = testEngineEndpoint();




interface NodeView {
  id: string;
  name: string;
  status: string;
  reputation_score: number;
  credits_earned: number;
  worker_status?: string;
}
interface JobView {
  id: string;
  status: string;
  result: string | null;
  result_hash: string | null;
  error_message: string | null;
  executions: { node_id: string; status: string; verdict: string | null; error_message: string | null }[];
}

describe.skipIf(!engine.available)(engine.title('verified jobs with real workers and containers'), () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-jobs-e2e-'));
  const children: ChildProcess[] = [];
  let url = '';
  let port = 0;
  const keyOf = (): string => operatorKeyIn(join(dir, 'coordinator'));
  const coordinatorArgs = (): string[] => ['coordinator', '--port', String(port), '--data-dir', join(dir, 'coordinator'), '--worker-stale-after', '3000', '--log-level', 'warn'];
  const workers = new Map<string, ChildProcess & { output: () => string }>();
  let coordinator: ChildProcess & { output: () => string };

  const api = async <T>(path: string, init?: RequestInit): Promise<{ status: number; body: T }> => {
    const response = await fetch(`${url}${path}`, { ...init, headers: { 'content-type': 'application/json', authorization: `Bearer ${keyOf()}`, ...init?.headers } });
    return { status: response.status, body: (await response.json()) as T };
  };
  const nodes = async (): Promise<NodeView[]> => (await api<{ nodes: NodeView[] }>('/api/v1/nodes')).body.nodes;
  const nodeNamed = async (name: string): Promise<NodeView> => (await nodes()).find((n) => n.name === name)!;
  const submit = async (job: Record<string, unknown>): Promise<string> => {
    const { status, body } = await api<{ id: string; message?: string }>('/api/v1/jobs', { method: 'POST', body: JSON.stringify({ docker_image: TEST_IMAGE, ...job }) });
    expect(status, body.message).toBe(201);
    return body.id;
  };
  const final = (id: string, timeoutMs = 30_000): Promise<JobView> =>
    until(async () => {
      const { body } = await api<JobView>(`/api/v1/jobs/${id}`);
      return body.status === 'completed' || body.status === 'failed' ? body : undefined;
    }, `job ${id} to finish`, timeoutMs);

  const startWorker = (name: string): void => {
    const worker = start([
      'agent', '--worker', '--no-inference', '--server', url, '--token', keyOf(), '--node-key', join(dir, `${name}.key`), '--name', name, '--docker-host', endpoint,
      '--worker-state', join(dir, `${name}.json`), '--cpus', '2', '--memory-gb', '2', '--heartbeat-interval', '500', '--log-level', 'warn',
    ]);
    children.push(worker);
    workers.set(name, worker);
  };

  beforeAll(async () => {
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // A short stale timeout so a killed worker is noticed within the test.
    coordinator = start(coordinatorArgs());
    children.push(coordinator);
    await until(async () => (await fetch(`${url}/health`)).ok, 'the coordinator to answer /health');
    for (const name of ['honest-a', 'honest-b', 'honest-c']) startWorker(name);
    await until(async () => (await nodes()).filter((n) => n.status === 'online').length === 3 && (await api<{ workers: { connected: number } }>('/stats')).body.workers.connected === 3, 'three workers online with push sessions');
  }, 60_000);

  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs the seed's example on three workers: the container's hash is the result and all three gain 5", async () => {
    const id = await submit({ name: 'seed example', command: ['sh', '-c', 'echo hello | sha256sum'], redundancy: 3, consensus: 2 });
    const job = await final(id);
    expect(job.status).toBe('completed');
    expect(job.result).toBe(`${SEED_HASH}  -\n`);
    expect(job.executions).toHaveLength(3);
    expect(new Set(job.executions.map((e) => e.node_id)).size).toBe(3);
    // The third result may arrive after consensus; it is still scored.
    await until(async () => (await nodes()).every((n) => n.reputation_score === 105), 'all three workers at 105');
    expect((await nodes()).map((n) => n.credits_earned)).toEqual([1, 1, 1]);
    const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${keyOf()}` } })).text();
    expect(metrics).toMatch(/arcnet_jobs_total\{status="completed"\} 1/);
    expect(metrics).toMatch(/arcnet_verification_consensus_total\{outcome="reached"\} 1/);
    expect(metrics).toMatch(/arcnet_job_execution_duration_seconds_count\{status="completed"\} [1-3]/);
  });

  it('outvotes a Byzantine worker, which loses 10 and is ranked last afterwards', async () => {
    const registered = await api<{ node: { id: string }; credential: string }>('/api/v1/nodes/register', { method: 'POST', body: JSON.stringify({ name: 'byzantine', cpu_cores: 4, memory_gb: 4 }) });
    expect(registered.status).toBe(201);
    const { node, credential } = registered.body;
    const auth = { authorization: `Bearer ${credential}` };
    // n=4, k=3: every worker gets an execution, the liar included.
    const id = await submit({ name: 'byzantine round', command: ['sh', '-c', 'echo hello | sha256sum'], redundancy: 4, consensus: 3 });
    const pending = await until(async () => {
      const { body } = await api<{ jobs: { execution_id: string; job_id: string }[] }>(`/api/v1/nodes/${node.id}/pending-jobs`, { headers: auth });
      return body.jobs.find((j) => j.job_id === id);
    }, 'the Byzantine worker to be given an execution');
    const lie = await api<{ late: boolean }>('/api/v1/worker/result', { method: 'POST', headers: auth, body: JSON.stringify({ node_id: node.id, execution_id: pending.execution_id, status: 'completed', result: 'I computed this honestly\n', result_hash: SEED_HASH }) });
    expect(lie.status).toBe(201);
    const job = await final(id);
    expect(job.status).toBe('completed');
    expect(job.result).toBe(`${SEED_HASH}  -\n`);
    expect(job.executions.find((e) => e.node_id === node.id)!.verdict).toBe('disagree');
    const after = await nodes();
    expect(after.find((n) => n.id === node.id)!.reputation_score).toBe(90);
    expect(after.filter((n) => n.name.startsWith('honest')).map((n) => n.reputation_score)).toEqual([110, 110, 110]);
    // Ranked last: a job for three goes to the three honest workers.
    const next = await final(await submit({ name: 'after the lie', command: ['echo', 'ok'], redundancy: 3, consensus: 2 }));
    const honestIds = after.filter((n) => n.name.startsWith('honest')).map((n) => n.id).sort();
    expect(next.executions.map((e) => e.node_id).sort()).toEqual(honestIds);
    // Another worker's credential cannot submit for it (403); a guessed one or none at all is a 401.
    const honest = JSON.parse(readFileSync(join(dir, 'honest-a.json'), 'utf8')) as { credential: string };
    const stolen = await api<{ message: string }>('/api/v1/worker/result', { method: 'POST', headers: { authorization: `Bearer ${honest.credential}` }, body: JSON.stringify({ node_id: node.id, execution_id: pending.execution_id, status: 'completed', result: 'x' }) });
    expect(stolen.status).toBe(403);
    const guessed = await api<{ message: string }>('/api/v1/worker/result', { method: 'POST', headers: { authorization: 'Bearer arcw_guess' }, body: JSON.stringify({ node_id: node.id, execution_id: pending.execution_id, status: 'completed', result: 'x' }) });
    expect(guessed.status).toBe(401);
    const anonymous = await api<{ message: string }>(`/api/v1/nodes/${node.id}/heartbeat`, { method: 'POST', headers: { authorization: '' }, body: '{}' });
    expect(anonymous.status).toBe(401);
  });

  it('fails an execution that exceeds its memory limit or its timeout, with the reason', async () => {
    const oom = await final(await submit({ name: 'too much memory', command: ['sh', '-c', 'head -c 400m /dev/zero | tail'], required_memory: 0.03, redundancy: 1, consensus: 1, max_executions: 1 }));
    expect(oom.status).toBe('failed');
    expect(oom.executions[0]!.status).toBe('failed');
    expect(oom.executions[0]!.error_message).toMatch(/exceeded its memory limit of 31 MB/);
    const slow = await final(await submit({ name: 'too slow', command: ['sleep', '30'], timeout_seconds: 1, redundancy: 1, consensus: 1, max_executions: 1 }));
    expect(slow.status).toBe('failed');
    expect(slow.executions[0]!.status).toBe('timed_out');
    expect(slow.executions[0]!.error_message).toMatch(/ran past its timeout of 1 s/);
    expect(slow.error_message).toMatch(/out of reach/);
  });

  it('completes a job through an extra execution when a worker is SIGKILLed mid-job; the dead worker goes offline with −20', async () => {
    startWorker('spare');
    await until(async () => (await nodeNamed('spare'))?.status === 'online', 'the spare worker online');
    // k = n = 3 on three of the four workers: losing one needs an extra execution on the fourth.
    const id = await submit({ name: 'survives a crash', command: ['sh', '-c', 'sleep 2; echo survived'], redundancy: 3, consensus: 3 });
    const running = await until(async () => {
      const { body } = await api<JobView>(`/api/v1/jobs/${id}`);
      return body.executions.length === 3 && body.executions.every((e) => e.status === 'running') ? body : undefined;
    }, 'three running executions');
    const victimId = running.executions[0]!.node_id;
    const { name: victimName, reputation_score: before } = (await nodes()).find((n) => n.id === victimId)!;
    workers.get(victimName)!.kill('SIGKILL');
    const job = await final(id, 40_000);
    expect(job.status).toBe('completed');
    expect(job.result).toBe('survived\n');
    expect(job.executions).toHaveLength(4);
    const dead = job.executions.find((e) => e.node_id === victimId)!;
    expect(dead.status).toBe('failed');
    expect(dead.error_message).toMatch(/went silent/);
    const victim = (await nodes()).find((n) => n.id === victimId)!;
    expect(victim.status).toBe('offline');
    expect(victim.reputation_score).toBe(before - 20);
    // Restarted, it proves its identity with the stored credential, keeps its reputation, and removes the container it left.
    const runtime = new DockerRuntime({ host: endpoint });
    startWorker(victimName);
    await until(async () => (await nodeNamed(victimName)).status === 'online', 'the restarted worker back online');
    expect((await nodeNamed(victimName)).reputation_score).toBe(before - 20);
    expect((await nodes()).filter((n) => n.name === victimName)).toHaveLength(1);
    await until(async () => (await runtime.managedContainers({ 'arcnet.node': victimId })).length === 0, 'the dead run\'s container removed');
    await runtime.close();
  }, 60_000);

  it('loses nothing when the coordinator is SIGKILLed mid-job: restarted on its data, it takes the results workers kept and completes the job', async () => {
    const id = await submit({ name: 'survives the coordinator', command: ['sh', '-c', 'sleep 3; echo still here'], redundancy: 3, consensus: 2 });
    await until(async () => {
      const { body } = await api<JobView>(`/api/v1/jobs/${id}`);
      return body.executions.filter((e) => e.status === 'running').length === 3;
    }, 'three running executions');
    const reputations = new Map((await nodes()).map((n) => [n.id, n.reputation_score]));
    const totalBefore = (await api<{ total: number }>('/api/v1/jobs')).body.total;
    coordinator.kill('SIGKILL');
    await new Promise((resolve) => coordinator.once('exit', resolve));
    // The containers finish while the coordinator is down; the workers keep their results and retry.
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    coordinator = start(coordinatorArgs());
    children.push(coordinator);
    const job = await final(id, 40_000);
    expect(job.status).toBe('completed');
    expect(job.result).toBe('still here\n');
    expect(job.executions.filter((e) => e.verdict === 'agree').length).toBeGreaterThanOrEqual(2);
    // Silence while the coordinator itself was down costs no worker anything.
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    const settled = (await api<JobView>(`/api/v1/jobs/${id}`)).body;
    for (const node of await nodes()) {
      const before = reputations.get(node.id)!;
      const agreed = settled.executions.some((e) => e.node_id === node.id && e.verdict === 'agree');
      expect(node.reputation_score, node.name).toBe(agreed ? before + 5 : before);
    }
    // Accepted jobs from before the kill are all still there.
    expect((await api<{ total: number }>('/api/v1/jobs')).body.total).toBe(totalBefore);
  }, 60_000);
});

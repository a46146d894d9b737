/**
 * As a user would: `arcnet up` as a process, the jobs commands (`submit`, `list`, `get`, `get
 * --watch`) as processes against it, and workers played over the HTTP API by the test itself, so
 * the results (and with them the job's fate) are chosen here.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from '../support/until.ts';
import { parseEnvironment, parseMemoryGb } from '../../src/cli/jobs-commands.ts';

const CLI = join(import.meta.dirname, '../../src/cli/main.ts');
const ENV: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI to its end; a non-zero exit is a result here, not a failure. */
function cli(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { env: ENV, timeout: 20_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** A CLI process left running (for --watch), with what it printed so far. */
function background(args: string[]): { child: ChildProcess; done: Promise<Run>; stderr: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<Run>((resolve) => child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr })));
  return { child, done, stderr: () => stderr };
}

const linesOf = (text: string): string[] => text.trim().split('\n');

interface Worker {
  readonly id: string;
  readonly credential: string;
}

describe('submit flag parsing', () => {
  it('reads memory as Docker sizes, GB when unitless, and environment as NAME=VALUE', () => {
    expect(['512m', '512MB', '1g', '1GiB', '0.5', '2048k', '1.5g'].map(parseMemoryGb)).toEqual([0.5, 0.5, 1, 1, 0.5, 2048 / 1024 / 1024, 1.5]);
    expect(['', 'lots', '0', '0m', '-1g', '1x'].map(parseMemoryGb)).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
    expect(parseEnvironment(['A=1', 'B=x=y', 'EMPTY='])).toEqual({ A: '1', B: 'x=y', EMPTY: '' });
    expect(parseEnvironment(['X'])).toMatch(/--env must be NAME=VALUE/);
    expect(parseEnvironment(['1X=a'])).toMatch(/--env name must be/);
  });
});

describe('arcnet submit / list / get against a running server', () => {
  let server: ChildProcess;
  let url = '';
  let operatorKey = '';
  const children: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-jobs-cli-'));

  beforeAll(async () => {
    server = spawn(process.execPath, [CLI, 'up', '--port', '0', '--memory', '--nodes', '0', '--rate', '0', '--no-status'], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(server);
    let output = '';
    server.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    url = await until(() => /API and console feed: (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1], `arcnet up to print its URL (got: ${output})`, 20_000, { intervalMs: 50 });
    // --memory: the banner is where the operator key is shown; the CLI takes it from the environment.
    operatorKey = await until(() => /operator key \(this run only\): (arck_\S+)/.exec(output)?.[1], 'the operator key in the banner', 5_000, { intervalMs: 50 });
    ENV['ARCNET_API_KEY'] = operatorKey;
  });

  afterAll(() => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const api = async <T>(path: string, init?: { body?: unknown; credential?: string }): Promise<{ status: number; body: T }> => {
    const headers: Record<string, string> = {};
    if (init?.body !== undefined) headers['content-type'] = 'application/json';
    headers['authorization'] = `Bearer ${init?.credential ?? operatorKey}`;
    const response = await fetch(`${url}${path}`, init?.body !== undefined ? { method: 'POST', headers, body: JSON.stringify(init.body) } : { headers });
    return { status: response.status, body: (await response.json()) as T };
  };

  /** Plays a worker: takes its assignment for the job from pending-jobs and reports a result for it. */
  const report = async (worker: Worker, jobId: string, result: { status: 'completed' | 'failed'; result?: string; error_message?: string }): Promise<void> => {
    const assignment = await until(async () => {
      const pending = await api<{ jobs: { execution_id: string; job_id: string }[] }>(`/api/v1/nodes/${worker.id}/pending-jobs`, { credential: worker.credential });
      expect(pending.status).toBe(200);
      return pending.body.jobs.find((a) => a.job_id === jobId);
    }, `an execution of ${jobId} for worker ${worker.id}`);
    const answer = await api(`/api/v1/worker/result`, { credential: worker.credential, body: { node_id: worker.id, execution_id: assignment.execution_id, exit_code: result.status === 'completed' ? 0 : 1, duration_ms: 42, ...result } });
    expect(answer.status).toBe(201);
  };

  it('submits with the seed’s flags, lists, gets by id and by prefix, and refuses with one line', async () => {
    const input = join(dir, 'input.txt');
    writeFileSync(input, 'line one\nline two\n');
    // Each CLI process costs about a second of start-up, so they run side by side where order does not matter.
    const [submitted, refused, badEnv, noImage] = await Promise.all([
      cli(['submit', '--server', url, '--json', '--name', 'Test', '--image', 'alpine:3', '--cmd', 'echo', '--cmd', 'hello world', '--env', 'A=1', '--env', 'B=x=y', '--memory', '512m', '--cpu', '0.5', '--redundancy', '3', '--consensus', '2', '--timeout', '60', '--credits', '2', '--description', 'from the e2e test', '--input-file', input]),
      cli(['submit', '--server', url, '--name', 'Test', '--image', 'alpine:3', '--cmd', 'echo', '--redundancy', '3', '--consensus', '4']),
      cli(['submit', '--server', url, '--name', 'Test', '--image', 'alpine:3', '--cmd', 'echo', '--env', 'X']),
      cli(['submit', '--server', url, '--name', 'Test', '--cmd', 'echo', '--input-file', join(dir, 'missing.txt')]),
    ]);

    expect(submitted.code, submitted.stderr).toBe(0);
    const job = JSON.parse(submitted.stdout) as Record<string, unknown>;
    expect(job).toMatchObject({
      name: 'Test',
      description: 'from the e2e test',
      docker_image: 'alpine:3',
      command: ['echo', 'hello world'],
      environment: { A: '1', B: 'x=y' },
      input_data: 'line one\nline two\n',
      required_memory: 0.5,
      required_cpu: 0.5,
      required_gpu: false,
      network: false,
      redundancy: 3,
      consensus: 2,
      timeout_seconds: 60,
      credits_required: 2,
      status: 'pending',
    });
    const id = String(job['id']);

    expect(refused.code).toBe(2);
    expect(linesOf(refused.stderr)).toHaveLength(1);
    expect(refused.stderr).toMatch(/^arcnet: the server refused the job: consensus 4 is more than redundancy 3/);
    for (const [run, problem] of [[badEnv, /--env must be NAME=VALUE, got "X"/], [noImage, /--image is required/]] as const) {
      expect(run.code, run.stderr).toBe(2);
      expect(linesOf(run.stderr)).toHaveLength(1);
      expect(run.stderr).toMatch(problem);
      expect(run.stdout).toBe('');
    }

    const [listed, byId, byPrefix, unknown, unknownPrefix] = await Promise.all([
      cli(['list', '--server', url]),
      cli(['get', id, '--server', url]),
      cli(['get', id.slice(0, 8), '--server', url]),
      cli(['get', '00000000-0000-4000-8000-000000000000', '--server', url]),
      cli(['get', id.startsWith('f') ? 'e' : 'f', '--server', url]),
    ]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^ID\s+NAME\s+IMAGE\s+STATUS\s+N\/K\s+.*SUBMITTED\s+RESULT/);
    expect(listed.stdout).toMatch(new RegExp(`${id.slice(0, 8)}\\s+Test\\s+alpine:3\\s+pending\\s+3/2\\s+0\\s+\\d+s ago`));
    expect(listed.stdout).toMatch(/\n1 job \(of 1\)\n$/);

    for (const run of [byId, byPrefix]) {
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain(`job          ${id}`);
      expect(run.stdout).toMatch(/command\s+echo 'hello world'/);
      expect(run.stdout).toMatch(/status\s+pending/);
      expect(run.stdout).toMatch(/rules\s+3 executions, 2 must agree, at most 6 in all/);
      expect(run.stdout).toMatch(/environment\s+A=1 B=x=y/);
      expect(run.stdout).toContain('no executions yet');
    }
    expect(unknown.code).toBe(2);
    expect(linesOf(unknown.stderr)).toEqual([`arcnet: job 00000000-0000-4000-8000-000000000000 is not known to ${url}`]);
    expect(unknownPrefix.code).toBe(2);
    expect(linesOf(unknownPrefix.stderr)).toHaveLength(1);
    expect(unknownPrefix.stderr).toMatch(/^arcnet: no job id starts with "[ef]"/);
    expect(unknownPrefix.stdout).toBe('');
  });

  it('get --watch follows a job to consensus (exit 0) and to failure (exit 1)', async () => {
    const workers: Worker[] = [];
    for (const name of ['w1', 'w2', 'w3']) {
      const registered = await api<{ node: { id: string }; credential: string }>('/api/v1/nodes/register', { body: { name, cpu_cores: 2, memory_gb: 4 } });
      expect(registered.status).toBe(201);
      workers.push({ id: registered.body.node.id, credential: registered.body.credential });
    }
    const submit = async (body: Record<string, unknown>): Promise<string> => {
      const answer = await api<{ id: string }>('/api/v1/jobs', { body: { name: 'watched', docker_image: 'alpine:3', command: ['echo', 'same'], ...body } });
      expect(answer.status).toBe(201);
      return answer.body.id;
    };

    // Both watches start together (process start-up is the slow part); half a core each leaves room for both on every worker.
    const agreeing = await submit({ redundancy: 3, consensus: 2, required_cpu: 0.5 });
    const splitting = await submit({ redundancy: 3, consensus: 2, max_executions: 3, required_cpu: 0.5 });
    const watchOk = background(['get', agreeing.slice(0, 8), '--watch', '--interval', '100', '--server', url]);
    const watchFail = background(['get', splitting, '--watch', '--interval', '100', '--server', url]);
    children.push(watchOk.child, watchFail.child);
    await until(() => watchOk.stderr().includes('running') && watchFail.stderr().includes('running'), 'both watches to show their first progress line', 15_000, { intervalMs: 20 });

    // Consensus: two identical results out of three settle it; the third execution is cancelled.
    await report(workers[0]!, agreeing, { status: 'completed', result: 'same\n' });
    await new Promise((resolve) => setTimeout(resolve, 250));
    await report(workers[1]!, agreeing, { status: 'completed', result: 'same\n' });
    // Out of reach: at most 3 executions, results a and b disagree and the third fails.
    await report(workers[0]!, splitting, { status: 'completed', result: 'a' });
    await report(workers[1]!, splitting, { status: 'completed', result: 'b' });
    await report(workers[2]!, splitting, { status: 'failed', error_message: 'container exited 1' });

    const ok = await watchOk.done;
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/status\s+completed/);
    expect(ok.stdout).toMatch(/result\s+same\\n/);
    expect(ok.stdout).toMatch(/ID\s+NODE\s+ATTEMPT\s+STATUS\s+VERDICT\s+EXIT\s+DURATION\s+RESULT HASH\s+ERROR/);
    expect(ok.stdout).toMatch(/completed\s+agree\s+0\s+42ms/);
    expect(ok.stdout).toMatch(/cancelled\s+-/);
    const progress = linesOf(ok.stderr);
    expect(progress[0]).toMatch(new RegExp(`^job ${agreeing.slice(0, 8)} running: 0/3 executions finished, 0 agree, 0 disagree \\[-{8}\\]$`));
    expect(progress).toContain(`job ${agreeing.slice(0, 8)} running: 1/3 executions finished, 1 agree, 0 disagree [####----]`);
    expect(progress.at(-1)).toMatch(/completed: 3\/3 executions finished, 2 agree, 0 disagree \[#{8}\]$/);
    // Not a terminal: a line only when something changed.
    for (let i = 1; i < progress.length; i++) expect(progress[i]).not.toBe(progress[i - 1]);

    const failed = await watchFail.done;
    expect(failed.code, failed.stderr).toBe(1);
    expect(failed.stdout).toMatch(/status\s+failed/);
    expect(failed.stdout).toMatch(/error\s+\S/);
    expect(failed.stdout).toContain('container exited 1');
    expect(linesOf(failed.stderr).at(-1)).toMatch(/failed: 3\/3 executions finished, .*1 failed/);

    const listed = await cli(['list', '--server', url, '--status', 'completed']);
    expect(listed.stdout).toMatch(new RegExp(`${agreeing.slice(0, 8)}\\s+watched\\s+alpine:3\\s+completed\\s+3/2\\s+3\\s+\\S+ ago\\s+same\\\\n`));
    expect(listed.stdout).toMatch(/1 job \(of 3\)/);
  });
});

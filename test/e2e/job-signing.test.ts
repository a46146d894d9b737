/**
 * Signed jobs as an operator sets them up, every step a process: `arcnet jobs keygen` makes alice's
 * key pair, `arcnet coordinator --job-signers` trusts it, a real `arcnet agent --worker
 * --trusted-signers --require-signed-jobs` runs containers on the real engine, and `arcnet submit
 * --sign-key` signs. A signed job runs and shows who signed it; an unsigned one (which this
 * coordinator accepts) is refused by the worker, and `arcnet get` says why. Bad flags end in one line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, freePort, startCli, untilUp } from '../support/processes.ts';
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { needEngines } from '../support/engines.ts';

const SEED_HASH = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03';
const engine = needEngines('containers');
const endpoint = testEngineEndpoint();

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe('arcnet jobs keygen and flags', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-keygen-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const cli = (args: string[]): Promise<Run> =>
    new Promise((resolve, reject) => {
      // Generous: on a busy machine a CLI process can take several seconds just to start.
      execFile(process.execPath, [CLI, ...args], { env: { ...process.env, NO_COLOR: '1' }, timeout: 60_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      });
    });

  it('writes a key pair, the private key 0600, and never overwrites one', async () => {
    const out = join(dir, 'keys');
    const made = await cli(['jobs', 'keygen', '--out', out, '--name', 'alice']);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/wrote Ed25519 key pair "alice"/);
    expect(statSync(join(out, 'alice.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(out, 'alice.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(readFileSync(join(out, 'alice.pub'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    const before = readFileSync(join(out, 'alice.key'), 'utf8');
    const again = await cli(['jobs', 'keygen', '--out', out, '--name', 'alice']);
    expect(again.code).toBe(2);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(again.stderr).toMatch(/alice.key already exists: refusing to overwrite a key/);
    expect(readFileSync(join(out, 'alice.key'), 'utf8')).toBe(before);
  });

  it('refuses bad flags with one line and exit 2', async () => {
    const argvs = [
      ['jobs', 'keygen', '--out', dir, '--name', '../escape'],
      ['jobs', 'keygen', '--name', 'x'],
      ['submit', '--name', 'x', '--image', 'i', '--cmd', 'true', '--sign-key', join(dir, 'keys', 'alice.key')],
      ['submit', '--name', 'x', '--image', 'i', '--cmd', 'true', '--sign-key', join(dir, 'keys', 'alice.pub'), '--key-id', 'alice'],
      ['agent', '--server', 'http://127.0.0.1:1', '--worker', '--no-inference', '--require-signed-jobs'],
      ['agent', '--server', 'http://127.0.0.1:1', '--trusted-signers', dir],
      ['coordinator', '--memory', '--port', '0', '--require-signed-jobs'],
    ];
    // Two at a time: seven Node processes at once starve a two-core machine.
    const runs: Run[] = [];
    for (let i = 0; i < argvs.length; i += 2) runs.push(...(await Promise.all(argvs.slice(i, i + 2).map(cli))));
    const expected = [
      /--name must be letters, digits/,
      /--out is required/,
      /--sign-key and --key-id go together/,
      /--sign-key .*alice.pub: not a PEM private key/,
      /--require-signed-jobs needs --trusted-signers <dir>/,
      /--trusted-signers and --require-signed-jobs are for batch jobs: add --worker/,
      /requires signed jobs but trusts no signer/,
    ];
    runs.forEach((run, i) => {
      expect(run.code, `${expected[i]}: ${run.stderr}`).toBe(2);
      expect(run.stderr.trim().split('\n'), run.stderr).toHaveLength(1);
      expect(run.stderr).toMatch(expected[i]!);
    });
  }, 120_000);
});

describe.skipIf(!engine.available)(engine.title('signed jobs through the CLI, a coordinator and a worker as processes'), () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-signing-e2e-'));
  const keys = join(dir, 'keys');
  const children: ChildProcess[] = [];
  let url = '';
  let env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  const cli = (args: string[]): Promise<Run> =>
    new Promise((resolve, reject) => {
      execFile(process.execPath, [CLI, ...args], { env, timeout: 20_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      });
    });

  beforeAll(async () => {
    expect((await cli(['jobs', 'keygen', '--out', keys, '--name', 'alice'])).code).toBe(0);
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const dataDir = join(dir, 'coordinator');
    const coordinator = startCli(['coordinator', '--port', String(port), '--data-dir', dataDir, '--job-signers', keys, '--log-level', 'warn']);
    children.push(coordinator);
    await untilUp(async () => (await fetch(`${url}/health`)).ok, `the coordinator (${coordinator.output()})`);
    // Where authentication is on, the coordinator keeps an operator key for its own CLI: the submits and the worker's enrolment use it.
    const keyFile = join(dataDir, 'operator.key');
    if (existsSync(keyFile)) env = { ...env, ARCNET_API_KEY: readFileSync(keyFile, 'utf8').trim() };
    const worker = startCliWith(env, [
      'agent', '--worker', '--no-inference', '--server', url, '--name', 'careful', '--docker-host', endpoint, '--worker-state', join(dir, 'worker.json'),
      '--cpus', '2', '--memory-gb', '2', '--heartbeat-interval', '500', '--trusted-signers', keys, '--require-signed-jobs', '--log-level', 'warn',
    ]);
    children.push(worker);
    await untilUp(async () => {
      const stats = (await (await fetch(`${url}/stats`, { headers: env['ARCNET_API_KEY'] ? { authorization: `Bearer ${env['ARCNET_API_KEY']}` } : {} })).json()) as { workers?: { connected?: number } };
      return stats.workers?.connected === 1;
    }, `the worker's push session (${worker.output()})`, 30_000);
  }, 60_000);

  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const submit = (extra: string[]): Promise<Run> => cli(['submit', '--server', url, '--image', TEST_IMAGE, '--cmd', 'sh', '--cmd', '-c', '--cmd', 'echo hello | sha256sum', '--redundancy', '1', '--max-executions', '1', '--memory', '256m', '--timeout', '30', ...extra]);
  const idOf = (run: Run): string => /job ([0-9a-f-]{36})/.exec(run.stdout)![1]!;

  it('runs a job signed with arcnet submit --sign-key, and shows who signed it', async () => {
    const submitted = await submit(['--name', 'signed', '--sign-key', join(keys, 'alice.key'), '--key-id', 'alice']);
    expect(submitted.code, submitted.stderr).toBe(0);
    expect(submitted.stdout).toMatch(/^submitted job [0-9a-f-]{36} \((pending|running)\): 1 executions, 1 must agree, signed by alice/);
    const watched = await cli(['get', idOf(submitted), '--server', url, '--watch', '--interval', '200', '--json']);
    expect(watched.code, watched.stderr).toBe(0);
    expect(JSON.parse(watched.stdout)).toMatchObject({ status: 'completed', result: `${SEED_HASH}  -\n`, signed_by: 'alice' });
    const shown = await cli(['get', idOf(submitted), '--server', url]);
    expect(shown.stdout).toMatch(/signed by\s+alice \(signature verified on submission\)/);
  });

  it('has an unsigned job refused by the worker, which says why, and arcnet get shows it', async () => {
    const submitted = await submit(['--name', 'unsigned']);
    expect(submitted.code, submitted.stderr).toBe(0);
    const id = idOf(submitted);
    const watched = await cli(['get', id, '--server', url, '--watch', '--interval', '200', '--json']);
    expect(watched.code, watched.stderr).toBe(1);
    const job = JSON.parse(watched.stdout) as { status: string; signed_by: string | null; executions: { status: string; error_message: string }[] };
    expect(job).toMatchObject({ status: 'failed', signed_by: null });
    expect(job.executions).toEqual([expect.objectContaining({ status: 'failed', error_message: `job ${id} is not signed, and this worker requires signed jobs: refused to run` })]);
    // The table shortens errors; the start still says whose rule refused it.
    expect((await cli(['get', id, '--server', url])).stdout).toMatch(new RegExp(`failed .* job ${id} is not signed, and`));
  });
});

/** `arcnet <args>` left running with this environment (the key it authenticates with), collecting what it prints. */
function startCliWith(env: NodeJS.ProcessEnv, args: string[]): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return Object.assign(child, { output: () => output });
}

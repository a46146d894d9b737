/**
 * The services commands as an operator uses them: `arcnet up` as a process, a blueprint file applied
 * with `arcnet blueprint apply`, then list, get, scale, `cluster status` (table and --json), `slice`
 * and `cluster nodes`, and delete. A file that is missing or not JSON, and a blueprint the server
 * refuses, end with one line on stderr and a non-zero exit.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { keyedFromDir } from '../support/api-key.ts';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const ECHO = 'org.example:echo:1.0';

describe('arcnet blueprint, scale, slice and cluster against a running server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-services-cli-'));
  const dataDir = join(dir, 'data');
  let server: CliProcess | undefined;
  afterAll(async () => {
    if (server && server.exitCode === null) {
      server.kill('SIGKILL');
      await new Promise((resolve) => server!.once('exit', resolve));
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const cli = (args: string[]): Promise<Run> =>
    new Promise((resolve, reject) => {
      // XTDB_DATA_DIR: where the CLI finds the operator key, as it would beside `arcnet up`.
      execFile(process.execPath, [CLI, ...args], { env: { ...process.env, NO_COLOR: '1', XTDB_DATA_DIR: dataDir, ARCNET_API_KEY: '' }, timeout: 30_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      });
    });
  /** Independent calls two at a time: each is a process start (a second or more on a busy machine), and more at once only queue for the CPU. */
  const cliAll = async <const T extends readonly (readonly string[])[]>(runs: T): Promise<{ -readonly [K in keyof T]: Run }> => {
    const out: Run[] = [];
    for (let i = 0; i < runs.length; i += 2) out.push(...(await Promise.all(runs.slice(i, i + 2).map((args) => cli([...args])))));
    return out as { -readonly [K in keyof T]: Run };
  };
  const oneLineError = (run: Run): string => {
    expect(run.code).not.toBe(0);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    return run.stderr;
  };

  it('applies a blueprint file, shows and scales it, reports the cluster, and deletes it', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    server = startCli(['up', '--port', String(port), '--data-dir', dataDir, '--nodes', '2', '--rate', '0', '--telemetry-interval', '500', '--no-status']);
    const api = keyedFromDir(dataDir);
    await untilUp(async () => ((await (await api(`${url}/api/v1/cluster/nodes`)).json()) as { count: number }).count === 2, 'arcnet up with its 2 simulated nodes', 30_000);
    const s = ['--server', url];

    const file = join(dir, 'web.json');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'web',
        slices: [
          { artifact: ECHO, instances: 2, run: { kind: 'process', command: ['node', 'echo.js'] } },
          { artifact: 'org.example:cache:2.1', instances: 1, run: { kind: 'container', image: 'redis:7', containerPorts: [6379] } },
        ],
      }),
    );
    const applied = await cli(['blueprint', 'apply', file, ...s]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/blueprint web created: 2 slices, 3 instances wanted/);
    const again = await cli(['blueprint', 'apply', file, ...s, '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ created: false, blueprint: { name: 'web' } });

    const [listed, got, gotJson] = await cliAll([['blueprint', 'list', ...s], ['blueprint', 'get', 'web', ...s], ['blueprint', 'get', 'web', ...s, '--json']]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/NAME\s+SLICES\s+INSTANCES\s+APPLIED\s+BY/);
    expect(listed.stdout).toMatch(/web\s+2\s+3\s+/);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toMatch(/org\.example:echo:1\.0\s+-\s+2\s+process node echo\.js/);
    expect(got.stdout).toMatch(/org\.example:cache:2\.1\s+-\s+1\s+container redis:7/);
    expect(JSON.parse(gotJson.stdout)).toMatchObject({ name: 'web', slices: [{ artifact: ECHO, instances: 2 }, { instances: 1 }] });

    const scaled = await cli(['scale', ECHO, '3', ...s]);
    expect(scaled.code, scaled.stderr).toBe(0);
    expect(scaled.stdout).toContain(`${ECHO} in blueprint web: 2 → 3 instances`);

    const missing = join(dir, 'nope.json');
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ "name": "web", ');
    const reserved = join(dir, 'reserved.json');
    writeFileSync(reserved, JSON.stringify({ name: 'bad', slices: [{ artifact: 'org.example:api:1.0', instances: 1, run: { kind: 'process', command: ['x'] } }] }));
    const [status, table, slices, slice, nodes, noFile, notJson, refused, badCount, unknown] = await cliAll([
      ['cluster', 'status', ...s, '--json'],
      ['cluster', 'status', ...s],
      ['slice', 'list', ...s],
      ['slice', 'status', ECHO, ...s],
      ['cluster', 'nodes', ...s],
      ['blueprint', 'apply', missing, ...s],
      ['blueprint', 'apply', broken, ...s],
      ['blueprint', 'apply', reserved, ...s],
      ['scale', ECHO, 'two', ...s],
      ['scale', 'org.example:nobody:1.0', '1', ...s],
    ]);
    expect(status.code, status.stderr).toBe(0);
    const body = JSON.parse(status.stdout) as { leader: unknown; blueprints: { name: string; slices: { artifact: string; wanted: number; active: number }[] }[]; totals: { wanted: number } };
    // The up process leads the cluster (lease services); its simulated nodes run no runner, so nothing is placed.
    expect(body.leader).toMatchObject({ holder: expect.stringMatching(/^arc-/), epoch: expect.any(Number) });
    expect(body.blueprints[0]!.slices.map((x) => [x.artifact, x.wanted, x.active])).toEqual([[ECHO, 3, 0], ['org.example:cache:2.1', 1, 0]]);
    expect(body.totals.wanted).toBe(4);
    expect(table.stdout).toMatch(/leader: arc-/);
    expect(table.stdout).toMatch(/web\s+org\.example:echo:1\.0\s+echo\s+3\s+0/);
    expect(table.stdout).toMatch(/1 blueprints, 2 slices, 0 of 4 instances active/);
    expect(slices.stdout).toMatch(/no slices/);
    expect(slice.stdout).toMatch(new RegExp(`slice ${ECHO} in web: 0 of 3 active`));
    expect(nodes.code, nodes.stderr).toBe(0);
    expect(nodes.stdout).toMatch(/ID\s+NAME\s+STATUS\s+CPU\s+CORES\s+MEMORY\s+TAGS\s+DATASETS\s+SLICES/);
    expect(nodes.stdout).toMatch(/2 nodes/);

    // Refusals: one line each, naming the file or the field.
    expect(oneLineError(noFile)).toContain(`${missing}: cannot be read`);
    expect(oneLineError(notJson)).toContain(`${broken}: not JSON`);
    expect(oneLineError(refused)).toMatch(/answered 400: body\/slices\/0\/service: "api"/);
    expect(oneLineError(badCount)).toMatch(/<instances> must be an integer/);
    expect(oneLineError(unknown)).toMatch(/answered 404/);

    const deleted = await cli(['blueprint', 'delete', 'web', ...s]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toMatch(/blueprint web deleted/);
    const [gone, empty] = await cliAll([['blueprint', 'get', 'web', ...s], ['blueprint', 'list', ...s]]);
    expect(oneLineError(gone)).toMatch(/answered 404: no blueprint web/);
    expect(empty.stdout).toMatch(/no blueprints/);

    server.kill('SIGTERM');
    await new Promise((resolve) => server!.once('exit', resolve));
  }, 150_000);
});

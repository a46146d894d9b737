/**
 * `arcnet token create|list|revoke` as an operator uses them: against a real `arcnet up`, with the
 * operator key the server keeps in its data directory and nothing typed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { bearer } from '../support/api-key.ts';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe('arcnet token against a running server', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'arcnet-token-'));
  let server: CliProcess | undefined;
  afterAll(() => {
    if (server && server.exitCode === null) server.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });
  const cli = (args: string[], env: Record<string, string> = {}): Promise<Run> =>
    new Promise((resolve, reject) => {
      // XTDB_DATA_DIR: where the CLI finds the operator key, as it would beside `arcnet up`.
      execFile(process.execPath, [CLI, ...args], { env: { ...process.env, NO_COLOR: '1', XTDB_DATA_DIR: dataDir, ARCNET_API_KEY: '', ...env }, timeout: 20_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      });
    });

  it('creates keys that work for their role only, lists them without secrets, and revokes them', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    server = startCli(['up', '--port', String(port), '--data-dir', dataDir, '--nodes', '0', '--rate', '0', '--no-status']);
    await untilUp(async () => (await fetch(`${url}/health`)).ok, 'arcnet up to answer /health');
    expect(server.output()).toContain(`operator key in ${join(dataDir, 'operator.key')}`);
    expect(statSync(join(dataDir, 'operator.key')).mode & 0o777).toBe(0o600);

    const created = await cli(['token', 'create', '--role', 'viewer', '--name', 'dashboard', '--server', url]);
    expect(created.code, created.stderr).toBe(0);
    const viewer = created.stdout.trim();
    expect(viewer).toMatch(/^arck_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toMatch(/created viewer key [0-9a-f]{16} "dashboard"; it is shown only this once/);
    expect((await fetch(`${url}/stats`, { headers: bearer(viewer) })).status).toBe(200);
    const submit = await fetch(`${url}/api/v1/jobs`, { method: 'POST', headers: { ...bearer(viewer), 'content-type': 'application/json' }, body: '{}' });
    expect(submit.status).toBe(403);

    const listed = await cli(['token', 'list', '--server', url]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/viewer\s+dashboard\s+-\s+-\s+active/);
    expect(listed.stdout).toMatch(/operator\s+operator \(created at first start\)/);
    expect(listed.stdout).not.toContain('arck_');

    // A viewer may not make keys: one line, the server's reason, exit 2.
    const refused = await cli(['token', 'create', '--role', 'operator', '--server', url], { ARCNET_API_KEY: viewer });
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/answered 403: .*needs an API key with role operator/);
    const noZone = await cli(['token', 'create', '--role', 'enrolment', '--server', url]);
    expect(noZone.code).toBe(2);
    expect(noZone.stderr).toMatch(/geozone/);

    const id = /^arck_([0-9a-f]{16})_/.exec(viewer)![1]!;
    const revoked = await cli(['token', 'revoke', id, '--server', url]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect((await fetch(`${url}/stats`, { headers: bearer(viewer) })).status).toBe(401);
    expect((await cli(['token', 'list', '--server', url])).stdout).toMatch(/dashboard\s+-\s+-\s+revoked/);

    server.kill('SIGINT');
    await new Promise((resolve) => server!.once('exit', resolve));
  }, 60_000);
});

/**
 * A config file shaped like seed 000's config.edn, as an operator would hand it to `arcnet up`: the
 * settings ArcNet uses are applied (data directory, geozone, scheduler, log level), the ones it does
 * not use yet are named in exactly one warning line, and an unknown key stops the command with one
 * line naming the file and the key.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { keyedFromDir } from '../support/api-key.ts';

const run = promisify(execFile);

async function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('arcnet up with a config file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-config-'));
  const children: CliProcess[] = [];
  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it("applies what ArcNet uses of seed 000's sections and names the rest once", async () => {
    const dataDir = join(dir, 'state');
    // The seed's file without its kafka section (which would move `up` onto Kafka).
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        xtdb: { 'data-dir': dataDir, 'geozone-id': 'CAISO' },
        scheduler: { 'poll-interval-ms': 100, 'reservation-timeout-ms': 20000, 'max-retries': 2 },
        bridge: { 'globus-endpoint': 'ornl-frontier', 'transfer-timeout-ms': 3600000 },
        observability: { 'prometheus-port': 9090, 'otel-endpoint': 'http://localhost:4317', 'log-level': ':warn' },
      }),
    );
    const port = await freePort();
    const up = startCli(['up', '--config', config, '--port', String(port), '--nodes', '3', '--rate', '0', '--no-status']);
    // The data directory comes from the config file, and the operator key with it.
    const api = keyedFromDir(dataDir);
    children.push(up);
    const url = `http://127.0.0.1:${port}`;
    const stats = await untilUp(async () => {
      const body = (await (await api(`${url}/stats`)).json()) as { nodes: { total: number; byGeozone: Record<string, unknown> } };
      return body.nodes.total === 3 ? body : undefined;
    }, 'three simulated nodes');
    expect(Object.keys(stats.nodes.byGeozone)).toEqual(['CAISO']);
    expect(existsSync(join(dataDir, 'arcnet.db'))).toBe(true);
    const health = (await (await fetch(`${url}/health`)).json()) as { modules: { scheduler: Record<string, unknown>; bridge: Record<string, unknown> } };
    expect(health.modules.scheduler).toMatchObject({ geozones: ['CAISO'], reservationTtlMs: 20000, maxRetries: 2 });
    // bridge.globus-endpoint is applied: the Globus mover is there, and says it has no token (none in this environment).
    expect(health.modules.bridge).toMatchObject({ globusEndpoint: 'ornl-frontier', globus: expect.stringMatching(/^no Globus token is configured/) });
    const warnings = up.output().split('\n').filter((line) => line.includes('not used yet'));
    expect(warnings).toEqual([`arcnet: warning: accepted but not used yet (config file ${config}): scheduler.poll-interval-ms, observability.otel-endpoint`]);
    expect(up.output()).toContain(`3 simulated nodes in CAISO, 0 req/s, state in ${dataDir}`);
    up.kill('SIGTERM');
    expect(await exited(up)).toBe(0);
  }, 60_000);

  it('refuses an unknown key with one line naming the file and the key', async () => {
    const config = join(dir, 'typo.json');
    writeFileSync(config, JSON.stringify({ scheduler: { 'max-retry': 2 } }));
    const failure = await run(process.execPath, [CLI, 'up', '--config', config, '--memory', '--port', '0']).catch((error: { code: number; stderr: string }) => error);
    expect((failure as { code: number }).code).toBe(1);
    const stderr = (failure as { stderr: string }).stderr.trim().split('\n');
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(new RegExp(`^arcnet: config file ${config}: unknown setting "scheduler.max-retry"`));
  });
});

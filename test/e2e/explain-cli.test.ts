/**
 * As a user would: `arcnet up` as a process, a routed request, `arcnet explain <id>` (table and
 * --json), then SIGTERM and a restart on the same data directory: the explanation still answers,
 * from the decision record and the node documents in the SQLite file. Errors are one line and a
 * non-zero exit.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { PlacementExplanation } from '../../src/contracts/console.ts';
import { CLI, freePort, startCli, untilUp } from '../support/processes.ts';
import { keyedFromDir, operatorKeyIn } from '../support/api-key.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: readonly string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

async function stopped(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise((resolve) => child.once('exit', resolve));
}

describe('arcnet explain', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'arcnet-explain-e2e-'));
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const child of children) {
      if (child.exitCode === null) child.kill('SIGKILL');
      await stopped(child);
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints why a request went to its node, and still answers after the server restarts on the same data', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const args = ['up', '--port', String(port), '--data-dir', dataDir, '--nodes', '9', '--rate', '0', '--telemetry-interval', '500', '--no-status'];
    const api = keyedFromDir(dataDir);
    let server = startCli(args);
    children.push(server);
    const model = await untilUp(async () => {
      const body = (await (await api(`${url}/api/v1/nodes`)).json()) as { nodes: { modelsLoaded?: string[] }[] };
      if (body.nodes.length < 9) return undefined;
      const counts = new Map<string, number>();
      for (const node of body.nodes) for (const m of node.modelsLoaded ?? []) counts.set(m, (counts.get(m) ?? 0) + 1);
      return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
    }, 'arcnet up with its simulated nodes', 30_000);
    const env = { ...process.env, ARCNET_API_KEY: operatorKeyIn(dataDir), NO_COLOR: '1' };
    const routed = await untilUp(async () => {
      const response = await api(`${url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ modelId: model, contextWindowTokens: 64, requesterGeozone: 'ERCOT' }) });
      return response.status === 201 ? ((await response.json()) as { id: string; nodeId: string; nodeName: string }) : undefined;
    }, 'a routed request');

    const printed = await cli(['explain', routed.id, '--server', url], env);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toMatch(/FILTER\s+REMOVED/);
    for (const filter of ['model-loaded', 'online', 'gpu-headroom', 'battery-reserve', 'not-reserved']) expect(printed.stdout).toContain(filter);
    expect(printed.stdout).toMatch(/SAME-GEOZONE/);
    expect(printed.stdout).toContain(`chosen:    ${routed.nodeName} (${routed.nodeId})`);
    expect(printed.stdout).toMatch(/agrees:\s+yes/);
    const before = JSON.parse((await cli(['explain', routed.id, '--server', url, '--json'], env)).stdout) as PlacementExplanation;
    expect(before).toMatchObject({ outcome: 'dispatched', agrees: true, chosen: { nodeId: routed.nodeId } });

    // A graceful stop writes what the decision log still holds; the restart reads it back from the file.
    server.kill('SIGTERM');
    await stopped(server);
    expect(server.exitCode).toBe(0);
    server = startCli(args);
    children.push(server);
    await untilUp(async () => (await fetch(`${url}/health`)).ok, 'the restarted server');
    const after = JSON.parse((await cli(['explain', routed.id, '--server', url, '--json'], env)).stdout) as PlacementExplanation;
    expect(after).toEqual(before);

    const unknown = randomUUID();
    const missing = await cli(['explain', unknown, '--server', url], env);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain(unknown);
    const malformed = await cli(['explain', 'nope', '--server', url], env);
    expect(malformed.code).not.toBe(0);
    expect(malformed.stderr).toMatch(/not a request or job id/);

    server.kill('SIGTERM');
    await stopped(server);
  }, 120_000);
});

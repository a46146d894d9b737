/**
 * As a user would: start `arcnet up` and a real `arcnet agent` as processes, route requests to the
 * agent, restart the server under it, and read the results back through the API and the CLI.
 */
import { describe, it, expect, afterAll } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CLI, freePort, startCli as start, untilUp } from '../support/processes.ts';
import { LOCK_FILE } from '../../src/main/data-dir-lock.ts';
import { keyed, operatorKeyIn } from '../support/api-key.ts';

const until = <T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 20_000): Promise<T> => untilUp(probe, what, timeoutMs);

const run = promisify(execFile);





async function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('arcnet up with a real agent process', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'arcnet-e2e-'));
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('dispatches to the agent, completes, survives a graceful restart and a SIGKILL, keeps history, refuses a second server on the same data', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const upArgs = ['up', '--port', String(port), '--data-dir', dataDir, '--nodes', '6', '--rate', '2', '--telemetry-interval', '500', '--no-status'];
    let server = start(upArgs);
    children.push(server);
    await until(async () => (await fetch(`${url}/health`)).ok, 'arcnet up to answer /health');
    // The key `arcnet up` made for its own CLI: the agent enrols with it once, then keeps its node key.
    const key = operatorKeyIn(dataDir);
    const api = keyed(key);
    const agent = start(['agent', '--server', url, '--token', key, '--node-key', join(dataDir, 'e2e-agent.key'), '--name', 'e2e-agent', '--geozone', 'ERCOT', '--geohash', '9vk1eh', '--models', 'e2e-model', '--speed', '0.05', '--telemetry-interval', '300', '--log-level', 'warn']);
    children.push(agent);
    const nodes = await until(async () => {
      const body = (await (await api(`${url}/api/v1/nodes`)).json()) as { nodes: { id: string; name: string; status: string }[] };
      return body.nodes.find((n) => n.name === 'e2e-agent' && n.status === 'online');
    }, 'the agent to report telemetry');
    const agentId = nodes.id;

    const submit = async (): Promise<string> => {
      const response = await api(`${url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ modelId: 'e2e-model', contextWindowTokens: 256, requesterGeozone: 'CAISO' }) });
      const body = (await response.json()) as { id: string; nodeId: string; status: string; forwarded: boolean };
      expect(response.status).toBe(201);
      expect(body.nodeId).toBe(agentId);
      expect(body.forwarded).toBe(true);
      return body.id;
    };
    const completed = async (id: string): Promise<Record<string, unknown>> =>
      until(async () => {
        const body = (await (await api(`${url}/api/v1/inference/${id}`)).json()) as Record<string, unknown>;
        return body['status'] === 'completed' ? body : undefined;
      }, `request ${id} to complete`);

    const first = await completed(await submit());
    expect(first['nodeId']).toBe(agentId);
    expect(Number(first['latencyMs'])).toBeGreaterThan(0);

    const cli = await run(process.execPath, [CLI, 'nodes', '--server', url, '--geozone', 'ERCOT'], { env: { ...process.env, NO_COLOR: '1', ARCNET_API_KEY: key } });
    expect(cli.stdout).toMatch(/e2e-agent\s+ERCOT\s+online/);
    const statsJson = JSON.parse((await run(process.execPath, [CLI, 'stats', '--server', url, '--json'], { env: { ...process.env, ARCNET_API_KEY: key } })).stdout) as { nodes: { total: number }; agentsConnected: number };
    expect(statsJson.nodes.total).toBe(7);
    expect(statsJson.agentsConnected).toBe(1);

    // Restart the server on the same port and data directory: the agent reconnects by itself.
    server.kill('SIGINT');
    expect(await exited(server)).toBe(0);
    // What "stopped; state is consistent" promises, read from the data directory: the lock is given
    // back, the WAL is folded into the database file, and the file checks whole.
    expect(existsSync(join(dataDir, LOCK_FILE)), 'the data directory lock after a clean stop').toBe(false);
    const wal = join(dataDir, 'arcnet.db-wal');
    expect(existsSync(wal) ? statSync(wal).size : 0, 'bytes left in the WAL after a clean stop').toBe(0);
    const db = new DatabaseSync(join(dataDir, 'arcnet.db'), { readOnly: true });
    try {
      expect(db.prepare('PRAGMA integrity_check').all()).toEqual([{ integrity_check: 'ok' }]);
    } finally {
      db.close();
    }
    server = start(upArgs);
    children.push(server);
    await until(async () => (await fetch(`${url}/health`)).ok, 'the restarted server');
    await until(async () => {
      const body = (await (await api(`${url}/stats`)).json()) as { agentsConnected: number };
      return body.agentsConnected === 1;
    }, 'the agent to reconnect');
    await until(async () => {
      const body = (await (await api(`${url}/api/v1/nodes/${agentId}`)).json()) as { status: string; lastSeen: string };
      return body.status === 'online' && Date.parse(body.lastSeen) > Date.now() - 2_000;
    }, 'fresh telemetry after the restart');
    const second = await completed(await submit());
    expect(second['nodeId']).toBe(agentId);

    // History written before the restart is still there.
    // Node documents are written in batches every 200 ms, so a loaded machine may need a moment.
    const history = await until(async () => {
      const body = (await (await api(`${url}/api/v1/nodes/${agentId}?history=true`)).json()) as { history: unknown[] };
      return body.history.length > 3 ? body : undefined;
    }, 'the node history from before and after the restart');
    expect(history.history.length).toBeGreaterThan(3);

    // A second server on the same data directory is refused with one line naming the owner.
    const otherPort = await freePort();
    const refused = await run(process.execPath, [CLI, 'up', '--port', String(otherPort), '--data-dir', dataDir, '--no-status']).catch((error: { code: number; stderr: string }) => error);
    expect((refused as { code: number }).code).not.toBe(0);
    expect((refused as { stderr: string }).stderr).toMatch(new RegExp(`data directory .* is in use by another arcnet \\(pid ${server.pid}\\)`));

    // Killed outright: the store stays consistent, the stale lock is taken over, history survives.
    const before = history.history.length;
    server.kill('SIGKILL');
    await exited(server);
    server = start(upArgs);
    children.push(server);
    await until(async () => (await fetch(`${url}/health`)).ok, 'the server after SIGKILL');
    const afterKill = await until(async () => {
      const body = (await (await api(`${url}/api/v1/nodes/${agentId}?history=true`)).json()) as { history: unknown[] };
      return body.history.length > before ? body : undefined;
    }, 'history to keep growing after the kill');
    expect(afterKill.history.length).toBeGreaterThan(before);
    await until(async () => ((await (await api(`${url}/stats`)).json()) as { agentsConnected: number }).agentsConnected === 1, 'the agent to reconnect after the kill');
    expect((await completed(await submit()))['nodeId']).toBe(agentId);

    agent.kill('SIGINT');
    expect(await exited(agent)).toBe(0);
    server.kill('SIGINT');
    expect(await exited(server)).toBe(0);
  }, 90_000);

  it('arcnet simulate connects simulated agents and drives requests through the API', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const server = start(['up', '--port', String(port), '--memory', '--nodes', '0', '--rate', '0', '--no-status']);
    children.push(server);
    await until(async () => (await fetch(`${url}/health`)).ok, 'arcnet up to answer /health');
    // --memory keeps the key in memory only: the banner is the one place it is shown.
    const key = await until(async () => /operator key \(this run only\): (arck_\S+)/.exec(server.output())?.[1], 'the operator key in the banner');
    const api = keyed(key);
    const simulate = start(['simulate', '--server', url, '--token', key, '--nodes', '4', '--geozone', 'PJM', '--rate', '20', '--telemetry-interval', '300']);
    children.push(simulate);
    const stats = await until(async () => {
      const body = (await (await api(`${url}/stats`)).json()) as { agentsConnected: number; nodes: { byGeozone: Record<string, { online: number }> }; inference: { completed: number } };
      return body.agentsConnected === 4 && body.nodes.byGeozone['PJM']?.online === 4 && body.inference.completed >= 10 ? body : undefined;
    }, 'four simulated agents online and requests completed');
    expect(stats.agentsConnected).toBe(4);
    simulate.kill('SIGINT');
    expect(await exited(simulate)).toBe(0);
    await until(async () => ((await (await api(`${url}/stats`)).json()) as { agentsConnected: number }).agentsConnected === 0, 'the agents to disconnect');
    server.kill('SIGINT');
    expect(await exited(server)).toBe(0);
  }, 60_000);

  it('exits non-zero with one line when the server cannot be reached', async () => {
    const port = await freePort();
    const failure = await run(process.execPath, [CLI, 'stats', '--server', `http://127.0.0.1:${port}`]).catch((error: { code: number; stderr: string }) => error);
    expect((failure as { code: number }).code).toBe(2);
    expect((failure as { stderr: string }).stderr.trim().split('\n')).toHaveLength(1);
    expect((failure as { stderr: string }).stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+/);
  });
});

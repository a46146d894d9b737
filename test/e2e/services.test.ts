/**
 * Services end to end (issue 14, seeds 002 and 003), as an operator runs them: a real `arcnet up`,
 * three real `arcnet agent --services` processes with different tags, and a blueprint of three
 * slices: the project's own echo service run as a process (twice: one anywhere, one that wants a
 * dataset hot), and busybox httpd run as a container on Podman, for live nodes only. Every instance
 * reaches ACTIVE on a node its tags allow, requests through the server's router reach every instance,
 * partitioning keeps the live slice off data nodes, the node with the dataset hot wins, and a
 * SIGKILLed agent's instance is ACTIVE elsewhere within seconds while requests keep succeeding.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { operatorKeyIn } from '../support/api-key.ts';
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { needEngines } from '../support/engines.ts';

const engine = needEngines('containers');
const ECHO_SERVICE = join(import.meta.dirname, '../fixtures/echo-service.ts');
const HOT = 'file:///data/prices-2026.parquet';
const ECHO = 'org.arcnet:echo:1.0.0';
const ETL = 'org.arcnet:etl:1.0.0';
const WEB = 'org.arcnet:web:1.0.0';

interface SliceRow {
  node: string;
  instance: number;
  state: string;
  address?: string;
  reason?: string;
}
interface SliceStatus {
  artifact: string;
  wanted: number;
  slices: { instances: SliceRow[] }[];
  unplaced?: { reason: string } | null;
}

const until = <T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> => untilUp(probe, what, timeoutMs);

describe.skipIf(!engine.available)(engine.title('services: blueprints to running, reachable, self-healing instances'), () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-services-e2e-'));
  const children: CliProcess[] = [];
  const agents = new Map<string, CliProcess>();
  const nodeIds = new Map<string, string>();
  let url = '';
  let key = '';

  const api = async <T>(path: string, init?: RequestInit): Promise<{ status: number; body: T; headers: Headers }> => {
    const response = await fetch(`${url}${path}`, { ...init, headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...init?.headers } });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // a service's plain-text answer
    }
    return { status: response.status, body: body as T, headers: response.headers };
  };
  const slice = async (artifact: string): Promise<SliceStatus & { instances: SliceRow[] }> => {
    const { body } = await api<SliceStatus>(`/api/v1/slices/${artifact}`);
    return { ...body, instances: body.slices.flatMap((s) => s.instances) };
  };
  const active = async (artifact: string, count: number): Promise<SliceRow[] | undefined> => {
    const rows = (await slice(artifact)).instances.filter((i) => i.state === 'ACTIVE');
    return rows.length === count ? rows : undefined;
  };
  const nameOf = (nodeId: string): string => [...nodeIds].find(([, id]) => id === nodeId)?.[0] ?? nodeId;

  const agentArgs = new Map<string, string[]>();
  const startAgent = async (name: string, tags: string[], extra: string[] = []): Promise<void> => {
    const base = await freePort();
    const agent = startCli([
      'agent', '--services', '--server', url, '--token', key, '--name', name, '--node-key', join(dir, `${name}.key`), '--tags', tags.join(','),
      '--service-ports', `${base}-${Math.min(65_535, base + 40)}`, '--services-dir', join(dir, `runner-${name}`), '--docker-host', testEngineEndpoint(),
      '--telemetry-interval', '500', '--cpus', '2', '--memory-gb', '2', '--log-level', 'warn', ...extra,
    ]);
    agentArgs.set(name, agent.spawnargs.slice(2));
    children.push(agent);
    agents.set(name, agent);
  };

  beforeAll(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const up = startCli(['up', '--port', String(port), '--data-dir', join(dir, 'data'), '--nodes', '0', '--rate', '0', '--telemetry-interval', '500', '--offline-after', '3000', '--no-status']);
    children.push(up);
    await until(async () => (await fetch(`${url}/health`)).ok, 'arcnet up to answer /health');
    key = operatorKeyIn(join(dir, 'data'));
    await startAgent('data-a', ['data_node', 'region_us_east']);
    await startAgent('live-b', ['live_node', 'low_latency']);
    await startAgent('data-c', ['data_node', 'ram_128gb'], ['--datasets-hot', HOT]);
    const nodes = await until(async () => {
      const listed = (await api<{ nodes: { id: string; name: string; status: string; tags: string[] }[] }>('/api/v1/cluster/nodes')).body.nodes;
      return listed.filter((n) => n.status === 'online').length === 3 ? listed : undefined;
    }, 'three agents online');
    for (const node of nodes) nodeIds.set(node.name, node.id);

    const blueprint = {
      name: 'shop',
      slices: [
        { artifact: ECHO, instances: 1, run: { kind: 'process', command: [process.execPath, ECHO_SERVICE] }, health: { path: '/health', intervalMs: 200 } },
        { artifact: ETL, instances: 1, requiredTags: ['data_node'], datasets: [HOT], run: { kind: 'process', command: [process.execPath, ECHO_SERVICE] }, health: { path: '/health', intervalMs: 200 } },
        {
          artifact: WEB,
          instances: 1,
          requiredTags: ['live_node'],
          run: { kind: 'container', image: TEST_IMAGE, command: ['sh', '-c', 'mkdir -p /www && echo ok > /www/health && echo hello > /www/index.html && exec httpd -f -p "$PORT" -h /www'] },
          health: { path: '/health', intervalMs: 200 },
        },
      ],
    };
    const file = join(dir, 'shop.json');
    writeFileSync(file, JSON.stringify(blueprint));
    const applied = await api<{ message?: string }>('/api/v1/deploy', { method: 'POST', body: JSON.stringify(blueprint) });
    expect(applied.status, applied.body.message).toBeLessThan(300);
  }, 90_000);

  afterAll(async () => {
    const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
    for (const child of running.reverse()) child.kill('SIGTERM');
    await Promise.all(running.map((child) => new Promise((resolve) => child.once('exit', resolve))));
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('brings every instance to ACTIVE on a node its tags allow: the live slice on the live node, the dataset-hungry one where the dataset is hot', async () => {
    const [web] = await until(() => active(WEB, 1), 'the web container ACTIVE', 60_000);
    expect(nameOf(web!.node)).toBe('live-b');
    const [etl] = await until(() => active(ETL, 1), 'the etl slice ACTIVE');
    expect(nameOf(etl!.node)).toBe('data-c');
    const [echo] = await until(() => active(ECHO, 1), 'the echo slice ACTIVE');
    // Partitioning: the echo slice requires nothing, yet the live node is reserved for live slices.
    expect(nameOf(echo!.node)).not.toBe('live-b');
    const served = await api<string>('/web/index.html');
    expect(served.status).toBe(200);
    expect(served.body).toMatch(/hello/);
    expect(served.headers.get('x-arcnet-instance')).toBe(`${web!.node}/1`);
  }, 90_000);

  it('routes requests through the server to every instance of a slice, and keeps the live slice off data nodes when only they have room', async () => {
    expect((await api('/api/v1/scale', { method: 'POST', body: JSON.stringify({ artifact: ECHO, instances: 2 }) })).status).toBe(200);
    const rows = await until(() => active(ECHO, 2), 'two echo instances ACTIVE');
    expect(new Set(rows.map((r) => nameOf(r.node)))).toEqual(new Set(['data-a', 'data-c']));
    const seen = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const answer = await api<{ path: string; instance: string }>(`/echo/orders/${i}?x=1`);
      expect(answer.status).toBe(200);
      expect(answer.body.path).toBe(`/orders/${i}`);
      const by = answer.headers.get('x-arcnet-instance')!;
      seen.set(by, (seen.get(by) ?? 0) + 1);
    }
    expect(seen.size).toBe(2);

    expect((await api('/api/v1/scale', { method: 'POST', body: JSON.stringify({ artifact: WEB, instances: 2 }) })).status).toBe(200);
    const short = await until(async () => {
      const status = await slice(WEB);
      return status.unplaced ? status : undefined;
    }, 'the second web instance reported unplaced');
    expect(short.unplaced!.reason).toMatch(/2 nodes outside the slice's hardware partition/);
    expect(short.instances.filter((i) => i.state !== 'UNLOAD').map((i) => nameOf(i.node))).toEqual(['live-b']);
    expect((await api('/api/v1/scale', { method: 'POST', body: JSON.stringify({ artifact: WEB, instances: 1 }) })).status).toBe(200);
    expect((await api('/api/v1/scale', { method: 'POST', body: JSON.stringify({ artifact: ECHO, instances: 1 }) })).status).toBe(200);
    await until(() => active(ECHO, 1), 'echo back to one instance');
    const after = await until(async () => {
      const status = await slice(ECHO);
      return status.instances.length === 1 ? status : undefined;
    }, 'the scaled-down echo key removed by its node');
    expect(after.instances[0]!.instance).toBe(1);
  }, 90_000);

  it('re-places a SIGKILLed agent\'s instance elsewhere within seconds; requests through the router keep succeeding', async () => {
    const [echo] = await until(() => active(ECHO, 1), 'one echo instance');
    const victim = nameOf(echo!.node);
    const survivor = victim === 'data-a' ? 'data-c' : 'data-a';
    let stop = false;
    const outcomes: number[] = [];
    const load = (async () => {
      while (!stop) {
        outcomes.push((await api('/echo/ping')).status);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const killedAt = Date.now();
    agents.get(victim)!.kill('SIGKILL');
    const [moved] = await until(async () => {
      const rows = await active(ECHO, 1);
      return rows && nameOf(rows[0]!.node) === survivor ? rows : undefined;
    }, `the echo instance ACTIVE on ${survivor}`, 30_000);
    const healedMs = Date.now() - killedAt;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    stop = true;
    await load;
    console.log(`services e2e: instance on ${victim} SIGKILLed, ACTIVE on ${survivor} after ${healedMs} ms; ${outcomes.filter((s) => s === 200).length}/${outcomes.length} requests answered 200 meanwhile`);
    expect(healedMs).toBeLessThan(15_000);
    expect(moved!.state).toBe('ACTIVE');
    // After the move every request succeeds; while no instance was up they got a 503 with the reason, never a hang.
    expect(outcomes.slice(-10).every((s) => s === 200)).toBe(true);
    expect(outcomes.every((s) => s === 200 || s === 503 || s === 502)).toBe(true);

    // The killed agent's instance outlived it (its own process group); the agent started again removes it before anything else.
    const orphan = echo!.address!;
    expect((await fetch(`http://${orphan}/health`)).ok).toBe(true);
    const restarted = startCli(agentArgs.get(victim)!);
    children.push(restarted);
    agents.set(victim, restarted);
    await until(async () => {
      try {
        await fetch(`http://${orphan}/health`, { signal: AbortSignal.timeout(500) });
        return false;
      } catch {
        return true;
      }
    }, `the orphaned instance at ${orphan} removed by the restarted agent`);
  }, 60_000);
});

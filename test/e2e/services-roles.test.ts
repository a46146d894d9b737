/**
 * Services on the distributed roles (issue 14): one `arcnet server` (the management API, the
 * `/{service}/…` router and the agents' sessions), two `arcnet services` replicas (one leads through
 * the lease `services`, the other stands by warm), three real `arcnet agent --services` processes
 * with different tags, all on Kafka and PostgreSQL, and a blueprint of a process slice (the
 * project's echo service) and a container slice on Podman (live nodes only).
 *
 * A watch on the PostgreSQL KV follows every `slices/` write from the start, so the suite sees what
 * polling would miss: how many instances of each slice were ACTIVE at the same moment, and every
 * placement made. The leader SIGKILLed: the standby leads within 5 s and places nothing (no double
 * placement). Then a seeded random sequence of SIGKILLs and restarts of agents and of both services
 * replicas: afterwards the cluster converges to the blueprint, and no slice ever had more ACTIVE
 * instances at once than the blueprint asked.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { operatorKeyIn } from '../support/api-key.ts';
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, testSchemas } from '../support/postgres.ts';
import { KAFKA_BOOTSTRAP } from '../support/kafka.ts';
import { connectDocker } from '../../src/agent/docker-runtime.ts';
import { openPostgresStores } from '../../src/store/postgres.ts';
import type { KvWatch, StateStores } from '../../src/store/ports.ts';
import { SLICES_PREFIX, parseSliceKey, type SliceRecord } from '../../src/services/model.ts';
import { seededRandom } from '../../src/sim/random.ts';

const engines = needEngines('postgres', 'kafka', 'containers');
const RUN = randomUUID().slice(0, 8);
const ZONE = `SVC-${RUN}`;
const ECHO_SERVICE = join(import.meta.dirname, '../fixtures/echo-service.ts');
const ECHO = 'org.arcnet:echo:1.0.0';
const WEB = 'org.arcnet:web:1.0.0';
const AGENTS: Readonly<Record<string, readonly string[]>> = { 'data-a': ['data_node'], 'live-b': ['live_node'], 'data-c': ['data_node', 'ram_128gb'] };
/** The seed of the fault sequence; ARCNET_FAULT_SEED replays one. */
const SEED = Number(process.env['ARCNET_FAULT_SEED'] ?? Date.now() % 100_000);

interface SliceRow {
  node: string;
  instance: number;
  state: string;
  address?: string;
}

/** Every `slices/` write as the KV's watch delivers it, in revision order. */
class SliceMonitor {
  private readonly states = new Map<string, SliceRecord['state']>();
  /** Per artifact, the most instances ACTIVE at once since the last `reset`. */
  readonly maxActive = new Map<string, number>();
  /** Every new key (a placement), with when it was seen. */
  readonly placements: { key: string; at: number; epoch: number }[] = [];
  private watch: KvWatch | undefined;

  async start(stores: StateStores): Promise<void> {
    const listed = await stores.kv.list<SliceRecord>(SLICES_PREFIX);
    for (const entry of listed.entries) this.states.set(entry.key, entry.value.state);
    this.watch = stores.kv.watch<SliceRecord>(SLICES_PREFIX, listed.revision, (event) => {
      const parsed = parseSliceKey(event.key);
      if (!parsed) return;
      if (event.type === 'delete' || event.value === undefined) this.states.delete(event.key);
      else {
        if (!this.states.has(event.key)) this.placements.push({ key: event.key, at: Date.now(), epoch: event.value.epoch });
        this.states.set(event.key, event.value.state);
      }
      const active = this.active(parsed.artifact);
      this.maxActive.set(parsed.artifact, Math.max(this.maxActive.get(parsed.artifact) ?? 0, active));
    });
  }

  active(artifact: string): number {
    let count = 0;
    for (const [key, state] of this.states) if (state === 'ACTIVE' && parseSliceKey(key)?.artifact === artifact) count++;
    return count;
  }

  /** Maxima start again from what is ACTIVE now. */
  reset(): void {
    this.maxActive.clear();
    for (const key of this.states.keys()) {
      const artifact = parseSliceKey(key)!.artifact;
      this.maxActive.set(artifact, this.active(artifact));
    }
  }

  stop(): void {
    this.watch?.close();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const alive = (child: CliProcess | undefined): child is CliProcess => child !== undefined && child.exitCode === null && child.signalCode === null;
const killed = (child: CliProcess): Promise<void> => {
  if (!alive(child)) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  return exited;
};

describe.skipIf(!engines.available)(engines.title('services on arcnet server + two arcnet services replicas + three agents, Kafka and PostgreSQL'), () => {
  const schemas = testSchemas();
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-services-roles-'));
  const monitor = new SliceMonitor();
  /** Every process started, for the cleanup; `processes` holds the current one of each name. */
  const children: CliProcess[] = [];
  const processes = new Map<string, CliProcess>();
  const argsOf = new Map<string, string[]>();
  const healthUrls = new Map<string, string>();
  const nodeIds = new Map<string, string>();
  let stores: StateStores | undefined;
  let url = '';
  let key = '';

  const launch = (name: string, args?: string[]): CliProcess => {
    const child = startCli(args ?? argsOf.get(name)!);
    if (args) argsOf.set(name, args);
    children.push(child);
    processes.set(name, child);
    return child;
  };
  const api = async <T>(path: string, init?: RequestInit): Promise<{ status: number; body: T; headers: Headers }> => {
    const response = await fetch(`${url}${path}`, { ...init, signal: AbortSignal.timeout(5_000), headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...init?.headers } });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // a service's plain-text answer
    }
    return { status: response.status, body: body as T, headers: response.headers };
  };
  const instances = async (artifact: string): Promise<SliceRow[]> => (await api<{ slices: { instances: SliceRow[] }[] }>(`/api/v1/slices/${artifact}`)).body.slices.flatMap((s) => s.instances);
  /** Exactly `count` instances, every one ACTIVE: the slice has converged. */
  const settled = async (artifact: string, count: number): Promise<SliceRow[] | undefined> => {
    const rows = await instances(artifact);
    return rows.length === count && rows.every((r) => r.state === 'ACTIVE') ? rows : undefined;
  };
  const nameOf = (nodeId: string): string => [...nodeIds].find(([, id]) => id === nodeId)?.[0] ?? nodeId;
  const leading = async (replica: string): Promise<boolean | undefined> => {
    try {
      const body = (await (await fetch(`${healthUrls.get(replica)}/health`, { signal: AbortSignal.timeout(2_000) })).json()) as { modules: { services?: { leading?: boolean } } };
      return body.modules.services?.leading;
    } catch {
      return undefined;
    }
  };
  const leaders = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const replica of ['services-1', 'services-2']) if (alive(processes.get(replica)) && (await leading(replica))) out.push(replica);
    return out;
  };

  beforeAll(async () => {
    const schema = await schemas.fresh();
    stores = await openPostgresStores({ url: POSTGRES_URL, schema });
    await monitor.start(stores);
    const engineFlags = ['--kafka', KAFKA_BOOTSTRAP, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--geozone', ZONE];
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    launch('server', ['server', ...engineFlags, '--port', String(port), '--operator-key-file', join(dir, 'operator.key'), '--telemetry-interval', '500', '--offline-after', '3000', '--log-level', 'warn']);
    for (const replica of ['services-1', 'services-2']) {
      const http = await freePort();
      healthUrls.set(replica, `http://127.0.0.1:${http}`);
      launch(replica, ['services', ...engineFlags, '--http-port', String(http), '--offline-after', '3000', '--log-level', 'warn']);
    }
    await untilUp(async () => (await fetch(`${url}/ready`)).ok, 'arcnet server ready', 60_000);
    key = operatorKeyIn(dir);
    for (const [name, tags] of Object.entries(AGENTS)) {
      const base = await freePort();
      launch(name, [
        'agent', '--services', '--server', url, '--token', key, '--name', name, '--geozone', ZONE, '--node-key', join(dir, `${name}.key`), '--tags', tags.join(','),
        '--service-ports', `${base}-${Math.min(65_535, base + 40)}`, '--services-dir', join(dir, `runner-${name}`), '--docker-host', testEngineEndpoint(),
        '--telemetry-interval', '500', '--cpus', '2', '--memory-gb', '2', '--log-level', 'warn',
      ]);
    }
    const nodes = await untilUp(async () => {
      const listed = (await api<{ nodes: { id: string; name: string; status: string }[] }>('/api/v1/cluster/nodes')).body.nodes;
      return listed.filter((n) => n.status === 'online').length === 3 ? listed : undefined;
    }, 'three agents online', 60_000);
    for (const node of nodes) nodeIds.set(node.name, node.id);
    await untilUp(async () => (await leaders()).length === 1, 'one services replica leading', 30_000);
  }, 150_000);

  afterAll(async () => {
    monitor.stop();
    // Agents first, by SIGTERM: each stops its instances. A SIGKILLed agent's orphans are found by this run's marker.
    const running = [...processes.values()].filter(alive);
    for (const child of running.reverse()) child.kill('SIGTERM');
    await Promise.all(running.map((child) => new Promise((resolve) => child.once('exit', resolve))));
    for (const child of children) await killed(child);
    try {
      execFileSync('pkill', ['-f', `echo-service.ts ${RUN}`]);
    } catch {
      // none left
    }
    const docker = connectDocker({ host: testEngineEndpoint() });
    try {
      for (const id of nodeIds.values()) {
        for (const container of await docker.docker.listContainers({ all: true, filters: { label: [`arcnet.node=${id}`] } })) {
          await docker.docker.getContainer(container.Id).remove({ force: true });
        }
      }
    } finally {
      docker.close();
    }
    await stores?.close();
    await schemas.dropAll();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('places a process slice and a Podman container slice on nodes their tags allow, and the server routes to every instance', async () => {
    const blueprint = {
      name: 'shop',
      slices: [
        { artifact: ECHO, instances: 2, run: { kind: 'process', command: [process.execPath, ECHO_SERVICE, RUN] }, health: { path: '/health', intervalMs: 200 } },
        {
          artifact: WEB,
          instances: 1,
          requiredTags: ['live_node'],
          run: { kind: 'container', image: TEST_IMAGE, command: ['sh', '-c', 'mkdir -p /www && echo ok > /www/health && echo hello > /www/index.html && exec httpd -f -p "$PORT" -h /www'] },
          health: { path: '/health', intervalMs: 200 },
        },
      ],
    };
    const applied = await api<{ message?: string }>('/api/v1/deploy', { method: 'POST', body: JSON.stringify(blueprint) });
    expect(applied.status, applied.body.message).toBeLessThan(300);
    const echo = await untilUp(() => settled(ECHO, 2), 'two echo instances ACTIVE', 60_000);
    const [web] = await untilUp(() => settled(WEB, 1), 'the web container ACTIVE', 60_000);
    expect(new Set(echo.map((r) => nameOf(r.node)))).toEqual(new Set(['data-a', 'data-c']));
    expect(nameOf(web!.node)).toBe('live-b');
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const answer = await api<{ path: string }>(`/echo/orders/${i}`);
      expect(answer.status).toBe(200);
      expect(answer.body.path).toBe(`/orders/${i}`);
      seen.add(answer.headers.get('x-arcnet-instance')!);
    }
    expect(seen).toEqual(new Set(echo.map((r) => `${r.node}/${r.instance}`)));
    const served = await api<string>('/web/index.html');
    expect(served.status).toBe(200);
    expect(served.body).toMatch(/hello/);
    expect(monitor.maxActive.get(ECHO)).toBe(2);
    expect(monitor.maxActive.get(WEB)).toBe(1);
  }, 150_000);

  it('the leader SIGKILLed: the standby leads within 5 s and places nothing twice', async () => {
    const [leader] = await leaders();
    const standby = leader === 'services-1' ? 'services-2' : 'services-1';
    expect(await leading(standby)).toBe(false);
    const placedBefore = monitor.placements.length;
    const killedAt = Date.now();
    await killed(processes.get(leader!)!);
    await untilUp(async () => (await leading(standby)) === true, 'the standby to lead', 15_000);
    const tookOverMs = Date.now() - killedAt;
    // Several reconcile ticks of the new leader: it has rebuilt its view and found nothing to do.
    await sleep(3_000);
    console.log(`services roles: leader ${leader} SIGKILLed, ${standby} led after ${tookOverMs} ms; ${monitor.placements.length - placedBefore} placements since`);
    expect(tookOverMs).toBeLessThan(5_000);
    expect(monitor.placements.slice(placedBefore)).toEqual([]);
    expect(await settled(ECHO, 2)).toBeDefined();
    expect(await settled(WEB, 1)).toBeDefined();
    expect((await api('/echo/after-failover')).status).toBe(200);
    launch(leader!);
    await untilUp(async () => (await leading(leader!)) === false, `${leader} back as the standby`, 30_000);
  }, 60_000);

  it(`random SIGKILLs and restarts of agents and services replicas (seed ${SEED}): the cluster converges to the blueprint and no slice was ever ACTIVE more often than asked`, async () => {
    // One echo instance, so a killed node's instance has somewhere to go.
    expect((await api('/api/v1/scale', { method: 'POST', body: JSON.stringify({ artifact: ECHO, instances: 1 }) })).status).toBe(200);
    await untilUp(() => settled(ECHO, 1), 'echo scaled down to one instance', 30_000);
    monitor.reset();
    const placedBefore = monitor.placements.length;
    const random = seededRandom(SEED);
    const targets = [...Object.keys(AGENTS), 'services-1', 'services-2'];
    const faults: string[] = [];
    for (let step = 0; step < 8; step++) {
      const target = targets[Math.floor(random() * targets.length)]!;
      const child = processes.get(target)!;
      if (alive(child)) {
        await killed(child);
        faults.push(`kill ${target}`);
      } else {
        launch(target);
        faults.push(`start ${target}`);
      }
      await sleep(500 + Math.floor(random() * 2_500));
    }
    for (const target of targets) {
      if (!alive(processes.get(target))) {
        launch(target);
        faults.push(`start ${target}`);
      }
    }
    const startedAt = Date.now();
    await untilUp(async () => (await leaders()).length === 1, 'one services replica leading', 30_000);
    await untilUp(async () => (await settled(ECHO, 1)) && (await settled(WEB, 1)), 'echo and web each back to one ACTIVE instance and nothing else', 60_000);
    await untilUp(async () => (await api('/echo/converged')).status === 200 && (await api('/web/index.html')).status === 200, 'both reachable through the router', 15_000);
    const convergedMs = Date.now() - startedAt;
    console.log(`services roles (seed ${SEED}): ${faults.join(', ')}; converged ${convergedMs} ms after the last restart; ${monitor.placements.length - placedBefore} placements; most ACTIVE at once: echo ${monitor.maxActive.get(ECHO)}, web ${monitor.maxActive.get(WEB)}`);
    expect(monitor.maxActive.get(ECHO)).toBeLessThanOrEqual(1);
    expect(monitor.maxActive.get(WEB)).toBeLessThanOrEqual(1);
    expect(monitor.active(ECHO)).toBe(1);
    expect(monitor.active(WEB)).toBe(1);
  }, 180_000);
});

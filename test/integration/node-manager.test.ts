/**
 * The node's deployment manager on real things: a SQLite KV (a temp file, so a second process can
 * share it), the process slice runtime and the echo-service fixture run on this Node. The test plays
 * the leader: it puts a blueprint and writes the commands (LOAD, DEACTIVATE, ACTIVATE, UNLOAD) to the
 * node's slice key, and looks at what the node wrote back, what it published and what runs. The
 * KV channel under it is checked on its own at the end (its list-then-watch, compare-and-set mapping,
 * specs, and that a node unpublishes only its own endpoints).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { DEACTIVATED_REASON, instanceIdOf } from '../../src/services/lifecycle.ts';
import { KvNodeSliceChannel } from '../../src/services/kv-node-channel.ts';
import { blueprintKey, endpointKey, sliceKey, type Blueprint, type EndpointRecord, type SliceRecord, type SliceSpec, type SliceState } from '../../src/services/model.ts';
import { NodeDeploymentManager, type NodeManagerDeps } from '../../src/services/node-manager.ts';
import { PortRange } from '../../src/services/port-range.ts';
import { ProcessSliceRuntime } from '../../src/services/process-runtime.ts';
import type { OpenedStores } from '../../src/store/retention.ts';
import type { KvStore } from '../../src/store/ports.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import { until } from '../support/until.ts';

const ECHO = join(import.meta.dirname, '../fixtures/echo-service.ts');
const NODE = 'node-a';
const ART = 'org.arcnet.test:echo:1.0';
const EPOCH = 5;

/** Ports below the ephemeral range, at a random place so concurrent runs rarely meet (the allocator skips held ones). */
function testRange(size = 40): PortRange {
  const first = randomInt(20_000, 32_000 - size);
  return new PortRange(first, first + size - 1);
}

/** The killed agent's own range (a second process), apart from testRange's so the two never hand out one port. */
const runtimeRangeStart = randomInt(32_100, 32_700);

const echoSpec = (extra: Partial<SliceSpec> = {}, env: Record<string, string> = {}): SliceSpec => ({
  artifact: ART,
  instances: 1,
  run: { kind: 'process', command: [process.execPath, ECHO], env },
  health: { path: '/health', intervalMs: 100 },
  entryPoints: [{ name: 'http', path: '/' }],
  ...extra,
});

/** Running, not a zombie: an orphaned instance killed here waits for a reaper this host's pid 1 may not be. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

let dir: string;
let stores: OpenedStores;
let kv: KvStore;
let runtime: ProcessSliceRuntime;
let managers: NodeDeploymentManager[];
let children: ChildProcess[];
/** Every instance pid seen, killed at the end if a test left one. */
let pids: Set<number>;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'arcnet-node-manager-'));
  stores = openSqliteStores({ path: join(dir, 'state.db'), watchPollMs: 50, retention: false });
  kv = stores.kv;
  runtime = new ProcessSliceRuntime({ ports: testRange(), stateDir: join(dir, 'pids'), closeGraceMs: 2_000 });
  managers = [];
  children = [];
  pids = new Set();
});

afterEach(async () => {
  for (const manager of managers) await manager.stop();
  await runtime.close();
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const pid of pids) if (alive(pid)) process.kill(-pid, 'SIGKILL');
  await stores.close();
  await rm(dir, { recursive: true, force: true });
});

function manager(extra: Partial<NodeManagerDeps> = {}, slices = runtime): NodeDeploymentManager {
  const created = new NodeDeploymentManager({ channel: new KvNodeSliceChannel(kv, NODE), runtimes: { process: slices }, clock: systemClock, logger: silentLogger, ...extra });
  managers.push(created);
  return created;
}

async function putBlueprint(spec: SliceSpec): Promise<void> {
  const blueprint: Blueprint = { name: 'shop', slices: [spec], timestamp: Date.now() };
  await kv.put(blueprintKey('shop'), blueprint);
}

/** The leader's write: a command on the key, compare-and-set on what it read. */
async function command(state: SliceState): Promise<void> {
  const key = sliceKey(NODE, ART);
  const current = await kv.get<SliceRecord>(key);
  const now = Date.now();
  const record: SliceRecord = current
    ? { ...current.value, state, timestamp: now, version: current.value.version + 1, reason: `the leader wrote ${state}` }
    : { state, timestamp: now, version: 1, instance: 1, blueprint: 'shop', epoch: EPOCH, placedAt: now, reason: 'placed by the test' };
  if (record.state === 'LOAD') delete (record as { address?: string }).address;
  const written = await kv.put(key, record, { expectedRevision: current?.modRevision ?? 0 });
  expect(written.ok).toBe(true);
}

const record = async (): Promise<SliceRecord | undefined> => (await kv.get<SliceRecord>(sliceKey(NODE, ART)))?.value;
const endpoint = async (entry = 'http'): Promise<EndpointRecord | undefined> => (await kv.get<EndpointRecord>(endpointKey(ART, entry, 1)))?.value;

async function untilState(state: SliceState, timeoutMs = 15_000, extra: (r: SliceRecord) => boolean = () => true): Promise<SliceRecord> {
  return until(
    async () => {
      const r = await record();
      return r?.state === state && extra(r) ? r : undefined;
    },
    `the slice key to say ${state}`,
    timeoutMs,
    { intervalMs: 20 },
  );
}

async function whoami(address: string): Promise<{ instance: string; port: number }> {
  const response = await fetch(`http://${address}/whoami`, { signal: AbortSignal.timeout(2_000) });
  expect(response.status).toBe(200);
  return (await response.json()) as { instance: string; port: number };
}

/** The pid of the instance the manager runs now. */
function pidOf(m: NodeDeploymentManager): number {
  const pid = m.status().find((s) => s.artifact === ART)?.pid;
  if (pid === undefined) throw new Error(`no instance of ${ART} runs: ${JSON.stringify(m.status())}`);
  pids.add(pid);
  return pid;
}

describe('node deployment manager', () => {
  it('drives a LOAD to ACTIVE, publishes the endpoint that answers HTTP, and on UNLOAD removes key, endpoint and process', async () => {
    await putBlueprint(echoSpec());
    const m = manager();
    await m.start();
    await command('LOAD');
    const active = await untilState('ACTIVE');
    expect(active).toMatchObject({ instance: 1, epoch: EPOCH, blueprint: 'shop', restarts: 0, version: 5 });
    expect(active.address).toMatch(/^127\.0\.0\.1:\d+$/);
    const published = await until(endpoint, 'the endpoint');
    expect(published).toMatchObject({ nodeId: NODE, instance: 1, state: 'ACTIVE', address: active.address, path: '/', epoch: EPOCH });
    expect((await whoami(active.address!)).instance).toBe(instanceIdOf(ART, { instance: 1, epoch: EPOCH }));
    const pid = pidOf(m);
    expect(m.status()).toEqual([{ artifact: ART, state: 'ACTIVE', instance: 1, epoch: EPOCH, address: active.address, pid, restarts: 0, reason: undefined, running: true }]);

    await command('UNLOAD');
    await until(async () => (await record()) === undefined, 'the key to be removed');
    expect(await endpoint()).toBeUndefined();
    await until(() => !alive(pid), 'the instance to end', 5_000);
    expect(runtime.running()).toEqual([]);
    await until(() => m.status().length === 0, 'the manager to forget the key', 2_000);
  });

  it('DEACTIVATE stops it and leaves it LOADED; ACTIVATE brings it back ACTIVE', async () => {
    await putBlueprint(echoSpec());
    const m = manager();
    await m.start();
    await command('LOAD');
    await untilState('ACTIVE');
    const first = pidOf(m);

    await command('DEACTIVATE');
    const loaded = await untilState('LOADED');
    expect(loaded.reason).toBe(DEACTIVATED_REASON);
    expect(loaded.address).toBeUndefined();
    expect(await endpoint()).toBeUndefined();
    await until(() => !alive(first), 'the instance to end', 5_000);
    // It stays LOADED: nothing spawns it again by itself.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await record())?.state).toBe('LOADED');
    expect(runtime.running()).toEqual([]);

    await command('ACTIVATE');
    const active = await untilState('ACTIVE');
    expect(pidOf(m)).not.toBe(first);
    const published = await until(endpoint, 'the endpoint again');
    expect(published.address).toBe(active.address);
    expect((await whoami(active.address!)).port).toBe(Number(active.address!.split(':')[1]));
  });

  it('restarts an instance killed from outside: restarts 1 in the record, ACTIVE again on a new process', async () => {
    await putBlueprint(echoSpec());
    const m = manager({ restart: { baseDelayMs: 200 } });
    await m.start();
    await command('LOAD');
    await untilState('ACTIVE');
    const first = pidOf(m);
    process.kill(first, 'SIGKILL');
    const restarted = await untilState('ACTIVE', 15_000, (r) => r.restarts === 1);
    expect(pidOf(m)).not.toBe(first);
    const published = await until(async () => {
      const e = await endpoint();
      return e?.address === restarted.address ? e : undefined;
    }, 'the endpoint to name the new instance');
    expect(published.epoch).toBe(EPOCH);
    expect((await whoami(restarted.address!)).instance).toBe(instanceIdOf(ART, { instance: 1, epoch: EPOCH }));
  });

  it('fails a service that always exits after N restarts, with the exit code and its stderr in the reason', async () => {
    await putBlueprint(echoSpec({}, { ECHO_EXIT_AFTER_MS: '150' }));
    const m = manager({ restart: { maxRestarts: 2, baseDelayMs: 100, maxDelayMs: 200 } });
    await m.start();
    await command('LOAD');
    const failed = await untilState('FAILED', 20_000);
    expect(failed.restarts).toBe(2);
    expect(failed.reason).toMatch(/^ACTIVE(?:ATING)?: exited with code 1 after 2 restarts within 300000 ms; stderr: echo-service: exiting with 1 after 150 ms, as ECHO_EXIT_AFTER_MS asks/);
    expect(await endpoint()).toBeUndefined();
    expect(runtime.running()).toEqual([]);
    // FAILED stays FAILED.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await record()).toEqual(failed);
  });

  it('fails an instance whose health check never passes after the activating timeout, and stops it', async () => {
    // A process that runs but never listens: every probe is refused.
    await putBlueprint(echoSpec({ run: { kind: 'process', command: [process.execPath, '-e', 'setInterval(() => {}, 1000)'] } }));
    const m = manager({ timeouts: { activatingMs: 1_500 } });
    await m.start();
    await command('LOAD');
    await untilState('ACTIVATING');
    const pid = await until(() => m.status()[0]?.pid, 'the instance to run');
    pids.add(pid);
    const failed = await untilState('FAILED', 10_000);
    expect(failed.reason).toMatch(/^ACTIVATING took longer than 1500 ms \(timeouts\.activatingMs\); health check GET http:\/\/127\.0\.0\.1:\d+\/health never answered 2xx \(last: .*ECONNREFUSED.*\)$/);
    await until(() => !alive(pid), 'the instance to be stopped', 5_000);
    expect(await endpoint()).toBeUndefined();
  });

  it('fails a slice whose executable is missing in LOADING, with the reason, spawning nothing', async () => {
    const missing = join(dir, 'no-such-service');
    await putBlueprint(echoSpec({ run: { kind: 'process', command: [missing, '--port-from-env'] } }));
    const m = manager();
    await m.start();
    await command('LOAD');
    const failed = await untilState('FAILED');
    expect(failed.reason).toBe(`LOADING: executable "${missing}" not found`);
    expect(runtime.running()).toEqual([]);
  });

  it('a manager stopped without writes leaves the record ACTIVE; the next one spawns it again', async () => {
    await putBlueprint(echoSpec());
    const first = manager();
    await first.start();
    await command('LOAD');
    const active = await untilState('ACTIVE');
    const pid = pidOf(first);
    await first.stop();
    expect(alive(pid)).toBe(false);
    expect(await record()).toEqual(active); // not one write
    expect(await endpoint()).toBeDefined();

    const second = manager();
    await second.start();
    const again = await untilState('ACTIVE', 15_000, (r) => r.version > active.version);
    expect(again.restarts).toBe(0);
    expect(pidOf(second)).not.toBe(pid);
    await until(async () => (await endpoint())?.address === again.address, 'the endpoint to name the new instance');
    expect((await whoami(again.address!)).instance).toBe(instanceIdOf(ART, { instance: 1, epoch: EPOCH }));
  });

  it('after a killed agent, the next manager removes the instance it left and re-drives the ACTIVE key', async () => {
    await putBlueprint(echoSpec());
    // The first agent is a process of its own, SIGKILLed: its instance outlives it (a process group of its own).
    const src = (path: string): string => pathToFileURL(join(import.meta.dirname, '../../src', path)).href;
    const script = `
      const { openSqliteStores } = await import(${JSON.stringify(src('store/sqlite.ts'))});
      const { KvNodeSliceChannel } = await import(${JSON.stringify(src('services/kv-node-channel.ts'))});
      const { NodeDeploymentManager } = await import(${JSON.stringify(src('services/node-manager.ts'))});
      const { PortRange } = await import(${JSON.stringify(src('services/port-range.ts'))});
      const { ProcessSliceRuntime } = await import(${JSON.stringify(src('services/process-runtime.ts'))});
      const { systemClock } = await import(${JSON.stringify(src('core/clock.ts'))});
      const { silentLogger } = await import(${JSON.stringify(src('core/logging.ts'))});
      const stores = openSqliteStores({ path: ${JSON.stringify(join(dir, 'state.db'))}, watchPollMs: 50, retention: false });
      const runtime = new ProcessSliceRuntime({ ports: new PortRange(${runtimeRangeStart}, ${runtimeRangeStart + 19}), stateDir: ${JSON.stringify(join(dir, 'pids'))} });
      const manager = new NodeDeploymentManager({ channel: new KvNodeSliceChannel(stores.kv, ${JSON.stringify(NODE)}), runtimes: { process: runtime }, clock: systemClock, logger: silentLogger });
      await manager.start();
      setInterval(() => {
        const pid = manager.status()[0]?.pid;
        if (pid !== undefined) process.stdout.write('pid ' + pid + '\\n');
      }, 100);
    `;
    const agent = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(agent);
    let output = '';
    agent.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    agent.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await command('LOAD');
    const active = await untilState('ACTIVE', 20_000);
    const leftover = Number(await until(() => /pid (\d+)/.exec(output)?.[1], `the first agent to report its instance (output: ${output})`));
    pids.add(leftover);
    agent.kill('SIGKILL');
    await until(() => agent.exitCode !== null || agent.signalCode !== null, 'the first agent to die');
    expect(alive(leftover)).toBe(true);
    expect(await record()).toEqual(active);

    const second = manager();
    await second.start();
    expect(alive(leftover)).toBe(false); // removed before any key was looked at
    const again = await untilState('ACTIVE', 15_000, (r) => r.version > active.version);
    expect(pidOf(second)).not.toBe(leftover);
    await until(async () => (await endpoint())?.address === again.address, 'the endpoint to name the new instance');
    expect((await whoami(again.address!)).instance).toBe(instanceIdOf(ART, { instance: 1, epoch: EPOCH }));
  }, 45_000);
});

describe('KV node slice channel', () => {
  it('lists then watches its own keys only, and maps refused compare-and-sets to conflict and gone', async () => {
    const channel = new KvNodeSliceChannel(kv, NODE);
    const seen: string[] = [];
    const now = Date.now();
    const placed: SliceRecord = { state: 'LOAD', timestamp: now, version: 1, instance: 1, blueprint: 'shop', epoch: EPOCH, placedAt: now };
    await kv.put(sliceKey(NODE, ART), placed);
    await kv.put(sliceKey('node-b', ART), placed);
    const watch = channel.watch((artifact, entry) => seen.push(`${artifact} ${entry?.record.state ?? 'deleted'}@${entry?.revision ?? '-'}`));
    try {
      const listed = await until(() => seen[0], 'the listing');
      const revision = Number(listed.split('@')[1]);
      const loading = await channel.write(ART, { ...placed, state: 'LOADING', version: 2 }, revision);
      expect(loading).toEqual({ ok: true, revision: expect.any(Number) });
      expect(await channel.write(ART, { ...placed, state: 'LOADED', version: 3 }, revision)).toEqual({ ok: false, reason: 'conflict' });
      await kv.delete(sliceKey(NODE, ART));
      expect(await channel.write(ART, { ...placed, state: 'LOADED', version: 3 }, revision)).toEqual({ ok: false, reason: 'gone' });
      expect(await channel.remove(ART, revision)).toEqual({ ok: false, reason: 'gone' });
      await until(() => seen.length === 3, 'the watch to follow');
      expect(seen).toEqual([`${ART} LOAD@${revision}`, `${ART} LOADING@${loading.ok ? loading.revision : 0}`, `${ART} deleted@-`]);
    } finally {
      watch.close();
    }
  });

  it('reads the spec from the blueprint that placed it, and unpublishes only its own endpoints', async () => {
    const channel = new KvNodeSliceChannel(kv, NODE);
    await putBlueprint(echoSpec());
    expect((await channel.spec('shop', ART))?.artifact).toBe(ART);
    expect(await channel.spec('shop', 'org.arcnet.test:other:1.0')).toBeUndefined();
    expect(await channel.spec('gone', ART)).toBeUndefined();

    const theirs: EndpointRecord = { nodeId: 'node-b', instance: 1, state: 'ACTIVE', timestamp: Date.now(), address: '10.0.0.2:4000', path: '/', epoch: EPOCH + 1 };
    await kv.put(endpointKey(ART, 'http', 1), theirs);
    await channel.unpublishEndpoint(ART, 'http', 1);
    expect(await endpoint()).toEqual(theirs);
    await channel.publishEndpoint(ART, 'http', { ...theirs, nodeId: NODE, address: '127.0.0.1:4000' });
    expect((await endpoint())?.nodeId).toBe(NODE);
    await channel.unpublishEndpoint(ART, 'http', 1);
    expect(await endpoint()).toBeUndefined();
  });
});

/**
 * The SliceRuntime contract run against the process runtime (test/fixtures/echo-service.ts on this
 * Node) and the container runtime (busybox httpd on the test engine), plus what only one of them has:
 * cgroup limits, process groups and pid files for processes; the port allocator both share.
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DockerRuntime, connectDocker } from '../../src/agent/docker-runtime.ts';
import { ContainerSliceRuntime, containerName } from '../../src/services/container-runtime.ts';
import { PortRange, PortsExhaustedError } from '../../src/services/port-range.ts';
import { CGROUP_PARENT, ProcessSliceRuntime, STDERR_TAIL_BYTES, instanceSlug } from '../../src/services/process-runtime.ts';
import type { SpawnOutcome, SpawnRequest } from '../../src/services/ports.ts';
import { sliceRuntimeContract, type RequestShape } from './slice-runtime.contract.ts';
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { needEngines } from '../support/engines.ts';
import { until } from '../support/until.ts';

const ECHO_SERVICE = join(import.meta.dirname, '../fixtures/echo-service.ts');
const MiB = 1024 * 1024;
const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * A range of `size` ports below the kernel's ephemeral range (32768 and up here), at a random place so
 * concurrent runs rarely meet; the allocator itself skips any port something else holds.
 */
function testRange(size = 40): PortRange {
  const first = randomInt(20_000, 32_000 - size);
  return new PortRange(first, first + size - 1);
}

type Started = Extract<SpawnOutcome, { ok: true }>;
function started(outcome: SpawnOutcome): Started {
  if (!outcome.ok) throw new Error(`expected the instance to start, got ${JSON.stringify(outcome)}`);
  return outcome;
}

let sequence = 0;
const instanceId = (label: string): string => `org.arcnet.test:${label}:1.0#${++sequence}@${process.pid}`;

function processRequest(id: string, command: readonly string[], extra: Partial<SpawnRequest> = {}): SpawnRequest {
  return {
    instanceId: id,
    artifact: id.split('#')[0]!,
    run: { kind: 'process', command: [...command], env: { ECHO_REPORT_ENV: 'CONTRACT_MARK' } },
    env: {},
    resources: { cpu: 0.5, memoryMb: 256 },
    portsWanted: 1,
    ...extra,
  };
}

function processShape(id: string, shape: RequestShape): SpawnRequest {
  switch (shape.kind) {
    case 'service':
      return processRequest(id, [process.execPath, ECHO_SERVICE]);
    case 'exits':
      return processRequest(id, [process.execPath, '-e', `process.stderr.write(${JSON.stringify(`${shape.message}\n`)}); process.exit(${shape.code})`]);
    case 'missing':
      return processRequest(id, [`arcnet-no-such-executable-${process.pid}`, '--flag']);
  }
}

async function whoami(address: { host: string; port: number }): Promise<{ instance: string; port: number; ports: number[]; env: Record<string, string | null> }> {
  const response = await fetch(`http://${address.host}:${address.port}/whoami`, { signal: AbortSignal.timeout(2_000) });
  return (await response.json()) as { instance: string; port: number; ports: number[]; env: Record<string, string | null> };
}

async function healthy(address: { host: string; port: number }): Promise<void> {
  await until(async () => (await fetch(`http://${address.host}:${address.port}/health`, { signal: AbortSignal.timeout(1_000) })).ok, 'GET /health', 8_000, {
    intervalMs: 50,
    retryOnError: true,
  });
}

/** Whether the pid runs (a zombie counts as gone: it only waits for its parent). */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !/^Z|^X/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

const scratch: string[] = [];
async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `arcnet-slice-${label}-`));
  scratch.push(dir);
  return dir;
}

afterAll(async () => {
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

describe('process slice runtime', () => {
  // One pid-file directory and one range for every runtime of the contract: a restarted agent's view.
  const stateDir = join(tmpdir(), `arcnet-slice-contract-${process.pid}-${Date.now()}`);
  scratch.push(stateDir);
  const range = testRange();
  sliceRuntimeContract(
    'ProcessSliceRuntime (echo-service.ts on this Node)',
    async () => {
      const ports = new PortRange(range.first, range.last);
      return { runtime: new ProcessSliceRuntime({ ports, stateDir, closeGraceMs: 3_000 }), ports };
    },
    processShape,
  );

  describe('what only processes have', () => {
    const runtimes: ProcessSliceRuntime[] = [];
    async function open(options: { cgroupRoot?: string } = {}): Promise<{ runtime: ProcessSliceRuntime; ports: PortRange; stateDir: string }> {
      const ports = testRange(20);
      const dir = await tempDir('state');
      const runtime = new ProcessSliceRuntime({ ports, stateDir: dir, ...options });
      runtimes.push(runtime);
      return { runtime, ports, stateDir: dir };
    }

    afterAll(async () => {
      for (const runtime of runtimes) await runtime.close();
    });

    it('sets PORT, ARCNET_PORTS and ARCNET_INSTANCE_ID, one host port per port wanted', async () => {
      const { runtime, ports } = await open();
      const id = instanceId('ports');
      const outcome = started(await runtime.spawn({ ...processShape(id, { kind: 'service' }), portsWanted: 3 }));
      const { addresses } = outcome.response;
      expect(addresses).toHaveLength(3);
      expect(addresses.every((address) => address.host === '127.0.0.1')).toBe(true);
      expect(ports.heldPorts()).toEqual(addresses.map((address) => address.port).sort((a, b) => a - b));
      await healthy(addresses[0]!);
      const seen = await whoami(addresses[0]!);
      expect(seen).toMatchObject({ instance: id, port: addresses[0]!.port, ports: addresses.map((address) => address.port) });
      expect(outcome.response.pid).toBeGreaterThan(1);
      await runtime.stop(id, 3_000);
    });

    it('applies the memory and CPU limits in a cgroup v2 of its own where the host allows, and says why not where not', async () => {
      const { runtime } = await open();
      const id = instanceId('limits');
      const outcome = started(await runtime.spawn({ ...processShape(id, { kind: 'service' }), resources: { cpu: 0.25, memoryMb: 96 } }));
      try {
        const cgroupV2 = (await statfs('/sys/fs/cgroup')).type === CGROUP2_SUPER_MAGIC;
        if (outcome.response.limits.applied) {
          const dir = join('/sys/fs/cgroup', CGROUP_PARENT, instanceSlug(id));
          expect((await readFile(join(dir, 'memory.max'), 'utf8')).trim()).toBe(String(96 * MiB));
          expect((await readFile(join(dir, 'cpu.max'), 'utf8')).trim()).toBe('25000 100000');
          expect(await readFile(`/proc/${outcome.response.pid}/cgroup`, 'utf8')).toContain(`/${CGROUP_PARENT}/${instanceSlug(id)}`);
          await runtime.stop(id, 3_000);
          expect(existsSync(dir)).toBe(false);
        } else {
          // This host (cgroup v1 controllers, v2 mounted beside them without any) lands here; say it in the run's log.
          console.info(`cgroup limits not applied here: ${outcome.response.limits.note}`);
          expect(outcome.response.limits.note).toMatch(/cgroup/);
          if (!cgroupV2) expect(outcome.response.limits.note).toMatch(/cgroup v1|not a cgroup v2/);
        }
      } finally {
        await runtime.stop(id, 3_000);
      }
    });

    it('on whichever cgroup v2 mount this host has, applies the limits or names what is missing', async () => {
      // /sys/fs/cgroup on a v2 host; /sys/fs/cgroup/unified on a hybrid one, where memory and cpu stay with v1.
      const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((line) => line.split(' '));
      const mount = mounts.find((fields) => fields[2] === 'cgroup2')?.[1];
      if (!mount) {
        console.info('no cgroup2 mount on this host: the default root test covers the note');
        return;
      }
      const { runtime } = await open({ cgroupRoot: mount });
      const id = instanceId('v2-mount');
      const outcome = started(await runtime.spawn({ ...processShape(id, { kind: 'service' }), resources: { cpu: 1.5, memoryMb: 128 } }));
      try {
        if (outcome.response.limits.applied) {
          const dir = join(mount, CGROUP_PARENT, instanceSlug(id));
          expect((await readFile(join(dir, 'memory.max'), 'utf8')).trim()).toBe(String(128 * MiB));
          expect((await readFile(join(dir, 'cpu.max'), 'utf8')).trim()).toBe('150000 100000');
        } else {
          console.info(`cgroup limits not applied on ${mount}: ${outcome.response.limits.note}`);
          expect(outcome.response.limits.note).toMatch(/controller|not writable|could not/);
        }
        await healthy(outcome.response.addresses[0]!);
      } finally {
        await runtime.stop(id, 3_000);
      }
    });

    it('runs without limits, saying why, when the cgroup root given is not cgroup v2', async () => {
      const { runtime } = await open({ cgroupRoot: await tempDir('not-a-cgroup') });
      const id = instanceId('no-cgroup');
      const outcome = started(await runtime.spawn(processShape(id, { kind: 'service' })));
      expect(outcome.response.limits.applied).toBe(false);
      expect(outcome.response.limits.note).toMatch(/not a cgroup v2 mount|cgroup v1/);
      await healthy(outcome.response.addresses[0]!);
      await runtime.stop(id, 3_000);
    });

    it('stops the whole process group, not just the process it started', async () => {
      const { runtime, stateDir } = await open();
      const id = instanceId('group');
      const childPidFile = join(stateDir, 'grandchild.pid');
      // sh forks a long sleep, then becomes the echo service: the sleep is in the group but no longer the runtime's child.
      const command = ['/bin/sh', '-c', `sleep 300 & echo $! > ${childPidFile}; exec "$0" "$@"`, process.execPath, ECHO_SERVICE];
      const outcome = started(await runtime.spawn(processRequest(id, command)));
      await healthy(outcome.response.addresses[0]!);
      const grandchild = Number(await readFile(childPidFile, 'utf8'));
      try {
        expect(await alive(grandchild)).toBe(true);
        await runtime.stop(id, 3_000);
        await until(async () => !(await alive(grandchild)), 'the forked sleep to end', 3_000, { intervalMs: 20 });
      } finally {
        if (await alive(grandchild)) process.kill(grandchild, 'SIGKILL');
      }
    });

    it('kills an instance that ignores SIGTERM once the grace has passed', async () => {
      const { runtime, stateDir } = await open();
      const id = instanceId('stubborn');
      const ready = join(stateDir, 'stubborn.ready');
      const script = "process.on('SIGTERM', () => console.error('ignoring SIGTERM')); require('node:fs').writeFileSync(process.env.READY, 'up'); setInterval(() => {}, 1000);";
      const outcome = started(await runtime.spawn({ ...processRequest(id, [process.execPath, '-e', script]), env: { READY: ready } }));
      // Its SIGTERM handler must be in place before the stop, or the default action would end it at once.
      await until(() => existsSync(ready), 'the process to install its SIGTERM handler', 5_000, { intervalMs: 20 });
      const began = performance.now();
      await runtime.stop(id, 400);
      const elapsed = performance.now() - began;
      const exit = await outcome.exited;
      expect(exit).toMatchObject({ exitCode: null, signal: 'SIGKILL', requested: true });
      expect(exit.stderrTail).toContain('ignoring SIGTERM');
      expect(elapsed).toBeGreaterThanOrEqual(350);
      expect(elapsed).toBeLessThan(3_000);
      await rm(ready);
    });

    it('reports the echo service exiting by itself after ECHO_EXIT_AFTER_MS, with its own words', async () => {
      const { runtime, ports } = await open();
      const id = instanceId('echo-exits');
      const outcome = started(await runtime.spawn({ ...processShape(id, { kind: 'service' }), env: { ECHO_EXIT_AFTER_MS: '300' } }));
      const exit = await outcome.exited;
      expect(exit).toMatchObject({ exitCode: 1, signal: null, requested: false });
      expect(exit.stderrTail).toContain('ECHO_EXIT_AFTER_MS');
      expect(ports.heldPorts()).toEqual([]);
    });

    it(`keeps only the last ${STDERR_TAIL_BYTES} bytes of stderr`, async () => {
      const { runtime, stateDir } = await open();
      const id = instanceId('chatty');
      const script = "for (let i = 0; i < 2000; i++) process.stderr.write(`line ${i} ${'x'.repeat(60)}\\n`); process.stderr.write('the end\\n', () => process.exit(7));";
      const exit = await started(await runtime.spawn(processRequest(id, [process.execPath, '-e', script]))).exited;
      expect(exit.exitCode).toBe(7);
      expect(Buffer.byteLength(exit.stderrTail)).toBeLessThanOrEqual(STDERR_TAIL_BYTES);
      expect(Buffer.byteLength(exit.stderrTail)).toBeGreaterThan(STDERR_TAIL_BYTES - 100);
      expect(exit.stderrTail.endsWith('line 1999 ' + 'x'.repeat(60) + '\nthe end\n')).toBe(true);
      // It ended within moments of starting: its pid file must not be written after the cleanup removed it.
      expect(await readdir(stateDir)).toEqual([]);
    });

    it('refuses a file that is not executable, naming it, and holds no port for it', async () => {
      const { runtime, ports } = await open();
      const file = join(await tempDir('noexec'), 'service.sh');
      await writeFile(file, '#!/bin/sh\nexit 0\n');
      await chmod(file, 0o644);
      const outcome = await runtime.spawn(processRequest(instanceId('noexec'), [file]));
      expect(outcome).toMatchObject({ ok: false, retryable: false });
      if (!outcome.ok) expect(outcome.reason).toMatch(new RegExp(`"${file}" is not executable`));
      expect(ports.heldPorts()).toEqual([]);
    });

    it('writes a pid file per instance and removes it when the instance ends', async () => {
      const { runtime, stateDir } = await open();
      const id = instanceId('pidfile');
      const outcome = started(await runtime.spawn(processShape(id, { kind: 'service' })));
      const file = join(stateDir, `${instanceSlug(id)}.pid.json`);
      const record = JSON.parse(await readFile(file, 'utf8')) as { pid: number; argv: string[]; instanceId: string };
      expect(record).toMatchObject({ pid: outcome.response.pid, argv: [process.execPath, ECHO_SERVICE], instanceId: id });
      await runtime.stop(id, 3_000);
      expect(await readdir(stateDir)).toEqual([]);
    });

    it('leaves alone a process whose pid a leftover pid file names but that is not the instance (a reused pid)', async () => {
      const { runtime, stateDir } = await open();
      const bystander = spawn('sleep', ['30'], { stdio: 'ignore', detached: true });
      try {
        await new Promise((resolve) => bystander.once('spawn', resolve));
        const pid = bystander.pid!;
        // The pid is live, but it runs something else than the record says: a killed agent's instance ended and its pid came round again.
        await writeFile(
          join(stateDir, 'reused.pid.json'),
          JSON.stringify({ instanceId: 'org.arcnet.test:gone:1.0#1@1', pid, startTime: '1', argv: [process.execPath, ECHO_SERVICE], ports: [] }),
        );
        // A record that names it exactly but with a different start time is also someone else.
        const startTime = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')[19]!;
        await writeFile(
          join(stateDir, 'restarted.pid.json'),
          JSON.stringify({ instanceId: 'org.arcnet.test:gone:1.0#2@1', pid, startTime: String(Number(startTime) - 1), argv: ['sleep', '30'], ports: [] }),
        );
        // Without a start time the argv decides, and `sleep 30` is not the echo service.
        await writeFile(
          join(stateDir, 'old-format.pid.json'),
          JSON.stringify({ instanceId: 'org.arcnet.test:gone:1.0#3@1', pid, argv: [process.execPath, ECHO_SERVICE], ports: [] }),
        );
        expect(await runtime.removeLeftovers()).toBe(3);
        expect(await alive(pid)).toBe(true);
        expect(await readdir(stateDir)).toEqual([]);
      } finally {
        bystander.kill('SIGKILL');
      }
    });

    it('cleans a leftover that forked: the whole group goes', async () => {
      const { stateDir, ports } = await open();
      const first = new ProcessSliceRuntime({ ports, stateDir });
      // Closed last whatever happens, so a failure here leaves no echo service running.
      runtimes.push(first);
      const id = instanceId('leftover-group');
      const childPidFile = join(stateDir, 'grandchild.pid');
      const command = ['/bin/sh', '-c', `sleep 300 & echo $! > ${childPidFile}; exec "$0" "$@"`, process.execPath, ECHO_SERVICE];
      const outcome = started(await first.spawn(processRequest(id, command)));
      await healthy(outcome.response.addresses[0]!);
      const grandchild = Number(await readFile(childPidFile, 'utf8'));
      await rm(childPidFile);
      const second = new ProcessSliceRuntime({ ports: new PortRange(ports.first, ports.last), stateDir });
      runtimes.push(second);
      try {
        expect(await second.removeLeftovers()).toBe(1);
        await until(async () => !(await alive(grandchild)), 'the leftover group to end', 5_000, { intervalMs: 20 });
        expect((await outcome.exited).requested).toBe(false);
      } finally {
        if (await alive(grandchild)) process.kill(grandchild, 'SIGKILL');
      }
    });
  });
});

/**
 * busybox httpd serving /www: `health` for the health check, `whoami` written at start from the env it
 * got. Further container ports (after the first) get an httpd of their own, daemonised.
 */
function containerRequest(id: string, extra: { containerPorts?: number[]; command?: string[]; image?: string } = {}): SpawnRequest {
  const containerPorts = extra.containerPorts ?? [8080];
  const more = containerPorts.slice(1).map((port) => `httpd -p ${port} -h /www && `).join('');
  const script = [
    'mkdir -p /www && echo ok > /www/health',
    `printf '{"instance":"%s","port":"%s","ports":"%s","env":{"CONTRACT_MARK":"%s"}}' "$ARCNET_INSTANCE_ID" "$PORT" "$ARCNET_PORTS" "$CONTRACT_MARK" > /www/whoami`,
    `${more}exec httpd -f -p "\${PORT:-8080}" -h /www`,
  ].join(' && ');
  return {
    instanceId: id,
    artifact: id.split('#')[0]!,
    run: { kind: 'container', image: extra.image ?? TEST_IMAGE, command: extra.command ?? ['sh', '-c', script], containerPorts },
    env: {},
    resources: { cpu: 0.5, memoryMb: 64 },
    portsWanted: containerPorts.length,
  };
}

function containerShape(id: string, shape: RequestShape): SpawnRequest {
  switch (shape.kind) {
    case 'service':
      return containerRequest(id);
    case 'exits':
      return containerRequest(id, { command: ['sh', '-c', `echo '${shape.message}' >&2; exit ${shape.code}`] });
    case 'missing':
      return containerRequest(id, { image: 'arcnet/no-such-image:never' });
  }
}

const engine = needEngines('containers');
const endpoint = testEngineEndpoint();
/** Published ports are on the engine's host: this one for a socket, the TCP endpoint's host otherwise. */
const advertiseHost = endpoint.startsWith('tcp://') ? new URL(endpoint.replace(/^tcp:/, 'http:')).hostname : '127.0.0.1';

describe.skipIf(!engine.available)(engine.title(`container slice runtime at ${endpoint}`), () => {
  // Every container of this file carries it: the leftover sweeps and checks see this run's containers only.
  const labels = { 'arcnet.test-suite': `slice-runtimes-${process.pid}-${Date.now()}` };
  const range = testRange();
  sliceRuntimeContract(
    `ContainerSliceRuntime at ${endpoint} (busybox httpd)`,
    async () => {
      const ports = new PortRange(range.first, range.last);
      return { runtime: new ContainerSliceRuntime({ host: endpoint, advertiseHost, ports, labels, closeGraceMs: 3_000 }), ports };
    },
    containerShape,
  );

  describe('what only containers have', () => {
    const connection = connectDocker({ host: endpoint });
    const runtimes: ContainerSliceRuntime[] = [];
    function open(): { runtime: ContainerSliceRuntime; ports: PortRange } {
      const ports = testRange(20);
      const runtime = new ContainerSliceRuntime({ host: endpoint, advertiseHost, ports, labels });
      runtimes.push(runtime);
      return { runtime, ports };
    }

    afterAll(async () => {
      for (const runtime of runtimes) await runtime.close();
      connection.close();
    });

    it('labels and names the container, and has the engine apply the limits and run an init', async () => {
      const { runtime } = open();
      const id = instanceId('container-labels');
      const outcome = started(await runtime.spawn({ ...containerShape(id, { kind: 'service' }), resources: { cpu: 0.25, memoryMb: 48 } }));
      try {
        expect(outcome.response.limits).toEqual({ applied: true });
        const info = await connection.docker.getContainer(outcome.response.containerId!).inspect();
        expect(info.Name.replace(/^\//, '')).toBe(containerName(id));
        expect(info.Config.Labels).toMatchObject({ ...labels, 'arcnet.managed': '1', 'arcnet.service': '1', 'arcnet.instance': id });
        expect(info.HostConfig).toMatchObject({ Memory: 48 * MiB, MemorySwap: 48 * MiB, NanoCpus: 250_000_000 });
        expect((info.HostConfig as { Init?: boolean }).Init).toBe(true);
      } finally {
        await runtime.stop(id, 3_000);
      }
    });

    it('publishes every container port on a host port of the range, and tells the container its own ports', async () => {
      const { runtime, ports } = open();
      const id = instanceId('container-ports');
      const outcome = started(await runtime.spawn(containerRequest(id, { containerPorts: [8080, 9090] })));
      try {
        const { addresses } = outcome.response;
        expect(addresses).toHaveLength(2);
        expect(ports.heldPorts()).toEqual(addresses.map((address) => address.port).sort((a, b) => a - b));
        for (const address of addresses) await healthy(address);
        const seen = (await (await fetch(`http://${addresses[1]!.host}:${addresses[1]!.port}/whoami`)).json()) as Record<string, unknown>;
        expect(seen).toMatchObject({ instance: id, port: '8080', ports: '8080,9090' });
      } finally {
        await runtime.stop(id, 3_000);
      }
      expect(ports.heldPorts()).toEqual([]);
    });

    it('stops promptly a service that installed no SIGTERM handler, and removes the container', async () => {
      const { runtime } = open();
      const id = instanceId('container-stop');
      const outcome = started(await runtime.spawn(containerShape(id, { kind: 'service' })));
      await healthy(outcome.response.addresses[0]!);
      const began = performance.now();
      await runtime.stop(id, 10_000);
      // Without the init, httpd as PID 1 would ignore SIGTERM and the stop would take the whole 10 s.
      expect(performance.now() - began).toBeLessThan(5_000);
      expect(await outcome.exited).toMatchObject({ requested: true });
      await expect(connection.docker.getContainer(outcome.response.containerId!).inspect()).rejects.toMatchObject({ statusCode: 404 });
    });

    it('removes a container that exited by itself', async () => {
      const { runtime } = open();
      const id = instanceId('container-exits');
      const outcome = started(await runtime.spawn(containerShape(id, { kind: 'exits', code: 5, message: 'bye' })));
      expect(await outcome.exited).toMatchObject({ exitCode: 5, requested: false, stderrTail: 'bye\n' });
      await expect(connection.docker.getContainer(outcome.response.containerId!).inspect()).rejects.toMatchObject({ statusCode: 404 });
    });

    it("is not taken for a job's leftover by the jobs executor's sweep", async () => {
      const { runtime } = open();
      const id = instanceId('container-jobs-sweep');
      const outcome = started(await runtime.spawn(containerShape(id, { kind: 'service' })));
      const jobs = new DockerRuntime({ host: endpoint });
      try {
        expect(await jobs.managedContainers(labels)).toEqual([]);
        expect(await jobs.removeLeftovers(labels)).toBe(0);
        await healthy(outcome.response.addresses[0]!);
      } finally {
        await jobs.close();
        await runtime.stop(id, 3_000);
      }
    });

    // Last on purpose: every test above has stopped or swept its containers by now.
    it('leaves no container behind', async () => {
      for (const runtime of runtimes) await runtime.close();
      const left = await connection.docker.listContainers({ all: true, filters: { label: Object.entries(labels).map(([name, value]) => `${name}=${value}`) } });
      expect(left.map((container) => container.Names)).toEqual([]);
    });
  });
});

// No engine needed: what the runtime says when nothing answers where it was told to look.
describe('ContainerSliceRuntime without an engine', () => {
  it('reports an unreachable engine as not started and retryable, naming the endpoint, holding no port', async () => {
    const ports = testRange(5);
    const runtime = new ContainerSliceRuntime({ socketPath: '/nonexistent/arcnet-test.sock', ports, requestTimeoutMs: 2_000 });
    try {
      const outcome = await runtime.spawn(containerRequest(instanceId('no-engine')));
      expect(outcome).toMatchObject({ ok: false, retryable: true });
      if (!outcome.ok) expect(outcome.reason).toContain('unix:///nonexistent/arcnet-test.sock');
      expect(ports.heldPorts()).toEqual([]);
      expect(runtime.running()).toEqual([]);
    } finally {
      await runtime.close();
    }
  });

  it('refuses a process slice', async () => {
    const runtime = new ContainerSliceRuntime({ socketPath: '/nonexistent/arcnet-test.sock', ports: testRange(5) });
    try {
      expect(await runtime.spawn(processShape(instanceId('wrong-kind'), { kind: 'service' }))).toMatchObject({ ok: false, retryable: false });
    } finally {
      await runtime.close();
    }
  });
});

describe('PortRange', () => {
  it('validates its bounds with a clear error', () => {
    expect(() => new PortRange(80, 90)).toThrow(/first must be a whole number from 1024 to 65535, not 80/);
    expect(() => new PortRange(30_000, 70_000)).toThrow(/last must be a whole number from 1024 to 65535, not 70000/);
    expect(() => new PortRange(30_000.5, 30_010)).toThrow(/first must be a whole number/);
    expect(() => new PortRange(30_010, 30_000)).toThrow(/first \(30010\) is above last \(30000\)/);
    expect(() => PortRange.parse('20000-')).toThrow(/not FIRST-LAST/);
    expect(PortRange.parse('20000-20099')).toMatchObject({ first: 20_000, last: 20_099, size: 100 });
    expect(PortRange.parse('20000')).toMatchObject({ first: 20_000, last: 20_000, size: 1 });
  });

  it('never hands one port out twice while it is held, even to concurrent callers', async () => {
    const range = testRange(12);
    const batches = await Promise.allSettled(Array.from({ length: 8 }, () => range.allocate(2)));
    const granted = batches.flatMap((batch) => (batch.status === 'fulfilled' ? batch.value : []));
    expect(new Set(granted).size).toBe(granted.length);
    expect(range.heldPorts()).toEqual([...granted].sort((a, b) => a - b));
    // 12 ports, 2 each: at most 6 batches succeed (fewer if something else holds ports of the range).
    expect(batches.filter((batch) => batch.status === 'fulfilled').length).toBeLessThanOrEqual(6);
    for (const batch of batches) if (batch.status === 'rejected') expect(batch.reason).toBeInstanceOf(PortsExhaustedError);
    range.release(granted);
    expect(range.heldPorts()).toEqual([]);
  });

  it('skips a port something else listens on, and holds nothing after running out', async () => {
    const range = testRange(3);
    const servers: Server[] = [];
    try {
      // Something outside the runtime takes the middle port, on loopback only.
      const busy = range.first + 1;
      const server = createServer();
      servers.push(server);
      const listening = await new Promise<boolean>((resolve) => {
        server.once('error', () => resolve(false));
        server.listen(busy, '127.0.0.1', () => resolve(true));
      });
      const ports: number[] = [];
      for (;;) {
        try {
          ports.push(...(await range.allocate()));
        } catch (error) {
          expect(error).toBeInstanceOf(PortsExhaustedError);
          expect((error as Error).message).toMatch(new RegExp(`no 1 free port in ${range.first}-${range.last}`));
          break;
        }
      }
      if (listening) expect(ports).not.toContain(busy);
      expect(ports.length).toBeLessThanOrEqual(listening ? 2 : 3);
      await expect(range.allocate(2)).rejects.toBeInstanceOf(PortsExhaustedError);
      expect(range.heldPorts()).toEqual([...ports].sort((a, b) => a - b));
      range.release([ports[0]!]);
      range.release([ports[0]!]);
      expect(await range.allocate()).toEqual([ports[0]]);
    } finally {
      for (const server of servers) await new Promise((resolve) => server.close(resolve));
    }
  });
});

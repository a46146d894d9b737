/**
 * The slice runtime for local processes (seed 002's runner, `kind: 'process'`): each instance is its
 * argv run without a shell, detached in a process group of its own, so stopping it reaches whatever it
 * forked too.
 *
 * Environment: the run's env, then the request's, then `PORT` (the first port), `ARCNET_PORTS` (all of
 * them, comma-separated) and `ARCNET_INSTANCE_ID`. The agent's own environment is not passed on, since it
 * holds the agent's credentials; only PATH is, unless the slice sets its own.
 *
 * Limits: on a cgroup v2 host whose hierarchy this agent may write (root, or a delegated subtree), each
 * instance gets `arcnet-services/<instance>` with `memory.max` (and no swap beyond it) and `cpu.max` from
 * the request, and joins it before its executable starts: a small `sh` wrapper writes its own pid into
 * `cgroup.procs` and then execs the argv, so not one instruction of the slice runs unlimited. Anywhere else
 * (cgroup v1 or hybrid hosts, a read-only /sys/fs/cgroup, no memory or cpu controller) the instance runs
 * without limits and the response says why in `limits.note`.
 *
 * Output: stdout is discarded (a service logs where it is configured to); the last 4 KiB of stderr are
 * kept for the exit's `stderrTail`, the FAILED reason.
 *
 * Leftovers: every instance has a pid file in `stateDir` naming its pid, the kernel's start time of that
 * pid (and the boot), its argv and cgroup. After the agent was killed, `removeLeftovers` kills the process
 * groups whose pid is still the process that was started (a pid reused by an unrelated program is left
 * alone) and removes their cgroups and files.
 */
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, readFile, readdir, rename, rm, rmdir, statfs, writeFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logging.ts';
import { executableProblem } from './executables.ts';
import { PortsExhaustedError, type PortRange } from './port-range.ts';
import { SpawnsUnderWay } from './spawns-under-way.ts';
import type { InstanceExit, SliceRuntime, SpawnOutcome, SpawnRequest } from './ports.ts';

export interface ProcessSliceRuntimeOptions {
  /** Where instances' host ports come from. */
  readonly ports: PortRange;
  /** One pid file per running instance: what `removeLeftovers` reads after a killed agent. Created if missing. */
  readonly stateDir: string;
  /** The address other nodes reach this node's instances at (default 127.0.0.1). */
  readonly host?: string;
  readonly logger?: Logger;
  /** The cgroup v2 mount (default /sys/fs/cgroup). */
  readonly cgroupRoot?: string;
  /** How long `close` lets each instance end after SIGTERM before SIGKILL (default 5 s). */
  readonly closeGraceMs?: number;
}

/** The last bytes of stderr kept for an exit's reason. */
export const STDERR_TAIL_BYTES = 4_096;
/** The cgroup, under the cgroup v2 root, that holds one child per instance. */
export const CGROUP_PARENT = 'arcnet-services';

const CGROUP2_SUPER_MAGIC = 0x63677270;
const TMPFS_MAGIC = 0x01021994;
const CPU_PERIOD_US = 100_000;
/** The kernel's floor for cpu.max's quota. */
const MIN_CPU_QUOTA_US = 1_000;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** `$0` is the cgroup directory, `$@` the slice's argv: it joins the cgroup, then becomes the slice. */
const JOIN_CGROUP_SCRIPT = 'echo $$ > "$0/cgroup.procs" && exec "$@"';
const PID_FILE_SUFFIX = '.pid.json';

/**
 * The instance id as a file or cgroup name: unsafe characters replaced, and a digest of the whole id
 * appended so two ids that differ only in replaced characters stay apart.
 */
export function instanceSlug(instanceId: string): string {
  const readable = instanceId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 80);
  const digest = createHash('sha256').update(instanceId).digest('hex').slice(0, 10);
  return `${readable}-${digest}`;
}

/** What a pid file holds. */
interface PidRecord {
  readonly instanceId: string;
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat: with the pid, it names one process for the life of the host. */
  readonly startTime: string;
  readonly bootId?: string;
  readonly argv: readonly string[];
  readonly cgroup?: string;
  readonly ports: readonly number[];
  readonly startedAt: number;
}

interface Instance {
  readonly id: string;
  readonly pid: number;
  readonly child: ChildProcess;
  readonly ports: readonly number[];
  readonly cgroup: string | undefined;
  readonly pidFile: string;
  readonly stderr: TailBuffer;
  requested: boolean;
  /** Set at the leader's exit, before cleanup: signals to the group stop then, since its pid may be reused. */
  exitedAt: number | undefined;
  /** The pid file's write: an instance that ends at once must not have its file written after it was removed. */
  recorded: Promise<void>;
  readonly ended: Promise<InstanceExit>;
}

type CgroupParent = { readonly dir: string } | { readonly note: string };

type Failed = Extract<SpawnOutcome, { ok: false }>;
const failed = (reason: string, retryable: boolean): Failed => ({ ok: false, reason, retryable });

export class ProcessSliceRuntime implements SliceRuntime {
  readonly kind = 'process';
  private readonly ports: PortRange;
  private readonly stateDir: string;
  private readonly host: string;
  private readonly logger: Logger;
  private readonly cgroupRoot: string;
  private readonly closeGraceMs: number;
  private readonly instances = new Map<string, Instance>();
  private readonly starting = new SpawnsUnderWay();
  private cgroupParentCheck: Promise<CgroupParent> | undefined;
  private closed = false;

  constructor(options: ProcessSliceRuntimeOptions) {
    this.ports = options.ports;
    this.stateDir = resolvePath(options.stateDir);
    this.host = options.host ?? '127.0.0.1';
    this.logger = options.logger ?? silentLogger;
    this.cgroupRoot = options.cgroupRoot ?? '/sys/fs/cgroup';
    this.closeGraceMs = options.closeGraceMs ?? 5_000;
  }

  async spawn(request: SpawnRequest): Promise<SpawnOutcome> {
    if (this.closed) return failed('the process runtime is closed', false);
    if (this.instances.has(request.instanceId) || this.starting.has(request.instanceId)) {
      return failed(`instance ${request.instanceId} already runs on this node`, false);
    }
    return this.starting.run(request.instanceId, () => this.start(request));
  }

  async stop(instanceId: string, graceMs: number): Promise<void> {
    await this.starting.settled(instanceId);
    const instance = this.instances.get(instanceId);
    if (instance) await this.terminate(instance, graceMs);
  }

  running(): readonly string[] {
    return [...this.instances.values()].filter((instance) => instance.exitedAt === undefined).map((instance) => instance.id);
  }

  async removeLeftovers(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.stateDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw error;
    }
    const own = new Set([...this.instances.values()].map((instance) => instance.pid));
    let removed = 0;
    // A pid file half-written when the agent was killed; this process's own writes are left to finish.
    for (const name of names.filter((entry) => entry.endsWith('.tmp') && !entry.endsWith(`.${process.pid}.tmp`))) {
      await rm(join(this.stateDir, name), { force: true });
    }
    for (const name of names.filter((entry) => entry.endsWith(PID_FILE_SUFFIX))) {
      const file = join(this.stateDir, name);
      const record = await readPidRecord(file);
      if (record && own.has(record.pid)) continue;
      if (record) {
        if (await sameProcess(record)) {
          signalGroup(record.pid, 'SIGKILL');
          await waitUntil(async () => !(await processAlive(record.pid)), 5_000);
          this.logger.info({ instance: record.instanceId, pid: record.pid }, 'killed a leftover slice instance');
        }
        if (record.cgroup) await removeCgroup(record.cgroup, this.logger);
      }
      await rm(file, { force: true });
      removed++;
    }
    return removed;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.starting.allSettled();
    await Promise.all([...this.instances.keys()].map((id) => this.stop(id, this.closeGraceMs)));
  }

  private async terminate(instance: Instance, graceMs: number): Promise<void> {
    instance.requested = true;
    this.signalGroup(instance, 'SIGTERM');
    const timer = setTimeout(() => this.signalGroup(instance, 'SIGKILL'), Math.max(0, graceMs));
    try {
      await instance.ended;
    } finally {
      clearTimeout(timer);
    }
  }

  private async start(request: SpawnRequest): Promise<SpawnOutcome> {
    const { run } = request;
    if (run.kind !== 'process') return failed(`a process runtime cannot run a ${run.kind} slice`, false);
    const argv = run.command;
    const baseEnv: Record<string, string> = { PATH: process.env['PATH'] ?? DEFAULT_PATH, ...run.env, ...request.env };
    const problem = await executableProblem(argv[0]!, baseEnv['PATH'] ?? DEFAULT_PATH);
    if (problem !== undefined) return failed(problem, false);
    try {
      await mkdir(this.stateDir, { recursive: true });
    } catch (error) {
      return failed(`cannot keep pid files in ${this.stateDir}: ${errorMessage(error)}`, false);
    }

    let ports: number[];
    try {
      ports = await this.ports.allocate(Math.max(1, request.portsWanted));
    } catch (error) {
      if (error instanceof PortsExhaustedError) return failed(error.message, true);
      throw error;
    }
    const env = { ...baseEnv, PORT: String(ports[0]), ARCNET_PORTS: ports.join(','), ARCNET_INSTANCE_ID: request.instanceId };
    const slug = instanceSlug(request.instanceId);

    let cgroup: string | undefined;
    let limits: { applied: boolean; note?: string };
    try {
      const prepared = await this.prepareCgroup(slug, request.resources);
      cgroup = 'dir' in prepared ? prepared.dir : undefined;
      limits = 'dir' in prepared ? { applied: true } : { applied: false, note: prepared.note };
    } catch (error) {
      this.ports.release(ports);
      throw error;
    }

    const [file, args] = cgroup ? ['/bin/sh', ['-c', JOIN_CGROUP_SCRIPT, cgroup, ...argv]] : [argv[0]!, argv.slice(1)];
    let child: ChildProcess;
    try {
      child = spawnChild(file, args, { detached: true, env, stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (error) {
      // Node refuses some arguments before any process exists (a NUL byte in an argument or a value).
      this.ports.release(ports);
      if (cgroup) await removeCgroup(cgroup, this.logger);
      return failed(`executable "${argv[0]}" could not start: ${errorMessage(error)}`, false);
    }
    const stderr = new TailBuffer(STDERR_TAIL_BYTES);
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    const spawned = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      child.once('spawn', () => resolve(undefined));
      child.once('error', (error) => resolve(error));
    });
    if (spawned || child.pid === undefined) {
      this.ports.release(ports);
      if (cgroup) await removeCgroup(cgroup, this.logger);
      const code = spawned?.code;
      const what = code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'not executable' : `could not start: ${errorMessage(spawned)}`;
      return failed(`executable "${argv[0]}" ${what}`, code !== 'ENOENT' && code !== 'EACCES');
    }
    const pid = child.pid;

    let settle!: (exit: InstanceExit) => void;
    const instance: Instance = {
      id: request.instanceId,
      pid,
      child,
      ports,
      cgroup,
      pidFile: join(this.stateDir, `${slug}${PID_FILE_SUFFIX}`),
      stderr,
      requested: false,
      exitedAt: undefined,
      recorded: Promise.resolve(),
      ended: new Promise<InstanceExit>((resolve) => (settle = resolve)),
    };
    this.instances.set(instance.id, instance);
    instance.recorded = this.writePidRecord(instance, argv);
    child.once('exit', (exitCode, signal) => {
      instance.exitedAt = Date.now();
      void this.finish(instance, exitCode, signal).then(settle, (error: unknown) => {
        // The exit itself is certain: it is reported whatever part of the cleanup failed.
        this.logger.error({ err: errorMessage(error), instance: instance.id }, 'cleanup after the slice process failed');
        this.instances.delete(instance.id);
        this.ports.release(instance.ports);
        settle({ instanceId: instance.id, exitCode, signal, requested: instance.requested, stderrTail: instance.stderr.text() });
      });
    });
    child.on('error', (error) => this.logger.warn({ err: errorMessage(error), instance: instance.id }, 'slice process error'));

    try {
      await instance.recorded;
    } catch (error) {
      // Without its pid file a killed agent would leave this instance running unseen: refuse it now.
      this.logger.error({ err: errorMessage(error), dir: this.stateDir }, 'could not write the pid file');
      await this.terminate(instance, 0);
      return failed(`could not write the pid file in ${this.stateDir}: ${errorMessage(error)}`, false);
    }
    this.logger.info({ instance: instance.id, pid, ports, limits: limits.applied }, 'slice process started');
    return {
      ok: true,
      response: { instanceId: instance.id, pid, addresses: ports.map((port) => ({ host: this.host, port })), limits },
      exited: instance.ended,
    };
  }

  /** After the leader's exit: whatever else is left of the group goes, then its ports, pid file and cgroup. */
  private async finish(instance: Instance, exitCode: number | null, signal: NodeJS.Signals | null): Promise<InstanceExit> {
    // A forked child that outlived the leader would keep the instance's port: the instance ends as a whole.
    // Safe right after the exit: the kernel does not hand out a pid still used as a live group's id.
    signalGroup(instance.pid, 'SIGKILL');
    if (instance.cgroup) await removeCgroup(instance.cgroup, this.logger);
    await streamEnded(instance.child, 500);
    await instance.recorded.catch(() => undefined);
    await rm(instance.pidFile, { force: true }).catch((error: unknown) =>
      this.logger.warn({ err: errorMessage(error), file: instance.pidFile }, 'could not remove the pid file'),
    );
    this.ports.release(instance.ports);
    this.instances.delete(instance.id);
    const exit: InstanceExit = { instanceId: instance.id, exitCode, signal, requested: instance.requested, stderrTail: instance.stderr.text() };
    this.logger.info({ instance: instance.id, exitCode, signal, requested: instance.requested }, 'slice process ended');
    return exit;
  }

  private signalGroup(instance: Instance, signal: NodeJS.Signals): void {
    if (instance.exitedAt === undefined) signalGroup(instance.pid, signal);
  }

  private async writePidRecord(instance: Instance, argv: readonly string[]): Promise<void> {
    const record: PidRecord = {
      instanceId: instance.id,
      pid: instance.pid,
      startTime: (await procStartTime(instance.pid)) ?? '',
      ...(await bootId().then((id) => (id ? { bootId: id } : {}))),
      argv,
      ...(instance.cgroup ? { cgroup: instance.cgroup } : {}),
      ports: instance.ports,
      startedAt: Date.now(),
    };
    // Written aside and renamed: a killed agent leaves the whole record or none.
    const temporary = `${instance.pidFile}.${process.pid}.tmp`;
    await writeFile(temporary, JSON.stringify(record));
    await rename(temporary, instance.pidFile);
  }

  /** The instance's own cgroup with its limits set, or why there is none. */
  private async prepareCgroup(slug: string, resources: SpawnRequest['resources']): Promise<CgroupParent> {
    this.cgroupParentCheck ??= this.cgroupParent();
    const parent = await this.cgroupParentCheck;
    if (!('dir' in parent)) return parent;
    const dir = join(parent.dir, slug);
    try {
      // A directory of the same name is what a killed agent's instance left: empty, or it would be running.
      await rmdir(dir).catch(() => undefined);
      await mkdir(dir);
      await writeFile(join(dir, 'memory.max'), String(Math.round(resources.memoryMb * 1024 * 1024)));
      // Equal to memory.max, as for containers: past the limit is an OOM kill, not a slow crawl through swap.
      await writeFile(join(dir, 'memory.swap.max'), '0').catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      });
      const quota = Math.max(MIN_CPU_QUOTA_US, Math.round(resources.cpu * CPU_PERIOD_US));
      await writeFile(join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
      return { dir };
    } catch (error) {
      await rmdir(dir).catch(() => undefined);
      return { note: `could not set up the cgroup ${dir}: ${errorMessage(error)}` };
    }
  }

  /** Whether this host lets the agent make limited cgroups, checked once: the answer does not change while it runs. */
  private async cgroupParent(): Promise<CgroupParent> {
    const root = this.cgroupRoot;
    let type: number;
    try {
      type = (await statfs(root)).type;
    } catch (error) {
      return { note: `no cgroup filesystem at ${root} (${errorMessage(error)}): the limits are not applied` };
    }
    if (type !== CGROUP2_SUPER_MAGIC) {
      const what = type === TMPFS_MAGIC ? 'a cgroup v1 (or hybrid) hierarchy' : `not a cgroup v2 mount (filesystem type 0x${type.toString(16)})`;
      return { note: `${root} is ${what}; limits need cgroup v2, so they are not applied` };
    }
    const controllers = (await readFile(join(root, 'cgroup.controllers'), 'utf8').catch(() => '')).split(/\s+/);
    const missing = ['memory', 'cpu'].filter((name) => !controllers.includes(name));
    if (missing.length > 0) return { note: `the cgroup v2 hierarchy at ${root} offers no ${missing.join(' or ')} controller: the limits are not applied` };
    try {
      await access(join(root, 'cgroup.subtree_control'), fsConstants.W_OK);
    } catch {
      return { note: `${root} is not writable by this agent (uid ${process.getuid?.() ?? '?'}): the limits are not applied` };
    }
    const dir = join(root, CGROUP_PARENT);
    try {
      await enableControllers(root);
      await mkdir(dir, { recursive: true });
      await enableControllers(dir);
      return { dir };
    } catch (error) {
      const busy = (error as NodeJS.ErrnoException).code === 'EBUSY';
      const why = busy ? `${root} itself holds processes, so it cannot delegate controllers (move the agent into a leaf cgroup)` : errorMessage(error);
      return { note: `could not enable the memory and cpu controllers under ${root}: ${why}; the limits are not applied` };
    }
  }
}

async function enableControllers(dir: string): Promise<void> {
  const file = join(dir, 'cgroup.subtree_control');
  const enabled = (await readFile(file, 'utf8')).split(/\s+/);
  const wanted = ['memory', 'cpu'].filter((name) => !enabled.includes(name));
  if (wanted.length > 0) await writeFile(file, wanted.map((name) => `+${name}`).join(' '));
}

/** Kills whatever is still in the cgroup and removes it; a cgroup that will not go is logged, not thrown. */
async function removeCgroup(dir: string, logger: Logger): Promise<void> {
  const gone = await waitUntil(async () => {
    try {
      await rmdir(dir);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY') throw error;
    }
    const killAll = await writeFile(join(dir, 'cgroup.kill'), '1').then(() => true, () => false);
    if (!killAll) {
      const pids = (await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
      for (const pid of pids) signalProcess(pid, 'SIGKILL');
    }
    return false;
  }, 3_000).catch((error: unknown) => {
    logger.warn({ err: errorMessage(error), cgroup: dir }, 'could not remove the cgroup');
    return true;
  });
  if (!gone) logger.warn({ cgroup: dir }, 'the cgroup still holds processes; left in place');
}

/** Keeps the last `limit` bytes written. */
class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.chunks.length > 1 && this.size - this.chunks[0]!.length >= this.limit) this.size -= this.chunks.shift()!.length;
  }

  text(): string {
    const all = Buffer.concat(this.chunks);
    // A cut through a multi-byte character would start the text with a replacement character.
    return all.subarray(Math.max(0, all.length - this.limit)).toString('utf8').replace(/^\uFFFD+/, '');
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  signalProcess(-pid, signal);
}

function signalProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Field 22 of /proc/<pid>/stat, after the command name (which may itself hold spaces and parentheses). */
async function procStartTime(pid: number): Promise<string | undefined> {
  const fields = await procStatFields(pid);
  return fields?.[19];
}

/** The fields of /proc/<pid>/stat from the state (field 3) on; undefined when the process is gone. */
async function procStatFields(pid: number): Promise<string[] | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
  } catch {
    return undefined;
  }
}

/** Running, as opposed to gone or a zombie waiting for its parent to reap it. */
async function processAlive(pid: number): Promise<boolean> {
  const state = (await procStatFields(pid))?.[0];
  return state !== undefined && state !== 'Z' && state !== 'X';
}

/**
 * Whether the pid file's process still runs. The kernel's start time of the pid (within the same boot)
 * names one process for the life of the host, so a pid reused by another program is told apart; the
 * argv is not compared then, since an instance may exec another program (`sh -c 'exec …'`) and change
 * its cmdline. A record without a start time falls back to the cmdline ending with the argv recorded
 * (the cgroup wrapper's cmdline ends with it too).
 */
async function sameProcess(record: PidRecord): Promise<boolean> {
  if (!(await processAlive(record.pid))) return false;
  if (record.bootId && record.bootId !== (await bootId())) return false;
  if (record.startTime) return (await procStartTime(record.pid)) === record.startTime;
  const cmdline = await readFile(`/proc/${record.pid}/cmdline`, 'utf8').catch(() => undefined);
  if (cmdline === undefined) return false;
  const running = cmdline.split('\0');
  if (running.at(-1) === '') running.pop();
  const tail = running.slice(running.length - record.argv.length);
  return record.argv.length > 0 && tail.length === record.argv.length && tail.every((arg, i) => arg === record.argv[i]);
}

/** This boot's id: start times count from boot, so a record from before a reboot names no process of this one. */
async function bootId(): Promise<string | undefined> {
  return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => undefined))?.trim();
}

async function readPidRecord(file: string): Promise<PidRecord | undefined> {
  try {
    const value = JSON.parse(await readFile(file, 'utf8')) as Partial<PidRecord>;
    if (!Number.isSafeInteger(value.pid) || (value.pid ?? 0) <= 1 || !Array.isArray(value.argv)) return undefined;
    return {
      instanceId: String(value.instanceId),
      pid: value.pid!,
      startTime: typeof value.startTime === 'string' ? value.startTime : '',
      ...(typeof value.bootId === 'string' ? { bootId: value.bootId } : {}),
      argv: value.argv.map(String),
      ...(typeof value.cgroup === 'string' ? { cgroup: value.cgroup } : {}),
      ports: Array.isArray(value.ports) ? value.ports.filter(Number.isInteger) : [],
      startedAt: Number(value.startedAt) || 0,
    };
  } catch {
    return undefined;
  }
}

/** Resolves when the child's stderr has closed, or after `ms`, whichever is first. */
async function streamEnded(child: ChildProcess, ms: number): Promise<void> {
  const stream = child.stderr;
  if (!stream || stream.readableEnded || stream.destroyed) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      stream?.off('close', done);
      resolve();
    }
    stream.once('close', done);
  });
  stream.destroy();
}

/** Polls `check` until it holds or `ms` passed; returns whether it held. */
async function waitUntil(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/**
 * The slice runtime for long-running service containers (seed 002's runner, `kind: 'container'`),
 * through the Docker Engine API over the jobs executor's connection (`connectDocker`: the same endpoint
 * options and DOCKER_HOST handling as DockerRuntime).
 *
 * Networking: each `run.containerPorts` entry (default 8080) is published on a host port from the
 * node's PortRange, on the default bridge network; the container's env says `PORT` (its first container
 * port) and `ARCNET_PORTS`, and the response gives the host addresses. Measured on this project's Podman
 * 4.3 (root, netavark): publishing answers on loopback and on the node's own address, and conmon holds
 * the host port open while the container lives, so the range's free-port probe sees it taken. The host
 * IP is left out of the binding on purpose: netavark 1.4 turns an explicit `0.0.0.0` into a DNAT rule
 * for the literal destination 0.0.0.0, and the port then answers nowhere. Host networking also works
 * there, but it would let a service bind any port of the node, outside the range.
 *
 * Signals: the engine's init (`Init: true`, catatonit under Podman, docker-init under Docker) runs as
 * PID 1 and forwards the stop's SIGTERM. A service as PID 1 has no default action for SIGTERM, so a
 * busybox httpd ignored it and every stop waited out the whole grace (5.5 s against 0.5 s, measured).
 *
 * Labels: `arcnet.managed=1`, `arcnet.service=1`, `arcnet.instance=<id>` and the options' own (the agent
 * adds its node). The jobs executor's leftover sweep matches `arcnet.managed=true`, so it never takes a
 * running service for a job a crashed worker left behind; `removeLeftovers` here matches
 * `arcnet.service=1` and the options' labels.
 *
 * Exits: the exit code is the engine's (128 + n for a process ended by signal n; the engine does not say
 * which), `signal` stays null, and `stderrTail` is the end of the container's stderr (its stdout when it
 * wrote nothing to stderr, since many images log there). The container is removed once it has ended:
 * a restart is a new spawn.
 */
import type Docker from 'dockerode';
import type { Container } from 'dockerode';
// An adapter beside its port, as src/training/slurm*.ts is: it reuses the jobs executor's engine connection rather than copying it.
import { asBytes, connectDocker, withinTimeout, engineMessage, engineStatus, isSpecFault, type DockerConnection, type DockerEndpointOptions } from '../agent/docker-runtime.ts';
import { demultiplexDockerStream } from '../agent/docker-wire.ts';
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logging.ts';
import { PortsExhaustedError, type PortRange } from './port-range.ts';
import { STDERR_TAIL_BYTES, instanceSlug } from './process-runtime.ts';
import type { InstanceExit, SliceRuntime, SpawnOutcome, SpawnRequest } from './ports.ts';
import { SpawnsUnderWay } from './spawns-under-way.ts';

export interface ContainerSliceRuntimeOptions extends DockerEndpointOptions {
  /** Where the published host ports come from. */
  readonly ports: PortRange;
  /**
   * The address other nodes reach this node's instances at (default 127.0.0.1): the engine's host, where
   * the ports are published. Not `host`, which names the engine as DockerRuntime's options do.
   */
  readonly advertiseHost?: string;
  /** Carried by every container, and scoping `removeLeftovers` (the agent gives `{ 'arcnet.node': id }`). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly logger?: Logger;
  /** Bounds every engine call but the wait for exit (default 30 s), so a wedged engine cannot hang the node. */
  readonly requestTimeoutMs?: number;
  /** How long `close` lets each container end after SIGTERM before SIGKILL (default 5 s). */
  readonly closeGraceMs?: number;
}

export const SERVICE_MANAGED_LABEL = 'arcnet.managed';
export const SERVICE_LABEL = 'arcnet.service';
export const INSTANCE_LABEL = 'arcnet.instance';
export const DEFAULT_CONTAINER_PORT = 8080;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Log lines asked of the engine for the tail; the bytes are cut to STDERR_TAIL_BYTES after. */
const LOG_TAIL_LINES = 200;

/** The container's name on the engine: readable, unique per instance id. */
export function containerName(instanceId: string): string {
  return `arcnet-svc-${instanceSlug(instanceId)}`;
}

interface Instance {
  readonly id: string;
  readonly container: Container;
  readonly ports: readonly number[];
  requested: boolean;
  /** Set once the end is noticed; `running()` leaves it out from then on. */
  ending: boolean;
  /** Ends the wait for exit when the runtime noticed the end another way (a stop). */
  readonly watch: AbortController;
  finished: Promise<InstanceExit> | undefined;
  readonly ended: Promise<InstanceExit>;
  settle(exit: InstanceExit): void;
}

type Failed = Extract<SpawnOutcome, { ok: false }>;
const failed = (reason: string, retryable: boolean): Failed => ({ ok: false, reason, retryable });

export class ContainerSliceRuntime implements SliceRuntime {
  readonly kind = 'container';
  /** DOCKER_HOST-style URL of the engine, for messages and operators. */
  readonly endpoint: string;
  private readonly connection: DockerConnection;
  private readonly docker: Docker;
  private readonly ports: PortRange;
  private readonly host: string;
  private readonly labels: Readonly<Record<string, string>>;
  private readonly logger: Logger;
  private readonly requestTimeoutMs: number;
  private readonly closeGraceMs: number;
  private readonly instances = new Map<string, Instance>();
  private readonly starting = new SpawnsUnderWay();
  private closed = false;
  /** Set when the connection is gone: a watch still running then would retry forever. */
  private disconnected = false;

  constructor(options: ContainerSliceRuntimeOptions) {
    this.connection = connectDocker(options);
    this.endpoint = this.connection.endpoint;
    this.docker = this.connection.docker;
    this.ports = options.ports;
    this.host = options.advertiseHost ?? '127.0.0.1';
    this.labels = { ...options.labels };
    this.logger = options.logger ?? silentLogger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.closeGraceMs = options.closeGraceMs ?? 5_000;
  }

  async spawn(request: SpawnRequest): Promise<SpawnOutcome> {
    if (this.closed) return failed('the container runtime is closed', false);
    if (this.instances.has(request.instanceId) || this.starting.has(request.instanceId)) {
      return failed(`instance ${request.instanceId} already runs on this node`, false);
    }
    return this.starting.run(request.instanceId, () => this.start(request).catch((error: unknown) => failed(this.unreachable(error), true)));
  }

  async stop(instanceId: string, graceMs: number): Promise<void> {
    await this.starting.settled(instanceId);
    const instance = this.instances.get(instanceId);
    if (!instance) return;
    instance.requested = true;
    if (!instance.ending) {
      try {
        // The engine counts its grace in whole seconds: rounded up, so a service gets at least what was asked.
        const seconds = Math.ceil(Math.max(0, graceMs) / 1_000);
        await instance.container.stop({ t: seconds, abortSignal: AbortSignal.timeout(seconds * 1_000 + this.requestTimeoutMs) });
      } catch (error) {
        // 304: it had stopped already; 404: it is gone. Anything else: the removal below forces it.
        const status = engineStatus(error);
        if (status !== 304 && status !== 404) this.logger.warn({ err: engineMessage(error), instance: instanceId }, 'container stop failed');
      }
    }
    await this.finish(instance);
  }

  running(): readonly string[] {
    return [...this.instances.values()].filter((instance) => !instance.ending).map((instance) => instance.id);
  }

  async removeLeftovers(): Promise<number> {
    const filter = [`${SERVICE_LABEL}=1`, ...Object.entries(this.labels).map(([name, value]) => `${name}=${value}`)];
    const found = await this.docker.listContainers({ all: true, filters: { label: filter }, abortSignal: this.deadline() });
    const own = new Set([...this.instances.values()].map((instance) => instance.container.id));
    const leftovers = found.filter((container) => !own.has(container.Id));
    for (const container of leftovers) {
      await this.remove(this.docker.getContainer(container.Id));
      this.logger.info({ container: container.Id, instance: container.Labels?.[INSTANCE_LABEL] }, 'removed a leftover service container');
    }
    return leftovers.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    try {
      await this.starting.allSettled();
      await Promise.all([...this.instances.keys()].map((id) => this.stop(id, this.closeGraceMs)));
    } finally {
      this.disconnected = true;
      this.connection.close();
    }
  }

  private async start(request: SpawnRequest): Promise<SpawnOutcome> {
    const { run } = request;
    if (run.kind !== 'container') return failed(`a container runtime cannot run a ${run.kind} slice`, false);

    try {
      await withinTimeout(this.docker.getImage(run.image).inspect(), 'image inspect', this.requestTimeoutMs);
    } catch (error) {
      if (engineStatus(error) === 404) {
        return failed(`image ${run.image} is not on this node (no registry is assumed reachable: load or build it here first)`, false);
      }
      return failed(this.unreachable(error), true);
    }

    const containerPorts = run.containerPorts ?? [DEFAULT_CONTAINER_PORT];
    let ports: number[];
    try {
      ports = await this.ports.allocate(containerPorts.length);
    } catch (error) {
      if (error instanceof PortsExhaustedError) return failed(error.message, true);
      throw error;
    }

    let container: Container | undefined;
    try {
      const memoryBytes = Math.round(request.resources.memoryMb * 1024 * 1024);
      const nanoCpus = Math.round(request.resources.cpu * 1e9);
      try {
        container = await this.docker.createContainer({
          ...this.createBody(request, run, containerPorts, ports, memoryBytes, nanoCpus),
          abortSignal: this.deadline(),
        });
      } catch (error) {
        const status = engineStatus(error);
        if (status === 409) {
          return failed(`a container named ${containerName(request.instanceId)} already exists on ${this.endpoint} (a killed agent's; removeLeftovers removes it)`, true);
        }
        if (status !== undefined && status < 500) return failed(`the engine refused the container: ${engineMessage(error)}`, false);
        return failed(this.unreachable(error), true);
      }

      const config = (await container.inspect({ abortSignal: this.deadline() })).HostConfig;
      const applied = config.Memory === memoryBytes && config.NanoCpus === nanoCpus;
      const limits = applied
        ? { applied: true }
        : { applied: false, note: `the engine kept Memory=${config.Memory} NanoCpus=${config.NanoCpus}, not ${memoryBytes} and ${nanoCpus} (no cgroup delegation?)` };

      try {
        await container.start({ abortSignal: this.deadline() });
      } catch (error) {
        const message = engineMessage(error);
        const status = engineStatus(error);
        return failed(`the container did not start: ${message}`, (status === undefined || status >= 500) && !isSpecFault(message));
      }

      const instance = this.track(request.instanceId, container, ports);
      container = undefined;
      this.logger.info({ instance: instance.id, container: instance.container.id, ports }, 'service container started');
      return {
        ok: true,
        response: {
          instanceId: instance.id,
          containerId: instance.container.id,
          addresses: ports.map((port) => ({ host: this.host, port })),
          limits,
        },
        exited: instance.ended,
      };
    } finally {
      // Reached with a container still set only when it did not start: nothing of it may stay.
      if (container) {
        await this.remove(container);
        this.ports.release(ports);
      } else if (!this.instances.has(request.instanceId)) {
        this.ports.release(ports);
      }
    }
  }

  private createBody(
    request: SpawnRequest,
    run: Extract<SpawnRequest['run'], { kind: 'container' }>,
    containerPorts: readonly number[],
    hostPorts: readonly number[],
    memoryBytes: number,
    nanoCpus: number,
  ): Docker.ContainerCreateOptions {
    const env = {
      ...run.env,
      ...request.env,
      PORT: String(containerPorts[0]),
      ARCNET_PORTS: containerPorts.join(','),
      ARCNET_INSTANCE_ID: request.instanceId,
    };
    const exposed = Object.fromEntries(containerPorts.map((port) => [`${port}/tcp`, {}]));
    // No HostIp: see the header (netavark and an explicit 0.0.0.0).
    const bindings = Object.fromEntries(containerPorts.map((port, i) => [`${port}/tcp`, [{ HostPort: String(hostPorts[i]) }]]));
    return {
      name: containerName(request.instanceId),
      Image: run.image,
      ...(run.command ? { Cmd: [...run.command] } : {}),
      Env: Object.entries(env).map(([name, value]) => `${name}=${value}`),
      Labels: {
        ...this.labels,
        [SERVICE_MANAGED_LABEL]: '1',
        [SERVICE_LABEL]: '1',
        [INSTANCE_LABEL]: request.instanceId,
        'arcnet.artifact': request.artifact,
      },
      ExposedPorts: exposed,
      Tty: false,
      OpenStdin: false,
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      HostConfig: {
        Memory: memoryBytes,
        // Equal to Memory: no swap beyond the limit, so exceeding it is an OOM kill rather than a slow crawl.
        MemorySwap: memoryBytes,
        NanoCpus: nanoCpus,
        NetworkMode: 'bridge',
        PortBindings: bindings,
        Init: true,
        // The node decides about restarts (and counts them); an engine restarting on its own would hide exits.
        RestartPolicy: { Name: 'no' },
        AutoRemove: false,
      },
    };
  }

  private track(id: string, container: Container, ports: readonly number[]): Instance {
    let settle!: (exit: InstanceExit) => void;
    const instance: Instance = {
      id,
      container,
      ports,
      requested: false,
      ending: false,
      watch: new AbortController(),
      finished: undefined,
      ended: new Promise<InstanceExit>((resolve) => (settle = resolve)),
      settle: (exit) => settle(exit),
    };
    this.instances.set(id, instance);
    void this.watchForExit(instance).catch((error: unknown) =>
      this.logger.error({ err: errorMessage(error), instance: id }, 'watching the service container failed'),
    );
    return instance;
  }

  /**
   * Waits for the container to end, without a deadline (a service runs for as long as it runs). A wait cut
   * short (the engine restarted, a socket reset) is not taken for an exit: inspect says whether it still runs.
   */
  private async watchForExit(instance: Instance): Promise<void> {
    const { signal } = instance.watch;
    while (!signal.aborted && !this.disconnected) {
      try {
        await instance.container.wait({ abortSignal: signal });
        break;
      } catch (error) {
        if (signal.aborted) return;
        if (engineStatus(error) === 404) break;
        try {
          const state = (await instance.container.inspect({ abortSignal: this.deadline() })).State;
          if (!state.Running) break;
        } catch (inspectError) {
          if (engineStatus(inspectError) === 404) break;
          this.logger.warn({ err: engineMessage(inspectError), instance: instance.id }, 'cannot see the service container; retrying');
          await new Promise((resolve) => setTimeout(resolve, 1_000));
        }
      }
    }
    if (!signal.aborted && !this.disconnected) await this.finish(instance);
  }

  /** Once per instance, whichever notices the end first (the wait, a stop): its exit, then the container and its ports go. */
  private finish(instance: Instance): Promise<InstanceExit> {
    instance.finished ??= (async () => {
      instance.ending = true;
      instance.watch.abort();
      let exitCode: number | null = null;
      let oomKilled = false;
      try {
        const state = (await instance.container.inspect({ abortSignal: this.deadline() })).State;
        if (!state.Running) {
          exitCode = state.ExitCode;
          oomKilled = state.OOMKilled;
        }
      } catch (error) {
        if (engineStatus(error) !== 404) this.logger.warn({ err: engineMessage(error), instance: instance.id }, 'could not inspect the ended container');
      }
      const tail = await this.logTail(instance.container);
      await this.remove(instance.container);
      this.ports.release(instance.ports);
      this.instances.delete(instance.id);
      const exit: InstanceExit = {
        instanceId: instance.id,
        exitCode,
        signal: null,
        requested: instance.requested,
        stderrTail: oomKilled ? `[killed at its memory limit]\n${tail}` : tail,
      };
      this.logger.info({ instance: instance.id, exitCode, requested: instance.requested, oomKilled }, 'service container ended');
      instance.settle(exit);
      return exit;
    })();
    return instance.finished;
  }

  private async logTail(container: Container): Promise<string> {
    try {
      const logs: unknown = await container.logs({ stdout: true, stderr: true, follow: false, tail: LOG_TAIL_LINES, abortSignal: this.deadline() });
      const { stdout, stderr } = demultiplexDockerStream(await asBytes(logs));
      const bytes = stderr.length > 0 ? stderr : stdout;
      return Buffer.from(bytes.subarray(Math.max(0, bytes.length - STDERR_TAIL_BYTES)))
        .toString('utf8')
        .replace(/^\uFFFD+/, '');
    } catch (error) {
      if (engineStatus(error) !== 404) this.logger.warn({ err: engineMessage(error), container: container.id }, 'could not read the container log');
      return '';
    }
  }

  private async remove(container: Container): Promise<void> {
    try {
      await container.remove({ force: true, v: true, abortSignal: this.deadline() });
    } catch (error) {
      if (engineStatus(error) !== 404) this.logger.warn({ err: engineMessage(error), container: container.id }, 'could not remove the service container');
    }
  }

  private unreachable(error: unknown): string {
    const status = engineStatus(error);
    return status === undefined
      ? `no Docker Engine API at ${this.endpoint}: ${engineMessage(error)}`
      : `the engine failed (${this.endpoint}, HTTP ${status}): ${engineMessage(error) || errorMessage(error)}`;
  }

  private deadline(): AbortSignal {
    return AbortSignal.timeout(this.requestTimeoutMs);
  }

}

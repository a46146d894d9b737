/**
 * The container executor over the Docker Engine API (Docker itself, or Podman's compatible service):
 * one short-lived container per run, limits from the spec, output collected from the engine's log,
 * the container removed afterwards whatever happened.
 */
import { Agent } from 'node:http';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import type { Container } from 'dockerode';
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logging.ts';
import { demultiplexDockerStream, ustarArchive } from './docker-wire.ts';
import type { ContainerOutcome, ContainerRuntime, ContainerSpec } from './ports.ts';

/** Where the engine is: what every client of the Docker Engine API in ArcNet is configured with. */
export interface DockerEndpointOptions {
  /** A unix socket path; wins over `host`. */
  readonly socketPath?: string;
  /** DOCKER_HOST style: `unix:///run/docker.sock` or `tcp://host:2375` (plain HTTP, no TLS). */
  readonly host?: string;
}

export interface DockerRuntimeOptions extends DockerEndpointOptions {
  readonly logger?: Logger;
  /** Bounds every call but the wait for exit (default 30 s), so a wedged engine cannot hang a run. */
  readonly requestTimeoutMs?: number;
}

export const INPUT_PATH = '/arcnet/input';
export const MANAGED_LABEL = 'arcnet.managed';
const DEFAULT_SOCKET = '/var/run/docker.sock';
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

type Endpoint = { readonly socketPath: string } | { readonly hostname: string; readonly port: number };

/** The engine this process should talk to, as a DOCKER_HOST-style URL: DOCKER_HOST when set, else the default socket. */
export function dockerEndpointFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  const value = env['DOCKER_HOST']?.trim();
  if (!value) return `unix://${DEFAULT_SOCKET}`;
  return endpointUrl(parseEndpoint(value));
}

function parseEndpoint(value: string): Endpoint {
  if (value.startsWith('/')) return { socketPath: value };
  if (value.startsWith('unix://')) {
    const socketPath = value.slice('unix://'.length);
    if (!socketPath.startsWith('/')) throw new Error(`DOCKER_HOST "${value}": a unix socket needs an absolute path (unix:///path)`);
    return { socketPath };
  }
  const match = /^(?:tcp|http):\/\/([^/:]+|\[[^\]]+\])(?::(\d+))?\/?$/.exec(value);
  if (!match?.[1]) throw new Error(`DOCKER_HOST "${value}" is neither unix:///path nor tcp://host:port`);
  return { hostname: match[1], port: match[2] ? Number(match[2]) : 2375 };
}

function endpointUrl(endpoint: Endpoint): string {
  return 'socketPath' in endpoint ? `unix://${endpoint.socketPath}` : `tcp://${endpoint.hostname}:${endpoint.port}`;
}

/** dockerode's modem merges DOCKER_HOST & co. from the environment into its options: every field is set here so the endpoint given wins. */
function modemOptions(endpoint: Endpoint, agent: Agent): Docker.DockerOptions {
  const common = { protocol: 'http' as const, agent, ca: undefined, cert: undefined, key: undefined, timeout: undefined };
  return 'socketPath' in endpoint
    ? { ...common, socketPath: endpoint.socketPath, host: undefined, port: undefined }
    : { ...common, socketPath: undefined, host: endpoint.hostname, port: endpoint.port };
}

/** A dockerode client on its own keep-alive agent, for the endpoint given (DOCKER_HOST when none is). */
export interface DockerConnection {
  readonly docker: Docker;
  /** DOCKER_HOST-style URL of the engine, for messages and operators. */
  readonly endpoint: string;
  /** Closes the agent's idle sockets; the client is unusable afterwards. */
  close(): void;
}

/** The one place the engine's address is parsed and dockerode configured, shared by the job executor and the service runtime. */
export function connectDocker(options: DockerEndpointOptions = {}): DockerConnection {
  const endpoint = options.socketPath ? { socketPath: options.socketPath } : parseEndpoint(options.host ?? dockerEndpointFromEnv());
  const agent = new Agent({ keepAlive: true });
  return { docker: new Docker(modemOptions(endpoint, agent)), endpoint: endpointUrl(endpoint), close: () => agent.destroy() };
}

interface EngineError {
  readonly statusCode?: number;
  readonly json?: { readonly message?: unknown } | null;
  readonly reason?: string;
  readonly message?: string;
}

export function engineStatus(error: unknown): number | undefined {
  const status = (error as EngineError | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The engine's own message (its JSON body) when it sent one, rather than dockerode's "(HTTP code 500) server error - …" wrapper. */
export function engineMessage(error: unknown): string {
  const body = (error as EngineError | null)?.json;
  if (body && typeof body.message === 'string') return body.message;
  return errorMessage(error);
}

type EngineKind = { readonly kind: 'docker' } | { readonly kind: 'podman'; readonly apiVersion: string };

/** The slice of docker-modem used to reach Podman's own API through the same connection settings. */
interface Modem {
  dial(
    options: {
      path: string;
      method: string;
      options: Record<string, unknown>;
      abortSignal: AbortSignal;
      statusCodes: Record<number, true | string>;
    },
    callback: (error: unknown, data: unknown) => void,
  ): void;
}

type Ended = { readonly kind: 'exited' } | { readonly kind: 'timed-out' } | { readonly kind: 'cancelled' };

export class DockerRuntime implements ContainerRuntime {
  readonly kind = 'docker';
  /** DOCKER_HOST-style URL of the engine, for messages and operators. */
  readonly endpoint: string;
  private readonly docker: Docker;
  private readonly connection: DockerConnection;
  private readonly logger: Logger;
  private readonly requestTimeoutMs: number;
  private engineKind: Promise<EngineKind> | undefined;

  constructor(options: DockerRuntimeOptions = {}) {
    this.connection = connectDocker(options);
    this.endpoint = this.connection.endpoint;
    this.docker = this.connection.docker;
    this.logger = options.logger ?? silentLogger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  async ping(): Promise<void> {
    try {
      await withinTimeout(this.docker.ping(), 'ping', this.requestTimeoutMs);
    } catch (error) {
      throw new Error(`no Docker Engine API at ${this.endpoint}: ${engineMessage(error)}`, { cause: error });
    }
  }

  /** Whether `image` is present locally: what a worker can run, since nothing is pulled. */
  async imagePresent(image: string): Promise<boolean> {
    try {
      await withinTimeout(this.docker.getImage(image).inspect(), 'image inspect', this.requestTimeoutMs);
      return true;
    } catch (error) {
      if (engineStatus(error) === 404) return false;
      throw new Error(`no Docker Engine API at ${this.endpoint}: ${engineMessage(error)}`, { cause: error });
    }
  }

  /**
   * Ids of the containers this runtime created that still exist (any state), optionally narrowed by more
   * labels: after a crash of the agent these are what is left to remove.
   */
  async managedContainers(labels: Readonly<Record<string, string>> = {}): Promise<string[]> {
    const filter = [`${MANAGED_LABEL}=true`, ...Object.entries(labels).map(([name, value]) => `${name}=${value}`)];
    const found = await this.docker.listContainers({ all: true, filters: { label: filter }, abortSignal: this.deadline() });
    return found.map((container) => container.Id);
  }

  /** Removes what a crashed agent left behind (containers carrying these labels); returns how many. */
  async removeLeftovers(labels: Readonly<Record<string, string>>): Promise<number> {
    const ids = await this.managedContainers(labels);
    for (const id of ids) await this.remove(this.docker.getContainer(id));
    return ids.length;
  }

  async close(): Promise<void> {
    this.connection.close();
  }

  async run(spec: ContainerSpec): Promise<ContainerOutcome> {
    const began = performance.now();
    const since = (): number => Math.round(performance.now() - began);
    if (spec.signal?.aborted) return { kind: 'cancelled', durationMs: 0 };

    try {
      await withinTimeout(this.docker.getImage(spec.image).inspect(), 'image inspect', this.requestTimeoutMs);
    } catch (error) {
      const status = engineStatus(error);
      if (status === 404) {
        return {
          kind: 'not-started',
          reason: `image "${spec.image}" is not present on this worker (no registry is reachable; load or build it first)`,
          retryable: false,
        };
      }
      return this.unreachable(error, status);
    }

    let container: Container | undefined;
    try {
      try {
        container = await this.docker.createContainer({ ...this.createBody(spec), abortSignal: this.deadline() });
      } catch (error) {
        const status = engineStatus(error);
        if (status !== undefined && status < 500) {
          return { kind: 'not-started', reason: `the engine refused the container: ${engineMessage(error)}`, retryable: false };
        }
        return this.unreachable(error, status);
      }
      if (spec.signal?.aborted) return { kind: 'cancelled', durationMs: since() };

      if (spec.input) {
        const archive = ustarArchive([
          { name: 'arcnet', type: 'directory', mode: 0o755 },
          { name: 'arcnet/input', type: 'file', mode: 0o644, data: spec.input },
        ]);
        try {
          // At `/`, carrying its directory: the image need not have /arcnet, and the engine requires the target to exist.
          await container.putArchive(Buffer.from(archive.buffer, archive.byteOffset, archive.byteLength), {
            path: '/',
            abortSignal: this.deadline(),
          });
        } catch (error) {
          return this.unreachable(error, engineStatus(error), 'could not write the input into the container');
        }
      }
      if (spec.signal?.aborted) return { kind: 'cancelled', durationMs: since() };

      const started = performance.now();
      try {
        await container.start({ abortSignal: this.deadline() });
      } catch (error) {
        const status = engineStatus(error);
        // A start the runtime refuses (no such executable, bad working directory) is the spec's fault: the same again fails the same way.
        return {
          kind: 'not-started',
          reason: `the container did not start: ${engineMessage(error)}`,
          retryable: (status === undefined || status >= 500) && !isSpecFault(engineMessage(error)),
        };
      }

      const ended = await this.waitForEnd(container, spec);
      const durationMs = Math.round(performance.now() - started);
      if (ended.kind === 'cancelled') return { kind: 'cancelled', durationMs };

      const output = await this.collectOutput(container);
      if (ended.kind === 'timed-out') return { kind: 'timed-out', ...output, durationMs };

      const state = (await container.inspect({ abortSignal: this.deadline() })).State;
      return { kind: 'exited', exitCode: state.ExitCode, oomKilled: state.OOMKilled, ...output, durationMs };
    } catch (error) {
      // The engine failed mid-run (restarted, socket gone): nothing trustworthy came out, and another attempt may well succeed.
      return this.unreachable(error, engineStatus(error));
    } finally {
      if (container) await this.remove(container);
    }
  }

  private createBody(spec: ContainerSpec): Docker.ContainerCreateOptions {
    const env = Object.entries(spec.env).map(([name, value]) => `${name}=${value}`);
    if (spec.input) env.push(`ARCNET_INPUT=${INPUT_PATH}`);
    return {
      Image: spec.image,
      Cmd: [...spec.command],
      Env: env,
      Labels: { ...spec.labels, [MANAGED_LABEL]: 'true' },
      Tty: false,
      OpenStdin: false,
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      HostConfig: {
        Memory: spec.memoryBytes,
        // Equal to Memory: no swap beyond the limit, so exceeding it is an OOM kill rather than a slow crawl.
        MemorySwap: spec.memoryBytes,
        NanoCpus: Math.round(spec.cpus * 1e9),
        NetworkMode: spec.network ? 'bridge' : 'none',
        AutoRemove: false,
      },
    };
  }

  /** Exit, timeout or abort, whichever comes first; the loser's request and timer are released. */
  private async waitForEnd(container: Container, spec: ContainerSpec): Promise<Ended> {
    const waitAbort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const exited = this.waitForExit(container, waitAbort.signal).then(
        (): Ended => ({ kind: 'exited' }),
        (error: unknown): Ended => {
          // A wait cut short by the engine (not by us) still means the container is gone or done; inspect tells which.
          if (!waitAbort.signal.aborted) this.logger.warn({ err: errorMessage(error), container: container.id }, 'container wait failed');
          return { kind: 'exited' };
        },
      );
      const timedOut = new Promise<Ended>((resolve) => {
        timer = setTimeout(() => resolve({ kind: 'timed-out' }), spec.timeoutMs);
      });
      const cancelled = new Promise<Ended>((resolve) => {
        if (!spec.signal) return;
        onAbort = () => resolve({ kind: 'cancelled' });
        spec.signal.addEventListener('abort', onAbort, { once: true });
        if (spec.signal.aborted) onAbort();
      });
      const ended = await Promise.race([exited, timedOut, cancelled]);
      if (ended.kind !== 'exited') {
        await this.kill(container);
        // The kill is asynchronous in the engine: wait for the stop so the log is complete and remove does not race it.
        await Promise.race([exited, delay(this.requestTimeoutMs)]);
      }
      return ended;
    } finally {
      clearTimeout(timer);
      if (onAbort) spec.signal?.removeEventListener('abort', onAbort);
      waitAbort.abort();
    }
  }

  /**
   * Podman's Docker-compatible wait polls coarsely (300 ms to 1.5 s after a trivial container exits,
   * measured on Podman 4.3); its own API takes an interval and answers in about 150 ms. Docker's wait
   * is event-driven already.
   */
  private async waitForExit(container: Container, signal: AbortSignal): Promise<void> {
    const engine = await this.engine();
    if (engine.kind !== 'podman') {
      await container.wait({ abortSignal: signal });
      return;
    }
    const modem = this.docker.modem as Modem;
    await new Promise<void>((resolve, reject) => {
      modem.dial(
        {
          path: `/v${engine.apiVersion}/libpod/containers/${encodeURIComponent(container.id)}/wait?`,
          method: 'POST',
          options: { _query: { condition: ['stopped', 'exited'], interval: '20ms' }, _body: {} },
          abortSignal: signal,
          statusCodes: { 200: true, 404: 'no such container', 500: 'server error' },
        },
        (error) => (error ? reject(error) : resolve()),
      );
    });
  }

  /** Which engine answers, asked once; an engine that cannot say is treated as Docker (the portable path). */
  private engine(): Promise<EngineKind> {
    this.engineKind ??= withinTimeout(this.docker.version(), 'version', this.requestTimeoutMs).then(
      (version): EngineKind => {
        const podman = version.Components?.find((component) => component.Name === 'Podman Engine');
        const apiVersion = (podman?.Details as { APIVersion?: unknown } | undefined)?.APIVersion;
        return podman && typeof apiVersion === 'string' ? { kind: 'podman', apiVersion } : { kind: 'docker' };
      },
      (error: unknown): EngineKind => {
        this.engineKind = undefined;
        this.logger.debug({ err: engineMessage(error) }, 'engine version unknown');
        return { kind: 'docker' };
      },
    );
    return this.engineKind;
  }

  private async kill(container: Container): Promise<void> {
    try {
      await container.kill({ signal: 'SIGKILL', abortSignal: this.deadline() });
    } catch (error) {
      // 409/304: it stopped on its own meanwhile.
      this.logger.debug({ err: engineMessage(error), container: container.id }, 'container kill');
    }
  }

  private async collectOutput(container: Container): Promise<{ stdout: Uint8Array; stderr: Uint8Array }> {
    try {
      const logs: unknown = await container.logs({ stdout: true, stderr: true, follow: false, abortSignal: this.deadline() });
      return demultiplexDockerStream(await asBytes(logs));
    } catch (error) {
      this.logger.warn({ err: engineMessage(error), container: container.id }, 'could not read container output');
      return { stdout: new Uint8Array(0), stderr: new Uint8Array(0) };
    }
  }

  private async remove(container: Container): Promise<void> {
    try {
      await container.remove({ force: true, v: true, abortSignal: this.deadline() });
    } catch (error) {
      if (engineStatus(error) !== 404) {
        this.logger.warn({ err: engineMessage(error), container: container.id }, 'could not remove container');
      }
    }
  }

  private unreachable(error: unknown, status: number | undefined, what = 'the engine failed'): ContainerOutcome {
    const reason =
      status === undefined
        ? `no Docker Engine API at ${this.endpoint}: ${engineMessage(error)}`
        : `${what} (${this.endpoint}, HTTP ${status}): ${engineMessage(error)}`;
    return { kind: 'not-started', reason, retryable: true };
  }

  private deadline(): AbortSignal {
    return AbortSignal.timeout(this.requestTimeoutMs);
  }

}

/** A start refused for what the container asks (its executable, its working directory): the same again fails the same way. */
export function isSpecFault(message: string): boolean {
  return /executable file not found|no such file or directory|permission denied|not a directory/i.test(message);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** dockerode hands back a Buffer for a finished log and a stream when following; both are taken. */
export async function asBytes(value: unknown): Promise<Uint8Array> {
  if (value instanceof Uint8Array) return value;
  if (value === null || value === undefined) return new Uint8Array(0);
  if (typeof (value as Readable)[Symbol.asyncIterator] === 'function') {
    const chunks: Buffer[] = [];
    for await (const chunk of value as Readable) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }
  throw new Error(`unexpected log payload from the engine: ${typeof value}`);
}

/** For the calls dockerode passes no abort signal on (ping, image inspect, version): the request is left to finish or fail on its own. */
export async function withinTimeout<T>(request: Promise<T>, what: string, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([request, expired]);
  } finally {
    clearTimeout(timer);
  }
}

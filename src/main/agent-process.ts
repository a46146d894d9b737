/**
 * Composition root of a node agent (`arcnet agent`): the inference session with its backend
 * (simulated or an OpenAI-compatible server) and local telemetry, and with `worker` the seed 004
 * batch worker running containers through the Docker Engine API. The worker registers under the
 * node's own id, so one machine is one node carrying both seeds' fields (ADR 0007).
 */
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { errorMessage } from '../core/errors.ts';
import { seededUuid } from '../core/ids.ts';
import type { Logger } from '../core/logging.ts';
import { httpClient } from '../core/http-client.ts';
import type { ClientTls } from '../core/tls.ts';
import type { EnergySource } from '../contracts/messages.ts';
import type { InferenceBackend } from '../agent/ports.ts';
import type { AgentExit } from '../agent/agent.ts';
import type { Worker } from '../agent/worker.ts';
import type { SigningPolicy } from '../jobs/signing.ts';
import { signingPolicy } from './job-signers.ts';
import type { PortRange } from '../services/port-range.ts';
import type { SliceRuntime } from '../services/ports.ts';
import type { AgentSliceChannel } from '../agent/services-channel.ts';

/** The agent could not start: the server refused the worker, or its container engine is unreachable. */
export class AgentNotStarted extends Error {}

export interface WorkerSettings {
  /** Docker Engine API: unix:///path or tcp://host:port; default $DOCKER_HOST or /var/run/docker.sock. */
  readonly dockerHost?: string;
  readonly cpus: number;
  readonly memoryGb: number;
  /** Where the worker keeps its id and credential (default .arcnet/worker-<name>.json). */
  readonly stateFile?: string;
  readonly heartbeatIntervalMs: number;
  readonly pollIntervalMs: number;
  /** A directory of trusted job signers' `<key_id>.pub` files: every signed assignment is verified against them before it runs. */
  readonly trustedSignersDir?: string;
  /** Refuse to run assignments of unsigned jobs (needs `trustedSignersDir`). */
  readonly requireSignedJobs?: boolean;
}

/** `--services`: the runner (seed 002) and the node deployment manager (seed 003) on this node. */
export interface ServicesSettings {
  /** The host ports the runner owns. */
  readonly ports: PortRange;
  /** The address the server reaches this node's instances at. */
  readonly host: string;
  /** Where the process runtime keeps its pid files (default .arcnet/services-<name>). */
  readonly stateDir?: string;
  /** Docker Engine API for container slices (default $DOCKER_HOST or /var/run/docker.sock); without an answer only process slices run here. */
  readonly dockerHost?: string;
}

export interface AgentProcessOptions {
  readonly server: string;
  readonly name: string;
  /** Default: derived from the host and the name, so it is stable across restarts. */
  readonly id?: string;
  readonly geozone: string;
  readonly geohash: string;
  readonly models: readonly string[];
  /** Without `inferenceUrl` the backend is simulated. */
  readonly inferenceUrl?: string;
  readonly apiKey?: string;
  readonly energySource: EnergySource;
  readonly batteryLevel: number;
  readonly gpus: number;
  readonly gpuMemoryGb: number;
  /** Latency multiplier of the simulated backend. */
  readonly speed: number;
  readonly telemetryIntervalMs: number;
  /** Run an inference session (false: a batch worker only). */
  readonly inference: boolean;
  readonly worker?: WorkerSettings;
  /** For `https://` servers: the CA to trust, and the client certificate a server with `--tls-ca` asks for (subject CN = the node name). */
  readonly tls?: ClientTls;
  /** An enrolment token (or operator key): enrols the node on first contact. Unused once the node holds its key. */
  readonly token?: string;
  /** Where the node key issued at enrolment is kept (default .arcnet/node-<name>.key), so a restart proves the same node. */
  readonly nodeKeyFile?: string;
  /** Seed 002's tags (`data_node`, `live_node`, …): reported with the node's identity. */
  readonly tags?: readonly string[];
  /** Datasets hot here, reported in telemetry for service placement. */
  readonly datasetsHot?: readonly string[];
  /** What the node offers (default 1 core, 1 GB, as before services placed by it). */
  readonly cpus?: number;
  readonly memoryGb?: number;
  readonly services?: ServicesSettings;
  readonly logger: Logger;
}

export interface AgentProcess {
  readonly nodeId: string;
  /** Settles once everything has stopped: after `stop()`, or when the server refused the agent. */
  readonly finished: Promise<AgentExit>;
  stop(): void;
}

/** The node key once enrolled (kept in a 0600 file), else the enrolment token to present. */
function nodeKeyStore(file: string, token: string | undefined, logger: Logger): { readonly current: string | undefined; keep(key: string): void } {
  const kept = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  return {
    current: kept.length > 0 ? kept : token,
    keep: (key) => {
      try {
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, `${key}\n`, { mode: 0o600 });
        chmodSync(file, 0o600);
      } catch (error) {
        logger.error({ file, err: errorMessage(error) }, 'could not keep the node key: the next start must enrol again');
      }
    },
  };
}

export async function startAgentProcess(options: AgentProcessOptions): Promise<AgentProcess> {
  const { logger } = options;
  // One client for the session and the worker's calls and stream: the same TLS, one connection pool.
  const http = httpClient(options.tls);
  const [{ Agent }, { SimulatedBackend }, { OpenAiBackend }, { localTelemetry }] = await Promise.all([
    import('../agent/agent.ts'),
    import('../agent/simulated-backend.ts'),
    import('../agent/openai-backend.ts'),
    import('../agent/local-telemetry.ts'),
  ]);
  const backend: InferenceBackend = options.inferenceUrl
    ? new OpenAiBackend({ baseUrl: options.inferenceUrl, ...(options.apiKey ? { apiKey: options.apiKey } : {}) })
    : new SimulatedBackend({ speed: options.speed, slots: options.gpus });
  const identity = {
    id: options.id ?? seededUuid(`${hostname()}/${options.name}`),
    name: options.name,
    geozone: options.geozone,
    geohash: options.geohash,
    capacity: { cpuCores: options.cpus ?? 1, memoryGb: options.memoryGb ?? 1, gpus: options.gpus, gpuMemoryGb: options.gpuMemoryGb },
    tags: [...(options.tags ?? [])],
    backend: backend.kind,
  };
  const nodeKey = nodeKeyStore(options.nodeKeyFile ?? join('.arcnet', `node-${options.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.key`), options.token, logger);
  let worker: Worker | undefined;
  if (options.worker) {
    const [{ Worker, WorkerRefused }, { DockerRuntime, dockerEndpointFromEnv }] = await Promise.all([import('../agent/worker.ts'), import('../agent/docker-runtime.ts')]);
    const settings = options.worker;
    let signing: SigningPolicy;
    try {
      signing = signingPolicy({ ...(settings.trustedSignersDir === undefined ? {} : { signersDir: settings.trustedSignersDir }), required: settings.requireSignedJobs ?? false, what: 'this worker (--require-signed-jobs)' });
    } catch (error) {
      throw new AgentNotStarted(errorMessage(error));
    }
    worker = new Worker({
      serverUrl: options.server,
      id: identity.id,
      name: options.name,
      region: options.geozone,
      cpuCores: settings.cpus,
      memoryGb: settings.memoryGb,
      runtime: new DockerRuntime({ host: settings.dockerHost ?? dockerEndpointFromEnv() }),
      stateFile: settings.stateFile ?? join('.arcnet', `worker-${options.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.json`),
      heartbeatIntervalMs: settings.heartbeatIntervalMs,
      pollIntervalMs: settings.pollIntervalMs,
      http,
      ...(options.token === undefined ? {} : { enrolmentToken: options.token }),
      signing,
      logger,
    });
    try {
      await worker.start();
    } catch (error) {
      throw new AgentNotStarted(error instanceof WorkerRefused ? error.message : `worker cannot start: ${errorMessage(error)}`);
    }
    logger.info({ nodeId: worker.id, server: options.server, cpus: settings.cpus, memoryGb: settings.memoryGb, trustedSigners: [...signing.trusted.keys()], requireSignedJobs: signing.required }, 'worker ready');
  }
  const services = options.services ? await startServices(options.services, identity.id, options.name, logger) : undefined;
  const agent = options.inference
    ? new Agent({
        serverUrl: options.server,
        identity,
        backend,
        telemetry: localTelemetry({ identity, backend, modelsLoaded: [...options.models], energySource: options.energySource, batteryLevel: options.batteryLevel, gpuMemoryGb: options.gpuMemoryGb, ...(options.datasetsHot ? { datasetsHot: options.datasetsHot } : {}) }),
        telemetryIntervalMs: options.telemetryIntervalMs,
        http,
        logger,
        ...(nodeKey.current === undefined ? {} : { token: nodeKey.current }),
        ...(options.token === undefined ? {} : { enrolmentToken: options.token }),
        onCredential: (key) => nodeKey.keep(key),
        ...(services ? { extensions: [services.channel] } : {}),
      })
    : undefined;
  let release: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    release = resolve;
  });
  agent?.start().then(
    () => logger.info({ nodeId: identity.id, server: options.server }, 'agent registered'),
    () => undefined,
  );
  const finished = (agent ? agent.finished : stopped.then((): AgentExit => ({ reason: 'stopped' }))).then(async (exit) => {
    await services?.stop();
    await worker?.stop();
    await backend.close?.();
    await http.close();
    return exit;
  });
  return {
    nodeId: identity.id,
    finished,
    stop: () => void Promise.all([agent?.stop(), worker?.stop()]).finally(release),
  };
}

interface RunningServices {
  readonly channel: AgentSliceChannel;
  stop(): Promise<void>;
}

/**
 * The runner and the node deployment manager: process slices always, container slices when the
 * Docker Engine API answers. Instances a killed agent left behind are removed before anything starts.
 */
async function startServices(settings: ServicesSettings, nodeId: string, name: string, logger: Logger): Promise<RunningServices> {
  const [{ AgentSliceChannel }, { NodeDeploymentManager }, { ProcessSliceRuntime }, { ContainerSliceRuntime }, { DockerRuntime, dockerEndpointFromEnv }, { systemClock }] = await Promise.all([
    import('../agent/services-channel.ts'),
    import('../services/node-manager.ts'),
    import('../services/process-runtime.ts'),
    import('../services/container-runtime.ts'),
    import('../agent/docker-runtime.ts'),
    import('../core/clock.ts'),
  ]);
  const log = logger.child({ component: 'services' });
  const runtimes: { process: SliceRuntime; container?: SliceRuntime } = {
    process: new ProcessSliceRuntime({ ports: settings.ports, stateDir: settings.stateDir ?? join('.arcnet', `services-${name.replace(/[^A-Za-z0-9_.-]/g, '_')}`), host: settings.host, logger: log }),
  };
  const dockerHost = settings.dockerHost ?? dockerEndpointFromEnv();
  const probe = new DockerRuntime({ host: dockerHost, requestTimeoutMs: 3_000 });
  try {
    await probe.ping();
    runtimes.container = new ContainerSliceRuntime({ host: dockerHost, advertiseHost: settings.host, ports: settings.ports, labels: { 'arcnet.node': nodeId }, logger: log });
  } catch (error) {
    log.warn({ dockerHost, err: errorMessage(error) }, 'no container engine answers: this node runs process slices only');
  } finally {
    await probe.close();
  }
  const channel = new AgentSliceChannel({ nodeId, runtimes: runtimes.container ? ['process', 'container'] : ['process'] });
  const manager = new NodeDeploymentManager({ channel, runtimes, clock: systemClock, logger: log });
  await manager.start();
  log.info({ nodeId, ports: `${settings.ports.first}-${settings.ports.last}`, host: settings.host, runtimes: Object.keys(runtimes) }, 'services runner ready');
  return {
    channel,
    stop: async () => {
      await manager.stop();
      channel.close();
      await Promise.all(Object.values(runtimes).map((runtime) => runtime.close()));
    },
  };
}

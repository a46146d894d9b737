#!/usr/bin/env node
/**
 * `arcnet`: one binary, one subcommand per role or question. Errors end in a non-zero exit and one
 * line on stderr saying what was wrong.
 */
import { cpus, hostname, totalmem } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createLogger } from '../core/logging.ts';
import { errorMessage } from '../core/errors.ts';
import { seededUuid } from '../core/ids.ts';
import { isGeohash } from '../core/geohash.ts';
import type { EnergySource } from '../contracts/messages.ts';
import { withDefaults, DEFAULT_GEOZONES, type EmbeddedConfig } from '../main/config.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../placement/inference-profile.ts';
import { VERSION } from '../main/version.ts';
import type { InferenceBackend } from '../agent/ports.ts';
import type { Worker } from '../agent/worker.ts';
import { colour, percent, statusColour, table, truncateId } from './format.ts';
import { registerJobCommands } from './jobs-commands.ts';
import { registerRoleCommands } from './role-commands.ts';

class UsageError extends Error {}

const int = (name: string, min = 0) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got "${value}"`);
  return n;
};
const fraction = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`${name} must be between 0 and 1, got "${value}"`);
  return n;
};
const list = (value: string): string[] => value.split(',').map((s) => s.trim()).filter(Boolean);

const WEIGHT_NAMES = ['sameGeozone', 'cogen', 'gpuHeadroom', 'battery'] as const;
type Weights = Record<(typeof WEIGHT_NAMES)[number], number>;
/** `sameGeozone=100,cogen=50,gpuHeadroom=30,battery=20`; names left out keep the seed's weight. */
const weights = (value: string): Partial<Weights> => {
  const out: Partial<Weights> = {};
  for (const pair of list(value)) {
    const [name, raw] = pair.split('=');
    if (!WEIGHT_NAMES.includes(name as (typeof WEIGHT_NAMES)[number])) throw new InvalidArgumentError(`unknown weight "${name}" (known: ${WEIGHT_NAMES.join(', ')})`);
    const n = Number(raw);
    if (raw === undefined || raw === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`weight ${name} must be a number, got "${raw ?? ''}"`);
    out[name as (typeof WEIGHT_NAMES)[number]] = n;
  }
  return out;
};

const roleHelpers = { int, list, usage: (message: string) => new UsageError(message) };

const program = new Command();
program.name('arcnet').description('ArcNet: control plane for a heterogeneous compute mesh').version(VERSION).showHelpAfterError(false);

/** Where a server listens and keeps its state, shared by `up` and `coordinator`. */
function withServerOptions(command: Command): Command {
  return command
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'HTTP port (0 picks a free one)', int('--port'), 8080)
    .option('--data-dir <dir>', 'where the embedded store keeps its data', '.arcnet')
    .option('--memory', 'keep state in memory only (nothing written to disk)', false)
    .option('--kafka [servers]', 'use Apache Kafka as the bus: host:port list, or without a value KAFKA_BOOTSTRAP_SERVERS and the other KAFKA_* variables')
    .option('--postgres [url]', 'keep state in PostgreSQL: a postgres:// URL, or without a value ARCNET_POSTGRES_URL')
    .option('--postgres-schema <name>', 'PostgreSQL schema for ArcNet\'s tables (default public)')
    .option('--config <file>', 'JSON config file (kafka, postgres, geozone-id, log-level; see docs/configuration.md); default $ARCNET_CONFIG');
}

interface ExternalFlags {
  kafka?: string | true;
  postgres?: string | true;
  postgresSchema?: string;
  config?: string;
}

/** External engines for `up` and `coordinator`: only an explicit flag or a config file switches modes, never a stray environment variable. */
async function externalEngines(opts: ExternalFlags): Promise<EmbeddedConfig['external']> {
  const { resolveEngines } = await import('../main/settings.ts');
  const engines = resolveEngines(opts, { required: false });
  if (!engines.kafka && !engines.postgres) return undefined;
  return engines;
}

/** Flags of the verified-jobs coordinator, shared by `up` and `coordinator`. */
function withJobOptions(command: Command): Command {
  return command
    .option('--worker-stale-after <ms>', 'worker silence after which it is offline (−20 reputation) and its executions fail', int('--worker-stale-after', 100), 120_000)
    .option('--execution-grace <ms>', 'allowance beyond a job timeout before the coordinator gives up on an execution', int('--execution-grace'), 30_000)
    .option('--scheduling-timeout <ms>', 'how long a wanted execution may wait for an eligible worker', int('--scheduling-timeout', 100), 600_000)
    .option('--max-redundancy <n>', 'largest redundancy a job may ask for', int('--max-redundancy', 1), 15)
    .option('--job-timeout <s>', 'container timeout of jobs that do not set timeout_seconds', int('--job-timeout', 1), 300);
}

interface JobFlags {
  jobTimeout: number;
  workerStaleAfter: number;
  executionGrace: number;
  schedulingTimeout: number;
  maxRedundancy: number;
}

const jobConfig = (opts: JobFlags) => ({
  staleAfterMs: opts.workerStaleAfter,
  executionGraceMs: opts.executionGrace,
  schedulingTimeoutMs: opts.schedulingTimeout,
  maxRedundancy: opts.maxRedundancy,
  maxExecutionsCap: 3 * opts.maxRedundancy,
  defaultTimeoutSeconds: opts.jobTimeout,
});

function stateWhere(config: EmbeddedConfig): string {
  const bus = config.external?.kafka ? `, bus on Kafka at ${config.external.kafka.bootstrapServers.join(',')}` : '';
  if (config.external?.postgres) return `in PostgreSQL (${config.external.postgres.url.replace(/\/\/[^@/]*@/, '//…@')})${bus}`;
  return `${config.dataDir === null ? 'in memory' : `in ${config.dataDir}`}${bus}`;
}

/** Starts a server process, prints where it is, and stops cleanly on SIGINT/SIGTERM. */
async function serve<T extends { url?: string; stop(): Promise<void> }>(config: EmbeddedConfig, logger: ReturnType<typeof createLogger>, start: () => Promise<T>, banner: (url: string) => string, status?: (system: T) => () => void): Promise<void> {
  const system = await start().catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new UsageError(`port ${config.port} on ${config.host} is already in use; stop what holds it or pass --port`);
    throw error;
  });
  process.stdout.write(banner(system.url ?? ''));
  const stopStatus = status ? status(system) : () => undefined;
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    stopStatus();
    process.stdout.write(`${signal}: stopping…\n`);
    system
      .stop()
      .then(() => {
        process.stdout.write('stopped; state is consistent.\n');
        logger.flush();
        process.exit(0);
      })
      .catch((error: unknown) => {
        process.stderr.write(`arcnet: shutdown failed: ${errorMessage(error)}\n`);
        process.exit(1);
      });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

withJobOptions(
  withServerOptions(program.command('up'))
    .description('run every role in one process: simulated mesh, scheduler, aggregator, jobs coordinator, API and console feed (embedded mode)')
    .option('--geozones <list>', 'geozones, comma-separated', list, [...DEFAULT_GEOZONES])
    .option('--nodes <n>', 'simulated nodes, spread over the geozones', int('--nodes'), 60)
    .option('--rate <n>', 'simulated inference requests per second (0 for none)', int('--rate'), 20)
    .option('--seed <n>', 'seed of the simulation', int('--seed'), 42)
    .option('--telemetry-interval <ms>', 'telemetry period of nodes', int('--telemetry-interval', 100), 10_000)
    .option('--offline-after <ms>', 'silence after which a node is offline', int('--offline-after', 100), 30_000)
    .option('--summary-interval <ms>', 'regional summary period', int('--summary-interval', 100), 60_000)
    .option('--weights <list>', 'inference score weights, e.g. sameGeozone=100,cogen=50,gpuHeadroom=30,battery=20', weights, {})
    .option('--no-status', 'no live status line')
    .addOption(new Option('--log-level <level>', 'log level (logs go to stderr)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('warn')),
).action(async (opts: JobFlags & ExternalFlags & { host: string; port: number; dataDir: string; memory: boolean; geozones: string[]; nodes: number; rate: number; seed: number; telemetryInterval: number; offlineAfter: number; summaryInterval: number; weights: Partial<Weights>; status: boolean; logLevel: string }) => {
  const logger = createLogger({ level: opts.logLevel });
  const config = withDefaults({
    host: opts.host,
    port: opts.port,
    dataDir: opts.memory ? null : opts.dataDir,
    geozones: opts.geozones,
    telemetryIntervalMs: opts.telemetryInterval,
    offlineAfterMs: opts.offlineAfter,
    summaryIntervalMs: opts.summaryInterval,
    placement: { weights: { ...DEFAULT_INFERENCE_PROFILE.weights, ...opts.weights } },
    jobs: jobConfig(opts),
    simulation: { nodes: opts.nodes, requestRate: opts.rate, seed: opts.seed },
    external: await externalEngines(opts),
  });
  const where = stateWhere(config);
  // Roles are loaded only by the commands that run them, so `arcnet list` and friends start fast.
  const [{ startEmbedded }, { startStatusLine }] = await Promise.all([import('../main/embedded.ts'), import('./status-line.ts')]);
  await serve(
    config,
    logger,
    () => startEmbedded(config, { logger }),
    (url) =>
      `${colour('arcnet up', 'bold')}: ${config.simulation.nodes} simulated nodes in ${config.geozones.join(', ')}, ${config.simulation.requestRate} req/s, state ${where}\n` +
      `  API and console feed: ${url}  (GET /stats, /api/v1/nodes, /api/v1/jobs, /metrics; WebSocket /telemetry; agents: arcnet agent --server ${url} [--worker])\n` +
      `  Ctrl-C stops cleanly.\n`,
    opts.status ? startStatusLine : undefined,
  );
});

withJobOptions(
  withServerOptions(program.command('coordinator'))
    .description('run the verified-jobs coordinator and its API (seed 004) without a simulated mesh; workers join with arcnet agent --worker')
    .addOption(new Option('--log-level <level>', 'log level (logs go to stderr)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('info')),
).action(async (opts: JobFlags & ExternalFlags & { host: string; port: number; dataDir: string; memory: boolean; logLevel: string }) => {
  const logger = createLogger({ level: opts.logLevel });
  const config = withDefaults({ host: opts.host, port: opts.port, dataDir: opts.memory ? null : opts.dataDir, jobs: jobConfig(opts), simulation: { nodes: 0, requestRate: 0 }, external: await externalEngines(opts) });
  const { startCoordinatorProcess } = await import('../main/roles.ts');
  await serve(
    config,
    logger,
    () => startCoordinatorProcess({ ...config, logger }),
    (url) =>
      `${colour('arcnet coordinator', 'bold')}: verified batch jobs, state ${stateWhere(config)}\n` +
      `  API: ${url}  (POST/GET /api/v1/jobs, /api/v1/nodes, /stats, /metrics; workers: arcnet agent --worker --no-inference --server ${url})\n`,
  );
});

program
  .command('agent')
  .description('run a node agent: connect to a server, report telemetry, run the dispatches it is sent')
  .requiredOption('--server <url>', 'ArcNet server, e.g. http://127.0.0.1:8080')
  .option('--name <name>', 'node name', `${hostname()}`)
  .option('--id <uuid>', 'node id (default: derived from host and name, stable across restarts)')
  .option('--geozone <zone>', 'geozone of this node', 'CAISO')
  .option('--geohash <hash>', '6-character geohash of this node', '9q9hvu')
  .option('--models <list>', 'models loaded on this node, comma-separated', list, ['llama-3-8b'])
  .addOption(new Option('--backend <kind>', 'how requests are run').choices(['simulated', 'openai']).default('simulated'))
  .option('--inference-url <url>', 'OpenAI-compatible server for --backend openai (vLLM, llama.cpp, Ollama)')
  .option('--api-key <key>', 'API key for the inference server')
  .addOption(new Option('--energy-source <source>', 'energy source').choices(['cogen', 'grid', 'battery']).default('grid'))
  .option('--battery-level <0..1>', 'battery level', fraction('--battery-level'), 1)
  .option('--gpus <n>', 'GPUs (concurrent requests)', int('--gpus', 1), 1)
  .option('--gpu-memory <gb>', 'GPU memory in GB', int('--gpu-memory'), 24)
  .option('--speed <x>', 'latency multiplier of the simulated backend', Number, 1)
  .option('--telemetry-interval <ms>', 'telemetry period', int('--telemetry-interval', 100), 10_000)
  .option('--worker', 'also run verified batch jobs in containers (seed 004 worker role), through the Docker Engine API', false)
  .option('--no-inference', 'no inference session: with --worker, a batch worker only')
  .option('--docker-host <url>', 'Docker Engine API for --worker (unix:///path or tcp://host:port; default $DOCKER_HOST or /var/run/docker.sock)')
  .option('--cpus <n>', 'CPU cores offered to batch jobs', Number, cpus().length)
  .option('--memory-gb <gb>', 'memory in GB offered to batch jobs', Number, Math.max(1, Math.floor(totalmem() / 1024 ** 3)))
  .option('--worker-state <file>', 'where the worker keeps its id and credential (default .arcnet/worker-<name>.json)')
  .option('--heartbeat-interval <ms>', 'worker heartbeat period', int('--heartbeat-interval', 100), 30_000)
  .option('--poll-interval <ms>', 'pending-jobs polling period while the push session is down', int('--poll-interval', 100), 10_000)
  .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('info'))
  .action(async (opts: { server: string; name: string; id?: string; geozone: string; geohash: string; models: string[]; backend: string; inferenceUrl?: string; apiKey?: string; energySource: EnergySource; batteryLevel: number; gpus: number; gpuMemory: number; speed: number; telemetryInterval: number; worker: boolean; inference: boolean; dockerHost?: string; cpus: number; memoryGb: number; workerState?: string; heartbeatInterval: number; pollInterval: number; logLevel: string }) => {
    if (opts.geohash.length !== 6 || !isGeohash(opts.geohash)) throw new UsageError(`--geohash must be 6 geohash characters, got "${opts.geohash}"`);
    if (!opts.inference && !opts.worker) throw new UsageError('--no-inference leaves nothing to run: add --worker');
    if (!(opts.cpus > 0) || !(opts.memoryGb > 0)) throw new UsageError(`--cpus and --memory-gb must be positive numbers, got ${opts.cpus} and ${opts.memoryGb}`);
    const logger = createLogger({ level: opts.logLevel, name: 'arcnet-agent' });
    const [{ Agent }, { SimulatedBackend }, { OpenAiBackend }, { localTelemetry }] = await Promise.all([
      import('../agent/agent.ts'),
      import('../agent/simulated-backend.ts'),
      import('../agent/openai-backend.ts'),
      import('../agent/local-telemetry.ts'),
    ]);
    let backend: InferenceBackend;
    if (opts.backend === 'openai') {
      if (!opts.inferenceUrl) throw new UsageError('--backend openai needs --inference-url (e.g. http://127.0.0.1:8000)');
      backend = new OpenAiBackend({ baseUrl: opts.inferenceUrl, ...(opts.apiKey ? { apiKey: opts.apiKey } : {}) });
    } else {
      backend = new SimulatedBackend({ speed: opts.speed, slots: opts.gpus });
    }
    const identity = {
      id: opts.id ?? seededUuid(`${hostname()}/${opts.name}`),
      name: opts.name,
      geozone: opts.geozone,
      geohash: opts.geohash,
      capacity: { cpuCores: 1, memoryGb: 1, gpus: opts.gpus, gpuMemoryGb: opts.gpuMemory },
      tags: [],
      backend: backend.kind,
    };
    // The worker registers under the node's own id, so the node carries both seeds' fields in one registry.
    let worker: Worker | undefined;
    if (opts.worker) {
      const [{ Worker, WorkerRefused }, { DockerRuntime, dockerEndpointFromEnv }] = await Promise.all([import('../agent/worker.ts'), import('../agent/docker-runtime.ts')]);
      const runtime = new DockerRuntime({ host: opts.dockerHost ?? dockerEndpointFromEnv() });
      worker = new Worker({
        serverUrl: opts.server,
        id: identity.id,
        name: opts.name,
        region: opts.geozone,
        cpuCores: opts.cpus,
        memoryGb: opts.memoryGb,
        runtime,
        stateFile: opts.workerState ?? join('.arcnet', `worker-${opts.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.json`),
        heartbeatIntervalMs: opts.heartbeatInterval,
        pollIntervalMs: opts.pollInterval,
        logger,
      });
      try {
        await worker.start();
      } catch (error) {
        throw new UsageError(error instanceof WorkerRefused ? error.message : `worker cannot start: ${errorMessage(error)}`);
      }
      logger.info({ nodeId: worker.id, server: opts.server, cpus: opts.cpus, memoryGb: opts.memoryGb }, 'worker ready');
    }
    const agent = opts.inference
      ? new Agent({
          serverUrl: opts.server,
          identity,
          backend,
          telemetry: localTelemetry({ identity, backend, modelsLoaded: opts.models, energySource: opts.energySource, batteryLevel: opts.batteryLevel, gpuMemoryGb: opts.gpuMemory }),
          telemetryIntervalMs: opts.telemetryInterval,
          logger,
        })
      : undefined;
    let release: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => {
      release = resolve;
    });
    const stop = (): void => {
      void Promise.all([agent?.stop(), worker?.stop()]).finally(release);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    agent?.start().then(
      () => logger.info({ nodeId: identity.id, server: opts.server }, 'agent registered'),
      () => undefined,
    );
    const exit = agent ? await agent.finished : await stopped.then(() => ({ reason: 'stopped' as const, error: undefined }));
    await worker?.stop();
    await backend.close?.();
    if (exit.reason === 'refused') throw new UsageError(exit.error ?? 'the server refused this agent');
  });

program
  .command('simulate')
  .description('simulate nodes as agents of a running server (--server), or on the Kafka bus directly (--kafka), with an inference load')
  .option('--server <url>', 'ArcNet server, e.g. http://127.0.0.1:8080: nodes connect as agents, requests go to its API')
  .option('--kafka [servers]', 'instead of --server: telemetry and requests straight onto Kafka, dispatches read from it (default $KAFKA_BOOTSTRAP_SERVERS)')
  .option('--config <file>', 'JSON config file for --kafka (docs/configuration.md)')
  .option('--nodes <n>', 'simulated nodes', int('--nodes', 1), 20)
  .option('--geozone <zone>', 'geozone of the nodes', 'CAISO')
  .option('--rate <n>', 'inference requests per second sent to the API (0 for none)', int('--rate'), 0)
  .option('--seed <n>', 'seed', int('--seed'), 7)
  .option('--telemetry-interval <ms>', 'telemetry period', int('--telemetry-interval', 100), 10_000)
  .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('warn'))
  .action(async (opts: { server?: string; kafka?: string | true; config?: string; nodes: number; geozone: string; rate: number; seed: number; telemetryInterval: number; logLevel: string }) => {
    if (opts.kafka !== undefined) {
      const { runBusSimulator } = await import('./role-commands.ts');
      await runBusSimulator({ ...opts, geozone: list(opts.geozone) }, roleHelpers);
      return;
    }
    const server = opts.server;
    if (!server) throw new UsageError('simulate: pass --server <url> (nodes as agents of a server) or --kafka (nodes on the bus)');
    const logger = createLogger({ level: opts.logLevel, name: 'arcnet-simulate' });
    const [{ Agent }, { SimulatedBackend }, { SimulatedNode }, { LoadGenerator }, { seededRandom }] = await Promise.all([
      import('../agent/agent.ts'),
      import('../agent/simulated-backend.ts'),
      import('../sim/sim-node.ts'),
      import('../sim/load.ts'),
      import('../sim/random.ts'),
    ]);
    const random = seededRandom(opts.seed);
    const agents = Array.from({ length: opts.nodes }, (_, index) => {
      const node = new SimulatedNode({ index: 1000 + index, geozone: opts.geozone, random, now: Date.now() });
      const backend = new SimulatedBackend({ slots: node.slots, random });
      let last = Date.now();
      return new Agent({
        serverUrl: server,
        identity: node.identity(),
        backend,
        telemetryIntervalMs: opts.telemetryInterval,
        logger,
        telemetry: () => {
          const now = Date.now();
          node.advance(now - last, backend.active, now);
          last = now;
          return node.isSilent(now) ? undefined : node.telemetry(now);
        },
      });
    });
    await Promise.all(agents.map((a) => a.start()));
    process.stdout.write(`simulating ${agents.length} nodes in ${opts.geozone} against ${server}${opts.rate > 0 ? ` with ${opts.rate} req/s` : ''}; Ctrl-C stops\n`);
    let refused = 0;
    const load =
      opts.rate > 0
        ? new LoadGenerator({
            rate: opts.rate,
            geozones: [opts.geozone],
            random,
            logger,
            submit: async (request) => {
              const response = await fetch(new URL('/api/v1/inference', server), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) });
              // 503 is the server saying no node fits or it is shedding load: expected under a simulation. Anything else 4xx/5xx is a bug worth seeing.
              if (response.status >= 400 && response.status !== 503) {
                refused++;
                if (refused === 1 || refused % 1000 === 0) logger.warn({ status: response.status, body: await response.text(), refused }, 'the server refused a simulated request');
                return;
              }
              await response.body?.cancel();
            },
          })
        : undefined;
    load?.start();
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await load?.stop();
    await Promise.all(agents.map((a) => a.stop()));
  });

async function getJson(server: string, path: string): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(new URL(path, server));
  } catch (error) {
    throw new UsageError(`cannot reach ${server}: ${errorMessage((error as Error).cause ?? error)} (is "arcnet up" running?)`);
  }
  const body = (await response.json()) as { message?: string };
  if (!response.ok) throw new UsageError(`${server}${path} answered ${response.status}: ${body.message ?? 'no message'}`);
  return body;
}

program
  .command('nodes')
  .description('list the nodes of a running server')
  .option('--server <url>', 'ArcNet server', 'http://127.0.0.1:8080')
  .option('--geozone <zone>', 'only this geozone')
  .option('--as-of <time>', 'valid time: the nodes as they were then (ISO-8601)')
  .option('--known-at <time>', 'transaction time: what the server knew then (ISO-8601)')
  .option('--json', 'raw JSON', false)
  .action(async (opts: { server: string; geozone?: string; asOf?: string; knownAt?: string; json: boolean }) => {
    const query = new URLSearchParams();
    if (opts.geozone) query.set('geozone', opts.geozone);
    if (opts.asOf) query.set('asOf', opts.asOf);
    if (opts.knownAt) query.set('knownAt', opts.knownAt);
    const body = (await getJson(opts.server, `/api/v1/nodes${query.size > 0 ? `?${query}` : ''}`)) as { count: number; nodes: Record<string, unknown>[] };
    if (opts.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    // Telemetry columns for inference nodes, seed 004's columns for workers; a node can be both.
    const optional = (value: unknown, show: (v: never) => string): string => (value === undefined || value === null ? '-' : show(value as never));
    const rows = body.nodes.map((n) => [
      truncateId(String(n['id'])),
      String(n['name']),
      String(n['geozone']),
      colour(String(n['status']), statusColour(String(n['status']))),
      optional(n['energySource'], String),
      optional(n['batteryLevel'], (v: number) => percent(v)),
      optional(n['gpuUtilization'], (v: number) => percent(v)),
      n['reservation'] ? 'yes' : '',
      optional(n['modelsLoaded'], (v: string[]) => v.join(',') || '-'),
      optional(n['reputation_score'], (v: number) => colour(String(v), v >= 100 ? 'green' : v >= 50 ? 'yellow' : 'red')),
      optional(n['total_jobs_run'], (v: number) => `${v} (${String(n['successful_jobs_run'])} ok, ${String(n['failed_jobs'])} failed)`),
      optional(n['credits_earned'], String),
    ]);
    process.stdout.write(`${table(['ID', 'NAME', 'ZONE', 'STATUS', 'ENERGY', 'BATTERY', 'GPU', 'RESERVED', 'MODELS', 'REPUTATION', 'JOBS', 'CREDITS'], rows)}\n${body.count} nodes\n`);
  });

program
  .command('stats')
  .description('system statistics of a running server')
  .option('--server <url>', 'ArcNet server', 'http://127.0.0.1:8080')
  .option('--json', 'raw JSON', false)
  .action(async (opts: { server: string; json: boolean }) => {
    const body = (await getJson(opts.server, '/stats')) as {
      mode: string;
      /** Absent from servers before the engines were named. */
      engines?: { bus: string; store?: string };
      uptimeS: number;
      agentsConnected: number;
      nodes: { total: number; byGeozone: Record<string, Record<string, number>> };
      inference: Record<string, number | null>;
      jobs?: Record<string, number>;
      workers?: Record<string, number | null>;
    };
    if (opts.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    const zoneRows = Object.entries(body.nodes.byGeozone).map(([zone, c]) => [zone, String(c['total'] ?? 0), colour(String(c['online'] ?? 0), 'green'), String(c['busy'] ?? 0), String(c['draining'] ?? 0), colour(String(c['offline'] ?? 0), (c['offline'] ?? 0) > 0 ? 'red' : 'grey')]);
    const i = body.inference;
    process.stdout.write(
      `${table(['GEOZONE', 'NODES', 'ONLINE', 'BUSY', 'DRAINING', 'OFFLINE'], zoneRows)}\n\n` +
        `${table(['REQUESTS', 'REQ/S', 'DISPATCHED', 'FORWARDED', 'COMPLETED', 'FAILED', 'REJECTED', 'ROUTE P50 MS', 'ROUTE P99 MS', 'LATENCY P50 MS', 'LATENCY P99 MS'], [
          [i['requests'], i['requestsPerSecond'], i['dispatched'], i['forwarded'], i['completed'], i['failed'], i['rejected'], i['routingMsP50'], i['routingMsP99'], i['latencyMsP50'], i['latencyMsP99']].map((v) => (v === null || v === undefined ? '-' : String(v))),
        ])}\n\n` +
        (body.jobs && body.workers
          ? `${table(['JOBS', 'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'WORKERS', 'ONLINE', 'BUSY', 'OFFLINE', 'CPU CORES', 'MEMORY GB', 'AVG REPUTATION'], [
              [body.jobs['total'], body.jobs['pending'], body.jobs['running'], body.jobs['completed'], body.jobs['failed'], body.workers['total'], body.workers['online'], body.workers['busy'], body.workers['offline'], body.workers['cpuCores'], body.workers['memoryGb'], body.workers['reputationAvg']].map((v) =>
                v === null || v === undefined ? '-' : String(v),
              ),
            ])}\n\n`
          : '') +
        `${body.engines ? `bus ${body.engines.bus}, store ${body.engines.store ?? '-'}` : `${body.mode} mode`}, up ${body.uptimeS} s, ${body.agentsConnected} agents connected\n`,
    );
  });

registerJobCommands(program, (message) => new UsageError(message));
registerRoleCommands(program, roleHelpers);

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`arcnet: ${errorMessage(error)}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});

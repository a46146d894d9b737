/** `arcnet agent`: a node agent; the wiring is `src/main/agent-process.ts`. */
import { cpus, hostname, totalmem } from 'node:os';
import { Option, type Command } from 'commander';
import { createLogger } from '../../core/logging.ts';
import { isGeohash } from '../../core/geohash.ts';
import type { EnergySource } from '../../contracts/messages.ts';
import { fraction, int, list, logLevelOption, usage } from '../options.ts';
import { clientTlsConfig, withClientTlsOptions, type TlsFlags } from '../tls-options.ts';
import { clientKey } from '../client-key.ts';
import { errorMessage } from '../../core/errors.ts';
import { PortRange } from '../../services/port-range.ts';

interface AgentFlags extends TlsFlags {
  server: string;
  name: string;
  id?: string;
  geozone: string;
  geohash: string;
  models: string[];
  backend: string;
  inferenceUrl?: string;
  apiKey?: string;
  energySource: EnergySource;
  batteryLevel: number;
  gpus: number;
  gpuMemory: number;
  speed: number;
  telemetryInterval: number;
  worker: boolean;
  inference: boolean;
  dockerHost?: string;
  cpus: number;
  memoryGb: number;
  workerState?: string;
  heartbeatInterval: number;
  pollInterval: number;
  trustedSigners?: string;
  requireSignedJobs: boolean;
  logLevel: string;
  token?: string;
  nodeKey?: string;
  tags: string[];
  datasetsHot: string[];
  services: boolean;
  servicePorts: string;
  serviceHost: string;
  servicesDir?: string;
}

export function registerAgent(program: Command): void {
  withClientTlsOptions(program.command('agent'))
    .description('run a node agent: connect to a server, report telemetry, run the dispatches it is sent')
    .requiredOption('--server <url>', 'ArcNet server, e.g. http://127.0.0.1:8080 (https:// for a server with --tls-cert)')
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
    .option('--cpus <n>', 'CPU cores offered to batch jobs and services', Number, cpus().length)
    .option('--memory-gb <gb>', 'memory in GB offered to batch jobs and services', Number, Math.max(1, Math.floor(totalmem() / 1024 ** 3)))
    .option('--worker-state <file>', 'where the worker keeps its id and credential (default .arcnet/worker-<name>.json)')
    .option('--heartbeat-interval <ms>', 'worker heartbeat period', int('--heartbeat-interval', 100), 30_000)
    .option('--poll-interval <ms>', 'pending-jobs polling period while the push session is down', int('--poll-interval', 100), 10_000)
    .option('--trusted-signers <dir>', "with --worker: a directory of trusted job signers' <key_id>.pub keys; a signed job runs only if its signature verifies by one of them")
    .option('--require-signed-jobs', 'with --worker: refuse to run jobs that carry no signature (needs --trusted-signers)', false)
    .option('--tags <list>', 'tags this node carries, comma-separated (seed 002: data_node, live_node, ram_128gb, region_…); service placement matches them', list, [])
    .option('--datasets-hot <list>', 'datasets (URIs) already hot on this node, comma-separated: services that want them are placed here first', list, [])
    .option('--services', 'also run service slices the cluster places here (seeds 002/003): processes, and containers through the Docker Engine API when it answers', false)
    .option('--service-ports <first-last>', 'with --services: the host port range the runner owns', '20000-20999')
    .option('--service-host <address>', 'with --services: the address slices are reached at from the server', '127.0.0.1')
    .option('--services-dir <dir>', 'with --services: where the runner keeps its pid files (default .arcnet/services-<name>)')
    .option('--token <key>', 'enrolment token (or operator key) that enrols this node on first contact (default $ARCNET_TOKEN, then the operator key in .arcnet/operator.key)')
    .option('--node-key <file>', 'where the node key issued at enrolment is kept (default .arcnet/node-<name>.key)')
    .addOption(logLevelOption('info', 'log level'))
    .action(async (opts: AgentFlags) => {
      if (opts.geohash.length !== 6 || !isGeohash(opts.geohash)) throw usage(`--geohash must be 6 geohash characters, got "${opts.geohash}"`);
      if (!opts.inference && !opts.worker) throw usage('--no-inference leaves nothing to run: add --worker');
      if (opts.services && !opts.inference) throw usage('--services runs over the agent session: drop --no-inference');
      let servicePorts: PortRange | undefined;
      if (opts.services) {
        try {
          servicePorts = PortRange.parse(opts.servicePorts);
        } catch (error) {
          throw usage(`--service-ports: ${errorMessage(error)}`);
        }
      }
      if (!(opts.cpus > 0) || !(opts.memoryGb > 0)) throw usage(`--cpus and --memory-gb must be positive numbers, got ${opts.cpus} and ${opts.memoryGb}`);
      if (!opts.worker && (opts.trustedSigners !== undefined || opts.requireSignedJobs)) throw usage('--trusted-signers and --require-signed-jobs are for batch jobs: add --worker');
      if (opts.requireSignedJobs && opts.trustedSigners === undefined) throw usage('--require-signed-jobs needs --trusted-signers <dir>: with no trusted signer every job would be refused');
      if (opts.backend === 'openai' && !opts.inferenceUrl) throw usage('--backend openai needs --inference-url (e.g. http://127.0.0.1:8000)');
      const logger = createLogger({ level: opts.logLevel, name: 'arcnet-agent' });
      const token = opts.token ?? (process.env['ARCNET_TOKEN']?.trim() || undefined) ?? clientKey();
      const { startAgentProcess, AgentNotStarted } = await import('../../main/agent-process.ts');
      const agent = await startAgentProcess({
        server: opts.server,
        name: opts.name,
        ...(opts.id ? { id: opts.id } : {}),
        geozone: opts.geozone,
        geohash: opts.geohash,
        models: opts.models,
        ...(opts.backend === 'openai' ? { inferenceUrl: opts.inferenceUrl!, ...(opts.apiKey ? { apiKey: opts.apiKey } : {}) } : {}),
        energySource: opts.energySource,
        batteryLevel: opts.batteryLevel,
        gpus: opts.gpus,
        gpuMemoryGb: opts.gpuMemory,
        speed: opts.speed,
        telemetryIntervalMs: opts.telemetryInterval,
        inference: opts.inference,
        ...clientTlsConfig(opts),
        ...(token === undefined ? {} : { token }),
        ...(opts.nodeKey === undefined ? {} : { nodeKeyFile: opts.nodeKey }),
        tags: opts.tags,
        datasetsHot: opts.datasetsHot,
        cpus: opts.cpus,
        memoryGb: opts.memoryGb,
        ...(servicePorts ? { services: { ports: servicePorts, host: opts.serviceHost, ...(opts.servicesDir === undefined ? {} : { stateDir: opts.servicesDir }), ...(opts.dockerHost ? { dockerHost: opts.dockerHost } : {}) } } : {}),
        ...(opts.worker
          ? {
              worker: {
                ...(opts.dockerHost ? { dockerHost: opts.dockerHost } : {}),
                cpus: opts.cpus,
                memoryGb: opts.memoryGb,
                ...(opts.workerState ? { stateFile: opts.workerState } : {}),
                heartbeatIntervalMs: opts.heartbeatInterval,
                pollIntervalMs: opts.pollInterval,
                ...(opts.trustedSigners === undefined ? {} : { trustedSignersDir: opts.trustedSigners }),
                requireSignedJobs: opts.requireSignedJobs,
              },
            }
          : {}),
        logger,
      }).catch((error: unknown) => {
        throw error instanceof AgentNotStarted ? usage(error.message) : error;
      });
      process.on('SIGINT', () => agent.stop());
      process.on('SIGTERM', () => agent.stop());
      const exit = await agent.finished;
      if (exit.reason === 'refused') throw usage(exit.error ?? 'the server refused this agent');
    });
}

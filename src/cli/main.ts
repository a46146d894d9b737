#!/usr/bin/env node
/**
 * `arcnet`: one binary, one subcommand per role or question. Errors end in a non-zero exit and one
 * line on stderr saying what was wrong.
 */
import { hostname } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createLogger } from '../core/logging.ts';
import { errorMessage } from '../core/errors.ts';
import { seededUuid } from '../core/ids.ts';
import { isGeohash } from '../core/geohash.ts';
import type { EnergySource } from '../contracts/messages.ts';
import { withDefaults, DEFAULT_GEOZONES } from '../main/config.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../placement/inference-profile.ts';
import { startEmbedded, VERSION } from '../main/embedded.ts';
import { Agent } from '../agent/agent.ts';
import { SimulatedBackend } from '../agent/simulated-backend.ts';
import { OpenAiBackend } from '../agent/openai-backend.ts';
import { localTelemetry } from '../agent/local-telemetry.ts';
import type { InferenceBackend } from '../agent/ports.ts';
import { SimulatedNode } from '../sim/sim-node.ts';
import { LoadGenerator } from '../sim/load.ts';
import { seededRandom } from '../sim/random.ts';
import { startStatusLine } from './status-line.ts';
import { colour, percent, statusColour, table, truncateId } from './format.ts';

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

const program = new Command();
program.name('arcnet').description('ArcNet: control plane for a heterogeneous compute mesh').version(VERSION).showHelpAfterError(false);

program
  .command('up')
  .description('run every role in one process: simulated mesh, scheduler, aggregator, API and console feed (embedded mode)')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--port <port>', 'HTTP port (0 picks a free one)', int('--port'), 8080)
  .option('--data-dir <dir>', 'where the embedded store keeps its data', '.arcnet')
  .option('--memory', 'keep state in memory only (nothing written to disk)', false)
  .option('--geozones <list>', 'geozones, comma-separated', list, [...DEFAULT_GEOZONES])
  .option('--nodes <n>', 'simulated nodes, spread over the geozones', int('--nodes'), 60)
  .option('--rate <n>', 'simulated inference requests per second (0 for none)', int('--rate'), 20)
  .option('--seed <n>', 'seed of the simulation', int('--seed'), 42)
  .option('--telemetry-interval <ms>', 'telemetry period of nodes', int('--telemetry-interval', 100), 10_000)
  .option('--offline-after <ms>', 'silence after which a node is offline', int('--offline-after', 100), 30_000)
  .option('--summary-interval <ms>', 'regional summary period', int('--summary-interval', 100), 60_000)
  .option('--weights <list>', 'inference score weights, e.g. sameGeozone=100,cogen=50,gpuHeadroom=30,battery=20', weights, {})
  .option('--no-status', 'no live status line')
  .addOption(new Option('--log-level <level>', 'log level (logs go to stderr)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('warn'))
  .action(async (opts: { host: string; port: number; dataDir: string; memory: boolean; geozones: string[]; nodes: number; rate: number; seed: number; telemetryInterval: number; offlineAfter: number; summaryInterval: number; weights: Partial<Weights>; status: boolean; logLevel: string }) => {
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
      simulation: { nodes: opts.nodes, requestRate: opts.rate, seed: opts.seed },
    });
    const system = await startEmbedded(config, { logger }).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new UsageError(`port ${config.port} on ${config.host} is already in use; stop what holds it or pass --port`);
      throw error;
    });
    const where = config.dataDir === null ? 'in memory' : `in ${config.dataDir}`;
    process.stdout.write(
      `${colour('arcnet up', 'bold')}: ${config.simulation.nodes} simulated nodes in ${config.geozones.join(', ')}, ${config.simulation.requestRate} req/s, state ${where}\n` +
        `  API and console feed: ${system.url}  (GET /stats, /api/v1/nodes, /metrics; WebSocket /telemetry; agents: arcnet agent --server ${system.url})\n` +
        `  Ctrl-C stops cleanly.\n`,
    );
    const stopStatus = opts.status ? startStatusLine(system) : () => undefined;
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
  .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('info'))
  .action(async (opts: { server: string; name: string; id?: string; geozone: string; geohash: string; models: string[]; backend: string; inferenceUrl?: string; apiKey?: string; energySource: EnergySource; batteryLevel: number; gpus: number; gpuMemory: number; speed: number; telemetryInterval: number; logLevel: string }) => {
    if (opts.geohash.length !== 6 || !isGeohash(opts.geohash)) throw new UsageError(`--geohash must be 6 geohash characters, got "${opts.geohash}"`);
    const logger = createLogger({ level: opts.logLevel, name: 'arcnet-agent' });
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
    const agent = new Agent({
      serverUrl: opts.server,
      identity,
      backend,
      telemetry: localTelemetry({ identity, backend, modelsLoaded: opts.models, energySource: opts.energySource, batteryLevel: opts.batteryLevel, gpuMemoryGb: opts.gpuMemory }),
      telemetryIntervalMs: opts.telemetryInterval,
      logger,
    });
    const stop = (): void => void agent.stop();
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    agent.start().then(
      () => logger.info({ nodeId: identity.id, server: opts.server }, 'agent registered'),
      () => undefined,
    );
    const exit = await agent.finished;
    await backend.close?.();
    if (exit.reason === 'refused') throw new UsageError(exit.error ?? 'the server refused this agent');
  });

program
  .command('simulate')
  .description('simulate nodes as agents of a running server, with an inference load over its API')
  .requiredOption('--server <url>', 'ArcNet server, e.g. http://127.0.0.1:8080')
  .option('--nodes <n>', 'simulated nodes', int('--nodes', 1), 20)
  .option('--geozone <zone>', 'geozone of the nodes', 'CAISO')
  .option('--rate <n>', 'inference requests per second sent to the API (0 for none)', int('--rate'), 0)
  .option('--seed <n>', 'seed', int('--seed'), 7)
  .option('--telemetry-interval <ms>', 'telemetry period', int('--telemetry-interval', 100), 10_000)
  .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('warn'))
  .action(async (opts: { server: string; nodes: number; geozone: string; rate: number; seed: number; telemetryInterval: number; logLevel: string }) => {
    const logger = createLogger({ level: opts.logLevel, name: 'arcnet-simulate' });
    const random = seededRandom(opts.seed);
    const agents = Array.from({ length: opts.nodes }, (_, index) => {
      const node = new SimulatedNode({ index: 1000 + index, geozone: opts.geozone, random, now: Date.now() });
      const backend = new SimulatedBackend({ slots: node.slots, random });
      let last = Date.now();
      return new Agent({
        serverUrl: opts.server,
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
    process.stdout.write(`simulating ${agents.length} nodes in ${opts.geozone} against ${opts.server}${opts.rate > 0 ? ` with ${opts.rate} req/s` : ''}; Ctrl-C stops\n`);
    const load =
      opts.rate > 0
        ? new LoadGenerator({
            rate: opts.rate,
            geozones: [opts.geozone],
            random,
            logger,
            submit: async (request) => {
              const response = await fetch(new URL('/api/v1/inference', opts.server), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) });
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
    const rows = body.nodes.map((n) => [
      truncateId(String(n['id'])),
      String(n['name']),
      String(n['geozone']),
      colour(String(n['status']), statusColour(String(n['status']))),
      String(n['energySource']),
      percent(Number(n['batteryLevel'])),
      percent(Number(n['gpuUtilization'])),
      n['reservation'] ? 'yes' : '',
      (n['modelsLoaded'] as string[]).join(','),
    ]);
    process.stdout.write(`${table(['ID', 'NAME', 'ZONE', 'STATUS', 'ENERGY', 'BATTERY', 'GPU', 'RESERVED', 'MODELS'], rows)}\n${body.count} nodes\n`);
  });

program
  .command('stats')
  .description('system statistics of a running server')
  .option('--server <url>', 'ArcNet server', 'http://127.0.0.1:8080')
  .option('--json', 'raw JSON', false)
  .action(async (opts: { server: string; json: boolean }) => {
    const body = (await getJson(opts.server, '/stats')) as { mode: string; uptimeS: number; agentsConnected: number; nodes: { total: number; byGeozone: Record<string, Record<string, number>> }; inference: Record<string, number | null> };
    if (opts.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    const zoneRows = Object.entries(body.nodes.byGeozone).map(([zone, c]) => [zone, String(c['total'] ?? 0), colour(String(c['online'] ?? 0), 'green'), String(c['busy'] ?? 0), String(c['draining'] ?? 0), colour(String(c['offline'] ?? 0), (c['offline'] ?? 0) > 0 ? 'red' : 'grey')]);
    const i = body.inference;
    process.stdout.write(
      `${table(['GEOZONE', 'NODES', 'ONLINE', 'BUSY', 'DRAINING', 'OFFLINE'], zoneRows)}\n\n` +
        `${table(['REQUESTS', 'REQ/S', 'DISPATCHED', 'FORWARDED', 'COMPLETED', 'FAILED', 'REJECTED', 'ROUTE P50 MS', 'ROUTE P99 MS', 'LATENCY P50 MS', 'LATENCY P99 MS'], [
          [i['requests'], i['requestsPerSecond'], i['dispatched'], i['forwarded'], i['completed'], i['failed'], i['rejected'], i['routingMsP50'], i['routingMsP99'], i['latencyMsP50'], i['latencyMsP99']].map((v) => (v === null || v === undefined ? '-' : String(v))),
        ])}\n\n${body.mode} mode, up ${body.uptimeS} s, ${body.agentsConnected} agents connected\n`,
    );
  });

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`arcnet: ${errorMessage(error)}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});

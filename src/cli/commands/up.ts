/** `arcnet up`: every module in one process (embedded mode, or on Kafka and PostgreSQL with --kafka/--postgres). */
import { join } from 'node:path';
import type { Command } from 'commander';
import { OPERATOR_KEY_FILE } from '../../main/modules/access.ts';
import { createLogger } from '../../core/logging.ts';
import { withDefaults, DEFAULT_CONFIG, DEFAULT_GEOZONES, type EmbeddedConfig } from '../../main/config.ts';
import type { Settings } from '../../main/settings.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../../inference/profile.ts';
import { colour } from '../format.ts';
import { startOrExplain, portInUse, stopOnSignal } from '../lifecycle.ts';
import { corsOriginsOf, int, jobConfig, list, logLevelOption, weights, withJobOptions, withServerOptions, type JobFlags, type ServerFlags, type Weights } from '../options.ts';
import { commandSettings } from '../settings.ts';
import { serverTlsConfig, tlsBanner, withServerTlsOptions, type TlsFlags } from '../tls-options.ts';
import { bridgeSettingsOf, withBridgeOptions, type BridgeFlags } from '../bridge-options.ts';

/** External engines for `up` and `coordinator`: only an explicit flag or a config file switches modes, never a stray environment variable. */
export async function externalEngines(opts: Pick<ServerFlags, 'kafka' | 'postgres' | 'postgresSchema' | 'config'>, settings: Settings): Promise<EmbeddedConfig['external']> {
  const { resolveEngines } = await import('../../main/settings.ts');
  const engines = resolveEngines(opts, { required: false }, settings);
  if (!engines.kafka && !engines.postgres) return undefined;
  return engines;
}

/** Where state and the bus are, for the banner (a password in the URL is not shown). */
export function stateWhere(config: EmbeddedConfig): string {
  const bus = config.external?.kafka ? `, bus on Kafka at ${config.external.kafka.bootstrapServers.join(',')}` : '';
  if (config.external?.postgres) return `in PostgreSQL (${config.external.postgres.url.replace(/\/\/[^@/]*@/, '//…@')})${bus}`;
  return `${config.dataDir === null ? 'in memory' : `in ${config.dataDir}`}${bus}`;
}

/** Where the embedded store lives: --memory, --data-dir, then XTDB_DATA_DIR / xtdb.data-dir, then .arcnet. */
export function dataDirOf(opts: Pick<ServerFlags, 'memory' | 'dataDir'>, dataDir: string | undefined): string | null {
  return opts.memory ? null : (opts.dataDir ?? dataDir ?? DEFAULT_CONFIG.dataDir);
}

/** How the CLI gets in: the operator key's file (the key itself only when nothing is written to disk). */
export function accessLine(operatorKey: string | undefined, dataDir: string | null): string {
  if (operatorKey === undefined) return colour('AUTHENTICATION OFF (--insecure-no-auth): anyone who reaches the port is an operator', 'red');
  if (dataDir === null) return `operator key (this run only): ${operatorKey}  (export ARCNET_API_KEY=… for the CLI)`;
  return `operator key in ${join(dataDir, OPERATOR_KEY_FILE)} (the CLI here reads it; arcnet token create --role viewer|developer|operator|enrolment makes more)`;
}

interface UpFlags extends JobFlags, ServerFlags, TlsFlags, BridgeFlags {
  geozones?: string[];
  reservationTimeout?: number;
  maxRetries?: number;
  nodes: number;
  rate: number;
  seed: number;
  telemetryInterval: number;
  offlineAfter: number;
  summaryInterval: number;
  weights: Partial<Weights>;
  status: boolean;
  logLevel?: string;
}

export function registerUp(program: Command): void {
  withBridgeOptions(withJobOptions(
    withServerTlsOptions(withServerOptions(program.command('up')))
      .description('run every role in one process: simulated mesh, scheduler, aggregator, jobs coordinator, API and console feed (embedded mode)')
      .option('--geozones <list>', `geozones, comma-separated (default $GEOZONE_ID, xtdb.geozone-id, or ${DEFAULT_GEOZONES.join(',')})`, list)
      .option('--nodes <n>', 'simulated nodes, spread over the geozones', int('--nodes'), 60)
      .option('--rate <n>', 'simulated inference requests per second (0 for none)', int('--rate'), 20)
      .option('--seed <n>', 'seed of the simulation', int('--seed'), 42)
      .option('--telemetry-interval <ms>', 'telemetry period of nodes', int('--telemetry-interval', 100), 10_000)
      .option('--offline-after <ms>', 'silence after which a node is offline', int('--offline-after', 100), 30_000)
      .option('--summary-interval <ms>', 'regional summary period', int('--summary-interval', 100), 60_000)
      .option('--weights <list>', 'inference score weights, e.g. sameGeozone=100,cogen=50,gpuHeadroom=30,battery=20', weights, {})
      .option('--reservation-timeout <ms>', 'reservation TTL: a node that never answers is freed after this (default scheduler.reservation-timeout-ms or 30000)', int('--reservation-timeout', 100))
      .option('--max-retries <n>', 'further reservation attempts on the next-best node (default scheduler.max-retries or 3)', int('--max-retries'))
      .option('--no-status', 'no live status line')
      .addOption(logLevelOption(undefined, 'log level (logs go to stderr; default $LOG_LEVEL or warn)')),
  )).action(async (opts: UpFlags) => {
    const { settings, applied } = await commandSettings(opts.config);
    const logger = createLogger({ level: opts.logLevel ?? applied.logLevel ?? 'warn' });
    const reservationTtlMs = opts.reservationTimeout ?? applied.reservationTimeoutMs;
    const maxRetries = opts.maxRetries ?? applied.maxRetries;
    const config = withDefaults({
      host: opts.host,
      port: opts.port,
      dataDir: dataDirOf(opts, applied.dataDir),
      geozones: opts.geozones ?? applied.geozones ?? DEFAULT_GEOZONES,
      ...(reservationTtlMs === undefined ? {} : { reservationTtlMs }),
      ...(maxRetries === undefined ? {} : { maxRetries }),
      telemetryIntervalMs: opts.telemetryInterval,
      offlineAfterMs: opts.offlineAfter,
      summaryIntervalMs: opts.summaryInterval,
      placement: { weights: { ...DEFAULT_INFERENCE_PROFILE.weights, ...opts.weights } },
      jobs: jobConfig(opts, applied),
      bridge: bridgeSettingsOf(opts, applied),
      simulation: { nodes: opts.nodes, requestRate: opts.rate, seed: opts.seed },
      external: await externalEngines(opts, settings),
      ...serverTlsConfig(opts, applied.tls),
      api: { insecureNoAuth: opts.insecureNoAuth, rateLimitPerMinute: opts.rateLimit, corsOrigins: corsOriginsOf(opts.corsOrigin, applied) },
    });
    // Modules are loaded only by the commands that run them, so `arcnet list` and friends start fast.
    const [{ startEmbedded }, { startStatusLine }] = await Promise.all([import('../../main/embedded.ts'), import('../status-line.ts')]);
    const system = await startOrExplain(portInUse('port', config.port, config.host), () => startEmbedded(config, { logger }));
    process.stdout.write(
      `${colour('arcnet up', 'bold')}: ${config.simulation.nodes} simulated nodes in ${config.geozones.join(', ')}, ${config.simulation.requestRate} req/s, state ${stateWhere(config)}\n` +
        `  console: ${system.url}/  (sign in with an API key: ${system.operatorKey === undefined ? 'none needed' : config.dataDir === null ? 'the operator key below' : `the operator key in ${join(config.dataDir, OPERATOR_KEY_FILE)}`})\n` +
        `  API and console feed: ${system.url}  (GET /stats, /health, /ready, /api/v1/nodes, /api/v1/jobs, /api/v1/training, /metrics; WebSocket /telemetry; agents: arcnet agent --server ${system.url} [--worker])\n` +
        `  ${accessLine(system.operatorKey, config.dataDir)}\n` +
        tlsBanner(config.tls) +
        `  Ctrl-C stops cleanly.\n`,
    );
    const stopStatus = opts.status ? startStatusLine(system) : undefined;
    stopOnSignal('arcnet', system, { stoppedLine: 'stopped; state is consistent.', logger, ...(stopStatus ? { beforeStop: stopStatus } : {}) });
  });
}

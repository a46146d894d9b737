/**
 * The distributed roles as commands (seed 000 "Running Components"): `arcnet aggregator`,
 * `arcnet scheduler`, `arcnet server`, each on Kafka and PostgreSQL from flags, the seed's
 * environment variables or a config file. Each prints what it runs, logs to stderr, and stops
 * cleanly on SIGINT/SIGTERM.
 */
import { Option, type Command } from 'commander';
import { createLogger, type Logger } from '../core/logging.ts';
import { errorMessage } from '../core/errors.ts';
import type { DistributedEngines, RoleProcess } from '../main/roles.ts';
import type { EngineFlags } from '../main/settings.ts';

export interface RoleCommandHelpers {
  readonly int: (name: string, min?: number) => (value: string) => number;
  readonly list: (value: string) => string[];
  readonly usage: (message: string) => Error;
}

interface CommonFlags extends EngineFlags {
  geozone?: string[];
  logLevel?: string;
}

function withEngineOptions(command: Command, helpers: RoleCommandHelpers): Command {
  return command
    .option('--geozone <list>', 'geozone(s) served, comma-separated (default $GEOZONE_ID)', helpers.list)
    .option('--kafka [servers]', 'Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS with the other KAFKA_* variables, or the config file)')
    .option('--postgres [url]', 'PostgreSQL URL (default $ARCNET_POSTGRES_URL or the config file)')
    .option('--postgres-schema <name>', 'PostgreSQL schema for ArcNet\'s tables (default public)')
    .option('--config <file>', 'JSON config file shaped like the seed\'s config.edn (docs/configuration.md); default $ARCNET_CONFIG')
    .addOption(new Option('--log-level <level>', 'log level (logs go to stderr; default $LOG_LEVEL or info)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']));
}

interface Resolved {
  readonly logger: Logger;
  readonly geozones: readonly string[];
  readonly flags: CommonFlags;
}

async function resolveCommon(flags: CommonFlags, role: string, helpers: RoleCommandHelpers): Promise<Resolved> {
  const { effectiveEnv } = await import('../main/settings.ts');
  const env = effectiveEnv(flags);
  const geozones = flags.geozone ?? (env['GEOZONE_ID'] ? helpers.list(env['GEOZONE_ID']) : []);
  if (geozones.length === 0) throw helpers.usage(`${role}: which geozone? pass --geozone CAISO, set GEOZONE_ID, or geozone-id in the config file`);
  const level = flags.logLevel ?? env['LOG_LEVEL'] ?? 'info';
  return { logger: createLogger({ level, name: `arcnet-${role}` }), geozones, flags };
}

interface HttpFlags {
  httpHost: string;
  httpPort?: number;
}

function withHttpOptions(command: Command, helpers: RoleCommandHelpers): Command {
  return command
    .option('--http-port <port>', 'serve /health, /ready and /metrics on this port (0 picks a free one; off when not given)', helpers.int('--http-port'))
    .option('--http-host <host>', 'address for --http-port', '127.0.0.1');
}

/** Kafka and PostgreSQL from flags, environment or config file. */
async function distributedEngines(resolved: Resolved, sessionTimeoutMs?: number): Promise<DistributedEngines> {
  const { resolveEngines } = await import('../main/settings.ts');
  const engines = resolveEngines(resolved.flags, { required: true });
  return { kafka: { ...engines.kafka!, ...(sessionTimeoutMs ? { sessionTimeoutMs } : {}) }, postgres: engines.postgres! };
}

/** Starts a role; a taken port is one line on the CLI, not a stack trace (the role has closed what it opened). */
async function startOrExplain<T>(helpers: RoleCommandHelpers, portInUse: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw helpers.usage(portInUse);
    throw error;
  }
}

const httpPortInUse = (flags: HttpFlags): string => `--http-port ${flags.httpPort} on ${flags.httpHost} is already in use; stop what holds it or pick another port`;

/** Runs a started role until SIGINT/SIGTERM, then stops it and exits. */
async function runUntilSignalled(role: string, started: RoleProcess): Promise<void> {
  process.stdout.write(`arcnet ${role} ${started.instanceId}: ${started.summary}; Ctrl-C stops cleanly\n`);
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${signal}: stopping…\n`);
    started
      .stop()
      .then(() => {
        process.stdout.write('stopped.\n');
        process.exit(0);
      })
      .catch((error: unknown) => {
        process.stderr.write(`arcnet ${role}: shutdown failed: ${errorMessage(error)}\n`);
        process.exit(1);
      });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

export function registerRoleCommands(program: Command, helpers: RoleCommandHelpers): void {
  const { int } = helpers;

  withHttpOptions(withEngineOptions(program.command('aggregator'), helpers), helpers)
    .description('regional aggregator on Kafka and PostgreSQL: node registry and documents, offline detection, summaries; replicas stand by and take over through a lease')
    .option('--offline-after <ms>', 'silence after which a node is offline', int('--offline-after', 100), 30_000)
    .option('--summary-interval <ms>', 'regional summary period', int('--summary-interval', 100), 60_000)
    .option('--lease-ttl <ms>', 'writer lease TTL: how long a dead leader\'s duties wait for a standby', int('--lease-ttl', 300), 6_000)
    .action(async (flags: CommonFlags & HttpFlags & { offlineAfter: number; summaryInterval: number; leaseTtl: number }) => {
      const resolved = await resolveCommon(flags, 'aggregator', helpers);
      const { startAggregatorProcess } = await import('../main/roles.ts');
      const engines = await distributedEngines(resolved);
      const role = await startOrExplain(helpers, httpPortInUse(flags), () =>
        startAggregatorProcess({
          engines,
          logger: resolved.logger,
          geozones: resolved.geozones,
          offlineAfterMs: flags.offlineAfter,
          summaryIntervalMs: flags.summaryInterval,
          leaseTtlMs: flags.leaseTtl,
          ...(flags.httpPort === undefined ? {} : { http: { host: flags.httpHost, port: flags.httpPort } }),
        }),
      );
      await runUntilSignalled('aggregator', role);
    });

  withHttpOptions(withEngineOptions(program.command('scheduler'), helpers), helpers)
    .description('inference scheduler on Kafka and PostgreSQL: exactly-once routing of the geozones\' requests; replicas share them through a consumer group')
    .option('--reservation-timeout <ms>', 'reservation lease TTL (a node that never answers is freed after this)', int('--reservation-timeout', 100), 30_000)
    .option('--max-retries <n>', 'further reservation attempts on the next-best node', int('--max-retries'), 3)
    .option('--failover-after <ms>', 'silence after which a replica takes over a dead one\'s requests (Kafka session timeout; the broker allows 6000 and up by default)', int('--failover-after', 1000), 10_000)
    .action(async (flags: CommonFlags & HttpFlags & { reservationTimeout: number; maxRetries: number; failoverAfter: number }) => {
      const resolved = await resolveCommon(flags, 'scheduler', helpers);
      const { startSchedulerProcess } = await import('../main/roles.ts');
      const engines = await distributedEngines(resolved, flags.failoverAfter);
      const role = await startOrExplain(helpers, httpPortInUse(flags), () =>
        startSchedulerProcess({
          engines,
          logger: resolved.logger,
          geozones: resolved.geozones,
          reservationTtlMs: flags.reservationTimeout,
          maxRetries: flags.maxRetries,
          ...(flags.httpPort === undefined ? {} : { http: { host: flags.httpHost, port: flags.httpPort } }),
        }),
      );
      await runUntilSignalled('scheduler', role);
    });

  withEngineOptions(program.command('server'), helpers)
    .description('API, console feed, agent sessions and metrics on Kafka and PostgreSQL; run as many replicas as wanted')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'HTTP port (0 picks a free one)', int('--port'), 8080)
    .option('--telemetry-interval <ms>', 'telemetry period asked of agents', int('--telemetry-interval', 100), 10_000)
    .option('--offline-after <ms>', 'silence after which the node list shows a node offline', int('--offline-after', 100), 30_000)
    .action(async (flags: CommonFlags & { host: string; port: number; telemetryInterval: number; offlineAfter: number }) => {
      const resolved = await resolveCommon(flags, 'server', helpers);
      const { startServerProcess } = await import('../main/roles.ts');
      const engines = await distributedEngines(resolved);
      const role = await startOrExplain(helpers, `port ${flags.port} on ${flags.host} is already in use; stop what holds it or pass --port`, () =>
        startServerProcess({ engines, logger: resolved.logger, host: flags.host, port: flags.port, geozones: resolved.geozones, telemetryIntervalMs: flags.telemetryInterval, offlineAfterMs: flags.offlineAfter }),
      );
      await runUntilSignalled('server', role);
    });
}

/** `arcnet simulate --kafka`: the simulated nodes on the bus directly, as the seed's simulator does. */
export async function runBusSimulator(flags: CommonFlags & { nodes: number; rate: number; seed: number; telemetryInterval: number }, helpers: RoleCommandHelpers): Promise<void> {
  const resolved = await resolveCommon(flags, 'simulate', helpers);
  const [{ resolveEngines }, { startSimulatorProcess }] = await Promise.all([import('../main/settings.ts'), import('../main/roles.ts')]);
  const { kafka } = resolveEngines({ kafka: flags.kafka ?? true, ...(flags.config ? { config: flags.config } : {}) }, { required: false });
  if (!kafka) throw helpers.usage('simulate --kafka: no Kafka servers');
  const role = await startSimulatorProcess({ kafka, logger: resolved.logger, geozones: resolved.geozones, nodes: flags.nodes, rate: flags.rate, seed: flags.seed, telemetryIntervalMs: flags.telemetryInterval });
  await runUntilSignalled('simulate', role);
}

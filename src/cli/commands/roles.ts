/**
 * The distributed roles as commands (seed 000 "Running Components"): `arcnet aggregator`,
 * `arcnet scheduler`, `arcnet server`, `arcnet central`, `arcnet bridge`, `arcnet services`, each on Kafka and PostgreSQL from flags, the seed's
 * environment variables or a config file (`src/main/settings.ts`), started by `src/main/roles.ts`.
 * Each prints what it runs, logs to stderr, and stops cleanly on SIGINT/SIGTERM.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { createLogger, type Logger } from '../../core/logging.ts';
import type { AppliedSettings, EngineFlags, Settings } from '../../main/settings.ts';
import type { DistributedEngines, RoleProcess } from '../../main/roles.ts';
import type { ServerTls } from '../../core/tls.ts';
import { startOrExplain, portInUse, stopOnSignal } from '../lifecycle.ts';
import { corsOriginOption, corsOriginsOf, fraction, int, list, logLevelOption, usage } from '../options.ts';
import { commandSettings } from '../settings.ts';
import { serverTlsConfig, serverTlsOf, withServerTlsOptions, type TlsFlags } from '../tls-options.ts';
import { bridgeSettingsOf, withBridgeOptions, type BridgeFlags } from '../bridge-options.ts';

export interface RoleFlags extends EngineFlags, TlsFlags {
  geozone?: string[];
  logLevel?: string;
}

export interface ResolvedRole {
  readonly logger: Logger;
  readonly geozones: readonly string[];
  readonly flags: RoleFlags;
  readonly settings: Settings;
  readonly applied: AppliedSettings;
}

export function withEngineOptions(command: Command): Command {
  return command
    .option('--geozone <list>', 'geozone(s) served, comma-separated (default $GEOZONE_ID)', list)
    .option('--kafka [servers]', 'Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS with the other KAFKA_* variables, or the config file)')
    .option('--postgres [url]', 'PostgreSQL URL (default $ARCNET_POSTGRES_URL or the config file)')
    .option('--postgres-schema <name>', 'PostgreSQL schema for ArcNet\'s tables (default public)')
    .option('--config <file>', 'JSON config file shaped like the seed\'s config.edn (docs/configuration.md); default $ARCNET_CONFIG')
    .addOption(logLevelOption(undefined, 'log level (logs go to stderr; default $LOG_LEVEL or info)'));
}

/** Settings (loaded once), geozones and logger from flags, the environment or the config file. */
export async function resolveRole(flags: RoleFlags, role: string): Promise<ResolvedRole> {
  const { settings, applied } = await commandSettings(flags.config);
  const geozones = flags.geozone ?? applied.geozones ?? [];
  if (geozones.length === 0) throw usage(`${role}: which geozone? pass --geozone CAISO, set GEOZONE_ID, or xtdb.geozone-id in the config file`);
  const level = flags.logLevel ?? applied.logLevel ?? 'info';
  return { logger: createLogger({ level, name: `arcnet-${role}` }), geozones, flags, settings, applied };
}

/** Prints what runs and keeps it running until SIGINT/SIGTERM. */
export function runRole(role: string, started: RoleProcess): void {
  process.stdout.write(`arcnet ${role} ${started.instanceId}: ${started.summary}; Ctrl-C stops cleanly\n`);
  stopOnSignal(`arcnet ${role}`, started, { stoppedLine: 'stopped.' });
}

interface HttpFlags extends TlsFlags {
  httpHost: string;
  httpPort?: number;
}

function withHttpOptions(command: Command): Command {
  return command
    .option('--http-port <port>', 'serve /health, /ready and /metrics on this port (0 picks a free one; default $PROMETHEUS_PORT or observability.prometheus-port, else off)', int('--http-port'))
    .option('--http-host <host>', 'address for --http-port', '127.0.0.1')
    .option('--tls-cert <pem>', 'serve --http-port over HTTPS only (TLS 1.3 minimum) with this PEM certificate chain; needs --tls-key (default $ARCNET_TLS_CERT or tls.cert)')
    .option('--tls-key <pem>', "the certificate's PEM private key (default $ARCNET_TLS_KEY or tls.key)")
    .option('--tls-ca <pem>', '/metrics then needs a client certificate verified by this PEM CA; /health and /ready stay open to probes (default $ARCNET_TLS_CA or tls.ca)');
}

/** The health port: --http-port, else the seed's PROMETHEUS_PORT, else none; HTTPS with --tls-* (or their settings). */
const healthPort = (flags: HttpFlags, applied: AppliedSettings): { http?: { host: string; port: number; tls?: ServerTls } } => {
  const port = flags.httpPort ?? applied.prometheusPort;
  if (port === undefined) {
    if (flags.tlsCert !== undefined || flags.tlsKey !== undefined || flags.tlsCa !== undefined) throw usage('--tls-cert, --tls-key and --tls-ca are for the health port: add --http-port (or set PROMETHEUS_PORT)');
    return {};
  }
  const tls = serverTlsOf(flags, applied.tls);
  return { http: { host: flags.httpHost, port, ...(tls ? { tls } : {}) } };
};

/** Kafka and PostgreSQL from flags, environment or config file. */
async function distributedEngines(resolved: ResolvedRole, sessionTimeoutMs?: number): Promise<DistributedEngines> {
  const { resolveEngines } = await import('../../main/settings.ts');
  const engines = resolveEngines(resolved.flags, { required: true }, resolved.settings);
  return { kafka: { ...engines.kafka!, ...(sessionTimeoutMs ? { sessionTimeoutMs } : {}) }, postgres: engines.postgres! };
}

export function registerRoleCommands(program: Command): void {
  withHttpOptions(withEngineOptions(program.command('aggregator')))
    .description('regional aggregator on Kafka and PostgreSQL: node registry and documents, offline detection, summaries; replicas stand by and take over through a lease')
    .option('--offline-after <ms>', 'silence after which a node is offline', int('--offline-after', 100), 30_000)
    .option('--summary-interval <ms>', 'regional summary period', int('--summary-interval', 100), 60_000)
    .option('--lease-ttl <ms>', 'writer lease TTL: how long a dead leader\'s duties wait for a standby', int('--lease-ttl', 300), 6_000)
    .action(async (flags: RoleFlags & HttpFlags & { offlineAfter: number; summaryInterval: number; leaseTtl: number }) => {
      const resolved = await resolveRole(flags, 'aggregator');
      const [{ startAggregatorProcess }, engines] = await Promise.all([import('../../main/roles.ts'), distributedEngines(resolved)]);
      const http = healthPort(flags, resolved.applied);
      const role = await startOrExplain(portInUse('--http-port', http.http?.port ?? 0, flags.httpHost), () =>
        startAggregatorProcess({ engines, logger: resolved.logger, geozones: resolved.geozones, offlineAfterMs: flags.offlineAfter, summaryIntervalMs: flags.summaryInterval, leaseTtlMs: flags.leaseTtl, ...http }),
      );
      runRole('aggregator', role);
    });

  withHttpOptions(withEngineOptions(program.command('scheduler')))
    .description('inference scheduler on Kafka and PostgreSQL: exactly-once routing of the geozones\' requests; replicas share them through a consumer group')
    .option('--reservation-timeout <ms>', 'reservation lease TTL: a node that never answers is freed after this (default scheduler.reservation-timeout-ms or 30000)', int('--reservation-timeout', 100))
    .option('--max-retries <n>', 'further reservation attempts on the next-best node (default scheduler.max-retries or 3)', int('--max-retries'))
    .option('--failover-after <ms>', 'silence after which a replica takes over a dead one\'s requests (Kafka session timeout; the broker allows 6000 and up by default)', int('--failover-after', 1000), 10_000)
    .action(async (flags: RoleFlags & HttpFlags & { reservationTimeout?: number; maxRetries?: number; failoverAfter: number }) => {
      const resolved = await resolveRole(flags, 'scheduler');
      const [{ startSchedulerProcess }, engines] = await Promise.all([import('../../main/roles.ts'), distributedEngines(resolved, flags.failoverAfter)]);
      const http = healthPort(flags, resolved.applied);
      const reservationTtlMs = flags.reservationTimeout ?? resolved.applied.reservationTimeoutMs;
      const maxRetries = flags.maxRetries ?? resolved.applied.maxRetries;
      const role = await startOrExplain(portInUse('--http-port', http.http?.port ?? 0, flags.httpHost), () =>
        startSchedulerProcess({
          engines,
          logger: resolved.logger,
          geozones: resolved.geozones,
          ...(reservationTtlMs === undefined ? {} : { reservationTtlMs }),
          ...(maxRetries === undefined ? {} : { maxRetries }),
          ...http,
        }),
      );
      runRole('scheduler', role);
    });

  withServerTlsOptions(withEngineOptions(program.command('server')))
    .description('API, console feed, agent sessions and metrics on Kafka and PostgreSQL; run as many replicas as wanted')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'HTTP port (0 picks a free one)', int('--port'), 8080)
    .option('--telemetry-interval <ms>', 'telemetry period asked of agents', int('--telemetry-interval', 100), 10_000)
    .option('--offline-after <ms>', 'silence after which the node list shows a node offline', int('--offline-after', 100), 30_000)
    .option('--operator-key-file <file>', 'where the operator key is kept (created at first start, adopted into the store after)', join('.arcnet', 'operator.key'))
    .option('--rate-limit <n>', 'API requests a minute per key, worker or source address (0: no limit)', int('--rate-limit'), 100_000)
    .option('--insecure-no-auth', 'DEVELOPMENT ONLY: no API keys, anyone who reaches the port is an operator', false)
    .addOption(corsOriginOption())
    .action(async (flags: RoleFlags & { host: string; port: number; telemetryInterval: number; offlineAfter: number; operatorKeyFile: string; rateLimit: number; insecureNoAuth: boolean; corsOrigin?: string[] }) => {
      const resolved = await resolveRole(flags, 'server');
      const [{ startServerProcess }, engines] = await Promise.all([import('../../main/roles.ts'), distributedEngines(resolved)]);
      const role = await startOrExplain(portInUse('port', flags.port, flags.host), () =>
        startServerProcess({ ...serverTlsConfig(flags, resolved.applied.tls), engines, logger: resolved.logger, host: flags.host, port: flags.port, geozones: resolved.geozones, telemetryIntervalMs: flags.telemetryInterval, offlineAfterMs: flags.offlineAfter, access: { insecure: flags.insecureNoAuth, operatorKeyFile: flags.operatorKeyFile, ratePerMinute: flags.rateLimit }, corsOrigins: corsOriginsOf(flags.corsOrigin, resolved.applied) }),
      );
      runRole('server', role);
    });
  withServerTlsOptions(withEngineOptions(program.command('central')))
    .description('central orchestrator on Kafka and PostgreSQL: global view of the regional summaries, its history, alerts; replicas stand by warm and take over through the central lease')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'HTTP port for /api/v1/global (0 picks a free one)', int('--port'), 8090)
    .option('--summary-interval <ms>', "the aggregators' summary period: a zone silent for two is alerted", int('--summary-interval', 100), 60_000)
    .option('--loss-share <fraction>', 'alert when a zone loses more than this share of its active nodes within --loss-window', fraction('--loss-share'), 0.3)
    .option('--loss-window <ms>', 'window of --loss-share', int('--loss-window', 1000), 300_000)
    .option('--gpu-jump <fraction>', "alert when a zone's GPU average changes by more than this between consecutive summaries", fraction('--gpu-jump'), 0.4)
    .option('--failure-threshold <n>', 'alert at this many training/HPC job failures within --failure-window', int('--failure-threshold', 1), 3)
    .option('--failure-window <ms>', 'window of --failure-threshold', int('--failure-window', 1000), 600_000)
    .option('--lease-ttl <ms>', "writer lease TTL: how long a dead leader's duties wait for a standby", int('--lease-ttl', 300), 6_000)
    .option('--operator-key-file <file>', 'where the operator key is kept (created at first start, adopted into the store after)', join('.arcnet', 'operator.key'))
    .option('--rate-limit <n>', 'API requests a minute per key or source address (0: no limit)', int('--rate-limit'), 100_000)
    .option('--insecure-no-auth', 'DEVELOPMENT ONLY: no API keys, anyone who reaches the port is an operator', false)
    .addOption(corsOriginOption())
    .action(async (flags: RoleFlags & { host: string; port: number; summaryInterval: number; lossShare: number; lossWindow: number; gpuJump: number; failureThreshold: number; failureWindow: number; leaseTtl: number; operatorKeyFile: string; rateLimit: number; insecureNoAuth: boolean; corsOrigin?: string[] }) => {
      const resolved = await resolveRole(flags, 'central');
      const [{ startCentralProcess }, engines] = await Promise.all([import('../../main/roles.ts'), distributedEngines(resolved)]);
      const role = await startOrExplain(portInUse('port', flags.port, flags.host), () =>
        startCentralProcess({
          ...serverTlsConfig(flags, resolved.applied.tls),
          engines,
          logger: resolved.logger,
          host: flags.host,
          port: flags.port,
          geozones: resolved.geozones,
          summaryIntervalMs: flags.summaryInterval,
          thresholds: { lossShare: flags.lossShare, lossWindowMs: flags.lossWindow, gpuJump: flags.gpuJump, failureThreshold: flags.failureThreshold, failureWindowMs: flags.failureWindow },
          leaseTtlMs: flags.leaseTtl,
          access: { insecure: flags.insecureNoAuth, operatorKeyFile: flags.operatorKeyFile, ratePerMinute: flags.rateLimit },
          corsOrigins: corsOriginsOf(flags.corsOrigin, resolved.applied),
        }),
      );
      runRole('central', role);
    });

  withBridgeOptions(withHttpOptions(withEngineOptions(program.command('bridge'))))
    .description('training bridge on Kafka and PostgreSQL: classifies arc.job.submission, announces federated jobs, moves HPC datasets and runs them on Slurm; replicas share the work, one owner per job through its lease')
    .action(async (flags: RoleFlags & HttpFlags & BridgeFlags) => {
      const resolved = await resolveRole(flags, 'bridge');
      const [{ startBridgeProcess }, { withDefaults }, { bridgeOptionsOf }, engines] = await Promise.all([
        import('../../main/roles.ts'),
        import('../../main/config.ts'),
        import('../../main/modules/bridge.ts'),
        distributedEngines(resolved),
      ]);
      const settings = withDefaults({ bridge: bridgeSettingsOf(flags, resolved.applied) }).bridge;
      const http = healthPort(flags, resolved.applied);
      const role = await startOrExplain(portInUse('--http-port', http.http?.port ?? 0, flags.httpHost), () =>
        startBridgeProcess({ engines, logger: resolved.logger, geozones: resolved.geozones, bridge: bridgeOptionsOf(settings, resolved.applied.dataDir ?? '.arcnet'), ...http }),
      );
      runRole('bridge', role);
    });

  withHttpOptions(withEngineOptions(program.command('services')))
    .description('services cluster deployment manager on Kafka and PostgreSQL: plans blueprints onto the nodes whose agents run --services and re-places what fails; replicas stand by warm and take over through the services lease')
    .option('--offline-after <ms>', 'telemetry silence after which a node is offline and its instances are re-placed', int('--offline-after', 100), 30_000)
    .option('--runner-grace <ms>', "how long a runner whose session closed still counts before its instances are re-placed", int('--runner-grace', 0), 3_000)
    .option('--lease-ttl <ms>', "leader lease TTL: how long a dead leader's duties wait for a standby", int('--lease-ttl', 300), 2_400)
    .action(async (flags: RoleFlags & HttpFlags & { offlineAfter: number; runnerGrace: number; leaseTtl: number }) => {
      const resolved = await resolveRole(flags, 'services');
      const [{ startServicesProcess }, engines] = await Promise.all([import('../../main/roles.ts'), distributedEngines(resolved)]);
      const http = healthPort(flags, resolved.applied);
      const role = await startOrExplain(portInUse('--http-port', http.http?.port ?? 0, flags.httpHost), () =>
        startServicesProcess({ engines, logger: resolved.logger, geozones: resolved.geozones, offlineAfterMs: flags.offlineAfter, runnerGraceMs: flags.runnerGrace, leaseTtlMs: flags.leaseTtl, ...http }),
      );
      runRole('services', role);
    });
}

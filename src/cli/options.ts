/**
 * What every command shares: the usage error (exit 2, one line), flag parsers that say what was
 * wrong, and the option groups of the server commands. Commands parse flags here and call into
 * `src/main/`; nothing in `src/cli/` chooses an adapter.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { signingPolicy } from '../main/job-signers.ts';
import { parseCorsOrigins } from '../api/console-delivery.ts';
import type { AppliedSettings } from '../main/settings.ts';

/** A refusal the user can fix: one line on stderr, exit status 2. */
export class UsageError extends Error {}

export const usage = (message: string): UsageError => new UsageError(message);

export const int = (name: string, min = 0) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got "${value}"`);
  return n;
};

export const fraction = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`${name} must be between 0 and 1, got "${value}"`);
  return n;
};

export const list = (value: string): string[] => value.split(',').map((s) => s.trim()).filter(Boolean);

const WEIGHT_NAMES = ['sameGeozone', 'cogen', 'gpuHeadroom', 'battery'] as const;
export type Weights = Record<(typeof WEIGHT_NAMES)[number], number>;

/** `sameGeozone=100,cogen=50,gpuHeadroom=30,battery=20`; names left out keep the seed's weight. */
export const weights = (value: string): Partial<Weights> => {
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

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'silent'] as const;

/** `--log-level`, with the command's default (none: the setting decides). */
export function logLevelOption(defaultLevel: string | undefined, description = 'log level (logs go to stderr)'): Option {
  const option = new Option('--log-level <level>', description).choices(LOG_LEVELS);
  return defaultLevel === undefined ? option : option.default(defaultLevel);
}

/** `--cors-origin`, repeatable and comma-separated; each value checked as an origin (or an explicit `*`). */
export function corsOriginOption(): Option {
  return new Option('--cors-origin <origins>', 'let pages on these origins call the API and open /telemetry: scheme://host[:port], comma-separated or repeated, or * for any (default $ARCNET_CORS_ORIGINS or api.cors-origins; none: same-origin only)').argParser(
    (value: string, previous: string[] | undefined) => {
      try {
        return [...(previous ?? []), ...parseCorsOrigins([value])];
      } catch (error) {
        throw new InvalidArgumentError((error as Error).message);
      }
    },
  );
}

/** The CORS origins of a server: the flags, else the setting; a bad setting is a usage error. */
export function corsOriginsOf(flags: readonly string[] | undefined, applied: Pick<AppliedSettings, 'corsOrigins'>): string[] {
  if (flags !== undefined) return [...flags];
  try {
    return parseCorsOrigins(applied.corsOrigins ?? []);
  } catch (error) {
    throw usage(`ARCNET_CORS_ORIGINS / api.cors-origins: ${(error as Error).message}`);
  }
}

/** Where a server listens and keeps its state, shared by `up` and `coordinator`. */
export function withServerOptions(command: Command): Command {
  return command
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'HTTP port (0 picks a free one)', int('--port'), 8080)
    .option('--data-dir <dir>', 'where the embedded store keeps its data (default $XTDB_DATA_DIR, xtdb.data-dir, or .arcnet)')
    .option('--memory', 'keep state in memory only (nothing written to disk)', false)
    .option('--kafka [servers]', 'use Apache Kafka as the bus: host:port list, or without a value KAFKA_BOOTSTRAP_SERVERS and the other KAFKA_* variables')
    .option('--postgres [url]', 'keep state in PostgreSQL: a postgres:// URL, or without a value ARCNET_POSTGRES_URL')
    .option('--postgres-schema <name>', 'PostgreSQL schema for ArcNet\'s tables (default public)')
    .option('--config <file>', 'JSON config file shaped like the seed\'s config.edn (see docs/configuration.md); default $ARCNET_CONFIG')
    .option('--rate-limit <n>', 'API requests a minute per key, worker or source address (0: no limit)', int('--rate-limit'), 100_000)
    .option('--insecure-no-auth', 'DEVELOPMENT ONLY: no API keys, anyone who reaches the port is an operator', false)
    .addOption(corsOriginOption());
}

export interface ServerFlags {
  host: string;
  port: number;
  dataDir?: string;
  memory: boolean;
  kafka?: string | true;
  postgres?: string | true;
  postgresSchema?: string;
  config?: string;
  rateLimit: number;
  insecureNoAuth: boolean;
  corsOrigin?: string[];
}

/** Flags of the verified-jobs coordinator, shared by `up` and `coordinator`. */
export function withJobOptions(command: Command): Command {
  return command
    .option('--worker-stale-after <ms>', 'worker silence after which it is offline (−20 reputation) and its executions fail', int('--worker-stale-after', 100), 120_000)
    .option('--execution-grace <ms>', 'allowance beyond a job timeout before the coordinator gives up on an execution', int('--execution-grace'), 30_000)
    .option('--scheduling-timeout <ms>', 'how long a wanted execution may wait for an eligible worker', int('--scheduling-timeout', 100), 600_000)
    .option('--max-redundancy <n>', 'largest redundancy a job may ask for', int('--max-redundancy', 1), 15)
    .option('--job-timeout <s>', 'container timeout of jobs that do not set timeout_seconds', int('--job-timeout', 1), 300)
    .option('--job-signers <dir>', "trusted job signers: a directory of <key_id>.pub Ed25519 public keys (default jobs.signers or $ARCNET_JOB_SIGNERS)")
    .option('--require-signed-jobs', 'refuse jobs without a signature by a trusted signer (default jobs.require-signatures or $ARCNET_REQUIRE_SIGNED_JOBS)');
}

export interface JobFlags {
  jobTimeout: number;
  workerStaleAfter: number;
  executionGrace: number;
  schedulingTimeout: number;
  maxRedundancy: number;
  jobSigners?: string;
  requireSignedJobs?: boolean;
}

/** The flags over the settings; a signer directory that cannot be read, or requiring signatures with no signer, is a usage error. */
function jobSigning(opts: JobFlags, applied: Pick<AppliedSettings, 'jobSigners' | 'requireSignedJobs'>) {
  const signersDir = opts.jobSigners ?? applied.jobSigners;
  try {
    return signingPolicy({ ...(signersDir === undefined ? {} : { signersDir }), required: opts.requireSignedJobs ?? applied.requireSignedJobs ?? false, what: 'this coordinator (--require-signed-jobs / jobs.require-signatures)' });
  } catch (error) {
    throw usage((error as Error).message);
  }
}

export const jobConfig = (opts: JobFlags, applied: Pick<AppliedSettings, 'jobSigners' | 'requireSignedJobs'> = {}) => ({
  signing: jobSigning(opts, applied),
  staleAfterMs: opts.workerStaleAfter,
  executionGraceMs: opts.executionGrace,
  schedulingTimeoutMs: opts.schedulingTimeout,
  maxRedundancy: opts.maxRedundancy,
  maxExecutionsCap: 3 * opts.maxRedundancy,
  defaultTimeoutSeconds: opts.jobTimeout,
});

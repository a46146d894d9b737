/**
 * Settings from three places, most specific first: command-line flags, environment variables (the
 * seed's names where it has them: KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*,
 * XTDB_DATA_DIR, GEOZONE_ID, PROMETHEUS_PORT, OTEL_EXPORTER_ENDPOINT, LOG_LEVEL; ArcNet's own
 * ARCNET_*), then a JSON config file shaped like seed 000's config.edn (docs/configuration.md).
 *
 * Every file key stands for one variable (`SETTINGS`), so each setting is parsed and checked in one
 * place. A key the seed's file carries that ArcNet does not act on yet (`kafka.acks`,
 * `observability.otel-endpoint`, …) is accepted and named in one warning line at start; a key nobody
 * knows is refused, naming the file and the key, so a typo never silently falls back to a default.
 */
import { readFileSync } from 'node:fs';
import { ArcError, errorMessage } from '../core/errors.ts';
import { kafkaOptionsFromEnv, parseBootstrapServers, type KafkaConnectionOptions } from '../bus/kafka-config.ts';
import { readPem, type TlsPaths } from '../core/tls.ts';
import { POSTGRES_SSL_MODES, isPostgresSslMode, sslModeOfUrl } from '../store/postgres-ssl.ts';
import type { PostgresChoice } from './engines.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** `text`: a non-empty string; `count`: a whole number ≥ 0 (a JSON number or its digits); `number`: a finite number ≥ 0 (`1e18` too); `level`: a log level (EDN's `:info` too); `switch`: true or false (a JSON boolean, or true/false/1/0). */
type Kind = 'text' | 'count' | 'number' | 'level' | 'switch';

interface Setting {
  /** Where it stands in the config file: `section.key`, or a bare key at the top. */
  readonly key: string;
  /** The variable it stands for; read from the environment too. Absent: the file alone can give it. */
  readonly variable?: string;
  readonly kind: Kind;
  /** Why it has no effect yet; absent when ArcNet applies it. */
  readonly notUsedYet?: string;
}

/** Every key the config file accepts: seed 000's config.edn, plus ArcNet's `postgres` section and security settings. */
export const SETTINGS: readonly Setting[] = [
  { key: 'kafka.bootstrap-servers', variable: 'KAFKA_BOOTSTRAP_SERVERS', kind: 'text' },
  { key: 'kafka.client-id', variable: 'KAFKA_CLIENT_ID', kind: 'text' },
  { key: 'kafka.acks', kind: 'text', notUsedYet: 'producers are idempotent and always wait for every in-sync replica' },
  { key: 'kafka.retries', kind: 'count', notUsedYet: 'ArcNet retries with its own backoff' },
  { key: 'kafka.security-protocol', variable: 'KAFKA_SECURITY_PROTOCOL', kind: 'text' },
  { key: 'kafka.sasl-mechanism', variable: 'KAFKA_SASL_MECHANISM', kind: 'text' },
  { key: 'kafka.sasl-username', variable: 'KAFKA_SASL_USERNAME', kind: 'text' },
  { key: 'kafka.sasl-password', variable: 'KAFKA_SASL_PASSWORD', kind: 'text' },
  { key: 'kafka.ssl-ca-location', variable: 'KAFKA_SSL_CA_LOCATION', kind: 'text' },
  { key: 'xtdb.data-dir', variable: 'XTDB_DATA_DIR', kind: 'text' },
  { key: 'xtdb.geozone-id', variable: 'GEOZONE_ID', kind: 'text' },
  { key: 'postgres.url', variable: 'ARCNET_POSTGRES_URL', kind: 'text' },
  { key: 'postgres.schema', variable: 'ARCNET_POSTGRES_SCHEMA', kind: 'text' },
  { key: 'postgres.sslmode', variable: 'ARCNET_POSTGRES_SSLMODE', kind: 'text' },
  { key: 'postgres.ssl-ca', variable: 'ARCNET_POSTGRES_SSL_CA', kind: 'text' },
  { key: 'scheduler.poll-interval-ms', kind: 'count', notUsedYet: 'requests are pushed to the scheduler, never polled' },
  { key: 'scheduler.reservation-timeout-ms', variable: 'ARCNET_RESERVATION_TIMEOUT_MS', kind: 'count' },
  { key: 'scheduler.max-retries', variable: 'ARCNET_MAX_RETRIES', kind: 'count' },
  // The training bridge (issue 13): seed 000's two, and ArcNet's Globus API and staging path, thresholds, chunk size, staging directory, poll interval and scheduler.
  // The Globus token is never a file key: ARCNET_GLOBUS_TOKEN or --globus-token-file (src/cli/bridge-options.ts).
  { key: 'bridge.globus-endpoint', variable: 'ARCNET_GLOBUS_ENDPOINT', kind: 'text' },
  { key: 'bridge.globus-api', variable: 'ARCNET_GLOBUS_API', kind: 'text' },
  { key: 'bridge.globus-staging-path', variable: 'ARCNET_GLOBUS_STAGING_PATH', kind: 'text' },
  { key: 'bridge.transfer-timeout-ms', variable: 'ARCNET_TRANSFER_TIMEOUT_MS', kind: 'count' },
  { key: 'bridge.hpc-flops-threshold', variable: 'ARCNET_HPC_FLOPS_THRESHOLD', kind: 'number' },
  { key: 'bridge.hpc-dataset-gb-threshold', variable: 'ARCNET_HPC_DATASET_GB_THRESHOLD', kind: 'number' },
  { key: 'bridge.chunk-size-bytes', variable: 'ARCNET_CHUNK_SIZE_BYTES', kind: 'count' },
  { key: 'bridge.staging-dir', variable: 'ARCNET_STAGING_DIR', kind: 'text' },
  { key: 'bridge.poll-interval-ms', variable: 'ARCNET_HPC_POLL_INTERVAL_MS', kind: 'count' },
  { key: 'bridge.hpc-scheduler', variable: 'ARCNET_HPC_SCHEDULER', kind: 'text' },
  { key: 'observability.prometheus-port', variable: 'PROMETHEUS_PORT', kind: 'count' },
  { key: 'observability.otel-endpoint', variable: 'OTEL_EXPORTER_ENDPOINT', kind: 'text', notUsedYet: 'no trace exporter yet' },
  { key: 'observability.log-level', variable: 'LOG_LEVEL', kind: 'level' },
  // TLS of the process's own listener (API or health port): PEM files (docs/security.md, "Transport").
  { key: 'tls.cert', variable: 'ARCNET_TLS_CERT', kind: 'text' },
  { key: 'tls.key', variable: 'ARCNET_TLS_KEY', kind: 'text' },
  { key: 'tls.ca', variable: 'ARCNET_TLS_CA', kind: 'text' },
  // Signed jobs (issue 11): a directory of <key_id>.pub files (src/main/job-signers.ts), and whether unsigned jobs are refused.
  { key: 'jobs.signers', variable: 'ARCNET_JOB_SIGNERS', kind: 'text' },
  { key: 'jobs.require-signatures', variable: 'ARCNET_REQUIRE_SIGNED_JOBS', kind: 'switch' },
  // Pages on other origins that may call the API (src/api/console-delivery.ts): comma-separated origins or *.
  { key: 'api.cors-origins', variable: 'ARCNET_CORS_ORIGINS', kind: 'text' },
  // The shape before the seed's sections were read, still accepted.
  { key: 'geozone-id', variable: 'GEOZONE_ID', kind: 'text' },
  { key: 'log-level', variable: 'LOG_LEVEL', kind: 'level' },
];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function invalid(message: string): ArcError {
  return new ArcError('INVALID_INPUT', message, { retryable: false });
}

/** Checks one value of a kind; returns it as the string its variable would hold, or says what is wrong. */
function normalise(kind: Kind, value: unknown): string | { problem: string } {
  if (kind === 'count') {
    const n = typeof value === 'number' ? value : typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
    return Number.isSafeInteger(n) && n >= 0 ? String(n) : { problem: 'must be a whole number ≥ 0' };
  }
  if (kind === 'number') {
    const n = typeof value === 'number' ? value : typeof value === 'string' && /^\s*(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?\s*$/i.test(value) ? Number(value) : Number.NaN;
    return Number.isFinite(n) && n >= 0 ? String(n) : { problem: 'must be a number ≥ 0' };
  }
  if (kind === 'switch') {
    const text = typeof value === 'boolean' ? String(value) : typeof value === 'string' ? value.trim().toLowerCase() : '';
    if (text === 'true' || text === '1') return 'true';
    if (text === 'false' || text === '0') return 'false';
    return { problem: 'must be true or false' };
  }
  if (typeof value !== 'string' || value.trim() === '') return { problem: 'must be a non-empty string' };
  if (kind === 'level') {
    const level = value.trim().replace(/^:/, '').toLowerCase();
    return LOG_LEVELS.includes(level) ? level : { problem: `must be one of ${LOG_LEVELS.join(', ')}` };
  }
  return value;
}

const byKey = new Map(SETTINGS.map((s) => [s.key, s]));
const SECTIONS = new Set(SETTINGS.flatMap((s) => (s.key.includes('.') ? [s.key.slice(0, s.key.indexOf('.'))] : [])));

/** What a config file says: values by variable (or by key where there is none), and the keys given that have no effect yet. */
export interface ConfigFile {
  readonly path: string;
  readonly values: Readonly<Record<string, string>>;
  readonly notUsedYet: readonly string[];
}

/** Reads and checks a config file; names the file and key of anything wrong. */
export function readConfigFile(path: string): ConfigFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw invalid(`config file ${path}: ${errorMessage(error)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid(`config file ${path}: expected a JSON object`);
  const values: Record<string, string> = {};
  const from: Record<string, string> = {};
  const notUsedYet: string[] = [];
  const take = (key: string, value: unknown): void => {
    const setting = byKey.get(key);
    if (!setting) throw invalid(`config file ${path}: unknown setting "${key}" (known: ${SETTINGS.map((s) => s.key).join(', ')})`);
    const normalised = normalise(setting.kind, value);
    if (typeof normalised !== 'string') throw invalid(`config file ${path}: "${key}" ${normalised.problem}`);
    if (setting.notUsedYet) notUsedYet.push(key);
    const name = setting.variable ?? key;
    if (values[name] !== undefined && values[name] !== normalised) throw invalid(`config file ${path}: "${key}" and "${from[name]}" both set ${name}, differently`);
    values[name] = normalised;
    from[name] = key;
  };
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (!SECTIONS.has(key)) {
      take(key, value);
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`config file ${path}: "${key}" must be an object`);
    for (const [inner, innerValue] of Object.entries(value as Record<string, unknown>)) take(`${key}.${inner}`, innerValue);
  }
  return { path, values, notUsedYet };
}

/** The settings of one command: the environment over the config file, checked once. */
export interface Settings {
  /** Every variable: the environment's where set, else the config file's. */
  readonly env: Env;
  /** The config file alone (`up` and `coordinator` switch engines only on what it names). */
  readonly file: Readonly<Record<string, string>>;
  readonly path?: string;
  /** File keys and variables given that ArcNet does not act on yet. */
  readonly notUsedYet: readonly string[];
}

/** Loads the config file (`--config`, else ARCNET_CONFIG) under the environment. */
export function loadSettings(configPath?: string, env: Env = process.env): Settings {
  const path = configPath ?? env['ARCNET_CONFIG'];
  const file = path ? readConfigFile(path) : undefined;
  const set = stripEmpty(env);
  const fromEnv = SETTINGS.filter((s) => s.notUsedYet && s.variable && set[s.variable] !== undefined).map((s) => s.variable!);
  return {
    env: { ...file?.values, ...set },
    file: file?.values ?? {},
    ...(path ? { path } : {}),
    notUsedYet: [...new Set([...(file?.notUsedYet ?? []), ...fromEnv])],
  };
}

/** The one line said at start when the settings name something ArcNet does not act on yet. */
export function notUsedWarning(settings: Settings): string | undefined {
  if (settings.notUsedYet.length === 0) return undefined;
  const where = settings.path ? ` (config file ${settings.path})` : '';
  return `warning: accepted but not used yet${where}: ${settings.notUsedYet.join(', ')}`;
}

function stripEmpty(env: Env): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''));
}

/** The settings ArcNet applies beyond the engines, each checked and typed; absent where nothing sets it. */
export interface AppliedSettings {
  /** XTDB_DATA_DIR / xtdb.data-dir: where the embedded store keeps its data. */
  readonly dataDir?: string;
  /** GEOZONE_ID / xtdb.geozone-id: the geozones served. */
  readonly geozones?: readonly string[];
  /** ARCNET_RESERVATION_TIMEOUT_MS / scheduler.reservation-timeout-ms. */
  readonly reservationTimeoutMs?: number;
  /** ARCNET_MAX_RETRIES / scheduler.max-retries. */
  readonly maxRetries?: number;
  /** PROMETHEUS_PORT / observability.prometheus-port: an aggregator's or scheduler's /health, /ready and /metrics port. */
  readonly prometheusPort?: number;
  /** ARCNET_TLS_CERT, ARCNET_TLS_KEY, ARCNET_TLS_CA / tls.*: the listener's PEM files (flags `--tls-*` win). */
  readonly tls?: TlsPaths;
  /** LOG_LEVEL / observability.log-level. */
  readonly logLevel?: string;
  /** ARCNET_JOB_SIGNERS / jobs.signers: the directory of trusted job signers' `<key_id>.pub` files. */
  readonly jobSigners?: string;
  /** ARCNET_REQUIRE_SIGNED_JOBS / jobs.require-signatures: refuse unsigned jobs. */
  readonly requireSignedJobs?: boolean;
  /** ARCNET_CORS_ORIGINS / api.cors-origins: as `--cors-origin`, comma-separated (checked where it is applied). */
  readonly corsOrigins?: readonly string[];
  /** The training bridge's `bridge.*` settings (flags `--hpc-*`, `--chunk-size`, … win). */
  readonly bridge?: AppliedBridgeSettings;
}

export interface AppliedBridgeSettings {
  readonly globusEndpoint?: string;
  readonly globusApi?: string;
  readonly globusStagingPath?: string;
  readonly transferTimeoutMs?: number;
  readonly hpcFlopsThreshold?: number;
  readonly hpcDatasetGbThreshold?: number;
  readonly chunkBytes?: number;
  readonly stagingDir?: string;
  readonly pollIntervalMs?: number;
  readonly hpcScheduler?: 'slurm' | 'none' | 'auto';
}

const HPC_SCHEDULERS = ['slurm', 'none', 'auto'] as const;

function bridgeSettings(read: (variable: string) => string | undefined): AppliedBridgeSettings | undefined {
  const number = (variable: string): number | undefined => {
    const value = read(variable);
    return value === undefined ? undefined : Number(value);
  };
  const scheduler = read('ARCNET_HPC_SCHEDULER')?.trim().toLowerCase();
  if (scheduler !== undefined && !(HPC_SCHEDULERS as readonly string[]).includes(scheduler)) throw invalid(`ARCNET_HPC_SCHEDULER / bridge.hpc-scheduler "${scheduler}" is not one of ${HPC_SCHEDULERS.join(', ')}`);
  const chunkBytes = number('ARCNET_CHUNK_SIZE_BYTES');
  if (chunkBytes === 0) throw invalid('ARCNET_CHUNK_SIZE_BYTES / bridge.chunk-size-bytes must be at least 1');
  const out: Record<string, unknown> = {
    globusEndpoint: read('ARCNET_GLOBUS_ENDPOINT'),
    globusApi: read('ARCNET_GLOBUS_API'),
    globusStagingPath: read('ARCNET_GLOBUS_STAGING_PATH'),
    transferTimeoutMs: number('ARCNET_TRANSFER_TIMEOUT_MS'),
    hpcFlopsThreshold: number('ARCNET_HPC_FLOPS_THRESHOLD'),
    hpcDatasetGbThreshold: number('ARCNET_HPC_DATASET_GB_THRESHOLD'),
    chunkBytes,
    stagingDir: read('ARCNET_STAGING_DIR'),
    pollIntervalMs: number('ARCNET_HPC_POLL_INTERVAL_MS'),
    hpcScheduler: scheduler,
  };
  const given = Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
  return Object.keys(given).length === 0 ? undefined : (given as AppliedBridgeSettings);
}

export function appliedSettings(settings: Settings): AppliedSettings {
  const read = (variable: string): string | undefined => {
    const raw = settings.env[variable];
    if (raw === undefined) return undefined;
    const setting = SETTINGS.find((s) => s.variable === variable)!;
    const value = normalise(setting.kind, raw);
    if (typeof value !== 'string') throw invalid(`${variable} ("${raw}") ${value.problem}`);
    return value;
  };
  const count = (variable: string): number | undefined => {
    const value = read(variable);
    return value === undefined ? undefined : Number(value);
  };
  const dataDir = read('XTDB_DATA_DIR');
  const zones = read('GEOZONE_ID')?.split(',').map((z) => z.trim()).filter(Boolean);
  const reservationTimeoutMs = count('ARCNET_RESERVATION_TIMEOUT_MS');
  const maxRetries = count('ARCNET_MAX_RETRIES');
  const prometheusPort = count('PROMETHEUS_PORT');
  if (prometheusPort !== undefined && prometheusPort > 65_535) throw invalid(`PROMETHEUS_PORT ${prometheusPort} is not a port`);
  const logLevel = read('LOG_LEVEL');
  const tls = { cert: read('ARCNET_TLS_CERT'), key: read('ARCNET_TLS_KEY'), ca: read('ARCNET_TLS_CA') };
  const jobSigners = read('ARCNET_JOB_SIGNERS');
  const requireSignedJobs = read('ARCNET_REQUIRE_SIGNED_JOBS');
  const corsOrigins = read('ARCNET_CORS_ORIGINS');
  const bridge = bridgeSettings(read);
  return {
    ...(dataDir === undefined ? {} : { dataDir }),
    ...(zones && zones.length > 0 ? { geozones: zones } : {}),
    ...(reservationTimeoutMs === undefined ? {} : { reservationTimeoutMs }),
    ...(maxRetries === undefined ? {} : { maxRetries }),
    ...(prometheusPort === undefined ? {} : { prometheusPort }),
    ...(logLevel === undefined ? {} : { logLevel }),
    ...(tls.cert === undefined && tls.key === undefined && tls.ca === undefined ? {} : { tls: Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined)) }),
    ...(jobSigners === undefined ? {} : { jobSigners }),
    ...(requireSignedJobs === undefined ? {} : { requireSignedJobs: requireSignedJobs === 'true' }),
    ...(corsOrigins === undefined ? {} : { corsOrigins: [corsOrigins] }),
    ...(bridge === undefined ? {} : { bridge }),
  };
}

export interface EngineFlags {
  /** `--kafka` with servers, or `true` for "from the environment / config file". */
  readonly kafka?: string | true;
  readonly postgres?: string | true;
  readonly postgresSchema?: string;
  readonly config?: string;
}

export interface ResolvedEngines {
  readonly kafka?: KafkaConnectionOptions;
  readonly postgres?: PostgresChoice;
}

/**
 * Which external engines a command uses. `required` (the role commands) takes them from flags,
 * environment or file; otherwise (`up`, `coordinator`) only an explicit flag or a config file
 * section switches modes, so a stray environment variable never does.
 */
export function resolveEngines(flags: EngineFlags, options: { required: boolean }, settings: Settings = loadSettings(flags.config)): ResolvedEngines {
  const { env: merged, file } = settings;
  const wantKafka = flags.kafka !== undefined || options.required || file['KAFKA_BOOTSTRAP_SERVERS'] !== undefined;
  const wantPostgres = flags.postgres !== undefined || options.required || file['ARCNET_POSTGRES_URL'] !== undefined;
  const out: { kafka?: KafkaConnectionOptions; postgres?: PostgresChoice } = {};
  if (wantKafka) {
    try {
      const servers = typeof flags.kafka === 'string' ? flags.kafka : merged['KAFKA_BOOTSTRAP_SERVERS'];
      if (!servers) throw invalid('no Kafka servers: pass --kafka host:port, set KAFKA_BOOTSTRAP_SERVERS, or kafka.bootstrap-servers in the config file');
      const clientId = merged['KAFKA_CLIENT_ID'];
      out.kafka = { ...kafkaOptionsFromEnv({ ...merged, KAFKA_BOOTSTRAP_SERVERS: servers }), bootstrapServers: parseBootstrapServers(servers), ...(clientId ? { clientId } : {}) };
    } catch (error) {
      throw invalid(`--kafka: ${errorMessage(error)}`);
    }
  }
  if (wantPostgres) {
    const url = typeof flags.postgres === 'string' ? flags.postgres : merged['ARCNET_POSTGRES_URL'];
    if (!url) throw invalid('--postgres: no URL: pass --postgres postgres://…, set ARCNET_POSTGRES_URL, or postgres.url in the config file');
    const schema = flags.postgresSchema ?? merged['ARCNET_POSTGRES_SCHEMA'];
    out.postgres = { url, ...(schema ? { schema } : {}), ...postgresSsl(merged, url) };
  }
  return out;
}

/**
 * ARCNET_POSTGRES_SSLMODE / postgres.sslmode (disable, require, verify-full) and ARCNET_POSTGRES_SSL_CA /
 * postgres.ssl-ca (a PEM file, for verify-full). A URL's own `?sslmode=` still works alone; given
 * both, they must agree, so the one a reader sees is the one in force.
 */
function postgresSsl(env: Env, url: string): Pick<PostgresChoice, 'sslmode' | 'sslCa'> {
  const mode = env['ARCNET_POSTGRES_SSLMODE']?.trim().toLowerCase();
  const caPath = env['ARCNET_POSTGRES_SSL_CA']?.trim() || undefined;
  if (mode !== undefined && !isPostgresSslMode(mode)) throw invalid(`ARCNET_POSTGRES_SSLMODE / postgres.sslmode "${mode}" is not one of ${POSTGRES_SSL_MODES.join(', ')}`);
  const inUrl = sslModeOfUrl(url);
  if (mode !== undefined && inUrl !== undefined && inUrl !== mode) throw invalid(`ARCNET_POSTGRES_SSLMODE / postgres.sslmode ${mode} disagrees with sslmode=${inUrl} in the PostgreSQL URL: give one`);
  if (caPath !== undefined && (mode ?? inUrl) !== 'verify-full') {
    throw invalid(`ARCNET_POSTGRES_SSL_CA / postgres.ssl-ca is used only with sslmode verify-full (sslmode is ${mode ?? inUrl ?? 'not set'}): without verification a CA checks nothing`);
  }
  return { ...(mode === undefined ? {} : { sslmode: mode }), ...(caPath === undefined ? {} : { sslCa: readPem(caPath, 'ARCNET_POSTGRES_SSL_CA / postgres.ssl-ca', 'CA') }) };
}

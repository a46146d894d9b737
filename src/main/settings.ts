/**
 * Settings of the distributed roles from three places, most specific first: command-line flags, the
 * seed's environment variables (KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*,
 * GEOZONE_ID, LOG_LEVEL, plus ARCNET_POSTGRES_URL), then a JSON config file shaped like the seed's
 * config.edn (docs/configuration.md). The file maps onto the same variable names, so each setting is
 * parsed and checked in one place.
 */
import { readFileSync } from 'node:fs';
import { ArcError, errorMessage } from '../core/errors.ts';
import { kafkaOptionsFromEnv, parseBootstrapServers, type KafkaConnectionOptions } from '../bus/kafka-config.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** Config file key → environment variable, per section. */
const FILE_KEYS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  kafka: {
    'bootstrap-servers': 'KAFKA_BOOTSTRAP_SERVERS',
    'security-protocol': 'KAFKA_SECURITY_PROTOCOL',
    'sasl-mechanism': 'KAFKA_SASL_MECHANISM',
    'sasl-username': 'KAFKA_SASL_USERNAME',
    'sasl-password': 'KAFKA_SASL_PASSWORD',
  },
  postgres: { url: 'ARCNET_POSTGRES_URL', schema: 'ARCNET_POSTGRES_SCHEMA' },
  '': { 'geozone-id': 'GEOZONE_ID', 'log-level': 'LOG_LEVEL' },
};

function invalid(message: string): ArcError {
  return new ArcError('INVALID_INPUT', message, { retryable: false });
}

/** Reads a config file into the environment variables it stands for; names the file and key of anything wrong. */
export function readConfigFile(path: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw invalid(`config file ${path}: ${errorMessage(error)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid(`config file ${path}: expected a JSON object`);
  const env: Record<string, string> = {};
  const take = (section: string, key: string, value: unknown): void => {
    const name = FILE_KEYS[section]?.[key];
    const where = section ? `${section}.${key}` : key;
    if (!name) throw invalid(`config file ${path}: unknown setting "${where}" (known: ${knownKeys().join(', ')})`);
    if (typeof value !== 'string' || value.trim() === '') throw invalid(`config file ${path}: "${where}" must be a non-empty string`);
    env[name] = value;
  };
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (key in FILE_KEYS && key !== '') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`config file ${path}: "${key}" must be an object`);
      for (const [inner, innerValue] of Object.entries(value as Record<string, unknown>)) take(key, inner, innerValue);
    } else {
      take('', key, value);
    }
  }
  return env;
}

function knownKeys(): string[] {
  return Object.entries(FILE_KEYS).flatMap(([section, keys]) => Object.keys(keys).map((key) => (section ? `${section}.${key}` : key)));
}

export interface EngineFlags {
  /** `--kafka` with servers, or `true` for "from the environment / config file". */
  readonly kafka?: string | true;
  readonly postgres?: string | true;
  readonly postgresSchema?: string;
  readonly config?: string;
}

/** The environment as the roles see it: the config file (ARCNET_CONFIG or --config) under the real environment. */
export function effectiveEnv(flags: Pick<EngineFlags, 'config'>, env: Env = process.env): Env {
  const path = flags.config ?? env['ARCNET_CONFIG'];
  if (!path) return env;
  return { ...readConfigFile(path), ...stripEmpty(env) };
}

function stripEmpty(env: Env): Env {
  return Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
}

export interface ResolvedEngines {
  readonly kafka?: KafkaConnectionOptions;
  readonly postgres?: { readonly url: string; readonly schema?: string };
}

/**
 * Which external engines a command uses. `required` (the role commands) takes them from flags,
 * environment or file; otherwise (`up`, `coordinator`) only an explicit flag or a config file
 * section switches modes, so a stray environment variable never does.
 */
export function resolveEngines(flags: EngineFlags, options: { required: boolean }, env: Env = process.env): ResolvedEngines {
  const path = flags.config ?? env['ARCNET_CONFIG'];
  const file = path ? readConfigFile(path) : {};
  const merged = { ...file, ...stripEmpty(env) };
  const wantKafka = flags.kafka !== undefined || options.required || file['KAFKA_BOOTSTRAP_SERVERS'] !== undefined;
  const wantPostgres = flags.postgres !== undefined || options.required || file['ARCNET_POSTGRES_URL'] !== undefined;
  const out: { kafka?: KafkaConnectionOptions; postgres?: { url: string; schema?: string } } = {};
  if (wantKafka) {
    try {
      const servers = typeof flags.kafka === 'string' ? flags.kafka : merged['KAFKA_BOOTSTRAP_SERVERS'];
      if (!servers) throw invalid('no Kafka servers: pass --kafka host:port, set KAFKA_BOOTSTRAP_SERVERS, or kafka.bootstrap-servers in the config file');
      out.kafka = { ...kafkaOptionsFromEnv({ ...merged, KAFKA_BOOTSTRAP_SERVERS: servers }), bootstrapServers: parseBootstrapServers(servers) };
    } catch (error) {
      throw invalid(`--kafka: ${errorMessage(error)}`);
    }
  }
  if (wantPostgres) {
    const url = typeof flags.postgres === 'string' ? flags.postgres : merged['ARCNET_POSTGRES_URL'];
    if (!url) throw invalid('--postgres: no URL: pass --postgres postgres://…, set ARCNET_POSTGRES_URL, or postgres.url in the config file');
    const schema = flags.postgresSchema ?? merged['ARCNET_POSTGRES_SCHEMA'];
    out.postgres = { url, ...(schema ? { schema } : {}) };
  }
  return out;
}

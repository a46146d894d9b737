/**
 * Settings (src/main/settings.ts): the config file takes every section of seed 000's config.edn, the
 * seed's variables are read, what ArcNet applies is applied, what it does not use yet is accepted and
 * named once, and anything unknown is refused naming the file and the key.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { appliedSettings, loadSettings, notUsedWarning, readConfigFile, resolveEngines } from '../../src/main/settings.ts';

const dir = mkdtempSync(join(tmpdir(), 'arcnet-settings-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const file = (content: unknown): string => {
  const path = join(dir, `config-${files++}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
};

/** Seed 000's config.edn, word for word in JSON (`:info` kept as EDN writes it). */
const SEED_CONFIG = {
  kafka: { 'bootstrap-servers': 'localhost:9092', 'client-id': 'arcnet-aggregator', acks: 'all', retries: 3 },
  xtdb: { 'data-dir': '/var/lib/arcnet/xtdb', 'geozone-id': 'CAISO' },
  scheduler: { 'poll-interval-ms': 100, 'reservation-timeout-ms': 30000, 'max-retries': 3 },
  bridge: { 'globus-endpoint': 'ornl-frontier', 'transfer-timeout-ms': 3600000 },
  observability: { 'prometheus-port': 9090, 'otel-endpoint': 'http://localhost:4317', 'log-level': ':info' },
};

describe('settings', () => {
  it("accepts seed 000's whole config.edn, applies what ArcNet uses, and names the rest in one line", () => {
    const path = file(SEED_CONFIG);
    const settings = loadSettings(path, {});
    expect(appliedSettings(settings)).toEqual({ dataDir: '/var/lib/arcnet/xtdb', geozones: ['CAISO'], reservationTimeoutMs: 30000, maxRetries: 3, prometheusPort: 9090, logLevel: 'info', bridge: { globusEndpoint: 'ornl-frontier', transferTimeoutMs: 3600000 } });
    expect(settings.notUsedYet).toEqual(['kafka.acks', 'kafka.retries', 'scheduler.poll-interval-ms', 'observability.otel-endpoint']);
    const warning = notUsedWarning(settings)!;
    expect(warning.split('\n')).toHaveLength(1);
    expect(warning).toBe(`warning: accepted but not used yet (config file ${path}): kafka.acks, kafka.retries, scheduler.poll-interval-ms, observability.otel-endpoint`);
    // The kafka section is there, so even `up` runs on Kafka, under the file's client id.
    const engines = resolveEngines({}, { required: false }, settings);
    expect(engines.kafka).toMatchObject({ bootstrapServers: ['localhost:9092'], clientId: 'arcnet-aggregator' });
    expect(engines.postgres).toBeUndefined();
  });

  it("reads the seed's variables over the file: XTDB_DATA_DIR, PROMETHEUS_PORT, GEOZONE_ID, LOG_LEVEL; OTEL_EXPORTER_ENDPOINT is read and said to be unused", () => {
    const path = file({ xtdb: { 'data-dir': '/from/file' }, observability: { 'prometheus-port': 9090 } });
    const settings = loadSettings(path, { XTDB_DATA_DIR: '/from/env', PROMETHEUS_PORT: '9464', GEOZONE_ID: 'ERCOT,PJM', LOG_LEVEL: 'debug', OTEL_EXPORTER_ENDPOINT: 'http://collector:4317' });
    expect(appliedSettings(settings)).toEqual({ dataDir: '/from/env', geozones: ['ERCOT', 'PJM'], prometheusPort: 9464, logLevel: 'debug' });
    expect(settings.notUsedYet).toEqual(['OTEL_EXPORTER_ENDPOINT']);
    expect(notUsedWarning(loadSettings(undefined, { XTDB_DATA_DIR: '/x' }))).toBeUndefined();
    // An empty variable counts as unset; a variable with a bad value is refused naming it.
    expect(appliedSettings(loadSettings(path, { XTDB_DATA_DIR: '' })).dataDir).toBe('/from/file');
    expect(() => appliedSettings(loadSettings(undefined, { PROMETHEUS_PORT: 'ninety' }))).toThrow(/PROMETHEUS_PORT \("ninety"\) must be a whole number/);
    expect(() => appliedSettings(loadSettings(undefined, { PROMETHEUS_PORT: '70000' }))).toThrow(/PROMETHEUS_PORT 70000 is not a port/);
  });

  it('keeps the earlier shape (postgres section, top-level geozone-id and log-level) and ARCNET_CONFIG', () => {
    const path = file({ postgres: { url: 'postgres://db/arcnet', schema: 'arc' }, 'geozone-id': 'PJM', 'log-level': 'warn' });
    const settings = loadSettings(undefined, { ARCNET_CONFIG: path });
    expect(appliedSettings(settings)).toEqual({ geozones: ['PJM'], logLevel: 'warn' });
    expect(resolveEngines({}, { required: false }, settings)).toEqual({ postgres: { url: 'postgres://db/arcnet', schema: 'arc' } });
    expect(settings.notUsedYet).toEqual([]);
  });

  it('switches up and coordinator to an external engine only on a flag or a file section, never on a stray variable', () => {
    const env = { KAFKA_BOOTSTRAP_SERVERS: '127.0.0.1:19092', ARCNET_POSTGRES_URL: 'postgres://db/x', KAFKA_CLIENT_ID: 'edge' };
    expect(resolveEngines({}, { required: false }, loadSettings(undefined, env))).toEqual({});
    expect(resolveEngines({ kafka: true }, { required: false }, loadSettings(undefined, env)).kafka).toMatchObject({ bootstrapServers: ['127.0.0.1:19092'], clientId: 'edge' });
    const roles = resolveEngines({}, { required: true }, loadSettings(undefined, env));
    expect(roles.kafka?.clientId).toBe('edge');
    expect(roles.postgres).toEqual({ url: 'postgres://db/x' });
    expect(resolveEngines({ kafka: '10.0.0.1:9092' }, { required: false }, loadSettings(undefined, {})).kafka?.clientId).toBe('arcnet');
  });

  it('refuses unknown keys and sections naming the file and the key, and wrong values naming the key', () => {
    const typo = file({ kafka: { 'bootstrap-server': 'localhost:9092' } });
    expect(() => readConfigFile(typo)).toThrow(new RegExp(`config file ${typo}: unknown setting "kafka.bootstrap-server"`));
    expect(() => readConfigFile(file({ sheduler: { 'max-retries': 3 } }))).toThrow(/unknown setting "sheduler"/);
    expect(() => readConfigFile(file({ 'data-dir': '/x' }))).toThrow(/unknown setting "data-dir" \(known: kafka.bootstrap-servers/);
    expect(() => readConfigFile(file({ scheduler: { 'max-retries': 'three' } }))).toThrow(/"scheduler.max-retries" must be a whole number ≥ 0/);
    expect(() => readConfigFile(file({ scheduler: { 'max-retries': -1 } }))).toThrow(/"scheduler.max-retries" must be a whole number/);
    expect(() => readConfigFile(file({ xtdb: '/var/lib' }))).toThrow(/"xtdb" must be an object/);
    expect(() => readConfigFile(file({ observability: { 'log-level': 'loud' } }))).toThrow(/"observability.log-level" must be one of fatal, error, warn, info, debug, trace, silent/);
    expect(() => readConfigFile(file({ bridge: { 'globus-endpoint': '' } }))).toThrow(/"bridge.globus-endpoint" must be a non-empty string/);
    expect(() => readConfigFile(file('{"kafka": '))).toThrow(/config file .*: /);
    expect(() => readConfigFile(file(['kafka']))).toThrow(/expected a JSON object/);
    // Two keys for one variable must agree.
    expect(() => readConfigFile(file({ 'geozone-id': 'CAISO', xtdb: { 'geozone-id': 'PJM' } }))).toThrow(/"xtdb.geozone-id" and "geozone-id" both set GEOZONE_ID, differently/);
    expect(readConfigFile(file({ 'geozone-id': 'CAISO', xtdb: { 'geozone-id': 'CAISO' } })).values).toEqual({ GEOZONE_ID: 'CAISO' });
  });

  it('accepts counts as JSON numbers or digits', () => {
    expect(readConfigFile(file({ scheduler: { 'reservation-timeout-ms': '15000', 'max-retries': 0 } })).values).toEqual({ ARCNET_RESERVATION_TIMEOUT_MS: '15000', ARCNET_MAX_RETRIES: '0' });
  });

  it("reads the bridge's thresholds as numbers (1e18 too), its scheduler from a fixed list", () => {
    const bridge = { 'hpc-flops-threshold': '1e18', 'hpc-dataset-gb-threshold': 50.5, 'chunk-size-bytes': 65536, 'staging-dir': '/scratch', 'poll-interval-ms': 500, 'hpc-scheduler': 'none' };
    expect(appliedSettings(loadSettings(file({ bridge }), {})).bridge).toEqual({ hpcFlopsThreshold: 1e18, hpcDatasetGbThreshold: 50.5, chunkBytes: 65536, stagingDir: '/scratch', pollIntervalMs: 500, hpcScheduler: 'none' });
    expect(() => readConfigFile(file({ bridge: { 'hpc-flops-threshold': 'lots' } }))).toThrow(/"bridge.hpc-flops-threshold" must be a number ≥ 0/);
    expect(() => appliedSettings(loadSettings(undefined, { ARCNET_HPC_SCHEDULER: 'pbs' }))).toThrow(/ARCNET_HPC_SCHEDULER \/ bridge.hpc-scheduler "pbs" is not one of slurm, none, auto/);
    // The Globus mover's API and staging path, from the file or their variables; the token never from the file.
    const globus = { 'globus-endpoint': 'ornl-frontier', 'globus-api': 'http://127.0.0.1:9/v0.10', 'globus-staging-path': '/' };
    expect(appliedSettings(loadSettings(file({ bridge: globus }), { ARCNET_GLOBUS_STAGING_PATH: '/lustre/arcnet' })).bridge).toEqual({ globusEndpoint: 'ornl-frontier', globusApi: 'http://127.0.0.1:9/v0.10', globusStagingPath: '/lustre/arcnet' });
    expect(() => readConfigFile(file({ bridge: { 'globus-token': 'secret' } }))).toThrow(/unknown setting "bridge.globus-token"/);
  });
});

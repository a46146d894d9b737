/**
 * Transport settings reach what uses them (issue 11, "Transport"): the listener's TLS files, Kafka's
 * security protocol, SASL and CA down to the options @platformatic/kafka is given, PostgreSQL's sslmode
 * and CA down to postgres.js's `ssl`; and every mistake is refused naming the flag or setting.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseClientOptions, kafkaOptionsFromEnv } from '../../src/bus/kafka-config.ts';
import { appliedSettings, loadSettings, resolveEngines } from '../../src/main/settings.ts';
import { postgresSslOption } from '../../src/store/postgres-ssl.ts';
import { clientTlsFrom, serverTlsFrom, serverTlsOptions } from '../../src/core/tls.ts';
import { devCerts, type DevCerts } from '../support/certs.ts';

const dir = mkdtempSync(join(tmpdir(), 'arcnet-transport-'));
let certs: DevCerts;
let files = 0;
const file = (content: unknown): string => {
  const path = join(dir, `config-${files++}.json`);
  writeFileSync(path, JSON.stringify(content));
  return path;
};
beforeAll(() => {
  certs = devCerts(join(dir, 'certs'), ['node-1']);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NAMES = { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' };

describe('the listener and client TLS files', () => {
  it('serves TLS 1.3 only, and asks for client certificates (without refusing the handshake) only with a CA', () => {
    const plain = serverTlsFrom({ cert: certs.server.certPath, key: certs.server.keyPath }, NAMES)!;
    expect(serverTlsOptions(plain)).toEqual({ cert: certs.server.cert, key: certs.server.key, minVersion: 'TLSv1.3' });
    const mutual = serverTlsFrom({ cert: certs.server.certPath, key: certs.server.keyPath, ca: certs.caPath }, NAMES)!;
    expect(serverTlsOptions(mutual)).toEqual({ cert: certs.server.cert, key: certs.server.key, minVersion: 'TLSv1.3', ca: certs.ca, requestCert: true, rejectUnauthorized: false });
    expect(serverTlsFrom({}, NAMES)).toBeUndefined();
  });

  it('names the flag at fault: a certificate without its key, a CA alone, a key of another certificate, a file that is not there or not PEM', () => {
    expect(() => serverTlsFrom({ cert: certs.server.certPath }, NAMES)).toThrow('--tls-cert needs --tls-key');
    expect(() => serverTlsFrom({ key: certs.server.keyPath }, NAMES)).toThrow('--tls-key needs --tls-cert');
    expect(() => serverTlsFrom({ ca: certs.caPath }, NAMES)).toThrow('--tls-ca needs --tls-cert and --tls-key');
    expect(() => serverTlsFrom({ cert: certs.server.certPath, key: certs.client('node-1').keyPath }, NAMES)).toThrow('--tls-key is not the private key of --tls-cert');
    expect(() => serverTlsFrom({ cert: join(dir, 'missing.pem'), key: certs.server.keyPath }, NAMES)).toThrow(/^--tls-cert .*missing\.pem: cannot read the certificate file/);
    const notPem = join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    expect(() => clientTlsFrom({ ca: notPem }, NAMES)).toThrow(/--tls-ca .*not\.pem: not a PEM file/);
    expect(() => clientTlsFrom({ cert: certs.client('node-1').certPath }, NAMES)).toThrow('--tls-cert needs --tls-key');
    expect(clientTlsFrom({ ca: certs.caPath }, NAMES)).toEqual({ ca: certs.ca });
  });

  it('takes the listener files from ARCNET_TLS_* or the tls section of the config file', () => {
    const fromFile = loadSettings(file({ tls: { cert: '/etc/arcnet/server.pem', key: '/etc/arcnet/server.key', ca: '/etc/arcnet/ca.pem' } }), {});
    expect(appliedSettings(fromFile).tls).toEqual({ cert: '/etc/arcnet/server.pem', key: '/etc/arcnet/server.key', ca: '/etc/arcnet/ca.pem' });
    const fromEnv = loadSettings(undefined, { ARCNET_TLS_CERT: '/run/cert.pem', ARCNET_TLS_KEY: '/run/key.pem' });
    expect(appliedSettings(fromEnv).tls).toEqual({ cert: '/run/cert.pem', key: '/run/key.pem' });
    expect(appliedSettings(loadSettings(undefined, {})).tls).toBeUndefined();
  });
});

describe('Kafka security settings', () => {
  it('pass SASL_SSL, the mechanism, the credentials and the CA through to the client options', () => {
    const options = kafkaOptionsFromEnv({
      KAFKA_BOOTSTRAP_SERVERS: 'kafka.example:9094',
      KAFKA_SECURITY_PROTOCOL: 'sasl_ssl',
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      KAFKA_SASL_USERNAME: 'arc',
      KAFKA_SASL_PASSWORD: 's3cret',
      KAFKA_SSL_CA_LOCATION: certs.caPath,
    });
    const client = baseClientOptions(options, 'producer');
    expect(client.tls).toEqual({ ca: certs.ca });
    expect(client.sasl).toEqual({ mechanism: 'SCRAM-SHA-512', username: 'arc', password: 's3cret' });
    expect(client.bootstrapBrokers).toEqual(['kafka.example:9094']);
  });

  it('use TLS with the system CAs for SSL without a CA, and no TLS for PLAINTEXT', () => {
    expect(baseClientOptions(kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k:9093', KAFKA_SECURITY_PROTOCOL: 'SSL' }), 'admin').tls).toEqual({});
    const plaintext = baseClientOptions(kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k:9092' }), 'admin');
    expect(plaintext.tls).toBeUndefined();
    expect(plaintext.sasl).toBeUndefined();
  });

  it('refuse a CA with a protocol without TLS, and a CA file that cannot be read, naming the variable', () => {
    expect(() => kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k:9092', KAFKA_SSL_CA_LOCATION: certs.caPath })).toThrow('KAFKA_SSL_CA_LOCATION is set but KAFKA_SECURITY_PROTOCOL is PLAINTEXT');
    expect(() => kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k:9093', KAFKA_SECURITY_PROTOCOL: 'SSL', KAFKA_SSL_CA_LOCATION: join(dir, 'nope.pem') })).toThrow(/^KAFKA_SSL_CA_LOCATION .*nope\.pem: cannot read/);
  });

  it('are read from the kafka section of the config file too', () => {
    const settings = loadSettings(
      file({ kafka: { 'bootstrap-servers': '127.0.0.1:9094', 'security-protocol': 'SASL_SSL', 'sasl-mechanism': 'PLAIN', 'sasl-username': 'u', 'sasl-password': 'p', 'ssl-ca-location': certs.caPath } }),
      {},
    );
    const { kafka } = resolveEngines({}, { required: false }, settings);
    expect(kafka).toMatchObject({ tls: true, tlsCa: certs.ca, sasl: { mechanism: 'PLAIN', username: 'u', password: 'p' } });
  });
});

describe('PostgreSQL sslmode', () => {
  const url = 'postgres://arc@db.example:5432/arcnet';
  const engines = (env: Record<string, string>, postgres = url) => resolveEngines({ postgres }, { required: false }, loadSettings(undefined, env)).postgres;

  it('maps disable, require and verify-full onto the client, verify-full checking the URL host (an IP included) against the CA', () => {
    expect(postgresSslOption('disable', 'db.example')).toBe(false);
    expect(postgresSslOption('require', 'db.example')).toBe('require');
    expect(postgresSslOption('verify-full', '10.0.0.5', certs.ca)).toEqual({ rejectUnauthorized: true, host: '10.0.0.5', ca: certs.ca });
    expect(postgresSslOption('verify-full', 'db.example')).toEqual({ rejectUnauthorized: true, host: 'db.example' });
  });

  it('reads ARCNET_POSTGRES_SSLMODE / postgres.sslmode and the CA for verify-full', () => {
    expect(engines({ ARCNET_POSTGRES_SSLMODE: 'require' })).toEqual({ url, sslmode: 'require' });
    expect(engines({ ARCNET_POSTGRES_SSLMODE: 'verify-full', ARCNET_POSTGRES_SSL_CA: certs.caPath })).toEqual({ url, sslmode: 'verify-full', sslCa: certs.ca });
    const settings = loadSettings(file({ postgres: { url, sslmode: 'disable' } }), {});
    expect(resolveEngines({}, { required: false }, settings).postgres).toEqual({ url, sslmode: 'disable' });
    expect(engines({})).toEqual({ url });
  });

  it('refuses a mode it does not know, a mode that contradicts the URL, and a CA that would check nothing', () => {
    expect(() => engines({ ARCNET_POSTGRES_SSLMODE: 'prefer' })).toThrow('postgres.sslmode "prefer" is not one of disable, require, verify-full');
    expect(() => engines({ ARCNET_POSTGRES_SSLMODE: 'disable' }, `${url}?sslmode=require`)).toThrow('disable disagrees with sslmode=require in the PostgreSQL URL');
    expect(() => engines({ ARCNET_POSTGRES_SSLMODE: 'require', ARCNET_POSTGRES_SSL_CA: certs.caPath })).toThrow('postgres.ssl-ca is used only with sslmode verify-full');
    // The URL's own sslmode counts: verify-full there takes the CA.
    expect(engines({ ARCNET_POSTGRES_SSL_CA: certs.caPath }, `${url}?sslmode=verify-full`)).toEqual({ url: `${url}?sslmode=verify-full`, sslCa: certs.ca });
  });
});

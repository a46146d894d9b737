/**
 * Kafka's SASL_SSL against the development broker (issue 11, "Transport"). The broker here listens
 * in plaintext, so what can be shown is that the settings really reach the connection: a client told
 * SASL_SSL speaks TLS to it, and fails within its operation bound saying the TLS handshake failed,
 * rather than hanging or being taken for a plaintext client. The option mapping itself is
 * test/unit/transport-settings.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KafkaBus } from '../../src/bus/kafka.ts';
import { kafkaOptionsFromEnv } from '../../src/bus/kafka-config.ts';
import { ArcError } from '../../src/core/errors.ts';
import { needEngines } from '../support/engines.ts';
import { KAFKA_BOOTSTRAP } from '../support/kafka.ts';
import { devCerts, type DevCerts } from '../support/certs.ts';

const engine = needEngines('kafka');

describe.skipIf(!engine.available)(engine.title('Kafka SASL_SSL settings against the plaintext development broker'), () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-kafka-tls-'));
  let certs: DevCerts;
  beforeAll(() => {
    certs = devCerts(dir, []);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('fails a produce within the bound, saying the TLS handshake failed', async () => {
    const options = kafkaOptionsFromEnv({
      KAFKA_BOOTSTRAP_SERVERS: KAFKA_BOOTSTRAP,
      KAFKA_SECURITY_PROTOCOL: 'SASL_SSL',
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      KAFKA_SASL_USERNAME: 'arcnet',
      KAFKA_SASL_PASSWORD: 'not-checked',
      KAFKA_SSL_CA_LOCATION: certs.caPath,
    });
    const bus = new KafkaBus({ ...options, clientId: 'arcnet-test-tls', operationTimeoutMs: 3_000 });
    const started = Date.now();
    const error = await bus.produce('arcnet.tls.check', [{ key: 'k', value: new TextEncoder().encode('x'), headers: {} }]).then(() => undefined, (e: unknown) => e);
    const elapsed = Date.now() - started;
    await bus.close();
    expect(error).toBeInstanceOf(ArcError);
    expect(error).toMatchObject({ code: 'UNAVAILABLE' });
    expect((error as Error).message).toContain(`Kafka at ${KAFKA_BOOTSTRAP} unavailable`);
    expect((error as Error).message).toMatch(/TLS handshake failed/);
    expect(elapsed).toBeLessThan(8_000);
  });
});

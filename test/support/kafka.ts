/**
 * Where the Kafka suites find a broker: KAFKA_BOOTSTRAP_SERVERS, else the one `bash scripts/kafka.sh
 * start` runs. One probe, so every suite that needs Kafka skips (or runs) for the same reason.
 */
import { Admin } from '@platformatic/kafka';
import { errorMessage } from '../../src/core/errors.ts';
import { kafkaErrorDetail } from '../../src/bus/kafka-config.ts';

export const KAFKA_BOOTSTRAP = process.env['KAFKA_BOOTSTRAP_SERVERS'] ?? '127.0.0.1:19092';

export const kafkaServers = (): string[] => KAFKA_BOOTSTRAP.split(',').map((s) => s.trim()).filter((s) => s.length > 0);

export type KafkaProbe = { readonly available: true } | { readonly available: false; readonly reason: string };

/** A metadata request answered within 3 s, listing at least one broker. */
export async function probeKafka(servers: readonly string[] = kafkaServers()): Promise<KafkaProbe> {
  const admin = new Admin({ clientId: 'arcnet-probe', bootstrapBrokers: [...servers], connectTimeout: 3_000, requestTimeout: 3_000, timeout: 3_000, retries: 0 });
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no metadata answer within 3 s')), 3_000);
    });
    const metadata = await Promise.race([admin.metadata({ topics: [] }), timeout]);
    if (metadata.brokers.size === 0) return { available: false, reason: `Kafka at ${servers.join(',')} lists no brokers yet` };
    return { available: true };
  } catch (error) {
    return { available: false, reason: `Kafka at ${servers.join(',')} unreachable (bash scripts/kafka.sh start): ${error instanceof Error ? kafkaErrorDetail(error) : errorMessage(error)}` };
  } finally {
    clearTimeout(timer);
    await admin.close().catch(() => undefined);
  }
}

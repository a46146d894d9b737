/**
 * Where the Kafka suites find a broker: KAFKA_BOOTSTRAP_SERVERS, else the one `bash scripts/kafka.sh
 * start` runs. One probe, so every suite that needs Kafka skips (or runs) for the same reason.
 */
import { randomUUID } from 'node:crypto';
import { Admin } from '@platformatic/kafka';
import type { KafkaBusOptions } from '../../src/bus/kafka.ts';
import type { BusAdapter, ConsumedRecord } from '../../src/bus/ports.ts';
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

/** Quick heartbeats and a short rebalance grace keep group joins and handovers to a fraction of a second. */
export function fastBusOptions(clientId: string, overrides: Partial<KafkaBusOptions> = {}): KafkaBusOptions {
  return {
    bootstrapServers: kafkaServers(),
    clientId,
    heartbeatIntervalMs: 200,
    sessionTimeoutMs: 6_000,
    rebalanceTimeoutMs: 10_000,
    revokeGraceMs: 500,
    retryBaseMs: 5,
    retryCapMs: 50,
    ...overrides,
  };
}

/** Every record of a topic's first `partitions` partitions, read page by page from offset 0. */
export async function readAllRecords(bus: Pick<BusAdapter, 'read'>, topic: string, partitions = 1): Promise<ConsumedRecord[]> {
  const records: ConsumedRecord[] = [];
  for (let p = 0; p < partitions; p++) {
    for (let from = 0; ; ) {
      const page = await bus.read(topic, p, from, 1_000);
      if (page.length === 0) break;
      records.push(...page);
      from = page[page.length - 1]!.offset + 1;
    }
  }
  return records;
}

/**
 * Every topic a suite touches, deleted at its end: a dev broker otherwise collects hundreds of
 * partitions a day and starts slower for it.
 */
export class ScratchTopics {
  private readonly touched = new Set<string>();
  private readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** A fresh topic name under the suite's prefix, remembered for deletion. */
  name(what: string): string {
    return this.track(`${this.prefix}.${what}.${randomUUID().slice(0, 8)}`);
  }

  track(topic: string): string {
    this.touched.add(topic);
    return topic;
  }

  has(topic: string): boolean {
    return this.touched.has(topic);
  }

  async deleteAll(): Promise<void> {
    const admin = new Admin({ clientId: `${this.prefix}-cleanup`, bootstrapBrokers: kafkaServers() });
    try {
      const existing = new Set(await admin.listTopics());
      const topics = [...this.touched].filter((topic) => existing.has(topic));
      if (topics.length > 0) await admin.deleteTopics({ topics });
    } finally {
      await admin.close();
    }
  }
}

/**
 * Moves a consumer group's committed offsets on these topics to their ends, so the group's next
 * member starts with what is produced from now on. For a suite that shares a broker (and partitions:
 * zones hash onto the same ones) with others' traffic: what they left is not its stream. The group
 * must have no live member.
 */
export async function skipGroupToEnd(group: string, topicNames: readonly string[], servers: readonly string[] = kafkaServers()): Promise<void> {
  const admin = new Admin({ clientId: 'arcnet-test-skip', bootstrapBrokers: [...servers] });
  try {
    const metadata = await admin.metadata({ topics: [...topicNames] });
    const ends = await admin.listOffsets({
      topics: topicNames.map((name) => ({ name, partitions: [...(metadata.topics.get(name)?.partitions.keys() ?? [])].map((partitionIndex) => ({ partitionIndex, timestamp: -1n })) })),
    });
    await admin.alterConsumerGroupOffsets({
      groupId: group,
      topics: ends.map((topic) => ({ name: topic.name, partitionOffsets: topic.partitions.map((p) => ({ partition: p.partitionIndex, offset: p.offset })) })),
    });
  } finally {
    await admin.close();
  }
}

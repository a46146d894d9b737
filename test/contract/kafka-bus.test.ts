import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { tracingChannel } from 'node:diagnostics_channel';
import { createServer } from 'node:net';
import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { busContract } from './bus.contract.ts';
import { KafkaBus } from '../../src/bus/kafka.ts';
import { kafkaOptionsFromEnv } from '../../src/bus/kafka-config.ts';
import type { KafkaBusOptions } from '../../src/bus/kafka.ts';
import type { ConsumedRecord, ConsumeOptions, Consumer, OutgoingRecord, TopicConfig } from '../../src/bus/ports.ts';
import { ArcError } from '../../src/core/errors.ts';
import { DEAD_LETTER_RETENTION_MS } from '../../src/contracts/topics.ts';
import { needEngines } from '../support/engines.ts';
import { fastBusOptions, kafkaServers, readAllRecords, ScratchTopics } from '../support/kafka.ts';
import { until } from '../support/until.ts';
import { freePortPair, kafkaInstance, type KafkaInstance } from '../support/kafka-instance.ts';

const kafka = needEngines('kafka');

/** Every topic the suite touches, deleted at the end: a dev broker otherwise collects hundreds of partitions a day and starts slower for it. */
const scratch = new ScratchTopics('kafka.bus');

class TrackingKafkaBus extends KafkaBus {
  override ensureTopics(configs: readonly TopicConfig[]): Promise<void> {
    for (const config of configs) scratch.track(config.topic);
    return super.ensureTopics(configs);
  }

  override produce(topic: string, records: readonly OutgoingRecord[]): Promise<void> {
    scratch.track(topic);
    return super.produce(topic, records);
  }

  override consume(options: ConsumeOptions): Promise<Consumer> {
    for (const topic of options.topics) scratch.track(topic);
    return super.consume(options);
  }

  override partitions(topic: string): Promise<number> {
    scratch.track(topic);
    return super.partitions(topic);
  }
}
const encoder = new TextEncoder();
const text = (record: ConsumedRecord): string => new TextDecoder().decode(record.value);

const testOptions = (overrides: Partial<KafkaBusOptions> = {}): KafkaBusOptions => fastBusOptions('arcnet-test', overrides);
const readAll = readAllRecords;

describe.skipIf(!kafka.available)(kafka.title('Kafka bus'), () => {
  afterAll(() => scratch.deleteAll());

  busContract('kafka', async () => new TrackingKafkaBus(testOptions()));

  describe('Kafka adapter', () => {
    let bus: KafkaBus;
    let admin: Admin;
    beforeAll(() => {
      bus = new TrackingKafkaBus(testOptions());
      admin = new Admin({ clientId: 'arcnet-test-admin', bootstrapBrokers: kafkaServers() });
    });
    afterAll(async () => {
      await bus.close();
      await admin.close();
    });

    async function retentionOf(topic: string): Promise<string | null | undefined> {
      const [described] = await admin.describeConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: ['retention.ms'] }] });
      return described?.configs.find((c) => c.name === 'retention.ms')?.value;
    }

    async function partitionCount(topic: string): Promise<number | undefined> {
      return (await admin.metadata({ topics: [topic], forceUpdate: true })).topics.get(topic)?.partitionsCount;
    }

    it('times every produce and transaction in arcnet_kafka_produce_duration_ms by topic (seed 000), on the registry it is given', async () => {
      const registry = new Registry();
      const timed = new TrackingKafkaBus(testOptions({ registry }));
      const plain = `kafka.timed.${randomUUID().slice(0, 8)}`;
      const inTransaction = `kafka.timed.tx.${randomUUID().slice(0, 8)}`;
      try {
        await timed.produce(plain, [{ key: 'k', value: new TextEncoder().encode('one'), headers: {} }]);
        await timed.produce(plain, [{ key: 'k', value: new TextEncoder().encode('two'), headers: {} }]);
        await timed.ensureTopics([{ topic: inTransaction, partitions: 1, retentionMs: 3_600_000 }]);
        await timed.produceTransactional({ transactionalId: `timed-${randomUUID().slice(0, 8)}`, produce: [{ topic: inTransaction, records: [{ key: 'k', value: new TextEncoder().encode('tx'), headers: {} }] }] });
      } finally {
        await timed.close();
      }
      const { values } = await registry.getSingleMetric('arcnet_kafka_produce_duration_ms')!.get();
      const count = (topic: string): number | undefined => (values as { metricName?: string; labels: Record<string, unknown>; value: number }[]).find((v) => v.metricName === 'arcnet_kafka_produce_duration_ms_count' && v.labels['topic'] === topic)?.value;
      const sum = (topic: string): number | undefined => (values as { metricName?: string; labels: Record<string, unknown>; value: number }[]).find((v) => v.metricName === 'arcnet_kafka_produce_duration_ms_sum' && v.labels['topic'] === topic)?.value;
      expect(count(plain)).toBe(2);
      expect(count(inTransaction)).toBe(1);
      expect(sum(plain)).toBeGreaterThan(0);
    });

    it('creates topics with their partition count and retention.ms, and leaves existing ones as they are', async () => {
      const topic = `kafka.created.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopics([{ topic, partitions: 3, retentionMs: 7_200_000 }]);
      expect(await partitionCount(topic)).toBe(3);
      expect(await retentionOf(topic)).toBe('7200000');
      expect(await bus.partitions(topic)).toBe(3);

      const again = new TrackingKafkaBus(testOptions());
      try {
        await again.ensureTopics([{ topic, partitions: 6, retentionMs: 60_000 }]);
      } finally {
        await again.close();
      }
      expect(await partitionCount(topic)).toBe(3);
      expect(await retentionOf(topic)).toBe('7200000');
    });

    it('creates a topic on first produce, dead-letter topics with one partition and their own retention', async () => {
      const dead = `arc.dead-letter.kafka.${randomUUID().slice(0, 8)}`;
      await bus.produce(dead, [{ key: 'k', value: encoder.encode('x'), headers: {} }]);
      expect(await partitionCount(dead)).toBe(1);
      expect(await retentionOf(dead)).toBe(String(DEAD_LETTER_RETENTION_MS));
      const plain = `kafka.ondemand.${randomUUID().slice(0, 8)}`;
      await bus.produce(plain, [{ key: 'k', value: encoder.encode('x'), headers: {} }]);
      expect(await partitionCount(plain)).toBe(4);
    });

    it('carries the key, the value bytes and UTF-8 string headers both ways, with the broker timestamp', async () => {
      const topic = `kafka.headers.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopics([{ topic, partitions: 2, retentionMs: 3_600_000 }]);
      const headers = { 'arc-schema': 'InferenceRequest', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'x-unicode': 'Zürich ✓ 東京', 'x-empty': '' };
      const value = new Uint8Array([0, 1, 2, 253, 254, 255]);
      const before = Date.now();
      await bus.produce(topic, [{ key: 'nodé-1', value, headers }]);
      const got: ConsumedRecord[] = [];
      const consumer = await bus.consume({ group: `g-${randomUUID()}`, topics: [topic], handler: (r) => void got.push(r) });
      await until(() => got.length === 1, 'the record', 15_000);
      await consumer.close();
      const [record] = got;
      expect(record!.key).toBe('nodé-1');
      expect(record!.headers).toEqual(headers);
      expect([...record!.value]).toEqual([...value]);
      expect(record!.timestamp).toBeGreaterThanOrEqual(before - 1_000);
      expect(record!.timestamp).toBeLessThanOrEqual(Date.now() + 1_000);
      const [read] = await bus.read(topic, record!.partition, record!.offset, 10);
      expect(read).toEqual({ ...record, value: expect.anything() });
      expect([...read!.value]).toEqual([...value]);
    });

    it('partitions keys as Java clients do (murmur2), so one key always lands in one partition', async () => {
      const topic = `kafka.keys.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopics([{ topic, partitions: 12, retentionMs: 3_600_000 }]);
      // Computed with kafka-clients' Utils.toPositive(Utils.murmur2(utf8(key))) % 12; the library's default partitioner puts CAISO in 10 and node-1 in 6.
      const expected: Record<string, number> = { CAISO: 2, ERCOT: 2, 'node-1': 10 };
      for (const key of Object.keys(expected)) await bus.produce(topic, [{ key, value: encoder.encode(key), headers: {} }]);
      const found: Record<string, number> = {};
      for (let p = 0; p < 12; p++) for (const r of await bus.read(topic, p, 0, 10)) found[r.key] = p;
      expect(found).toEqual(expected);
    });

    it('reads a partition from an offset, up to a limit, and nothing from a topic that does not exist', async () => {
      const topic = `kafka.read.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopics([{ topic, partitions: 1, retentionMs: 3_600_000 }]);
      await bus.produce(topic, Array.from({ length: 30 }, (_, i) => ({ key: 'k', value: encoder.encode(String(i)), headers: {} })));
      const page = await bus.read(topic, 0, 10, 5);
      expect(page.map((r) => [r.offset, text(r)])).toEqual([10, 11, 12, 13, 14].map((o) => [o, String(o)]));
      expect((await bus.read(topic, 0, 25, 100)).map((r) => r.offset)).toEqual([25, 26, 27, 28, 29]);
      expect(await bus.read(topic, 0, 30, 10)).toEqual([]);
      expect(await bus.read(topic, 7, 0, 10)).toEqual([]);
      expect(await bus.read(`kafka.missing.${randomUUID().slice(0, 8)}`, 0, 0, 10)).toEqual([]);
    });

    it('moves a closed member\'s partitions to the other member, which resumes at the committed offsets: nothing lost, nothing twice', async () => {
      const topic = `kafka.handover.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopics([{ topic, partitions: 4, retentionMs: 3_600_000 }]);
      const group = `g-${randomUUID()}`;
      const seen = new Map<string, string[]>();
      const handler = (member: string) => (r: ConsumedRecord): void => {
        const id = `${r.partition}@${r.offset}`;
        seen.set(id, [...(seen.get(id) ?? []), member]);
      };
      const produce = (from: number, count: number): Promise<void> =>
        bus.produce(topic, Array.from({ length: count }, (_, i) => ({ key: `k${from + i}`, value: encoder.encode(String(from + i)), headers: {} })));
      const a = await bus.consume({ group, topics: [topic], handler: handler('a') });
      const b = await bus.consume({ group, topics: [topic], handler: handler('b') });
      await produce(0, 200);
      await until(() => seen.size === 200, '200 records over both members', 15_000);
      const byA = [...seen.values()].filter((m) => m.includes('a')).length;
      expect(byA).toBeGreaterThan(0);
      expect(byA).toBeLessThan(200);
      await a.close();
      await produce(200, 200);
      await until(() => seen.size === 400, 'the rest through the remaining member', 20_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const twice = [...seen].filter(([, members]) => members.length > 1);
      expect(twice).toEqual([]);
      // After the handover everything new went to b, and b's commits cover every partition to its end.
      let committed = 0;
      for (let p = 0; p < 4; p++) committed += await bus.committed(group, topic, p);
      expect(committed).toBe(400);
      await b.close();
    });

    it('commits a consumed offset and the records it produced in one transaction', async () => {
      const input = `kafka.tx-in.${randomUUID().slice(0, 8)}`;
      const output = `kafka.tx-out.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopics([
        { topic: input, partitions: 1, retentionMs: 3_600_000 },
        { topic: output, partitions: 1, retentionMs: 3_600_000 },
      ]);
      const group = `g-${randomUUID()}`;
      await bus.produce(input, [{ key: 'job-1', value: encoder.encode('in'), headers: {} }]);
      const errors: unknown[] = [];
      let done = 0;
      // The handler stays busy after its transaction, so the adapter's own commit (after the handler
      // resolves) cannot be what moves the group's offset below.
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      const consumer = await bus.consume({
        group,
        topics: [input],
        handler: async (record) => {
          try {
            await bus.produceTransactional({
              transactionalId: `tx-${group}`,
              produce: [{ topic: output, records: [{ key: record.key, value: encoder.encode(`out:${text(record)}`), headers: { from: `${record.topic}@${record.offset}` } }] }],
              consumed: { group, record },
            });
            done++;
          } catch (error) {
            errors.push(error);
            throw error;
          }
          await gate;
        },
      });
      await until(() => done === 1 || errors.length > 0, 'the transaction', 20_000);
      expect(errors).toEqual([]);
      // The commit markers are written just after the commit returns; read_committed readers see the records then.
      const out = await until(async () => {
        const records = await bus.read(output, 0, 0, 10);
        return records.length > 0 && records;
      }, 'the committed output', 10_000);
      expect(out.map((r) => [r.key, text(r), r.headers['from']])).toEqual([['job-1', 'out:in', `${input}@0`]]);
      await until(async () => (await bus.committed(group, input, 0)) === 1, 'the offset committed with the transaction', 10_000);
      release();
      await consumer.close();

      // A record this process does not own (any more) cannot have its offset committed in a transaction.
      const stale: ConsumedRecord = { topic: input, partition: 0, offset: 0, timestamp: Date.now(), key: 'job-1', value: encoder.encode('in'), headers: {} };
      await expect(bus.produceTransactional({ transactionalId: `tx-${group}`, produce: [], consumed: { group, record: stale } })).rejects.toMatchObject({ code: 'CONFLICT' });
    });

    it('processes every record exactly once while a second member joins and leaves a transactional group mid-stream, partitions moving and coming back', async () => {
      const input = `kafka.rejoin-in.${randomUUID().slice(0, 8)}`;
      const output = `kafka.rejoin-out.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopics([
        { topic: input, partitions: 2, retentionMs: 3_600_000 },
        { topic: output, partitions: 1, retentionMs: 3_600_000 },
      ]);
      const group = `g-${randomUUID()}`;
      const transactionalId = `rejoin-${randomUUID().slice(0, 8)}`;
      const afterCommit = new Map<string, number>();
      const byMember = new Map<string, number>();
      // Two processes: each its own bus, so each has its own producers for the shared per-partition ids.
      const busA = new TrackingKafkaBus(testOptions());
      const busB = new TrackingKafkaBus(testOptions());
      const step = (member: string, on: KafkaBus): Promise<Consumer> =>
        on.consumeTransactional({
          group,
          topics: [input],
          transactionalId,
          maxBatch: 10,
          handler: async (records, out) => {
            // Some work per batch, so fetched records wait in the member's queue when a rebalance comes.
            await new Promise((resolve) => setTimeout(resolve, 15));
            out.produce(output, records.map((r) => ({ key: r.key, value: encoder.encode(`${r.partition}@${r.offset}`), headers: {} })));
            out.afterCommit(() => {
              byMember.set(member, (byMember.get(member) ?? 0) + records.length);
              for (const r of records) afterCommit.set(`${r.partition}@${r.offset}`, (afterCommit.get(`${r.partition}@${r.offset}`) ?? 0) + 1);
            });
          },
        });
      let producing = true;
      let produced = 0;
      const producer = (async () => {
        while (producing) {
          const from = produced;
          await bus.produce(input, Array.from({ length: 4 }, (_, i) => ({ key: `k${from + i}`, value: encoder.encode(String(from + i)), headers: {} })));
          produced += 4;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      })();
      const a = await step('a', busA);
      try {
        await until(() => afterCommit.size >= 100, 'records flowing through the first member', 30_000);
        for (let round = 0; round < 3; round++) {
          // A second member joins: one partition moves to it, the first member keeps the other through the rebalance.
          const before = byMember.get('b') ?? 0;
          const b = await step('b', busB);
          await until(() => (byMember.get('b') ?? 0) >= before + 20, `the second member handling records (round ${round + 1})`, 30_000);
          const sizeBefore = afterCommit.size;
          await until(() => afterCommit.size >= sizeBefore + 40, `records flowing with both members (round ${round + 1})`, 30_000);
          // It leaves: its partition comes back to the first member, which owned it before.
          await b.close();
          const sizeAfter = afterCommit.size;
          await until(() => afterCommit.size >= sizeAfter + 40, `records flowing after the second member left (round ${round + 1})`, 30_000);
        }
      } finally {
        producing = false;
        await producer;
      }
      const inputs = await readAll(bus, input, 2);
      expect(inputs.length).toBe(produced);
      const expected = new Set(inputs.map((r) => `${r.partition}@${r.offset}`));
      // The group's offsets reach the end of the input once the first member is through it.
      const ends = [0, 1].map((p) => Math.max(0, ...inputs.filter((r) => r.partition === p).map((r) => r.offset + 1)));
      await until(async () => (await bus.committed(group, input, 0)) >= ends[0]! && (await bus.committed(group, input, 1)) >= ends[1]!, 'the group offsets at the end of the input', 60_000, { intervalMs: 200 });
      await a.close();
      const outputs = new Map<string, number>();
      for (const r of await readAll(bus, output, 1)) outputs.set(text(r), (outputs.get(text(r)) ?? 0) + 1);
      const missing = [...expected].filter((id) => !outputs.has(id));
      expect(missing.length, `input records never processed (a gap), e.g. ${missing.slice(0, 10).join(', ')}`).toBe(0);
      expect([...outputs].filter(([, n]) => n > 1), 'input records processed twice').toEqual([]);
      expect([...outputs.keys()].filter((id) => !expected.has(id)), 'output without an input record').toEqual([]);
      expect([...afterCommit].filter(([, n]) => n > 1), 'after-commit tasks run twice').toEqual([]);
      expect((byMember.get('b') ?? 0)).toBeGreaterThan(0);
      console.log(`rejoin (bus contract): ${inputs.length} input records, ${byMember.get('a') ?? 0} by the first member, ${byMember.get('b') ?? 0} by the second, all processed once`);
      await Promise.all([busA.close(), busB.close()]);
    }, 240_000);

    it('fences the previous owner again when a process takes back a partition it owned before: its first transaction is not refused as fenced', async () => {
      const input = `kafka.regain-in.${randomUUID().slice(0, 8)}`;
      const output = `kafka.regain-out.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopics([
        { topic: input, partitions: 1, retentionMs: 3_600_000 },
        { topic: output, partitions: 1, retentionMs: 3_600_000 },
      ]);
      const group = `g-${randomUUID()}`;
      const transactionalId = `regain-${randomUUID().slice(0, 8)}`;
      const warnings: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
      const busA = new TrackingKafkaBus(testOptions({ logger }));
      const busB = new TrackingKafkaBus(testOptions());
      const handled = new Map<string, string[]>();
      const step = (member: string, on: KafkaBus): Promise<Consumer> =>
        on.consumeTransactional({
          group,
          topics: [input],
          transactionalId,
          handler: async (records, out) => {
            out.produce(output, records.map((r) => ({ key: r.key, value: encoder.encode(`${r.offset}`), headers: {} })));
            out.afterCommit(() => {
              for (const r of records) handled.set(`${r.offset}`, [...(handled.get(`${r.offset}`) ?? []), member]);
            });
          },
        });
      let sent = 0;
      const produce = async (count: number): Promise<void> => {
        await bus.produce(input, Array.from({ length: count }, (_, i) => ({ key: `k${sent + i}`, value: encoder.encode(String(sent + i)), headers: {} })));
        sent += count;
      };
      const a1 = await step('a1', busA);
      await produce(20);
      await until(() => handled.size === sent, 'the first owner handling records', 20_000);
      // The partition moves to another process, whose transactions fence this process's producer of the id...
      const b = await step('b', busB);
      await a1.close();
      await produce(20);
      await until(() => handled.size === sent, 'the other process handling records', 30_000);
      // ...and comes back: this process must initialise the id again rather than reuse the fenced producer.
      const a2 = await step('a2', busA);
      await b.close();
      await produce(20);
      await until(() => handled.size === sent, 'the regaining process handling records', 30_000);
      await a2.close();
      expect([...handled].filter(([, members]) => members.length > 1), 'records handled twice').toEqual([]);
      expect(handled.get('0')).toEqual(['a1']);
      expect(handled.get('39')).toEqual(['b']);
      expect(handled.get(String(sent - 1))).toEqual(['a2']);
      expect(warnings.filter((line) => line.includes('not committed') || line.includes('fenced')), 'transactions of the regaining process refused').toEqual([]);
      await Promise.all([busA.close(), busB.close()]);
    }, 120_000);
  });
});

describe.skipIf(!kafka.available)(kafka.title('Kafka bus across a broker restart'), () => {
  // A broker of its own: the suites sharing the default one must not see it go away.
  let broker: KafkaInstance;
  beforeAll(async () => {
    const port = await freePortPair();
    broker = kafkaInstance(`bus-restart-${port}`, port);
    await broker.clean();
    await broker.start();
  }, 120_000);
  afterAll(async () => {
    await broker?.remove();
  }, 120_000);

  it('resumes transactional consumption after the broker stops and starts: every record committed exactly once, nothing produced twice', async () => {
    const bus = new KafkaBus(testOptions({ bootstrapServers: [...broker.servers], operationTimeoutMs: 20_000 }));
    const input = 'restart.in';
    const output = 'restart.out';
    await bus.ensureTopics([
      { topic: input, partitions: 3, retentionMs: 3_600_000 },
      { topic: output, partitions: 1, retentionMs: 3_600_000 },
    ]);
    const committedTimes = new Map<string, number>();
    let batches = 0;
    const consumer = await bus.consumeTransactional({
      group: 'restart-group',
      topics: [input],
      transactionalId: 'restart-step',
      maxBatch: 20,
      handler: async (records, out) => {
        batches++;
        // A little work per batch, so the broker often goes away with a transaction under way.
        await new Promise((resolve) => setTimeout(resolve, 5));
        out.produce(output, records.map((r) => ({ key: r.key, value: encoder.encode(`${r.partition}@${r.offset}`), headers: {} })));
        out.afterCommit(() => {
          for (const r of records) committedTimes.set(`${r.partition}@${r.offset}`, (committedTimes.get(`${r.partition}@${r.offset}`) ?? 0) + 1);
        });
      },
    });

    // Records keep coming before, during and after the outage. A produce that gives up says whether
    // its record may have been appended all the same.
    const sent: string[] = [];
    const maybe: string[] = [];
    const notSent: string[] = [];
    let producing = true;
    const producer = (async () => {
      for (let i = 0; producing; i++) {
        const key = `r${i}`;
        try {
          await bus.produce(input, [{ key, value: encoder.encode(key), headers: {} }]);
          sent.push(key);
        } catch (error) {
          ((error as { outcomeUnknown?: boolean }).outcomeUnknown === true ? maybe : notSent).push(key);
        }
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
    })();
    await until(() => committedTimes.size >= 50, 'records flowing before the outage', 30_000);
    await broker.stop();
    const stoppedWith = { sent: sent.length, committed: committedTimes.size };
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await broker.start();
    const sentBeforeRestart = sent.length;
    await until(() => sent.length >= sentBeforeRestart + 100, 'records produced after the restart', 60_000);
    producing = false;
    await producer;

    // Every record of the input, by where it is: what the step must have processed exactly once.
    const inputs = await readAll(bus, input, 3);
    const inputKeys = new Set(inputs.map((r) => r.key));
    const expected = new Set(inputs.map((r) => `${r.partition}@${r.offset}`));
    let outputs = new Map<string, number>();
    await until(
      async () => {
        outputs = new Map();
        for (const r of await readAll(bus, output, 1)) outputs.set(text(r), (outputs.get(text(r)) ?? 0) + 1);
        return [...expected].every((id) => outputs.has(id));
      },
      'every input record to come out of the transactional step',
      120_000,
      { intervalMs: 500 },
    ).catch((error: unknown) => {
      const missing = [...expected].filter((id) => !outputs.has(id));
      throw new Error(`${(error as Error).message}: ${missing.length} of ${expected.size} missing (stopped with ${JSON.stringify(stoppedWith)}, ${batches} batches), e.g. ${missing.slice(0, 10).join(', ')}`);
    });
    await consumer.close();

    expect(expected.size).toBeGreaterThan(stoppedWith.committed + 100);
    expect([...outputs].filter(([, n]) => n > 1), 'input records processed twice').toEqual([]);
    expect([...outputs.keys()].filter((id) => !expected.has(id)), 'output without an input record').toEqual([]);
    expect([...committedTimes].filter(([, n]) => n > 1), 'after-commit tasks run twice').toEqual([]);
    // A produce that resolved is in the input; one that said nothing was appended is not.
    expect(sent.filter((key) => !inputKeys.has(key)), 'acknowledged records missing from the input').toEqual([]);
    expect(notSent.filter((key) => inputKeys.has(key)), 'records appended although their produce said they were not').toEqual([]);
    // And the group's offsets cover the whole input.
    let committed = 0;
    for (let p = 0; p < 3; p++) committed += await bus.committed('restart-group', input, p);
    expect(committed).toBe(inputs.length);
    console.log(`broker restart (bus contract): ${inputs.length} input records (${sent.length} acknowledged, ${maybe.length} outcome unknown, ${notSent.length} refused), ${batches} batches, all processed once`);
    await bus.close();
  }, 300_000);

  it('does not commit twice a transaction whose commit the broker took but never answered', async () => {
    const bus = new KafkaBus(testOptions({ bootstrapServers: [...broker.servers], operationTimeoutMs: 2_000 }));
    const suffix = randomUUID().slice(0, 8);
    const input = `restart.lost-answer.${suffix}`;
    const output = `${input}.out`;
    const group = `g-${suffix}`;
    const pid = await broker.pid();
    // The broker freezes the moment the first commit (EndTxn) starts: the request reaches its socket,
    // the answer never comes, the adapter gives the transaction up. Thawed, the broker commits it.
    let frozenAt: number | undefined;
    const transactions = tracingChannel<unknown, { operation?: string }>('plt:kafka:producer:transactions');
    const onStart = (context: { operation?: string }): void => {
      if (context.operation !== 'commit' || frozenAt !== undefined) return;
      frozenAt = Date.now();
      process.kill(pid, 'SIGSTOP');
    };
    const hooks = { start: onStart, end: () => undefined, asyncStart: () => undefined, asyncEnd: () => undefined, error: () => undefined };
    transactions.subscribe(hooks);
    let calls = 0;
    let consumer: Consumer | undefined;
    try {
      await bus.ensureTopics([
        { topic: input, partitions: 1, retentionMs: 3_600_000 },
        { topic: output, partitions: 1, retentionMs: 3_600_000 },
      ]);
      await bus.produce(input, [{ key: 'once', value: encoder.encode('once'), headers: {} }]);
      consumer = await bus.consumeTransactional({
        group,
        topics: [input],
        transactionalId: `lost-answer-${suffix}`,
        handler: async (records, out) => {
          calls++;
          out.produce(output, records.map((r) => ({ key: r.key, value: encoder.encode(`${r.partition}@${r.offset}`), headers: {} })));
        },
      });
      await until(() => frozenAt !== undefined, 'the first commit', 30_000);
      // Past the adapter's 2 s bound, short of the group's 6 s session timeout.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
    } finally {
      transactions.unsubscribe(hooks);
      await broker.resume();
    }
    await until(async () => (await bus.committed(group, input, 0)) === 1, 'the input record committed', 60_000);
    // Time for a wrongly retried batch to commit a second copy.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const produced = (await bus.read(output, 0, 0, 10)).map(text);
    await consumer?.close();
    await bus.close();
    expect(produced).toEqual(['0@0']);
    console.log(`lost commit answer: handler called ${calls} time(s), output ${JSON.stringify(produced)}`);
  }, 120_000);

  it('says the outcome is unknown when it gives up on a send the broker may still take, as a hung broker then does', async () => {
    const bus = new KafkaBus(testOptions({ bootstrapServers: [...broker.servers], operationTimeoutMs: 2_000 }));
    const topic = `restart.hung.${randomUUID().slice(0, 8)}`;
    try {
      await bus.ensureTopics([{ topic, partitions: 1, retentionMs: 3_600_000 }]);
      await bus.produce(topic, [{ key: 'before', value: encoder.encode('before'), headers: {} }]);
      // Frozen, the broker keeps its connections and answers nothing: the send is written and waits.
      await broker.pause();
      let error: unknown;
      try {
        error = await bus.produce(topic, [{ key: 'in-doubt', value: encoder.encode('in-doubt'), headers: {} }]).then(() => undefined, (e: unknown) => e);
      } finally {
        await broker.resume();
      }
      expect(error).toBeInstanceOf(ArcError);
      expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true, outcomeUnknown: true });
      expect((error as Error).message).toMatch(/may have been appended/);
      // And so it was: the library's client went on with the send once the broker answered.
      const landed = await until(async () => {
        const records = await bus.read(topic, 0, 0, 10);
        return records.some((r) => r.key === 'in-doubt') && records;
      }, 'the send given up on to land', 30_000);
      expect(landed.map((r) => r.key)).toEqual(['before', 'in-doubt']);
    } finally {
      await bus.close();
    }
  }, 120_000);
});

describe('Kafka bus without a broker', () => {
  let port: number;
  beforeAll(async () => {
    // A port nothing listens on: bound once by us, then released.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('rejects produce with a retryable UNAVAILABLE naming the bootstrap servers, within the bound', async () => {
    const servers = [`127.0.0.1:${port}`];
    const bus = new KafkaBus({ bootstrapServers: servers, clientId: 'arcnet-test', operationTimeoutMs: 1_500 });
    const started = Date.now();
    const error = await bus.produce('kafka.down', [{ key: 'k', value: encoder.encode('x'), headers: {} }]).then(() => undefined, (e: unknown) => e);
    const elapsed = Date.now() - started;
    await bus.close();
    expect(error).toBeInstanceOf(ArcError);
    expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    // No connection was ever made: nothing can have been appended, and the error does not say it may have been.
    expect((error as { outcomeUnknown?: boolean }).outcomeUnknown).toBeUndefined();
    expect((error as Error).message).toContain(`127.0.0.1:${port}`);
    expect((error as Error).message).toMatch(/ECONNREFUSED|failed/);
    expect(elapsed).toBeGreaterThanOrEqual(500);
    expect(elapsed).toBeLessThan(4_000);
  });

  it('starts a consumer anyway and keeps retrying in the background until closed', async () => {
    const bus = new KafkaBus({ bootstrapServers: [`127.0.0.1:${port}`], clientId: 'arcnet-test', operationTimeoutMs: 500 });
    const started = Date.now();
    const consumer = await bus.consume({ group: 'g', topics: ['kafka.down'], handler: () => undefined });
    expect(Date.now() - started).toBeLessThan(3_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await consumer.close();
    await bus.close();
  });
});

describe('kafkaOptionsFromEnv', () => {
  it('reads the seed\'s variables', () => {
    expect(kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'a:9092, b:9093' })).toEqual({ bootstrapServers: ['a:9092', 'b:9093'], clientId: 'arcnet', tls: false });
    expect(
      kafkaOptionsFromEnv({
        KAFKA_BOOTSTRAP_SERVERS: 'kafka.example:9094',
        KAFKA_SECURITY_PROTOCOL: 'SASL_SSL',
        KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
        KAFKA_SASL_USERNAME: 'arc',
        KAFKA_SASL_PASSWORD: 's3cret',
      }),
    ).toEqual({ bootstrapServers: ['kafka.example:9094'], clientId: 'arcnet', tls: true, sasl: { mechanism: 'SCRAM-SHA-512', username: 'arc', password: 's3cret' } });
    expect(kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k:9093', KAFKA_SECURITY_PROTOCOL: 'SSL' }).tls).toBe(true);
  });

  it('names the variable at fault', () => {
    expect(() => kafkaOptionsFromEnv({})).toThrow(/KAFKA_BOOTSTRAP_SERVERS is not set/);
    expect(() => kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'nohost' })).toThrow(/"nohost" is not host:port/);
    expect(() => kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k:1', KAFKA_SECURITY_PROTOCOL: 'TLS' })).toThrow(/KAFKA_SECURITY_PROTOCOL "TLS"/);
    expect(() => kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k:1', KAFKA_SECURITY_PROTOCOL: 'SASL_PLAINTEXT' })).toThrow(/KAFKA_SASL_MECHANISM/);
    expect(() => kafkaOptionsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k:1', KAFKA_SECURITY_PROTOCOL: 'SASL_PLAINTEXT', KAFKA_SASL_MECHANISM: 'PLAIN' })).toThrow(/KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD/);
  });
});

/**
 * Produce requests within the broker's limits (issue 15): the size count held against the library's
 * own record batch encoder, the cutting of a backlog into sends, and on the real broker a backlog far
 * larger than one request (one call, and many calls at once; plain and in a transaction) consumed back
 * whole, once each and in order per key, and a record too large for any request refused clearly.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { tracingChannel } from 'node:diagnostics_channel';
import fc from 'fast-check';
import { Admin, createRecordsBatch } from '@platformatic/kafka';
import { KafkaBus } from '../../src/bus/kafka.ts';
import type { KafkaBusOptions } from '../../src/bus/kafka.ts';
import { DEFAULT_MAX_REQUEST_BYTES, RECORD_BATCH_OVERHEAD, recordBytes, splitBySize, varintBytes, type SizedMessage } from '../../src/bus/kafka-batching.ts';
import type { ConsumedRecord, OutgoingRecord } from '../../src/bus/ports.ts';
import { ProduceOutcomeUnknownError } from '../../src/bus/kafka-config.ts';
import { ArcError } from '../../src/core/errors.ts';
import { topics } from '../../src/contracts/topics.ts';
import { needEngines } from '../support/engines.ts';
import { fastBusOptions, kafkaServers, ScratchTopics } from '../support/kafka.ts';
import { until } from '../support/until.ts';
import { freePortPair, kafkaInstance, type KafkaInstance } from '../support/kafka-instance.ts';

const kafka = needEngines('kafka');
const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8');

/** The bytes the library writes for these messages as one partition's batch, as its Produce request does. */
function libraryBatchBytes(messages: readonly SizedMessage[]): number {
  const encoded = messages.map((m) => ({
    topic: m.topic,
    partition: 0,
    key: utf8(m.key),
    value: Buffer.from(m.value),
    headers: new Map(Object.entries(m.headers).map(([k, v]) => [utf8(k), utf8(v)])),
  }));
  return createRecordsBatch(encoded, { producerId: 7n, producerEpoch: 1, transactionalId: 'tx' }).length;
}

const batchBytes = (messages: readonly SizedMessage[]): number => RECORD_BATCH_OVERHEAD + messages.reduce((sum, m, i) => sum + recordBytes(m, i), 0);

const arbitraryMessage = (topics: readonly string[]): fc.Arbitrary<SizedMessage> =>
  fc.record({
    topic: fc.constantFrom(...topics),
    key: fc.string({ unit: 'binary', maxLength: 40 }),
    value: fc.uint8Array({ maxLength: 3_000 }),
    headers: fc.dictionary(fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 80 }), { maxKeys: 5 }),
  });

describe('Kafka produce sizes (kafka-batching.ts)', () => {
  it('counts a batch exactly as the library encodes it, keys and headers in UTF-8 included', () => {
    fc.assert(
      fc.property(fc.array(arbitraryMessage(['t']), { minLength: 1, maxLength: 200 }), (messages) => {
        expect(batchBytes(messages)).toBe(libraryBatchBytes(messages));
      }),
      { numRuns: 300 },
    );
    // Offset deltas past one varint byte (64 and up) and past two (8,192 and up).
    const many = Array.from({ length: 9_000 }, (_, i): SizedMessage => ({ topic: 't', key: `k${i % 7}`, value: new Uint8Array(3), headers: {} }));
    expect(batchBytes(many)).toBe(libraryBatchBytes(many));
    expect([0, 63, 64, 8_191, 8_192, 1_048_575, 1_048_576].map(varintBytes)).toEqual([1, 1, 2, 2, 3, 3, 4]);
  });

  it('cuts messages, in order, into sends under the smallest limit of their topics, each as full as the next message allows', () => {
    const limits: Record<string, number> = { small: 4_000, large: 20_000 };
    fc.assert(
      fc.property(fc.array(arbitraryMessage(['small', 'large']).filter((m) => RECORD_BATCH_OVERHEAD + recordBytes(m, 0) <= 4_000), { maxLength: 300 }), (messages) => {
        const sends = splitBySize(messages, (topic) => limits[topic]!);
        expect(sends.flat()).toEqual(messages);
        for (const [i, send] of sends.entries()) {
          expect(send.length).toBeGreaterThan(0);
          const limit = Math.min(...send.map((m) => limits[m.topic]!));
          expect(libraryBatchBytes(send)).toBeLessThanOrEqual(limit);
          const following = sends[i + 1]?.[0];
          if (following) {
            const grown = [...send, following];
            expect(batchBytes(grown)).toBeGreaterThan(Math.min(limit, limits[following.topic]!));
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('refuses a record that cannot fit alone with TOO_LARGE (not retryable), naming the topic, the key, its size and the limit', () => {
    const small = (key: string): SizedMessage => ({ topic: 'arc.t', key, value: new Uint8Array(10), headers: {} });
    const big: SizedMessage = { topic: 'arc.t', key: 'huge', value: new Uint8Array(5_000), headers: { h: 'v' } };
    let error: unknown;
    try {
      splitBySize([small('a'), big, small('b')], () => 4_096);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ArcError);
    expect(error).toMatchObject({ code: 'TOO_LARGE', retryable: false });
    const bytes = RECORD_BATCH_OVERHEAD + recordBytes(big, 0);
    expect((error as Error).message).toBe(`record with key "huge" for arc.t is ${bytes} bytes encoded as a batch of its own, over the 4096-byte limit of one produce request to that topic (record 2 of 3; none of them was sent)`);
    // Exactly at the limit still fits.
    expect(splitBySize([big], () => bytes)).toEqual([[big]]);
    expect(DEFAULT_MAX_REQUEST_BYTES).toBeLessThan(1_048_588);
  });
});

/** Every topic the suite touches, deleted at the end. */
const scratch = new ScratchTopics('kafka.batching');
const topicName = (what: string): string => scratch.name(what);
const testOptions = (overrides: Partial<KafkaBusOptions> = {}): KafkaBusOptions => fastBusOptions('arcnet-test-batching', overrides);

/** About 1 KiB: the sequence number first, so the bytes say which record they are. */
function record(key: string, seq: number, size = 1_000): OutgoingRecord {
  const value = Buffer.alloc(size, 0x61);
  value.write(`${key}#${seq}:`, 0, 'utf8');
  return { key, value, headers: { 'arc-seq': String(seq), 'arc-key': key } };
}

/** Sends the library made (its send operation's tracing channel), with the size of each as counted here. */
function watchSends(): { sends: { records: number; bytes: number }[]; stop: () => void } {
  const channel = tracingChannel<unknown, { operation?: string; options?: { messages?: { topic: string; key: string; value: Buffer; headers: Record<string, string> }[] } }>('plt:kafka:producer:sends');
  const sends: { records: number; bytes: number }[] = [];
  const start = (context: { options?: { messages?: { topic: string; key: string; value: Buffer; headers: Record<string, string> }[] } }): void => {
    const messages = context.options?.messages ?? [];
    if (messages.some((m) => scratch.has(m.topic))) sends.push({ records: messages.length, bytes: batchBytes(messages) });
  };
  const hooks = { start, end: () => undefined, asyncStart: () => undefined, asyncEnd: () => undefined, error: () => undefined };
  channel.subscribe(hooks);
  return { sends, stop: () => channel.unsubscribe(hooks) };
}

/** Each (key, seq) the records carry exactly once, and per key in increasing seq: what a produce promised. */
function checkOncePerKeyInOrder(records: readonly ConsumedRecord[], expected: ReadonlyMap<string, number>): void {
  const byKey = new Map<string, number[]>();
  for (const r of records) {
    const seq = Number(r.headers['arc-seq']);
    expect(Buffer.from(r.value).toString('utf8', 0, `${r.key}#${seq}:`.length)).toBe(`${r.key}#${seq}:`);
    byKey.set(r.key, [...(byKey.get(r.key) ?? []), seq]);
  }
  expect(byKey.size).toBe(expected.size);
  for (const [key, count] of expected) {
    const seqs = byKey.get(key) ?? [];
    expect(seqs, `key ${key}: every record once, in order`).toEqual(Array.from({ length: count }, (_, i) => i));
  }
}

async function consumeAll(bus: KafkaBus, topic: string, count: number, timeoutMs: number): Promise<ConsumedRecord[]> {
  const got: ConsumedRecord[] = [];
  const consumer = await bus.consume({ group: `g-${randomUUID()}`, topics: [topic], handler: (r) => void got.push(r) });
  try {
    await until(() => got.length >= count, `${count} records consumed from ${topic}`, timeoutMs, { intervalMs: 50 });
    // Time for a duplicate to show up.
    await new Promise((resolve) => setTimeout(resolve, 500));
  } finally {
    await consumer.close();
  }
  return got;
}

describe.skipIf(!kafka.available)(kafka.title('Kafka produce within the broker limits'), () => {
  let bus: KafkaBus;
  let admin: Admin;
  beforeAll(() => {
    bus = new KafkaBus(testOptions());
    admin = new Admin({ clientId: 'arcnet-test-batching-admin', bootstrapBrokers: kafkaServers() });
  });
  afterAll(async () => {
    await bus.close();
    await admin.close();
    await scratch.deleteAll();
  });

  it('produces a backlog of 20,000 records of 1 KiB (about 20 times one request) in one call: every record consumed once, in order per key', async () => {
    const topic = topicName('one-call');
    await bus.ensureTopics([{ topic, partitions: 4, retentionMs: 3_600_000 }]);
    const keys = 64;
    const records = Array.from({ length: 20_000 }, (_, i) => record(`node-${i % keys}`, Math.floor(i / keys)));
    const totalBytes = records.reduce((sum, r) => sum + r.value.byteLength, 0);
    const watch = watchSends();
    const started = performance.now();
    try {
      await bus.produce(topic, records);
    } finally {
      watch.stop();
    }
    const produceMs = performance.now() - started;
    const got = await consumeAll(bus, topic, records.length, 60_000);
    expect(got.length).toBe(records.length);
    const expected = new Map<string, number>();
    for (const r of records) expected.set(r.key, (expected.get(r.key) ?? 0) + 1);
    checkOncePerKeyInOrder(got, expected);
    // Cut into sends of at most 900 KiB, none of them more than one request's worth.
    expect(watch.sends.reduce((sum, s) => sum + s.records, 0)).toBe(records.length);
    expect(Math.max(...watch.sends.map((s) => s.bytes))).toBeLessThanOrEqual(DEFAULT_MAX_REQUEST_BYTES);
    expect(watch.sends.length).toBeGreaterThanOrEqual(Math.ceil(totalBytes / DEFAULT_MAX_REQUEST_BYTES));
    console.log(`one call: ${records.length} records, ${(totalBytes / 1_048_576).toFixed(1)} MiB of values in ${watch.sends.length} sends (largest ${Math.max(...watch.sends.map((s) => s.bytes))} bytes), acknowledged in ${produceMs.toFixed(0)} ms`);
  }, 180_000);

  it('produces 24 concurrent calls of 1,000 records of 1 KiB (about 24 MiB in all): every record consumed once, in order per key', async () => {
    const topic = topicName('concurrent');
    await bus.ensureTopics([{ topic, partitions: 4, retentionMs: 3_600_000 }]);
    const calls = Array.from({ length: 24 }, (_, c) => Array.from({ length: 1_000 }, (_, i) => record(`call-${c}-k${i % 5}`, Math.floor(i / 5), 1_024)));
    const watch = watchSends();
    const started = performance.now();
    try {
      await Promise.all(calls.map((records) => bus.produce(topic, records)));
    } finally {
      watch.stop();
    }
    const produceMs = performance.now() - started;
    const total = calls.flat();
    const got = await consumeAll(bus, topic, total.length, 90_000);
    expect(got.length).toBe(total.length);
    const expected = new Map<string, number>();
    for (const r of total) expected.set(r.key, (expected.get(r.key) ?? 0) + 1);
    checkOncePerKeyInOrder(got, expected);
    expect(watch.sends.reduce((sum, s) => sum + s.records, 0)).toBe(total.length);
    expect(Math.max(...watch.sends.map((s) => s.bytes))).toBeLessThanOrEqual(DEFAULT_MAX_REQUEST_BYTES);
    console.log(`concurrent calls: ${calls.length} x ${calls[0]!.length} records, ${(total.reduce((s, r) => s + r.value.byteLength, 0) / 1_048_576).toFixed(1)} MiB of values in ${watch.sends.length} sends, acknowledged in ${produceMs.toFixed(0)} ms`);
  }, 180_000);

  it('keeps sends under a topic whose max.message.bytes is below the default (read from the topic), and refuses a record over it', async () => {
    const topic = topicName('small-limit');
    await admin.createTopics({ topics: [topic], partitions: 2, replicas: -1, configs: [{ name: 'max.message.bytes', value: '65536' }] });
    const limited = new KafkaBus(testOptions());
    try {
      const records = Array.from({ length: 2_000 }, (_, i) => record(`k${i % 8}`, Math.floor(i / 8)));
      const watch = watchSends();
      try {
        await limited.produce(topic, records);
      } finally {
        watch.stop();
      }
      expect(Math.max(...watch.sends.map((s) => s.bytes))).toBeLessThanOrEqual(65_536);
      expect(watch.sends.length).toBeGreaterThanOrEqual(Math.ceil((2_000 * 1_000) / 65_536));
      const error = await limited.produce(topic, [record('big', 0, 100_000)]).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(ArcError);
      expect(error).toMatchObject({ code: 'TOO_LARGE', retryable: false });
      expect((error as Error).message).toMatch(new RegExp(`key "big" for ${topic.replaceAll('.', '\\.')} is \\d+ bytes .* over the 65536-byte limit`));
      const got = await consumeAll(limited, topic, records.length, 60_000);
      expect(got.length).toBe(records.length);
      expect(got.some((r) => r.key === 'big')).toBe(false);
      console.log(`topic max.message.bytes 65536: ${records.length} records in ${watch.sends.length} sends`);
    } finally {
      await limited.close();
    }
  }, 120_000);

  it('refuses a call holding a record too large for any request, at once and sending none of it, while the calls beside it go through', async () => {
    const topic = topicName('oversize');
    await bus.ensureTopics([{ topic, partitions: 1, retentionMs: 3_600_000 }]);
    const beside = Array.from({ length: 3_000 }, (_, i) => record('beside', i));
    const besideCall = bus.produce(topic, beside);
    const started = Date.now();
    const error = await bus.produce(topic, [record('before', 0), record('huge', 0, 2 * 1_048_576), record('after', 0)]).then(() => undefined, (e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(error).toBeInstanceOf(ArcError);
    expect(error).toMatchObject({ code: 'TOO_LARGE', retryable: false });
    expect((error as { outcomeUnknown?: boolean }).outcomeUnknown).toBeUndefined();
    expect((error as Error).message).toMatch(new RegExp(`key "huge" for ${topic.replaceAll('.', '\\.')} is 2097\\d{3} bytes encoded as a batch of its own, over the ${DEFAULT_MAX_REQUEST_BYTES}-byte limit .*record 2 of 3; none of them was sent`));
    await besideCall;
    // And the bus goes on: the next call on the same topic is acknowledged.
    await bus.produce(topic, [record('later', 0)]);
    const got = await consumeAll(bus, topic, beside.length + 1, 60_000);
    checkOncePerKeyInOrder(got, new Map([['beside', beside.length], ['later', 1]]));
  }, 120_000);

  it('commits a transaction whose output is far larger than one request (5,000 + 1,000 records over two topics) with its consumed offset: everything once, in order per key', async () => {
    const input = topicName('tx-in');
    const output = topicName('tx-out');
    const audit = topicName('tx-audit');
    await bus.ensureTopics([
      { topic: input, partitions: 1, retentionMs: 3_600_000 },
      { topic: output, partitions: 3, retentionMs: 3_600_000 },
      { topic: audit, partitions: 1, retentionMs: 3_600_000 },
    ]);
    const group = `g-${randomUUID()}`;
    await bus.produce(input, [{ key: 'job', value: utf8('go'), headers: {} }]);
    let calls = 0;
    let committed = 0;
    const watch = watchSends();
    const consumer = await bus.consumeTransactional({
      group,
      topics: [input],
      transactionalId: `batching-${randomUUID().slice(0, 8)}`,
      handler: async (records, out) => {
        calls++;
        out.produce(output, Array.from({ length: 5_000 }, (_, i) => record(`out-${i % 16}`, Math.floor(i / 16))));
        out.produce(audit, Array.from({ length: 1_000 }, (_, i) => record('audit', i)));
        out.afterCommit(() => void (committed += records.length));
      },
    });
    try {
      await until(() => committed === 1, 'the transaction committed', 60_000);
      await until(async () => (await bus.committed(group, input, 0)) === 1, 'the input offset committed with it', 10_000);
    } finally {
      await consumer.close();
      watch.stop();
    }
    expect(calls).toBe(1);
    const outputs = await consumeAll(bus, output, 5_000, 60_000);
    const expected = new Map<string, number>();
    for (let k = 0; k < 16; k++) expected.set(`out-${k}`, 5_000 / 16 + (k < 5_000 % 16 ? 1 : 0));
    checkOncePerKeyInOrder(outputs, expected);
    checkOncePerKeyInOrder(await consumeAll(bus, audit, 1_000, 60_000), new Map([['audit', 1_000]]));
    const txSends = watch.sends.filter((s) => s.records > 1);
    expect(txSends.length).toBeGreaterThanOrEqual(Math.ceil((6_000 * 1_000) / DEFAULT_MAX_REQUEST_BYTES));
    expect(Math.max(...txSends.map((s) => s.bytes))).toBeLessThanOrEqual(DEFAULT_MAX_REQUEST_BYTES);
    console.log(`transaction: 6,000 records of 1 KiB in ${txSends.length} sends, committed once with the input offset`);
  }, 120_000);

  it('refuses a transaction holding a record too large for any request before it begins, and the transactional id goes on working', async () => {
    const output = topicName('tx-oversize');
    await bus.ensureTopics([{ topic: output, partitions: 1, retentionMs: 3_600_000 }]);
    const transactionalId = `batching-oversize-${randomUUID().slice(0, 8)}`;
    const error = await bus
      .produceTransactional({ transactionalId, produce: [{ topic: output, records: [record('small', 0), record('huge', 0, 1_048_576)] }] })
      .then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(ArcError);
    expect(error).toMatchObject({ code: 'TOO_LARGE', retryable: false });
    expect((error as Error).message).toMatch(/key "huge" .* over the 921600-byte limit .*record 2 of 2/);
    await bus.produceTransactional({ transactionalId, produce: [{ topic: output, records: [record('next', 0)] }] });
    const got = await until(async () => {
      const records = await bus.read(output, 0, 0, 10);
      return records.length > 0 && records;
    }, 'the next transaction', 10_000);
    expect(got.map((r) => r.key)).toEqual(['next']);
  }, 60_000);

  it('dead-letters the one input of a transactional batch whose output is too large for its topic, with the reason, and processes the others once: nothing redelivers forever', async () => {
    const input = topicName('tx-big-in');
    const output = topicName('tx-big-out');
    const deadLetters = topics.deadLetter(input);
    scratch.track(deadLetters);
    await bus.ensureTopics([{ topic: input, partitions: 1, retentionMs: 3_600_000 }]);
    await admin.createTopics({ topics: [output], partitions: 2, replicas: -1, configs: [{ name: 'max.message.bytes', value: '65536' }] });
    const count = 8;
    const bad = 5;
    await bus.produce(input, Array.from({ length: count }, (_, i) => ({ key: `in-${i}`, value: utf8(`input ${i}`), headers: { 'arc-seq': String(i) } })));
    const limited = new KafkaBus(testOptions());
    const group = `g-${randomUUID()}`;
    const calls: number[][] = [];
    const afterCommits: number[] = [];
    const consumer = await limited.consumeTransactional({
      group,
      topics: [input],
      transactionalId: `batching-big-${randomUUID().slice(0, 8)}`,
      handler: async (records, out) => {
        calls.push(records.map((r) => r.offset));
        // Input `bad` emits a record over the output topic's 64 KiB limit; every other input a small one.
        out.produce(output, records.map((r) => record(`out-${r.offset}`, 0, r.offset === bad ? 100_000 : 1_000)));
        out.afterCommit(() => void afterCommits.push(...records.map((r) => r.offset)));
      },
    });
    try {
      await until(async () => (await limited.committed(group, input, 0)) === count, 'every input offset committed', 60_000);
      // Time for a redelivery to show up, were there one.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    } finally {
      await consumer.close();
      await limited.close();
    }
    const handledTimes = new Map<number, number>();
    for (const offsets of calls) for (const o of offsets) handledTimes.set(o, (handledTimes.get(o) ?? 0) + 1);
    // The first batch, then each record alone once more to find the one at fault; never again after.
    expect(calls.length).toBeLessThanOrEqual(1 + count + 1);
    for (let i = 0; i < count; i++) expect(handledTimes.get(i) ?? 0, `input ${i} handled at most twice`).toBeLessThanOrEqual(2);
    expect(afterCommits.sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i).filter((i) => i !== bad));
    const outputs = await consumeAll(bus, output, count - 1, 60_000);
    expect(outputs.map((r) => r.key).sort()).toEqual(Array.from({ length: count }, (_, i) => `out-${i}`).filter((k) => k !== `out-${bad}`).sort());
    const letters = await until(async () => {
      const got = await bus.read(deadLetters, 0, 0, 10);
      return got.length > 0 && got;
    }, 'the dead letter', 10_000);
    expect(letters).toHaveLength(1);
    const letter = letters[0]!;
    expect(letter.key).toBe(`in-${bad}`);
    expect(Buffer.from(letter.value).toString('utf8')).toBe(`input ${bad}`);
    expect(letter.headers).toMatchObject({ 'arc-dlq-topic': input, 'arc-dlq-partition': '0', 'arc-dlq-offset': String(bad), 'arc-dlq-group': group, 'arc-seq': String(bad) });
    expect(letter.headers['arc-dlq-reason']).toMatch(new RegExp(`output too large to commit for ${input.replaceAll('.', '\\.')}\\[0\\]@${bad}: .*key "out-${bad}" for ${output.replaceAll('.', '\\.')} is \\d+ bytes .* over the 65536-byte limit`));
    console.log(`too-large output: ${calls.length} handler calls for ${count} inputs, input ${bad} dead-lettered: ${letter.headers['arc-dlq-reason']}`);
  }, 120_000);
});

describe.skipIf(!kafka.available)(kafka.title('Kafka produce of a backlog when the broker hangs part way'), () => {
  // A broker of its own: this one is frozen mid-call, which the suites sharing the default one must not see.
  let broker: KafkaInstance;
  beforeAll(async () => {
    const port = await freePortPair();
    broker = kafkaInstance(`batching-${port}`, port);
    await broker.clean();
    await broker.start();
  }, 120_000);
  afterAll(async () => {
    await broker?.remove();
  }, 120_000);

  it('says how many records were acknowledged when it gives up after some sends of a call, and makes none of the sends after the one in doubt', async () => {
    const bus = new KafkaBus(testOptions({ bootstrapServers: [...broker.servers], operationTimeoutMs: 3_000 }));
    const topic = topicName('hung');
    const pid = await broker.pid();
    const records = Array.from({ length: 10_000 }, (_, i) => record('one-key', i));
    const sends: number[] = [];
    let frozen = false;
    const channel = tracingChannel<unknown, { options?: { messages?: { topic: string }[] } }>('plt:kafka:producer:sends');
    const hooks = {
      start: (context: { options?: { messages?: { topic: string }[] } }): void => {
        const messages = context.options?.messages ?? [];
        if (messages[0]?.topic !== topic) return;
        sends.push(messages.length);
        // The fourth send is written to a broker that answers nothing until it is thawed.
        if (sends.length === 4 && !frozen) {
          frozen = true;
          process.kill(pid, 'SIGSTOP');
        }
      },
      end: () => undefined,
      asyncStart: () => undefined,
      asyncEnd: () => undefined,
      error: () => undefined,
    };
    try {
      await bus.ensureTopics([{ topic, partitions: 1, retentionMs: 3_600_000 }]);
      channel.subscribe(hooks);
      let error: unknown;
      try {
        error = await bus.produce(topic, records).then(() => undefined, (e: unknown) => e);
      } finally {
        channel.unsubscribe(hooks);
        await broker.resume();
      }
      expect(frozen).toBe(true);
      expect(error).toBeInstanceOf(ProduceOutcomeUnknownError);
      expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true, outcomeUnknown: true });
      const acknowledged = sends.slice(0, 3).reduce((sum, n) => sum + n, 0);
      expect((error as ProduceOutcomeUnknownError).acknowledgedRecords).toBe(acknowledged);
      expect((error as Error).message).toContain(`the first ${acknowledged} of ${records.length} records were appended (acknowledged), the other ${records.length - acknowledged} may have been appended all the same`);
      // Thawed, the broker takes the send in doubt; the sends after it were never made.
      const inDoubt = sends[3]!;
      const log = await until(async () => {
        const got: ConsumedRecord[] = [];
        for (let from = 0; ; ) {
          const page = await bus.read(topic, 0, from, 1_000);
          if (page.length === 0) break;
          got.push(...page);
          from = page[page.length - 1]!.offset + 1;
        }
        return got.length >= acknowledged + inDoubt && got;
      }, 'the send in doubt to land', 30_000, { intervalMs: 200 });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(sends.length).toBe(4);
      expect(log.map((r) => Number(r.headers['arc-seq']))).toEqual(Array.from({ length: acknowledged + inDoubt }, (_, i) => i));
      console.log(`hung broker: ${acknowledged} of ${records.length} records acknowledged in 3 sends, the 4th (${inDoubt}) in doubt and then landed, none sent after it`);
    } finally {
      await bus.close();
    }
  }, 180_000);
});

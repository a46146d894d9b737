/**
 * A read_committed reader must deliver exactly the committed and the non-transactional records of a
 * partition, in offset order, and nothing of a transaction its producer aborted: the dispatch routers
 * and every other ArcNet reader rely on it for exactly-once (docs/adr/0010).
 *
 * The case that matters is several aborted transactions of one producer id in one fetch response.
 * A transactional id keeps its producer id across re-initialisations, and the scheduler replicas share
 * per-partition transactional ids and abort on takeover, so this is the normal shape of a dispatch
 * partition. @platformatic/kafka 2.12.1 kept one aborted range per producer id and delivered every
 * aborted transaction but the last; patches/ carries the fix (docs/adr/0012). Each scenario is read
 * through ArcNet's consume path (a group member), its read(), and the library's own consumer, once
 * with default fetch sizes and once one record batch per fetch (so an abort marker is never in the
 * same response as its transaction's data). The expectation comes from the script of what was
 * written, and is checked against the raw log sorted by its control markers (committed-log.ts).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Admin, Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { KafkaBus } from '../../src/bus/kafka.ts';
import type { ConsumedRecord } from '../../src/bus/ports.ts';
import { CommittedLogReader } from '../support/committed-log.ts';
import { needEngines } from '../support/engines.ts';
import { kafkaServers } from '../support/kafka.ts';
import { until } from '../support/until.ts';

const kafka = needEngines('kafka');

const encoder = new TextEncoder();
const text = (record: ConsumedRecord): string => new TextDecoder().decode(record.value);
/** The last record of every scenario, non-transactional: once a reader has it, it has had everything before. */
const END = 'end';

/** One step of what a scenario writes to its one-partition topic, in order. */
type Step =
  | { readonly op: 'begin' | 'commit' | 'abort'; readonly producer: string }
  | { readonly op: 'send'; readonly producer: string; readonly values: readonly string[] }
  | { readonly op: 'plain'; readonly values: readonly string[] };

interface Written {
  /** Every value in the order it was appended (its offset order), with what became of it. */
  readonly committed: string[];
  readonly aborted: string[];
}

type TxProducer = Producer<string, string, string, string>;
/** The library does not export its Transaction class; its last beginTransaction overload returns one. */
type Transaction = Awaited<ReturnType<TxProducer['beginTransaction']>>;

describe.skipIf(!kafka.available)(kafka.title('Kafka read_committed over aborted transactions'), () => {
  let bus: KafkaBus;
  let admin: Admin;
  const topics: string[] = [];

  beforeAll(() => {
    bus = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: 'arcnet-test-rc', heartbeatIntervalMs: 200, sessionTimeoutMs: 6_000, rebalanceTimeoutMs: 10_000, revokeGraceMs: 500, retryBaseMs: 5, retryCapMs: 50 });
    admin = new Admin({ clientId: 'arcnet-test-rc-admin', bootstrapBrokers: kafkaServers() });
  });

  afterAll(async () => {
    try {
      const existing = new Set(await admin.listTopics());
      const ours = topics.filter((topic) => existing.has(topic));
      if (ours.length > 0) await admin.deleteTopics({ topics: ours });
    } finally {
      await bus.close();
      await admin.close();
    }
  });

  async function freshTopic(prefix: string): Promise<string> {
    const topic = `${prefix}.${randomUUID().slice(0, 8)}`;
    topics.push(topic);
    await bus.ensureTopics([{ topic, partitions: 1, retentionMs: 3_600_000 }]);
    return topic;
  }

  /** Runs the script against the topic: transactional steps on one library producer per name (one transactional id each), plain records through the bus. */
  async function write(topic: string, steps: readonly Step[]): Promise<Written> {
    const producers = new Map<string, TxProducer>();
    const open = new Map<string, { tx: Transaction; values: string[] }>();
    const order: string[] = [];
    const fate = new Map<string, 'committed' | 'aborted'>();
    const producerOf = (name: string): TxProducer => {
      let producer = producers.get(name);
      if (!producer) {
        producer = new Producer<string, string, string, string>({
          clientId: `arcnet-test-rc-${name}`,
          bootstrapBrokers: kafkaServers(),
          transactionalId: `rc-${name}-${randomUUID()}`,
          idempotent: true,
          acks: -1,
          // The broker answers CONCURRENT_TRANSACTIONS while it writes the last transaction's markers.
          retries: 20,
          retryDelay: 100,
          serializers: stringSerializers,
        });
        producers.set(name, producer);
      }
      return producer;
    };
    try {
      for (const step of [...steps, { op: 'plain', values: [END] } as const]) {
        switch (step.op) {
          case 'plain':
            await bus.produce(topic, step.values.map((value) => ({ key: 'k', value: encoder.encode(value), headers: {} })));
            for (const value of step.values) {
              order.push(value);
              fate.set(value, 'committed');
            }
            break;
          case 'begin':
            open.set(step.producer, { tx: await producerOf(step.producer).beginTransaction(), values: [] });
            break;
          case 'send': {
            const current = open.get(step.producer)!;
            await current.tx.send({ messages: step.values.map((value) => ({ topic, key: 'k', value })) });
            current.values.push(...step.values);
            order.push(...step.values);
            break;
          }
          case 'commit':
          case 'abort': {
            const current = open.get(step.producer)!;
            open.delete(step.producer);
            await (step.op === 'commit' ? current.tx.commit() : current.tx.abort());
            for (const value of current.values) fate.set(value, step.op === 'commit' ? 'committed' : 'aborted');
            break;
          }
        }
      }
    } finally {
      await Promise.all([...producers.values()].map((producer) => producer.close(true).catch(() => undefined)));
    }
    return { committed: order.filter((value) => fate.get(value) === 'committed'), aborted: order.filter((value) => fate.get(value) === 'aborted') };
  }

  /** The raw log (read uncommitted, sorted by control markers), which must agree with the script. */
  async function rawLog(topic: string): Promise<{ committed: ConsumedRecord[]; aborted: ConsumedRecord[]; producers: Map<string, bigint> }> {
    const reader = new CommittedLogReader(kafkaServers());
    try {
      const read = await reader.read(topic, [0n]);
      expect(read.open).toEqual([]);
      const byOffset = (a: ConsumedRecord, b: ConsumedRecord): number => a.offset - b.offset;
      return { committed: read.committed.sort(byOffset), aborted: read.aborted.sort(byOffset), producers: read.producers };
    } finally {
      await reader.close();
    }
  }

  async function viaBusConsume(topic: string): Promise<string[]> {
    const got: string[] = [];
    const consumer = await bus.consume({ group: `rc-${randomUUID()}`, topics: [topic], handler: (record) => void got.push(text(record)) });
    try {
      await until(() => got.includes(END), 'the end record through KafkaBus.consume', 30_000, { intervalMs: 20 });
    } finally {
      await consumer.close();
    }
    return got;
  }

  /** The library's consumer stream, read_committed (its default); `maxBytes: 1` makes every fetch return one record batch. */
  async function viaLibraryConsumer(topic: string, maxBytes?: number): Promise<string[]> {
    const consumer = new Consumer<string, string, string, string>({
      clientId: 'arcnet-test-rc-library',
      bootstrapBrokers: kafkaServers(),
      groupId: `rc-lib-${randomUUID()}`,
      deserializers: stringDeserializers,
      maxWaitTime: 200,
      ...(maxBytes === undefined ? {} : { maxBytes }),
    });
    const got: string[] = [];
    try {
      const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false });
      stream.on('data', (message) => void got.push(message.value));
      await until(() => got.includes(END), `the end record through the library's Consumer${maxBytes === undefined ? '' : ` (maxBytes ${maxBytes})`}`, 30_000, { intervalMs: 20 });
      await stream.close();
    } finally {
      await consumer.close(true).catch(() => undefined);
    }
    return got;
  }

  /** Everything every reader delivers, by reader, from the start of the partition. */
  async function readAll(topic: string): Promise<Record<string, string[]>> {
    return {
      'KafkaBus.consume': await viaBusConsume(topic),
      'KafkaBus.read': (await bus.read(topic, 0, 0, 10_000)).map(text),
      'library Consumer': await viaLibraryConsumer(topic),
      'library Consumer, one batch per fetch': await viaLibraryConsumer(topic, 1),
    };
  }

  /** Every reader's records against what it should have delivered: first the aborted ones it leaked, for every reader at once, then the exact sequences. */
  function expectOnlyCommitted(delivered: Record<string, string[]>, expected: Record<string, readonly string[]>, aborted: readonly string[]): void {
    const abortedSet = new Set(aborted);
    const readers = Object.keys(expected);
    const leaked = Object.fromEntries(readers.map((reader) => [reader, (delivered[reader] ?? []).filter((value) => abortedSet.has(value))]));
    expect(leaked, 'aborted records delivered by a read_committed reader').toEqual(Object.fromEntries(readers.map((reader) => [reader, []])));
    expect(delivered).toEqual(expected);
  }

  /** What every reader of readAll() should deliver: all the committed records, in order. */
  const everyReader = (committed: readonly string[]): Record<string, readonly string[]> =>
    Object.fromEntries(['KafkaBus.consume', 'KafkaBus.read', 'library Consumer', 'library Consumer, one batch per fetch'].map((reader) => [reader, committed]));

  const tx = (producer: string, name: string, end: 'commit' | 'abort'): Step[] => [
    { op: 'begin', producer },
    { op: 'send', producer, values: [`${name}-1`, `${name}-2`] },
    { op: 'send', producer, values: [`${name}-3`] },
    { op: end, producer },
  ];

  it('one transactional id: committed T1, T3, T5 and the plain records between them, in order; nothing of the aborted T2 and T4', { timeout: 120_000 }, async () => {
    const topic = await freshTopic('rc.one-producer');
    const written = await write(topic, [
      { op: 'plain', values: ['p0'] },
      ...tx('A', 'T1', 'commit'),
      { op: 'plain', values: ['p1', 'p2'] },
      ...tx('A', 'T2', 'abort'),
      { op: 'plain', values: ['p3'] },
      ...tx('A', 'T3', 'commit'),
      ...tx('A', 'T4', 'abort'),
      { op: 'plain', values: ['p4'] },
      ...tx('A', 'T5', 'commit'),
    ]);
    expect(written.aborted).toEqual(['T2-1', 'T2-2', 'T2-3', 'T4-1', 'T4-2', 'T4-3']);

    const log = await rawLog(topic);
    expect(log.committed.map(text)).toEqual(written.committed);
    expect(log.aborted.map(text)).toEqual(written.aborted);
    // One producer id wrote both aborted transactions: the case the library got wrong.
    expect(new Set(log.aborted.map((record) => log.producers.get(`${topic}#0@${record.offset}`))).size).toBe(1);

    // Reads that start inside T2 (the broker lists T2 with a first offset before the fetch offset) and
    // at T2's abort marker (a marker whose transaction began before the fetch offset).
    const insideT2 = log.aborted.find((record) => text(record) === 'T2-2')!.offset;
    const atT2Marker = log.aborted.find((record) => text(record) === 'T2-3')!.offset + 1;
    const from = (offset: number): string[] => log.committed.filter((record) => record.offset >= offset).map(text);
    expectOnlyCommitted(
      {
        ...(await readAll(topic)),
        'KafkaBus.read from inside T2': (await bus.read(topic, 0, insideT2, 10_000)).map(text),
        "KafkaBus.read from T2's abort marker": (await bus.read(topic, 0, atT2Marker, 10_000)).map(text),
      },
      { ...everyReader(written.committed), 'KafkaBus.read from inside T2': from(insideT2), "KafkaBus.read from T2's abort marker": from(atT2Marker) },
      written.aborted,
    );
  });

  it('two transactional ids whose committed and aborted transactions interleave: only the committed ones, in offset order', { timeout: 120_000 }, async () => {
    const topic = await freshTopic('rc.two-producers');
    const send = (producer: string, values: string[]): Step => ({ op: 'send', producer, values });
    const written = await write(topic, [
      // Round 1: A aborts, B commits, their batches alternating.
      { op: 'begin', producer: 'A' }, send('A', ['A1-1']), { op: 'begin', producer: 'B' }, send('B', ['B1-1', 'B1-2']), send('A', ['A1-2', 'A1-3']),
      { op: 'plain', values: ['p1'] }, send('B', ['B1-3']), { op: 'abort', producer: 'A' }, send('B', ['B1-4']), { op: 'commit', producer: 'B' },
      // Round 2: A commits, B aborts.
      { op: 'begin', producer: 'B' }, send('B', ['B2-1']), { op: 'begin', producer: 'A' }, send('A', ['A2-1', 'A2-2']), send('B', ['B2-2', 'B2-3']),
      { op: 'commit', producer: 'A' }, { op: 'plain', values: ['p2'] }, send('B', ['B2-4']), { op: 'abort', producer: 'B' },
      // Round 3: both abort, B's marker first.
      { op: 'begin', producer: 'A' }, send('A', ['A3-1']), { op: 'begin', producer: 'B' }, send('B', ['B3-1']), send('A', ['A3-2']),
      { op: 'abort', producer: 'B' }, { op: 'plain', values: ['p3'] }, send('A', ['A3-3']), { op: 'abort', producer: 'A' },
      // Round 4: both commit.
      { op: 'begin', producer: 'B' }, send('B', ['B4-1']), { op: 'begin', producer: 'A' }, send('A', ['A4-1']), send('B', ['B4-2']),
      { op: 'commit', producer: 'B' }, { op: 'commit', producer: 'A' },
    ]);
    expect(written.committed).toEqual(['B1-1', 'B1-2', 'p1', 'B1-3', 'B1-4', 'A2-1', 'A2-2', 'p2', 'p3', 'B4-1', 'A4-1', 'B4-2', END]);

    const log = await rawLog(topic);
    expect(log.committed.map(text)).toEqual(written.committed);
    expect(log.aborted.map(text)).toEqual(written.aborted);

    expectOnlyCommitted(await readAll(topic), everyReader(written.committed), written.aborted);
  });
});

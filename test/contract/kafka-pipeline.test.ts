/**
 * Pipelined transactional consumption on the real broker (ADR 0019): the next batch of a partition
 * is decided while the one before commits, and exactly-once holds. A batch decided during a commit
 * that fails is discarded (never committed, its afterCommit tasks never run) and redelivered with
 * it; a record carrying the request id of a record in the batch still committing is decided only
 * after that commit, as without the pipeline.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { KafkaBus } from '../../src/bus/kafka.ts';
import type { KafkaBusOptions } from '../../src/bus/kafka.ts';
import type { ConsumedRecord, OutgoingRecord } from '../../src/bus/ports.ts';
import { HEADER_REQUEST_ID } from '../../src/contracts/screen-headers.ts';
import { needEngines } from '../support/engines.ts';
import { fastBusOptions, readAllRecords, ScratchTopics } from '../support/kafka.ts';
import { until } from '../support/until.ts';

const kafka = needEngines('kafka');
const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8');

const scratch = new ScratchTopics('kafka.pipeline');
const topicName = (what: string): string => scratch.name(what);
const testOptions = (overrides: Partial<KafkaBusOptions> = {}): KafkaBusOptions => fastBusOptions('arcnet-test-pipeline', overrides);

const readAll = (bus: KafkaBus, topic: string): Promise<ConsumedRecord[]> => readAllRecords(bus, topic);

const input = (i: number, id = `req-${i}`): OutgoingRecord => ({ key: 'zone', value: utf8(`in-${i}`), headers: { [HEADER_REQUEST_ID]: id, seq: String(i) } });
const copied = (record: ConsumedRecord): OutgoingRecord => ({ key: record.key, value: utf8(`out-${record.headers['seq']}`), headers: { seq: record.headers['seq']! } });

describe.skipIf(!kafka.available)(kafka.title('Kafka pipelined transactions'), () => {
  let bus: KafkaBus;
  beforeAll(() => {
    bus = new KafkaBus(testOptions());
  });
  afterAll(async () => {
    await bus.close();
    await scratch.deleteAll();
  });

  /** A one-partition input holding `records`, an empty one-partition output, and a fresh group. */
  async function pipeline(records: readonly OutgoingRecord[]): Promise<{ from: string; to: string; group: string }> {
    const from = topicName('in');
    const to = topicName('out');
    await bus.ensureTopics([from, to].map((topic) => ({ topic, partitions: 1, retentionMs: 3_600_000 })));
    await bus.produce(from, records);
    return { from, to, group: `g-${randomUUID()}` };
  }

  it('decides the next batch while the one before commits, commits them in order, each afterCommit after its own commit', async () => {
    const total = 40;
    const { from, to, group } = await pipeline(Array.from({ length: total }, (_, i) => input(i)));
    /** Per batch: its first offset, when its handler started, and when its afterCommit ran. */
    const batches: { first: number; startedAt: number; committedAt?: number }[] = [];
    const afterCommits: number[] = [];
    const consumer = await bus.consumeTransactional({
      group,
      topics: [from],
      transactionalId: `pipeline-${randomUUID().slice(0, 8)}`,
      maxBatch: 4,
      handler: async (records, out) => {
        const batch: { first: number; startedAt: number; committedAt?: number } = { first: records[0]!.offset, startedAt: performance.now() };
        batches.push(batch);
        out.produce(to, records.map(copied));
        out.afterCommit(() => {
          batch.committedAt = performance.now();
          for (const r of records) afterCommits.push(r.offset);
        });
      },
    });
    try {
      await until(() => afterCommits.length >= total, 'every record committed', 60_000);
      await until(async () => (await bus.committed(group, from, 0)) === total, 'the group offset at the end', 10_000);
    } finally {
      await consumer.close();
    }
    // Exactly once, in order: the outputs, and the afterCommit tasks.
    expect(afterCommits).toEqual(Array.from({ length: total }, (_, i) => i));
    const outputs = await readAll(bus, to);
    expect(outputs.map((r) => Number(r.headers['seq']))).toEqual(Array.from({ length: total }, (_, i) => i));
    // Pipelined: some batch was decided before the batch before it had committed.
    const overlapped = batches.filter((b, i) => i > 0 && batches[i - 1]!.committedAt !== undefined && b.startedAt < batches[i - 1]!.committedAt!);
    expect(overlapped.length).toBeGreaterThan(0);
    // And each batch committed after the one before it.
    for (let i = 1; i < batches.length; i++) expect(batches[i]!.committedAt!).toBeGreaterThanOrEqual(batches[i - 1]!.committedAt!);
  }, 90_000);

  it('discards the batch decided while a commit fails, and redelivers both from the first uncommitted record: every output once', async () => {
    const total = 30;
    const { from, to, group } = await pipeline(Array.from({ length: total }, (_, i) => input(i)));
    let failedOnce = false;
    /** Decisions by number; which of them ran their afterCommit, and which were decided while the failing commit ran. */
    let decisions = 0;
    const committedDecisions = new Set<number>();
    let failingDecision: number | undefined;
    let redelivered = false;
    const decidedDuringFailure: number[] = [];
    const afterCommits: number[] = [];
    const consumer = await bus.consumeTransactional({
      group,
      topics: [from],
      transactionalId: `pipeline-fail-${randomUUID().slice(0, 8)}`,
      maxBatch: 5,
      handler: async (records, out) => {
        const decision = ++decisions;
        const holdsTen = records.some((r) => r.offset === 10);
        if (failingDecision !== undefined && holdsTen) redelivered = true;
        if (failingDecision !== undefined && !redelivered) decidedDuringFailure.push(decision);
        const fail = !failedOnce && holdsTen;
        if (fail) {
          failedOnce = true;
          failingDecision = decision;
          // Not a valid topic name: the transaction fails before it begins, and the next batch is decided meanwhile.
          out.produce('not a valid topic!', [{ key: 'x', value: utf8('x'), headers: {} }]);
          return;
        }
        out.produce(to, records.map(copied));
        out.afterCommit(() => {
          committedDecisions.add(decision);
          for (const r of records) afterCommits.push(r.offset);
        });
      },
    });
    try {
      await until(() => afterCommits.length >= total, 'every record committed', 60_000);
      await until(async () => (await bus.committed(group, from, 0)) === total, 'the group offset at the end', 10_000);
    } finally {
      await consumer.close();
    }
    expect(failedOnce).toBe(true);
    expect(redelivered).toBe(true);
    expect(afterCommits).toEqual(Array.from({ length: total }, (_, i) => i));
    const outputs = await readAll(bus, to);
    expect(outputs.map((r) => Number(r.headers['seq']))).toEqual(Array.from({ length: total }, (_, i) => i));
    // The batch decided right after the failing one (while it committed) was discarded: its afterCommit never ran.
    const next = failingDecision! + 1;
    expect(decidedDuringFailure).toContain(next);
    expect(committedDecisions.has(next)).toBe(false);
  }, 90_000);

  it('decides a record carrying the request id of one in the batch still committing only after that commit (and its afterCommit)', async () => {
    // Batches of one: 0 and 1 share an id (a client's retry), 2 and 3 do not.
    const { from, to, group } = await pipeline([input(0, 'same'), input(1, 'same'), input(2, 'two'), input(3, 'three')]);
    const decided = new Set<string>();
    /** Per offset: whether its id was decided (afterCommit run) when its handler started. */
    const seenDecided = new Map<number, boolean>();
    const startedAt = new Map<number, number>();
    const committedAt = new Map<number, number>();
    const consumer = await bus.consumeTransactional({
      group,
      topics: [from],
      transactionalId: `pipeline-ids-${randomUUID().slice(0, 8)}`,
      maxBatch: 1,
      handler: async (records, out) => {
        const record = records[0]!;
        const id = record.headers[HEADER_REQUEST_ID]!;
        startedAt.set(record.offset, performance.now());
        seenDecided.set(record.offset, decided.has(id));
        if (!decided.has(id)) out.produce(to, [{ key: id, value: utf8(id), headers: { seq: record.headers['seq']! } }]);
        out.afterCommit(() => {
          decided.add(id);
          committedAt.set(record.offset, performance.now());
        });
      },
    });
    try {
      await until(() => committedAt.size === 4, 'all four committed', 60_000);
    } finally {
      await consumer.close();
    }
    // The retry of "same" found it decided: one output for it, as without the pipeline.
    expect(seenDecided.get(1)).toBe(true);
    expect((await readAll(bus, to)).map((r) => r.key)).toEqual(['same', 'two', 'three']);
    // Distinct ids are pipelined: 3 was decided before 2 committed.
    expect(startedAt.get(3)!).toBeLessThan(committedAt.get(2)!);
  }, 90_000);
});

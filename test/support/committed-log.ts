/**
 * What a topic's transactions committed, read without trusting any client's read_committed filter:
 * the raw record batches (read uncommitted) in offset order, where a transactional batch belongs to
 * its producer's open transaction until that producer's control batch says COMMIT (kept) or ABORT
 * (dropped). A transaction without a marker yet is open and counts as not committed.
 *
 * Why not a consumer group: @platformatic/kafka 2.12's read_committed filter keys aborted ranges by
 * producer id only, so when one fetch response carries two aborted transactions of the same producer
 * (a transactional id keeps its producer id across epochs, i.e. across scheduler replicas) it drops
 * only the last and delivers the others as if committed. `leakedAborted()` measures that separately.
 */
import { Consumer, FetchIsolationLevels, ListOffsetTimestamps, stringDeserializer } from '@platformatic/kafka';
import { randomUUID } from 'node:crypto';
import type { ConsumedRecord, Headers } from '../../src/bus/ports.ts';

// Record batch attributes (Kafka protocol).
const IS_TRANSACTIONAL = 1 << 4;
const IS_CONTROL = 1 << 5;
const MAX_BYTES = 4 * 1_048_576;

export interface CommittedRead {
  readonly committed: ConsumedRecord[];
  /** Records of transactions their producer aborted. */
  readonly aborted: ConsumedRecord[];
  /** Records of transactions with no marker at the end of the read (open). */
  readonly open: ConsumedRecord[];
  /** The producer id of every record read, by `topic#partition@offset`: a transactional id keeps one across epochs, so it names the writer. */
  readonly producers: Map<string, bigint>;
}

type RawConsumer = Consumer<string, Buffer, string, string>;

interface RawBatch {
  firstOffset: bigint;
  lastOffsetDelta: number;
  attributes: number;
  producerId: bigint;
  firstTimestamp: bigint;
  records: { offsetDelta: number; timestampDelta: bigint; key: Buffer | null; value: Buffer | null; headers: [Buffer | null, Buffer | null][] }[];
}

export class CommittedLogReader {
  private readonly consumer: RawConsumer;

  constructor(bootstrapBrokers: readonly string[]) {
    this.consumer = new Consumer<string, Buffer, string, string>({
      clientId: `e2e-committed-log-${randomUUID().slice(0, 6)}`,
      bootstrapBrokers: [...bootstrapBrokers],
      groupId: `e2e-committed-log-${randomUUID()}`,
      deserializers: { key: stringDeserializer, headerKey: stringDeserializer, headerValue: stringDeserializer },
    });
  }

  /** The next offset of every partition of each topic: where a later read() starts to see only what comes after now. */
  async endOffsets(topics: readonly string[]): Promise<Map<string, bigint[]>> {
    const metadata = await this.consumer.metadata({ topics: [...topics] });
    const ends = new Map<string, bigint[]>();
    for (const topic of topics) {
      const count = metadata.topics.get(topic)!.partitionsCount;
      const listed = await this.consumer.listOffsets({ topics: [topic], partitions: { [topic]: [...Array(count).keys()] }, timestamp: ListOffsetTimestamps.LATEST });
      ends.set(topic, [...(listed.get(topic) ?? [])]);
    }
    return ends;
  }

  /** Everything appended to the topic's partitions from `from` (endOffsets() taken earlier) up to their high watermark now. */
  async read(topic: string, from: readonly bigint[]): Promise<CommittedRead> {
    const metadata = await this.consumer.metadata({ topics: [topic] });
    const info = metadata.topics.get(topic)!;
    this.consumer.topics.track(topic);
    const out: CommittedRead = { committed: [], aborted: [], open: [], producers: new Map() };
    for (let partition = 0; partition < info.partitionsCount; partition++) {
      const pending = new Map<bigint, ConsumedRecord[]>();
      let cursor = from[partition] ?? 0n;
      for (;;) {
        const response = await this.consumer.fetch({
          node: info.partitions[partition]!.leader,
          maxWaitTime: 0,
          minBytes: 0,
          maxBytes: MAX_BYTES,
          isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED,
          topics: [{ topicId: info.id, partitions: [{ partition, fetchOffset: cursor, currentLeaderEpoch: -1, lastFetchedEpoch: -1, partitionMaxBytes: MAX_BYTES }] }],
        });
        const data = response.responses[0]?.partitions.find((p) => p.partitionIndex === partition);
        const batches = (data?.records ?? []) as unknown as RawBatch[];
        const before = cursor;
        for (const batch of batches) {
          const end = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
          if (end <= cursor) continue;
          cursor = end;
          if (batch.attributes & IS_CONTROL) {
            // The control record's key is version (int16) then type (int16): 0 abort, 1 commit.
            const commit = batch.records[0]?.key?.readInt16BE(2) === 1;
            const transaction = pending.get(batch.producerId) ?? [];
            pending.delete(batch.producerId);
            (commit ? out.committed : out.aborted).push(...transaction);
            continue;
          }
          const records = batch.records
            .map((record) => toRecord(topic, partition, batch, record))
            .filter((record) => BigInt(record.offset) >= before);
          for (const record of records) out.producers.set(keyOf(record), batch.producerId);
          if (batch.attributes & IS_TRANSACTIONAL) pending.set(batch.producerId, [...(pending.get(batch.producerId) ?? []), ...records]);
          else out.committed.push(...records);
        }
        if (cursor === before || (data?.highWatermark !== undefined && cursor >= data.highWatermark)) break;
      }
      for (const transaction of pending.values()) out.open.push(...transaction);
    }
    return out;
  }

  async close(): Promise<void> {
    await this.consumer.close(true).catch(() => undefined);
  }
}

const keyOf = (record: ConsumedRecord): string => `${record.topic}#${record.partition}@${record.offset}`;

/** Records a consumer delivered that their producer had aborted: what a read_committed reader must never see. */
export function leakedAborted(delivered: Iterable<ConsumedRecord>, read: CommittedRead): ConsumedRecord[] {
  const aborted = new Set(read.aborted.map(keyOf));
  return [...delivered].filter((record) => aborted.has(keyOf(record)));
}

function toRecord(topic: string, partition: number, batch: RawBatch, record: RawBatch['records'][number]): ConsumedRecord {
  const headers: Record<string, string> = {};
  for (const [key, value] of record.headers) if (key) headers[key.toString('utf8')] = value ? value.toString('utf8') : '';
  return {
    topic,
    partition,
    offset: Number(batch.firstOffset + BigInt(record.offsetDelta)),
    timestamp: Number(batch.firstTimestamp + BigInt(record.timestampDelta)),
    key: record.key ? record.key.toString('utf8') : '',
    value: record.value ?? Buffer.alloc(0),
    headers: headers as Headers,
  };
}

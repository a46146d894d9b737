/**
 * Bus adapter over Apache Kafka (@platformatic/kafka): the distributed mode's bus. Records are keyed
 * with the topic table's partition key (computed above the port) and partitioned by Kafka's own
 * murmur2 partitioner, so Java and other clients put a key in the same partition; headers travel as
 * UTF-8 strings; producers are idempotent and wait for all in-sync replicas; consumer groups commit
 * an offset only after its handler resolved (see kafka-member.ts).
 *
 * An unreachable cluster is an outage to ride out, not a crash: calls retry with backoff up to
 * `operationTimeoutMs` and then reject with ArcError UNAVAILABLE (retryable) naming the bootstrap
 * servers; consumer group members keep retrying until the cluster answers and resume from their
 * committed offsets. A produce that gives up cannot take back a send the broker may already have
 * (Kafka has no way to cancel one): when that may be so, the error says the outcome is unknown (see
 * produce()). A transaction that gives up is settled by the next fence of its transactional id.
 *
 * However large the backlog a call carries, no request exceeds the broker's limits: the records go
 * in sends of at most `maxRequestBytes` encoded (default 900 KiB, lowered to the topic's
 * `max.message.bytes`, read once per topic), one after the other (kafka-batching.ts).
 */
import { randomUUID } from 'node:crypto';
import { Admin, ConfigResourceTypes, Consumer as KafkaConsumer, IS_CONTROL, ListOffsetTimestamps, Producer, stringDeserializer, stringSerializer } from '@platformatic/kafka';
import type { Message, MessageToProduce } from '@platformatic/kafka';
import type { Registry } from 'prom-client';
import { backoffDelay } from '../core/clock.ts';
import { ArcError } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logging.ts';
import { DEAD_LETTER_PREFIX, DEAD_LETTER_RETENTION_MS, topicSpecFor, topics } from '../contracts/topics.ts';
import { HEADER_REQUEST_ID } from '../contracts/screen-headers.ts';
import { DEFAULT_MAX_REQUEST_BYTES, RECORD_BATCH_OVERHEAD, splitBySize, type SizedMessage } from './kafka-batching.ts';
import { javaPartitioner } from './kafka-partitioner.ts';
import {
  baseClientOptions,
  describeServers,
  hasApiError,
  isRetryableKafkaError,
  isUnknownTopicError,
  kafkaErrorDetail,
  ProduceOutcomeUnknownError,
  provesNotAppended,
  unavailable,
} from './kafka-config.ts';
import type { KafkaConnectionOptions } from './kafka-config.ts';
import { KafkaGroupMember } from './kafka-member.ts';
import { HEADER_DLQ_REASON, deadLetterRecord } from './typed-bus.ts';
import { produceTimer, type ProduceTimer } from './kafka-metrics.ts';
import type { MemberSettings } from './kafka-member.ts';
import type { BusAdapter, ConsumeOptions, ConsumedRecord, Consumer, Headers, OutgoingRecord, TopicConfig, TransactionalConsumeOptions } from './ports.ts';
import { takenOf, takenPrefix } from './ports.ts';


export interface KafkaBusOptions extends KafkaConnectionOptions {
  /** How long produce() and the admin calls keep retrying an unreachable cluster before UNAVAILABLE (default 30 s). */
  readonly operationTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  /** Backoff between deliveries of a record whose handler failed (defaults 100 ms doubling to 5 s). */
  readonly retryBaseMs?: number;
  readonly retryCapMs?: number;
  /** Consumer group liveness (defaults 10 s, 1 s, 30 s): a silent member loses its partitions after the session timeout. */
  readonly sessionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly rebalanceTimeoutMs?: number;
  /** How long a rebalance waits for running handlers before their records go to the next owner (default 3 s). */
  readonly revokeGraceMs?: number;
  /** How long close() waits for running handlers (default 30 s). */
  readonly closeGraceMs?: number;
  /** Longest wait of an idle fetch; bounds how soon close() returns (default 500 ms). */
  readonly fetchMaxWaitMs?: number;
  readonly maxBufferedRecords?: number;
  /**
   * The most one fetch response may carry (default 2 MiB), and per partition (default 1 MiB). The
   * library parses a response whole before the event loop runs again, at a cost that grows with the
   * response's size per record read, so its default (50 MB, per partition too) made a member behind
   * a backlog block its process for seconds at a time (leases lost, heartbeats late). A member
   * buffers only maxBufferedRecords anyway; a batch larger than the limit still comes, alone.
   */
  readonly fetchMaxBytes?: number;
  readonly fetchMaxBytesPerPartition?: number;
  /** Topics created on first use that the topic table does not know (defaults 4 partitions, 24 h). */
  readonly defaultPartitions?: number;
  readonly defaultRetentionMs?: number;
  /** Replication factor of created topics; -1 (default) is the broker's default.replication.factor. */
  readonly replicationFactor?: number;
  /** Where `arcnet_kafka_produce_duration_ms{topic}` is registered (the process's metrics); none, no timing. */
  readonly registry?: Registry;
  /**
   * Most encoded bytes in one send (one produce request, and so in every record batch of it); a call
   * carrying more goes in several sends, one after the other. Default 900 KiB, under the broker's
   * 1,048,588-byte `message.max.bytes`; a topic whose `max.message.bytes` is lower lowers it. A
   * record that cannot fit alone is refused with TOO_LARGE.
   */
  readonly maxRequestBytes?: number;
}

/** What one transaction carries: records to append and, optionally, the consumed record whose offset commits with them. */
export interface TransactionalSend {
  /** Stable per producing instance (e.g. "<service>-<partition>"): a restarted instance fences its predecessor. */
  readonly transactionalId: string;
  readonly produce: readonly { readonly topic: string; readonly records: readonly OutgoingRecord[] }[];
  /** A record a handler of this bus's consume() is processing: its offset + 1 is committed for the group atomically. */
  readonly consumed?: { readonly group: string; readonly record: ConsumedRecord };
}

type BusProducer = Producer<string, Buffer, string, string>;
/** A transactional id's producer (replaced on every fence) and the queue of its calls, one at a time. */
interface TransactionalEntry {
  producer: BusProducer;
  queue: Promise<void>;
}
type BusMessage = MessageToProduce<string, Buffer, string, string>;
/** What a transactional handler staged for a batch: records to append, and tasks for after the commit. */
interface Staged {
  readonly produce: { topic: string; records: readonly OutgoingRecord[] }[];
  readonly committed: (() => void)[];
  /** How many of the records the handler took: a prefix, the rest open the next batch. */
  readonly taken: number;
}
/** What the adapter sends: a BusMessage with every field the size count reads (kafka-batching.ts). */
type OutgoingMessage = BusMessage & SizedMessage & { readonly value: Buffer; readonly headers: Record<string, string> };

const DAY = 24 * 3_600_000;
const LEADER_WAIT_MS = 15_000;
const READ_MAX_BYTES = 4 * 1_048_576;

export class KafkaBus implements BusAdapter {
  readonly kind = 'kafka';
  private readonly options: KafkaBusOptions;
  private readonly servers: string;
  private readonly logger: Logger;
  private readonly admin: Admin;
  private readonly producer: BusProducer;
  private readonly timeProduce: ProduceTimer;
  /** Topic → partition count, for topics known to exist with leaders. */
  private readonly known = new Map<string, number>();
  private readonly creating = new Map<string, Promise<void>>();
  /** Topic → the most bytes one send to it may carry: maxRequestBytes, or its max.message.bytes when lower (read once). */
  private readonly sendLimits = new Map<string, Promise<number>>();
  private readonly maxRequestBytes: number;
  private describeRefused = false;
  private readonly members = new Set<KafkaGroupMember>();
  private readonly transactional = new Map<string, TransactionalEntry>();
  private readonly memberSettings: MemberSettings;
  private closed = false;
  private lastOutageLog = 0;

  constructor(options: KafkaBusOptions) {
    if (options.bootstrapServers.length === 0) throw new ArcError('INVALID_INPUT', 'KafkaBus needs at least one bootstrap server', { retryable: false });
    const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    if (!Number.isInteger(maxRequestBytes) || maxRequestBytes <= RECORD_BATCH_OVERHEAD) {
      throw new ArcError('INVALID_INPUT', `KafkaBus maxRequestBytes must be an integer above ${RECORD_BATCH_OVERHEAD} (a batch's own header), got ${maxRequestBytes}`, { retryable: false });
    }
    this.maxRequestBytes = maxRequestBytes;
    this.options = options;
    this.servers = describeServers(options.bootstrapServers);
    this.logger = options.logger ?? silentLogger;
    const timeouts = { connectTimeoutMs: options.connectTimeoutMs, requestTimeoutMs: options.requestTimeoutMs };
    this.admin = new Admin(baseClientOptions(options, 'admin', timeouts));
    this.producer = this.newProducer('producer');
    this.timeProduce = produceTimer(options.registry);
    this.memberSettings = {
      connection: options,
      logger: this.logger,
      sessionTimeoutMs: options.sessionTimeoutMs ?? 10_000,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 1_000,
      rebalanceTimeoutMs: options.rebalanceTimeoutMs ?? 30_000,
      revokeGraceMs: options.revokeGraceMs ?? 3_000,
      closeGraceMs: options.closeGraceMs ?? 30_000,
      retryBaseMs: options.retryBaseMs ?? 100,
      retryCapMs: options.retryCapMs ?? 5_000,
      maxBufferedRecords: options.maxBufferedRecords ?? 2_000,
      fetchMaxWaitMs: options.fetchMaxWaitMs ?? 500,
      fetchMaxBytes: options.fetchMaxBytes ?? 2 * 1_048_576,
      fetchMaxBytesPerPartition: options.fetchMaxBytesPerPartition ?? 1_048_576,
      connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      prepare: (topics) => this.ensureExist(topics),
    };
  }

  async ensureTopics(configs: readonly TopicConfig[]): Promise<void> {
    this.assertOpen('ensure topics');
    const wanted = configs.filter((config) => !this.known.has(config.topic));
    if (wanted.length === 0) return;
    await this.retrying(`creating ${wanted.length} topic(s)`, () => this.create(wanted));
  }

  /**
   * Appends the records; resolves once every in-sync replica has them (acks=all, idempotent).
   *
   * A call whose records encode to more than one request may carry (`maxRequestBytes`, or the topic's
   * `max.message.bytes` when lower) goes in several sends, in order, each sent once the one before
   * was acknowledged: the order per key and partition is the call's, as with one send. A record that
   * cannot fit even alone fails the call at once with ArcError TOO_LARGE (not retryable) naming the
   * topic, the record's key, its size and the limit; nothing of that call is sent, and the bus goes
   * on serving other calls.
   *
   * Rejects, past `operationTimeoutMs` of retrying an unreachable cluster, with ArcError UNAVAILABLE
   * (retryable). A retry resumes at the first send not acknowledged. What a failure leaves behind
   * depends on how far the sends got, and the error says which:
   * - plain UNAVAILABLE (or the error as it is): no send ever reached a broker (no connection, or the
   *   leader refused it outright), so nothing was appended and nothing will be;
   * - ProduceOutcomeUnknownError (`outcomeUnknown: true`, same code and retryability): a send was
   *   still under way when the adapter stopped waiting, or failed in a way that does not rule out an
   *   append (a request that timed out, a connection dropped mid-request), or some sends of the call
   *   were acknowledged before one failed (`acknowledgedRecords`, counted from the call's first
   *   record, are in the log; the sends after the failed one were never made). The records may be
   *   in the log, or land there later: Kafka cannot call a send back, and the library's client goes
   *   on retrying it. The caller must treat it as "may have been published": retry with the same ids
   *   (the API answers 503, "may have been accepted; retry with the same id", and the scheduler
   *   deduplicates by id).
   */
  async produce(topic: string, records: readonly OutgoingRecord[]): Promise<void> {
    this.assertOpen(`produce to ${topic}`);
    if (records.length === 0) return;
    const messages: OutgoingMessage[] = records.map((record) => ({ topic, key: record.key, value: toBuffer(record.value), headers: { ...record.headers } }));
    const startedAt = performance.now();
    let sends: OutgoingMessage[][] | undefined;
    let limit = 0;
    // The first send not acknowledged yet, and how many records the ones before it carried.
    let next = 0;
    let acknowledged = 0;
    let sending = 0;
    // Whether a failed attempt at send `next` may have appended it all the same.
    let mayHaveLanded = false;
    let gaveUp = false;
    try {
      await this.retrying(`${records.length} record(s) for ${topic} not acknowledged`, async () => {
        await this.ensureExist([topic]);
        if (!sends) {
          limit = await this.sendLimit(topic);
          sends = splitBySize(messages, () => limit);
        }
        const all = sends;
        // An attempt the deadline left running stops after its send in flight: the caller was told already.
        for (; next < all.length && !gaveUp; next++) {
          const send = all[next]!;
          sending++;
          try {
            await this.producer.send({ messages: send });
          } catch (error) {
            if (!provesNotAppended(error)) mayHaveLanded = true;
            // Deleted behind our back: the next attempt creates it again, as a first produce would.
            if (isUnknownTopicError(error)) this.forgetTopic(topic);
            if (hasApiError(error, 'MESSAGE_TOO_LARGE') || hasApiError(error, 'RECORD_LIST_TOO_LARGE')) {
              throw new ArcError('TOO_LARGE', `Kafka at ${this.servers} refused a send of ${send.length} record(s) to ${topic} as too large although it was cut to ${limit} bytes: a broker or proxy on the way allows less; lower maxRequestBytes: ${kafkaErrorDetail(error)}`, { retryable: false, cause: error });
            }
            throw error;
          } finally {
            sending--;
          }
          acknowledged += send.length;
          mayHaveLanded = false;
        }
      });
    } catch (error) {
      gaveUp = true;
      // `sending` counts a send the deadline left running: it may still land.
      const restMayHaveLanded = sending > 0 || mayHaveLanded;
      if (error instanceof ArcError && (restMayHaveLanded || acknowledged > 0)) {
        throw new ProduceOutcomeUnknownError(error, { acknowledged, total: records.length, restMayHaveLanded });
      }
      throw error;
    } finally {
      this.timeProduce([topic], startedAt);
    }
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    this.assertOpen(`consume ${options.topics.join(',')}`);
    const member = new KafkaGroupMember(this.memberSettings, options, (m) => this.members.delete(m));
    this.members.add(member);
    await member.start();
    return member;
  }

  /**
   * Each partition gets its own transactional producer, `<transactionalId>.<topic>.<partition>`: the
   * member that takes a partition over initialises that id first, which aborts (or completes) the
   * previous owner's open transaction and fences it, before reading where to resume.
   *
   * Pipelined one deep (ADR 0019, kafka-member.ts): a partition's next batch is handed to the handler
   * while the transaction of the batch before commits; its own transaction begins only once that one
   * committed, and is discarded, with its afterCommit tasks, if that one failed. One exception keeps
   * a handler's view as without the pipeline: a batch holding a record whose request id header
   * (arc-request-id) a record of the batch still committing carries waits for that commit and its
   * afterCommit tasks before the handler sees it, so a client's retry of a request is seen decided.
   *
   * A batch whose staged output holds a record too large for its topic (TOO_LARGE) is decided again
   * one record at a time; the record whose own output is too large is dead-lettered (oneByOne()).
   */
  async consumeTransactional(options: TransactionalConsumeOptions): Promise<Consumer> {
    this.assertOpen(`consume ${options.topics.join(',')}`);
    const txId = (topic: string, partition: number): string => `${options.transactionalId}.${topic}.${partition}`;
    const stage = async (records: readonly ConsumedRecord[]): Promise<Staged> => {
      const produce: Staged['produce'] = [];
      const committed: Staged['committed'] = [];
      const taken = await options.handler(records, { produce: (topic, out) => void produce.push({ topic, records: out }), afterCommit: (task) => void committed.push(task) });
      return { produce, committed, taken: takenOf(taken, records.length) };
    };
    const member = new KafkaGroupMember(
      this.memberSettings,
      { group: options.group, topics: options.topics, ...(options.startAt ? { startAt: options.startAt } : {}), handler: () => undefined },
      (m) => this.members.delete(m),
      {
        maxBatch: options.maxBatch ?? 500,
        fence: async (partitions) => {
          await Promise.all(partitions.map(({ topic, partition }) => this.fenceTransactionalId(txId(topic, partition))));
        },
        decide: async (records, previous) => {
          if (records.length === 0) return { taken: 0, commit: async () => undefined };
          // A record carrying an id of the batch still committing is decided after that commit, as it would be without the pipeline.
          if (previous && sharesAnId(previous.records, records)) await previous.committed;
          const staged = await stage(records);
          const taken = takenPrefix(records, staged.taken);
          const last = taken[taken.length - 1]!;
          const transactionalId = txId(last.topic, last.partition);
          return {
            taken: taken.length,
            commit: async () => {
              try {
                await this.produceTransactional({ transactionalId, produce: staged.produce, consumed: { group: options.group, record: last } });
              } catch (error) {
                if (!(error instanceof ArcError && error.code === 'TOO_LARGE')) throw error;
                await this.oneByOne(taken, transactionalId, options.group, stage, error);
                return;
              }
              for (const task of staged.committed) task();
            },
          };
        },
      },
    );
    this.members.add(member);
    await member.start();
    return member;
  }

  /**
   * A batch whose staged output holds a record too large for any send (TOO_LARGE, refused before its
   * transaction began) would fail the same way on every redelivery. So its records are decided again
   * one at a time, each committed in a transaction with its own offset; a record whose own output is
   * too large goes to its topic's dead-letter topic instead, with the reason, in a transaction with
   * its offset. Nothing is lost, the rest are processed once, and nothing is redelivered forever.
   * Another failure part way rejects as any failed commit does: the member fences, reads the group's
   * offset (which covers the records committed here) and redelivers from there.
   */
  private async oneByOne(records: readonly ConsumedRecord[], transactionalId: string, group: string, stage: (records: readonly ConsumedRecord[]) => Promise<Staged>, cause: ArcError): Promise<void> {
    this.logger.warn({ transactionalId, records: records.length, err: cause.message }, 'a batch\'s output holds a record too large for the topic; committing its records one at a time to dead-letter the one at fault');
    for (const record of records) {
      const staged = await stage([record]);
      try {
        await this.produceTransactional({ transactionalId, produce: staged.produce, consumed: { group, record } });
      } catch (error) {
        if (!(error instanceof ArcError && error.code === 'TOO_LARGE')) throw error;
        const reason = `output too large to commit for ${record.topic}[${record.partition}]@${record.offset}: ${error.message}`;
        await this.deadLetterTransactional(record, transactionalId, group, reason);
        continue;
      }
      for (const task of staged.committed) task();
    }
  }

  /** The record to its topic's dead-letter topic with the reason, committed with its offset. */
  private async deadLetterTransactional(record: ConsumedRecord, transactionalId: string, group: string, reason: string): Promise<void> {
    const topic = topics.deadLetter(record.topic);
    const letter = deadLetterRecord(record, group, reason);
    try {
      await this.produceTransactional({ transactionalId, produce: [{ topic, records: [letter] }], consumed: { group, record } });
    } catch (error) {
      if (!(error instanceof ArcError && error.code === 'TOO_LARGE')) throw error;
      // The record itself is over the dead-letter topic's limit: its headers and the reason are kept, its value left out.
      const bare = { ...letter, value: Buffer.alloc(0), headers: { ...letter.headers, [HEADER_DLQ_REASON]: `${reason}; its value (${record.value.byteLength} bytes) left out: over ${topic}'s limit` } };
      await this.produceTransactional({ transactionalId, produce: [{ topic, records: [bare] }], consumed: { group, record } });
    }
    this.logger.warn({ topic: record.topic, partition: record.partition, offset: record.offset, group, reason }, 'message dead-lettered');
  }

  /**
   * Initialises the transactional id (InitProducerId) on a fresh producer: the broker ends the id's
   * open transaction and fences its older producers. Always a fresh one: a producer that has
   * initialised the id already would not send InitProducerId again, so a process taking back a
   * partition it owned before would fence nothing and read offsets the new owner's open transaction
   * still moves (ADR 0010).
   */
  private async fenceTransactionalId(transactionalId: string): Promise<void> {
    const entry = this.transactionalEntry(transactionalId);
    const what = `initialising transactional id ${transactionalId}`;
    const run = entry.queue.then(async () => {
      if (this.closed) throw new ArcError('CLOSED', `Kafka bus is closed: cannot ${what}`, { retryable: false });
      const previous = entry.producer;
      const producer = this.newProducer(`tx-${transactionalId}`, transactionalId);
      entry.producer = producer;
      await previous.close(true).catch(() => undefined);
      try {
        const begun = await this.withinOperationTimeout(producer.beginTransaction(), transactionalId, producer, what);
        // Nothing was added: ending it locally is enough; the broker holds no state for an empty transaction.
        await begun.cancel();
      } catch (error) {
        await this.discardProducer(transactionalId, producer);
        if (error instanceof ArcError) throw error;
        throw unavailable(this.options.bootstrapServers, what, error);
      }
    });
    entry.queue = run.catch(() => undefined);
    await run;
  }

  private transactionalEntry(transactionalId: string): TransactionalEntry {
    let entry = this.transactional.get(transactionalId);
    if (!entry) {
      entry = { producer: this.newProducer(`tx-${transactionalId}`, transactionalId), queue: Promise.resolve() };
      this.transactional.set(transactionalId, entry);
    }
    return entry;
  }

  async committed(group: string, topic: string, partition: number): Promise<number> {
    this.assertOpen('read committed offsets');
    const groups = await this.retrying(`committed offset of ${group} on ${topic}[${partition}]`, () =>
      this.admin.listConsumerGroupOffsets({ groups: [{ groupId: group, topics: [{ name: topic, partitionIndexes: [partition] }] }] }),
    );
    const offset = groups
      .find((g) => g.groupId === group)
      ?.topics.find((t) => t.name === topic)
      ?.partitions.find((p) => p.partitionIndex === partition)?.committedOffset;
    return offset === undefined || offset < 0n ? 0 : Number(offset);
  }

  async read(topic: string, partition: number, fromOffset: number, limit: number): Promise<ConsumedRecord[]> {
    this.assertOpen(`read ${topic}`);
    if (limit <= 0) return [];
    // A short-lived client: fetch sessions and metadata stay out of the long-lived ones.
    const reader = new KafkaConsumer<string, Buffer, string, string>({
      ...baseClientOptions(this.options, 'reader', { connectTimeoutMs: this.options.connectTimeoutMs, requestTimeoutMs: this.options.requestTimeoutMs }),
      groupId: `arcnet-reader-${randomUUID()}`,
      deserializers: { key: stringDeserializer, headerKey: stringDeserializer, headerValue: stringDeserializer },
    });
    try {
      return await this.retrying(`reading ${topic}[${partition}]`, () => readPartition(reader, topic, partition, fromOffset, limit));
    } finally {
      await reader.close(true).catch(() => undefined);
    }
  }

  async partitions(topic: string): Promise<number> {
    this.assertOpen(`partitions of ${topic}`);
    await this.retrying(`metadata of ${topic}`, () => this.ensureExist([topic]));
    return this.known.get(topic)!;
  }

  /**
   * Appends records and, optionally, commits a consumed record's offset, all or nothing (Kafka
   * transactions; readers see the records only once committed, as every consumer here reads
   * read_committed). One transaction at a time per transactionalId. Rejects UNAVAILABLE (retryable)
   * when the cluster is unreachable or the transaction was aborted, CONFLICT (not retryable) when the
   * member no longer owns the consumed record's partition or a newer producer took the transactionalId.
   * An UNAVAILABLE whose commit was already sent may hide a commit the broker made (its answer lost,
   * or past `operationTimeoutMs`): initialising the id again settles it, and the group's offset then
   * says which. consumeTransactional does both before it retries a batch; a direct caller must too.
   */
  async produceTransactional(send: TransactionalSend): Promise<void> {
    this.assertOpen(`transaction ${send.transactionalId}`);
    const current = this.transactionalEntry(send.transactionalId);
    // The producer is read when the call's turn comes: a fence queued before it replaces it.
    const run = current.queue.then(() => {
      const producer = current.producer;
      return this.withinOperationTimeout(this.transaction(producer, send), send.transactionalId, producer, `transaction ${send.transactionalId}`);
    });
    current.queue = run.catch(() => undefined);
    const startedAt = performance.now();
    try {
      await run;
    } finally {
      this.timeProduce(send.produce.filter((p) => p.records.length > 0).map((p) => p.topic), startedAt);
    }
  }

  /**
   * Bounds a call on a transactional producer by `operationTimeoutMs`. Past it the producer is closed
   * (what it still has in flight fails) and the call rejects UNAVAILABLE; the next producer of the id
   * fences this one, which settles a transaction it left behind, committed or aborted.
   */
  private async withinOperationTimeout<T>(call: Promise<T>, transactionalId: string, producer: BusProducer, what: string): Promise<T> {
    const bound = this.options.operationTimeoutMs ?? 30_000;
    const result = await beforeDeadline(call, Date.now() + bound);
    if (result) return result.value;
    this.logger.warn({ transactionalId }, `${what}: no answer within ${bound} ms; closing its producer, the next one fences it`);
    await this.discardProducer(transactionalId, producer);
    throw unavailable(this.options.bootstrapServers, `${what} not answered within ${bound} ms`, new Error('no answer before the deadline'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.members].map((member) => member.close()));
    const producers = [this.producer, ...[...this.transactional.values()].map((entry) => entry.producer)];
    this.transactional.clear();
    await Promise.all([...producers.map((producer) => producer.close(true)), this.admin.close()].map((p) => p.catch(() => undefined)));
  }

  private async transaction(producer: BusProducer, send: TransactionalSend): Promise<void> {
    const what = `transaction ${send.transactionalId}`;
    const group = send.consumed ? this.groupInfo(send.consumed.group, send.consumed.record) : undefined;
    if (send.consumed && !group) {
      throw new ArcError('CONFLICT', `${what}: this process does not own ${send.consumed.record.topic}[${send.consumed.record.partition}] in group ${send.consumed.group} (any more); the record goes to its new owner`, { retryable: false });
    }
    try {
      await this.ensureExist(send.produce.map((p) => p.topic));
      const topics = [...new Set(send.produce.filter((p) => p.records.length > 0).map((p) => p.topic))];
      const limits = new Map(await Promise.all(topics.map(async (topic) => [topic, await this.sendLimit(topic)] as const)));
      const messages = send.produce.flatMap(({ topic, records }) => records.map((r): OutgoingMessage => ({ topic, key: r.key, value: toBuffer(r.value), headers: { ...r.headers } })));
      // Cut before the transaction begins: a record too large for any send fails it with nothing begun.
      const sends = splitBySize(messages, (topic) => limits.get(topic)!);
      const tx = await producer.beginTransaction();
      try {
        // Round trips: AddOffsetsToTxn alone first (two requests of one transaction at its coordinator
        // at once may meet CONCURRENT_TRANSACTIONS), then the sends (AddPartitionsToTxn, Produce) and
        // the offset (TxnOffsetCommit, at the group coordinator) side by side, then EndTxn: four on
        // the way instead of five. Kafka allows offsets before records in a transaction (the Java
        // client too); both become visible with the commit marker or not at all.
        if (send.consumed && group) await tx.addConsumer(group.consumer);
        const settled = await Promise.allSettled([
          (async () => {
            // One after the other in the one transaction: they commit, or abort, together.
            for (const chunk of sends) await tx.send({ messages: chunk });
          })(),
          (async () => {
            if (!send.consumed || !group) return;
            // TxnOffsetCommit needs the member's generation and id, which the library reads from a fetched message.
            const consumedMessage = {
              topic: send.consumed.record.topic,
              partition: send.consumed.record.partition,
              offset: BigInt(send.consumed.record.offset),
              metadata: { consumer: { groupId: group.groupId, generationId: group.generationId, memberId: group.memberId, coordinatorId: group.coordinatorId } },
            } as unknown as Message<string, Buffer, string, string>;
            await tx.addOffset(consumedMessage);
          })(),
        ]);
        // Both settled before the abort below: no request of this transaction is still on its way then.
        for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
        await tx.commit();
      } catch (error) {
        if (!tx.completed) await tx.abort().catch(() => tx.cancel().catch(() => undefined));
        throw error;
      }
    } catch (error) {
      if (error instanceof ArcError) throw error;
      if (hasApiError(error, 'PRODUCER_FENCED') || hasApiError(error, 'INVALID_PRODUCER_EPOCH') || hasApiError(error, 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED')) {
        await this.discardProducer(send.transactionalId, producer);
        throw new ArcError('CONFLICT', `${what} fenced at ${this.servers}: ${kafkaErrorDetail(error)}`, { retryable: false, cause: error });
      }
      // After a failure the library's producer may still count a transaction as open (one whose
      // begin failed is never cleared): a fresh producer initialises the id again instead.
      await this.discardProducer(send.transactionalId, producer);
      throw unavailable(this.options.bootstrapServers, `${what} aborted`, error);
    }
  }

  private async discardProducer(transactionalId: string, producer: BusProducer): Promise<void> {
    // The id keeps its entry (and so its queue): the next call gets a fresh producer, which initialises the id again.
    const entry = this.transactional.get(transactionalId);
    if (entry?.producer === producer && !this.closed) entry.producer = this.newProducer(`tx-${transactionalId}`, transactionalId);
    await producer.close(true).catch(() => undefined);
  }

  private groupInfo(group: string, record: ConsumedRecord): ReturnType<KafkaGroupMember['groupInfoFor']> {
    for (const member of this.members) {
      if (member.group !== group) continue;
      const info = member.groupInfoFor(record);
      if (info) return info;
    }
    return undefined;
  }

  private newProducer(role: string, transactionalId?: string): BusProducer {
    const base = baseClientOptions(this.options, role, {
      connectTimeoutMs: this.options.connectTimeoutMs,
      requestTimeoutMs: this.options.requestTimeoutMs,
      transactional: transactionalId !== undefined,
    });
    return new Producer<string, Buffer, string, string>({
      ...base,
      idempotent: true,
      acks: -1,
      // Java's partitioner (murmur2 & 0x7fffffff): the library's default masks differently, so a
      // key would land on another partition than from a Java producer; its compatible one is in BigInts.
      partitioner: javaPartitioner,
      serializers: { key: stringSerializer, headerKey: stringSerializer, headerValue: stringSerializer },
      // A new producer must introduce itself as unknown (-1/-1): the library's default 0/0 asks the broker to
      // bump producer 0's epoch, which it refuses as fenced once the id has belonged to another producer.
      ...(transactionalId ? { transactionalId, producerId: -1n, producerEpoch: -1 } : {}),
    });
  }

  /**
   * The most encoded bytes one send to `topic` may carry: maxRequestBytes, or the topic's
   * `max.message.bytes` when lower (a topic's override, else the broker's `message.max.bytes`),
   * described once per topic. A failed description (an outage) is tried again by the next call.
   */
  private sendLimit(topic: string): Promise<number> {
    let limit = this.sendLimits.get(topic);
    if (!limit) {
      const reading = this.readSendLimit(topic);
      limit = reading;
      this.sendLimits.set(topic, reading);
      reading.catch(() => {
        if (this.sendLimits.get(topic) === reading) this.sendLimits.delete(topic);
      });
    }
    return limit;
  }

  private async readSendLimit(topic: string): Promise<number> {
    if (this.describeRefused) return this.maxRequestBytes;
    let described;
    try {
      described = await this.admin.describeConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: ['max.message.bytes'] }] });
    } catch (error) {
      if (isUnknownTopicError(error)) this.known.delete(topic);
      if (isRetryableKafkaError(error)) throw error;
      // Not allowed to describe topics (no DescribeConfigs ACL): the configured limit alone, said once.
      this.describeRefused = true;
      this.logger.warn({ topic, err: kafkaErrorDetail(error) }, `Kafka at ${this.servers} refused to describe ${topic}'s max.message.bytes; sends stay under maxRequestBytes (${this.maxRequestBytes}) alone`);
      return this.maxRequestBytes;
    }
    const value = Number(described.find((d) => d.resourceName === topic)?.configs.find((c) => c.name === 'max.message.bytes')?.value);
    return Number.isInteger(value) && value > RECORD_BATCH_OVERHEAD ? Math.min(this.maxRequestBytes, value) : this.maxRequestBytes;
  }

  /** A topic deleted behind our back: created again (and its limit read again) on the next use. */
  private forgetTopic(topic: string): void {
    this.known.delete(topic);
    this.sendLimits.delete(topic);
  }

  /** Creates what is missing of these topics, with the topic table's settings when it has the name. */
  private async ensureExist(topics: readonly string[]): Promise<void> {
    const missing = topics.filter((topic) => !this.known.has(topic));
    if (missing.length === 0) return;
    await this.create(missing.map((topic) => ({ topic, ...this.onDemandSpec(topic) })));
  }

  private onDemandSpec(topic: string): { partitions: number; retentionMs: number } {
    if (topic.startsWith(DEAD_LETTER_PREFIX)) return { partitions: 1, retentionMs: DEAD_LETTER_RETENTION_MS };
    const spec = topicSpecFor(topic);
    if (spec) return { partitions: spec.partitions, retentionMs: spec.retentionMs };
    return { partitions: this.options.defaultPartitions ?? 4, retentionMs: this.options.defaultRetentionMs ?? DAY };
  }

  private async create(configs: readonly TopicConfig[]): Promise<void> {
    const pending: Promise<void>[] = [];
    const toCreate: TopicConfig[] = [];
    for (const config of configs) {
      const inFlight = this.creating.get(config.topic);
      if (inFlight) pending.push(inFlight);
      else if (!this.known.has(config.topic)) toCreate.push(config);
    }
    if (toCreate.length > 0) {
      const run = this.createNow(toCreate).finally(() => {
        for (const config of toCreate) this.creating.delete(config.topic);
      });
      for (const config of toCreate) this.creating.set(config.topic, run);
      pending.push(run);
    }
    await Promise.all(pending);
  }

  private async createNow(configs: readonly TopicConfig[]): Promise<void> {
    const existing = new Set(await this.admin.listTopics());
    await Promise.all(
      configs
        .filter((config) => !existing.has(config.topic))
        .map(async (config) => {
          try {
            await this.admin.createTopics({
              topics: [config.topic],
              partitions: config.partitions,
              replicas: this.options.replicationFactor ?? -1,
              configs: [{ name: 'retention.ms', value: String(config.retentionMs) }],
            });
          } catch (error) {
            // Someone else created it between the listing and now: left as it is, like any existing topic.
            if (!hasApiError(error, 'TOPIC_ALREADY_EXISTS')) throw error;
          }
        }),
    );
    await this.awaitLeaders(configs.map((config) => config.topic));
  }

  /** A topic just created has no leaders for a moment; producing then would wait out the library's retry delay. */
  private async awaitLeaders(topics: readonly string[]): Promise<void> {
    const deadline = Date.now() + LEADER_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        const metadata = await this.admin.metadata({ topics: [...topics], forceUpdate: true });
        let ready = true;
        for (const topic of topics) {
          const info = metadata.topics.get(topic);
          if (!info || info.partitions.some((p) => p === undefined || p.leader < 0)) ready = false;
        }
        if (ready) {
          for (const topic of topics) this.known.set(topic, metadata.topics.get(topic)!.partitionsCount);
          return;
        }
      } catch (error) {
        if (!isUnknownTopicError(error)) throw error;
      }
      if (Date.now() > deadline) throw unavailable(this.options.bootstrapServers, `no partition leaders for ${topics.join(', ')} after ${LEADER_WAIT_MS} ms`, new Error('leaders not elected'));
      await sleep(Math.min(25 * 2 ** attempt, 250));
    }
  }

  /**
   * Runs `operation` until it succeeds, retrying what the library calls retryable with backoff, up to
   * operationTimeoutMs; then rejects UNAVAILABLE naming the servers. A call that hangs counts against the same bound.
   */
  private async retrying<T>(what: string, operation: () => Promise<T>): Promise<T> {
    const bound = this.options.operationTimeoutMs ?? 30_000;
    const deadline = Date.now() + bound;
    let lastError: unknown = new Error('no answer before the deadline');
    for (let attempt = 0; ; attempt++) {
      let result: { value: T } | undefined;
      try {
        result = await beforeDeadline(operation(), deadline);
      } catch (error) {
        lastError = error;
        if (this.closed) throw new ArcError('CLOSED', `Kafka bus closed: ${what}`, { retryable: false, cause: error });
        if (error instanceof ArcError) throw error;
        if (!isRetryableKafkaError(error)) {
          throw new ArcError('INTERNAL', `Kafka at ${this.servers} refused: ${what}: ${kafkaErrorDetail(error)}`, { retryable: false, cause: error });
        }
        const delay = backoffDelay(attempt, 100, 2_000);
        if (Date.now() + delay >= deadline) throw unavailable(this.options.bootstrapServers, `${what} within ${bound} ms`, error);
        this.noteOutage(what, error);
        this.logger.debug({ attempt, delay, err: kafkaErrorDetail(error) }, `retrying: ${what}`);
        await sleep(delay);
        continue;
      }
      if (result) return result.value;
      throw unavailable(this.options.bootstrapServers, `${what} within ${bound} ms`, lastError);
    }
  }

  private noteOutage(what: string, error: unknown): void {
    const now = Date.now();
    if (now - this.lastOutageLog < 10_000) return;
    this.lastOutageLog = now;
    this.logger.warn({ err: kafkaErrorDetail(error) }, `Kafka at ${this.servers} unreachable (${what}); retrying with backoff`);
  }

  private assertOpen(what: string): void {
    if (this.closed) throw new ArcError('CLOSED', `Kafka bus is closed: cannot ${what}`, { retryable: false });
  }
}

async function readPartition(reader: KafkaConsumer<string, Buffer, string, string>, topic: string, partition: number, fromOffset: number, limit: number): Promise<ConsumedRecord[]> {
  let metadata;
  try {
    metadata = await reader.metadata({ topics: [topic] });
  } catch (error) {
    // Nothing was ever written to a topic that does not exist: the memory adapter answers the same.
    if (isUnknownTopicError(error)) return [];
    throw error;
  }
  const info = metadata.topics.get(topic);
  if (!info || partition < 0 || partition >= info.partitionsCount) return [];
  reader.topics.track(topic);
  const out: ConsumedRecord[] = [];
  let cursor = BigInt(Math.max(0, fromOffset));
  for (let rounds = 0; out.length < limit && rounds < 10_000; rounds++) {
    const leader = (await reader.metadata({ topics: [topic] })).topics.get(topic)!.partitions[partition]!.leader;
    let response;
    try {
      response = await reader.fetch({
        node: leader,
        maxWaitTime: 0,
        minBytes: 0,
        maxBytes: READ_MAX_BYTES,
        topics: [{ topicId: info.id, partitions: [{ partition, fetchOffset: cursor, currentLeaderEpoch: -1, lastFetchedEpoch: -1, partitionMaxBytes: READ_MAX_BYTES }] }],
      });
    } catch (error) {
      if (!hasApiError(error, 'OFFSET_OUT_OF_RANGE')) throw error;
      // Before the log start (retention dropped it) start at the oldest record kept; past the end there is nothing.
      const earliest = (await reader.listOffsets({ topics: [topic], partitions: { [topic]: [partition] }, timestamp: ListOffsetTimestamps.EARLIEST })).get(topic)?.[partition];
      if (earliest !== undefined && cursor < earliest) {
        cursor = earliest;
        continue;
      }
      return out;
    }
    const data = response.responses.find((r) => r.topicId === info.id || (r as { topic?: string }).topic === topic)?.partitions.find((p) => p.partitionIndex === partition);
    const batches = data?.records ?? [];
    if (batches.length === 0) break;
    const before = cursor;
    for (const batch of batches) {
      const lastOffset = batch.firstOffset + BigInt(batch.lastOffsetDelta);
      if (lastOffset + 1n > cursor) cursor = lastOffset + 1n;
      if (batch.attributes & IS_CONTROL) continue;
      for (const record of batch.records) {
        const offset = batch.firstOffset + BigInt(record.offsetDelta);
        if (offset < before || out.length >= limit) continue;
        out.push(fromFetched(topic, partition, offset, batch.firstTimestamp + record.timestampDelta, record));
      }
    }
    if (cursor === before) break;
    const end = data?.lastStableOffset !== undefined && data.lastStableOffset >= 0n ? data.lastStableOffset : data?.highWatermark;
    if (end !== undefined && cursor >= end) break;
  }
  return out;
}

function fromFetched(topic: string, partition: number, offset: bigint, timestamp: bigint, record: { key: Buffer | null; value: Buffer | null; headers: [Buffer | null, Buffer | null][] }): ConsumedRecord {
  const headers: Record<string, string> = {};
  for (const [key, value] of record.headers) {
    if (key && value) headers[key.toString('utf8')] = value.toString('utf8');
    else if (key) headers[key.toString('utf8')] = '';
  }
  return {
    topic,
    partition,
    offset: Number(offset),
    timestamp: Number(timestamp),
    key: record.key ? record.key.toString('utf8') : '',
    value: record.value ?? Buffer.alloc(0),
    headers: headers as Headers,
  };
}

function toBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The promise's value in a box, or undefined when the deadline passes first (the promise keeps running). */
async function beforeDeadline<T>(promise: Promise<T>, deadline: number): Promise<{ value: T } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([promise.then((value) => ({ value })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether any record of `next` carries a request id (HEADER_REQUEST_ID) that a record of `previous` carries. */
function sharesAnId(previous: readonly ConsumedRecord[], next: readonly ConsumedRecord[]): boolean {
  const ids = new Set<string>();
  for (const record of previous) {
    const id = record.headers[HEADER_REQUEST_ID];
    if (id !== undefined) ids.add(id);
  }
  if (ids.size === 0) return false;
  for (const record of next) {
    const id = record.headers[HEADER_REQUEST_ID];
    if (id !== undefined && ids.has(id)) return true;
  }
  return false;
}


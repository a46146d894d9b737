/**
 * Typed messages over any Bus adapter: schema name and version travel in headers, payloads are
 * validated on both sides, and a record no reader can trust (undecodable, invalid, unknown schema
 * version, or a handler that keeps failing) goes to `arc.dead-letter.<topic>` with the reason in
 * headers instead of being misread or dropped.
 */
import { randomBytes } from 'node:crypto';
import { errorMessage, ArcError } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { silentLogger } from '../core/logging.ts';
import { schemas, type MessageTypes, type SchemaName } from '../contracts/messages.ts';
import { topicSpecFor, topics, concreteTopics, DEAD_LETTER_RETENTION_MS } from '../contracts/topics.ts';
import { validateMessage } from '../contracts/validation.ts';
import { screenHeaders } from '../contracts/screen-headers.ts';
import { codecForContentType, codecs, DEFAULT_CODEC, JSON_CONTENT_TYPE, type Codec, type CodecName } from './codec.ts';
import type { BusAdapter, ConsumedRecord, Consumer, Headers, OutgoingRecord } from './ports.ts';
import { takenPrefix } from './ports.ts';

export const HEADER_SCHEMA = 'arc-schema';
export const HEADER_VERSION = 'arc-schema-version';
export const HEADER_CONTENT_TYPE = 'content-type';
export const HEADER_TRACEPARENT = 'traceparent';
export const HEADER_DLQ_REASON = 'arc-dlq-reason';
export const HEADER_DLQ_TOPIC = 'arc-dlq-topic';
export const HEADER_DLQ_PARTITION = 'arc-dlq-partition';
export const HEADER_DLQ_OFFSET = 'arc-dlq-offset';
export const HEADER_DLQ_GROUP = 'arc-dlq-group';
export { JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE } from './codec.ts';

/** Hooks for metrics; the bus knows nothing of Prometheus. */
export interface BusObserver {
  produced?(topic: string, count: number): void;
  consumed?(topic: string, group: string, count: number): void;
  deadLettered?(topic: string, reason: string): void;
}

export interface MessageMeta {
  readonly record: ConsumedRecord;
  readonly traceparent: string | undefined;
}

export interface SubscribeOptions {
  readonly startAt?: 'earliest' | 'latest';
  /** Handler failures before the record is dead-lettered; retries back off in the adapter. */
  readonly maxAttempts?: number;
}

/** A decoded message of a transactional batch, with the record it came from. */
export interface BatchItem<T> {
  readonly message: T;
  readonly meta: MessageMeta;
}

/** Typed staging for a transactional batch: what is published here appears only if the batch commits. */
export interface BatchOutput {
  publish<N extends SchemaName>(topic: string, schema: N, message: MessageTypes[N], options?: PublishOptions): void;
  afterCommit(task: () => void): void;
}

export interface PublishOptions {
  readonly traceparent?: string;
  /** Extra headers (routing hints); the schema headers cannot be overridden. */
  readonly headers?: Headers;
}

export interface TransactionalSubscribeOptions<S = never> {
  readonly transactionalId: string;
  readonly maxBatch?: number;
  readonly startAt?: 'earliest' | 'latest';
  /**
   * Looks at a batch's records before they are decoded (their headers, keys, timestamps) and returns
   * a verdict or undefined for each record it takes, in order: a verdict skips decoding and
   * validation, and the record reaches the handler in `screened` instead of the batch. For deciding
   * cheaply about what will not be processed. Fewer verdicts than records take only that prefix:
   * the rest open the next batch (a step that processes a bounded amount per batch), at least one.
   */
  readonly screen?: (records: readonly ConsumedRecord[]) => readonly (S | undefined)[];
}

/** A record a transactional subscription's screen gave a verdict on, undecoded. */
export interface Screened<S> {
  readonly record: ConsumedRecord;
  readonly verdict: S;
}

export interface MessageBusOptions {
  readonly logger?: Logger;
  readonly observer?: BusObserver;
  /** The codec this bus writes (its `content-type`); it reads every codec (src/bus/codec.ts). Default: DEFAULT_CODEC (ADR 0018). */
  readonly codec?: CodecName;
}

export class MessageBus {
  readonly adapter: BusAdapter;
  private readonly logger: Logger;
  private readonly observer: BusObserver;
  private readonly codec: Codec;

  constructor(adapter: BusAdapter, options: MessageBusOptions = {}) {
    this.adapter = adapter;
    this.logger = options.logger ?? silentLogger;
    this.observer = options.observer ?? {};
    this.codec = codecs[options.codec ?? DEFAULT_CODEC];
  }

  /** Creates the topic table's topics (per geozone for regional ones) and their dead-letter topics. */
  async ensureTopics(geozones: readonly string[]): Promise<void> {
    const configs = concreteTopics(geozones).flatMap(({ spec, topic }) => [
      { topic, partitions: spec.partitions, retentionMs: spec.retentionMs },
      { topic: topics.deadLetter(topic), partitions: 1, retentionMs: DEAD_LETTER_RETENTION_MS },
    ]);
    await this.adapter.ensureTopics(configs);
  }

  /** Encodes and validates; throws ArcError INVALID_INPUT (not retryable) when the message is not valid. */
  encode<N extends SchemaName>(topic: string, schema: N, message: MessageTypes[N], traceparent?: string, extra?: Headers): OutgoingRecord {
    const checked = validateMessage(schema, message);
    if (!checked.ok) {
      throw new ArcError('INVALID_INPUT', `refusing to publish an invalid ${schema} to ${topic}: ${checked.error}`, { retryable: false });
    }
    const spec = topicSpecFor(topic);
    const keyField = spec?.key ?? 'id';
    const key = String((message as unknown as Record<string, unknown>)[keyField] ?? '');
    return {
      key,
      value: this.codec.encode(message),
      headers: {
        ...extra,
        ...screenHeaders(schema, message),
        [HEADER_SCHEMA]: schema,
        [HEADER_VERSION]: String(schemas[schema].version),
        [HEADER_CONTENT_TYPE]: this.codec.contentType,
        [HEADER_TRACEPARENT]: traceparent ?? newTraceparent(),
      },
    };
  }

  async publish<N extends SchemaName>(topic: string, schema: N, message: MessageTypes[N], options: PublishOptions = {}): Promise<void> {
    await this.adapter.produce(topic, [this.encode(topic, schema, message, options.traceparent, options.headers)]);
    this.observer.produced?.(topic, 1);
  }

  /**
   * Exactly-once consume-transform-produce over the adapter's transactions: the handler gets the
   * batch's valid messages in partition order and stages what it publishes; that output, the
   * dead-letters of the batch's invalid records and the group's offset commit together. A failing
   * handler (an outage) gets the same batch again after a backoff.
   */
  async subscribeTransactional<N extends SchemaName, S = never>(
    group: string,
    topicNames: readonly string[],
    schema: N,
    handler: (batch: readonly BatchItem<MessageTypes[N]>[], output: BatchOutput, screened: readonly Screened<S>[]) => Promise<void>,
    options: TransactionalSubscribeOptions<S>,
  ): Promise<Consumer> {
    const { screen } = options;
    return this.adapter.consumeTransactional({
      group,
      topics: topicNames,
      transactionalId: options.transactionalId,
      ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
      startAt: options.startAt ?? 'earliest',
      handler: async (offered, output) => {
        const items: BatchItem<MessageTypes[N]>[] = [];
        const screened: Screened<S>[] = [];
        const deadLetters: { record: ConsumedRecord; reason: string }[] = [];
        const verdicts = screen?.(offered);
        const taken = verdicts === undefined || verdicts.length >= offered.length ? offered.length : Math.max(1, verdicts.length);
        const records = takenPrefix(offered, taken);
        for (let i = 0; i < records.length; i++) {
          const record = records[i]!;
          const verdict = verdicts?.[i];
          if (verdict !== undefined) {
            screened.push({ record, verdict });
            continue;
          }
          const decoded = decodeRecord(record, schema);
          if (!decoded.ok) deadLetters.push({ record, reason: decoded.reason });
          else items.push({ message: decoded.message, meta: { record, traceparent: record.headers[HEADER_TRACEPARENT] } });
        }
        for (const { record, reason } of deadLetters) output.produce(topics.deadLetter(record.topic), [deadLetterRecord(record, group, reason)]);
        const produced = new Map<string, number>();
        if (items.length > 0 || screened.length > 0) {
          await handler(items, {
            publish: (topic, name, message, publishOptions = {}) => {
              output.produce(topic, [this.encode(topic, name, message, publishOptions.traceparent, publishOptions.headers)]);
              produced.set(topic, (produced.get(topic) ?? 0) + 1);
            },
            afterCommit: (task) => output.afterCommit(task),
          }, screened);
        }
        output.afterCommit(() => {
          // Counted per batch, not per record: a labelled counter costs a lookup per call.
          if (records.length > 0) this.observer.consumed?.(records[0]!.topic, group, records.length - deadLetters.length);
          for (const [topic, count] of produced) this.observer.produced?.(topic, count);
          for (const { record, reason } of deadLetters) {
            this.observer.deadLettered?.(record.topic, reason);
            this.logger.warn({ topic: record.topic, partition: record.partition, offset: record.offset, group, reason }, 'message dead-lettered');
          }
        });
        return taken;
      },
    });
  }

  async subscribe<N extends SchemaName>(
    group: string,
    topicNames: readonly string[],
    schema: N,
    handler: (message: MessageTypes[N], meta: MessageMeta) => Promise<void> | void,
    options: SubscribeOptions = {},
  ): Promise<Consumer> {
    const maxAttempts = options.maxAttempts ?? 20;
    const attempts = new Map<string, number>();
    return this.adapter.consume({
      group,
      topics: topicNames,
      startAt: options.startAt ?? 'earliest',
      handler: async (record) => {
        const decoded = decodeRecord(record, schema);
        if (!decoded.ok) {
          await this.deadLetter(record, group, decoded.reason);
          return;
        }
        this.observer.consumed?.(record.topic, group, 1);
        try {
          await handler(decoded.message, { record, traceparent: record.headers[HEADER_TRACEPARENT] });
          if (attempts.size > 0) attempts.delete(attemptKey(record));
        } catch (error) {
          const key = attemptKey(record);
          const count = (attempts.get(key) ?? 0) + 1;
          if (count < maxAttempts) {
            attempts.set(key, count);
            this.logger.warn({ topic: record.topic, offset: record.offset, attempt: count, err: errorMessage(error) }, 'handler failed; will retry');
            throw error;
          }
          attempts.delete(key);
          await this.deadLetter(record, group, `handler failed ${count} times: ${errorMessage(error)}`);
        }
      },
    });
  }

  private async deadLetter(record: ConsumedRecord, group: string, reason: string): Promise<void> {
    await this.adapter.produce(topics.deadLetter(record.topic), [deadLetterRecord(record, group, reason)]);
    this.observer.deadLettered?.(record.topic, reason);
    this.logger.warn({ topic: record.topic, partition: record.partition, offset: record.offset, group, reason }, 'message dead-lettered');
  }
}

/** A record for `arc.dead-letter.<topic>`: the record as it was, with where it came from and why. */
export function deadLetterRecord(record: ConsumedRecord, group: string, reason: string): OutgoingRecord {
  const headers: Headers = {
    ...record.headers,
    [HEADER_DLQ_REASON]: reason,
    [HEADER_DLQ_TOPIC]: record.topic,
    [HEADER_DLQ_PARTITION]: String(record.partition),
    [HEADER_DLQ_OFFSET]: String(record.offset),
    [HEADER_DLQ_GROUP]: group,
  };
  return { key: record.key, value: record.value, headers };
}

type Decoded<T> = { ok: true; message: T } | { ok: false; reason: string };

export function decodeRecord<N extends SchemaName>(record: ConsumedRecord, expected: N): Decoded<MessageTypes[N]> {
  const name = record.headers[HEADER_SCHEMA];
  const version = record.headers[HEADER_VERSION];
  const where = `${record.topic}[${record.partition}]@${record.offset}`;
  if (name === undefined || version === undefined) {
    return { ok: false, reason: `${where}: missing ${HEADER_SCHEMA}/${HEADER_VERSION} headers` };
  }
  if (name !== expected) return { ok: false, reason: `${where}: schema ${name} where ${expected} was expected` };
  const known = schemas[expected].version;
  if (Number(version) !== known) {
    return { ok: false, reason: `${where}: ${name} version ${version} is not known to this reader (it reads version ${known})` };
  }
  // Absent: JSON, as records from before the header (ADR 0001).
  const contentType = record.headers[HEADER_CONTENT_TYPE];
  const codec = codecForContentType(contentType);
  if (codec === undefined) return { ok: false, reason: `${where}: unsupported content-type ${contentType ?? JSON_CONTENT_TYPE}` };
  const body = codec.decode(record.value);
  if (!body.ok) return { ok: false, reason: `${where}: ${body.reason}` };
  const checked = validateMessage(expected, body.value);
  if (!checked.ok) return { ok: false, reason: `${where}: invalid ${name} v${version}: ${checked.error}` };
  return { ok: true, message: checked.value };
}

function attemptKey(record: ConsumedRecord): string {
  return `${record.topic}#${record.partition}#${record.offset}`;
}

// Random bytes drawn 24 at a time from a pooled buffer: one getrandom call per ~170 messages
// instead of two per message, which on the routing hot path was a tenth of the CPU.
const POOL_SIZE = 4096;
let pool = randomBytes(POOL_SIZE);
let poolOffset = 0;

/** A W3C trace context header starting a new trace (sampled). */
export function newTraceparent(): string {
  if (poolOffset + 24 > POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    poolOffset = 0;
  }
  const traceId = pool.toString('hex', poolOffset, poolOffset + 16);
  const spanId = pool.toString('hex', poolOffset + 16, poolOffset + 24);
  poolOffset += 24;
  return `00-${traceId}-${spanId}-01`;
}

/**
 * Produce requests within the broker's size limits: how the Kafka adapter cuts a backlog into sends.
 *
 * Why it is needed: @platformatic/kafka 2.12.1 does not split by size. `Producer.send({ messages })`
 * turns all the messages of one call into one Produce request per partition leader, holding one
 * record batch per partition with every record of that partition (`#performSend`,
 * `apis/producer/produce-v*.js` `createRecordsBatch`); it has no `max.request.size`, `batch.size` or
 * `linger.ms`. The broker refuses a batch larger than the topic's `max.message.bytes` (default the
 * broker's `message.max.bytes`, 1,048,588 bytes, which scripts/kafka.sh leaves as it is) with
 * MESSAGE_TOO_LARGE, so a produce carrying a backlog of more than about 1 MiB for one partition
 * failed whole. The library never merges calls either: each send() is its own request (only its
 * ProducerStream batches, by count and time, and the adapter does not use it), so a send the adapter
 * keeps under the limit reaches the broker under it however many calls run at once.
 *
 * So the adapter cuts the messages of a call, in order, into sends of at most `limit` encoded bytes
 * each (a whole send, not just one partition's batch, so every batch in its request fits as well),
 * and refuses a call with a record that could never fit before anything is sent. The size is the
 * record batch v2 encoding as the library writes it, counted from above (see `recordBytes`); a
 * property test holds it against the library's own encoder.
 */
import { ArcError } from '../core/errors.ts';

/**
 * The most the adapter puts in one send by default: below the broker's 1,048,588-byte default for a
 * batch with about 12 % to spare, for a broker or proxy a little stricter than the default. A topic
 * whose `max.message.bytes` is lower lowers it (`KafkaBusOptions.maxRequestBytes`).
 */
export const DEFAULT_MAX_REQUEST_BYTES = 900 * 1024;

/**
 * A v2 record batch without its records: base offset 8, length 4, partition leader epoch 4, magic 1,
 * CRC 4, attributes 2, last offset delta 4, first and max timestamps 16, producer id 8, epoch 2, base
 * sequence 4, record count 4. The broker compares this plus the records with `max.message.bytes`.
 */
export const RECORD_BATCH_OVERHEAD = 61;

/** What the adapter hands the library for one record: a topic, a string key, bytes, string headers. */
export interface SizedMessage {
  readonly topic: string;
  readonly key: string;
  readonly value: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Bytes of one record in a v2 batch at `offsetDelta`, as the library encodes it: a zigzag varint length,
 * attributes (1), timestamp delta (1: the library stamps every record of a request with one
 * `Date.now()`, so the delta is 0), offset delta, key and value each as varint length plus bytes, the
 * header count, and each header's key and value the same way (UTF-8, as the adapter's string
 * serializers write them). The offset delta the caller gives is the record's place in its send, at
 * least its place in its partition's batch, so the count never falls short.
 */
export function recordBytes(message: SizedMessage, offsetDelta: number): number {
  return withOffsetDelta(recordBodyBytes(message), offsetDelta);
}

/** A record's body without its offset delta: what does not depend on its place in the batch. */
function recordBodyBytes(message: SizedMessage): number {
  const key = Buffer.byteLength(message.key, 'utf8');
  let body = 1 + 1 + varintBytes(key) + key + varintBytes(message.value.byteLength) + message.value.byteLength;
  const headers = Object.entries(message.headers);
  body += varintBytes(headers.length);
  for (const [name, value] of headers) {
    const n = Buffer.byteLength(name, 'utf8');
    const v = Buffer.byteLength(value, 'utf8');
    body += varintBytes(n) + n + varintBytes(v) + v;
  }
  return body;
}

function withOffsetDelta(bodyBytes: number, offsetDelta: number): number {
  const body = bodyBytes + varintBytes(offsetDelta);
  return varintBytes(body) + body;
}

/** Length of a non-negative integer as Kafka's zigzag varint (what the record format uses for lengths and deltas). */
export function varintBytes(value: number): number {
  let zigzag = value * 2;
  let bytes = 1;
  while (zigzag >= 128) {
    zigzag = Math.floor(zigzag / 128);
    bytes++;
  }
  return bytes;
}

/**
 * The messages in sends of at most `limitOf(topic)` encoded bytes each (a send that spans topics
 * keeps under the smallest of their limits), in the order given: concatenated, the sends are the
 * messages, so sending them one after the other keeps the order per key and partition. Throws
 * ArcError TOO_LARGE (not retryable) for the first message that cannot fit even alone, naming its
 * topic, key, place in the call, size and the limit: the caller then sends nothing of the call.
 */
export function splitBySize<M extends SizedMessage>(messages: readonly M[], limitOf: (topic: string) => number): M[][] {
  const sends: M[][] = [];
  let current: M[] = [];
  let bytes = RECORD_BATCH_OVERHEAD;
  let limit = Number.POSITIVE_INFINITY;
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!;
    const topicLimit = limitOf(message.topic);
    const body = recordBodyBytes(message);
    const alone = RECORD_BATCH_OVERHEAD + withOffsetDelta(body, 0);
    if (alone > topicLimit) throw tooLarge(message, i, messages.length, alone, topicLimit);
    if (current.length > 0 && bytes + withOffsetDelta(body, current.length) > Math.min(limit, topicLimit)) {
      sends.push(current);
      current = [];
      bytes = RECORD_BATCH_OVERHEAD;
      limit = Number.POSITIVE_INFINITY;
    }
    bytes += withOffsetDelta(body, current.length);
    limit = Math.min(limit, topicLimit);
    current.push(message);
  }
  if (current.length > 0) sends.push(current);
  return sends;
}

function tooLarge(message: SizedMessage, index: number, count: number, bytes: number, limit: number): ArcError {
  const where = count > 1 ? ` (record ${index + 1} of ${count}; none of them was sent)` : '';
  return new ArcError(
    'TOO_LARGE',
    `record with key "${message.key}" for ${message.topic} is ${bytes} bytes encoded as a batch of its own, over the ${limit}-byte limit of one produce request to that topic${where}`,
    { retryable: false },
  );
}

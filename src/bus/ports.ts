/**
 * The Bus port: named topics of keyed records with partitions (order per key), consumer groups
 * with committed offsets and at-least-once delivery. Adapters move bytes and headers; encoding,
 * validation and dead-lettering live above the port (`typed-bus.ts`) so every adapter behaves alike.
 */

export type Headers = Record<string, string>;

export interface OutgoingRecord {
  readonly key: string;
  readonly value: Uint8Array;
  readonly headers: Headers;
}

export interface ConsumedRecord extends OutgoingRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  /** When the broker accepted the record, ms since the epoch. */
  readonly timestamp: number;
}

export interface TopicConfig {
  readonly topic: string;
  readonly partitions: number;
  readonly retentionMs: number;
}

export interface ConsumeOptions {
  /** Consumer group: members of one group share partitions; each group sees every record. */
  readonly group: string;
  readonly topics: readonly string[];
  /**
   * Called for each record in partition order. The offset is committed after the promise resolves;
   * a rejection means "not processed": the record is redelivered after a backoff, so handlers must
   * be idempotent. The adapter never skips a record because its handler failed.
   */
  readonly handler: (record: ConsumedRecord) => Promise<void> | void;
  /** Where a group with no committed offset starts: the earliest record (default) or only new ones. */
  readonly startAt?: 'earliest' | 'latest';
}

/** Where a transactional batch handler stages what it produces; nothing is visible to readers before the batch commits. */
export interface TransactionalOutput {
  produce(topic: string, records: readonly OutgoingRecord[]): void;
  /** Runs once the batch's records and offsets are committed (never if the batch is redelivered instead). */
  afterCommit(task: () => void): void;
}

/**
 * Consume-transform-produce, exactly once: the records a handler stages for a batch and the group's
 * offset past that batch commit together or not at all. A partition's new owner fences its previous
 * one, so a deposed member's staged records never become visible.
 */
export interface TransactionalConsumeOptions {
  readonly group: string;
  readonly topics: readonly string[];
  readonly startAt?: 'earliest' | 'latest';
  /** Names this step; with the partition it identifies the transactional producer (stable across restarts). */
  readonly transactionalId: string;
  /** Most records handed over at once (default 500). */
  readonly maxBatch?: number;
  /**
   * Records of one partition, in order. Resolving commits the staged output and the offsets;
   * rejecting (or a failed commit) stages nothing and redelivers the same records after a backoff,
   * so handlers must be idempotent in any side effects beyond the output. Resolving with a count n
   * (1 ≤ n < records.length) takes only the first n: the offset moves past them alone, and the rest
   * open the partition's next batch. A handler that routes a bounded amount per batch looks at more
   * than it takes (see TransactionalSubscribeOptions.screen).
   */
  readonly handler: (records: readonly ConsumedRecord[], output: TransactionalOutput) => Promise<number | void>;
}

export interface Consumer {
  /** Leaves the group; partitions move to the remaining members from the last committed offset. */
  close(): Promise<void>;
}

export interface BusAdapter {
  readonly kind: string;
  /** Creates topics that do not exist yet; existing ones are left as they are. */
  ensureTopics(configs: readonly TopicConfig[]): Promise<void>;
  /** Appends records; resolves once they are durable in the adapter's sense. Topics are created on first use if missing. */
  produce(topic: string, records: readonly OutgoingRecord[]): Promise<void>;
  consume(options: ConsumeOptions): Promise<Consumer>;
  consumeTransactional(options: TransactionalConsumeOptions): Promise<Consumer>;
  /** Committed offset (next offset to read) of a group on a partition, for lag and tests. */
  committed(group: string, topic: string, partition: number): Promise<number>;
  /** Records of one partition from an offset, for inspection (dead-letter browsing, tests). */
  read(topic: string, partition: number, fromOffset: number, limit: number): Promise<ConsumedRecord[]>;
  partitions(topic: string): Promise<number>;
  close(): Promise<void>;
}

/** Stable partition for a key: the same key always lands in the same partition (murmur-like FNV-1a). */
export function partitionForKey(key: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

/** How many records of a batch of `available` a transactional handler took (its resolved value): all, or a prefix of at least one. */
export function takenOf(taken: number | void, available: number): number {
  if (taken === undefined) return available;
  if (!Number.isInteger(taken) || taken < 1 || taken > available) throw new RangeError(`a transactional handler took ${taken} of ${available} records; it must take between 1 and all of them`);
  return taken;
}

/** The first `taken` of a batch's records: the batch itself when it took them all (the common case, no copy). */
export function takenPrefix(records: readonly ConsumedRecord[], taken: number): readonly ConsumedRecord[] {
  return taken === records.length ? records : records.slice(0, taken);
}

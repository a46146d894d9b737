/**
 * In-process Bus adapter for the embedded mode. Records live in per-partition arrays for the
 * topic's retention window; groups keep committed offsets; partitions are spread over a group's
 * members and move when a member leaves, resuming from the last committed offset (at-least-once).
 * Nothing here survives the process: embedded mode keeps durable state in the store, not the bus.
 */
import { backoffDelay } from '../core/clock.ts';
import type { BusAdapter, ConsumeOptions, ConsumedRecord, Consumer, OutgoingRecord, TopicConfig, TransactionalConsumeOptions } from './ports.ts';
import { partitionForKey, takenOf } from './ports.ts';

const DEFAULT_PARTITIONS = 4;
const DEFAULT_RETENTION_MS = 24 * 3_600_000;
/** Retention is looked at only once a partition holds this many records, and then every so many appends. */
const RETENTION_CHECK_RECORDS = 128;
const RETENTION_CHECK_EVERY = 64;

interface Partition {
  records: ConsumedRecord[];
  /** Offset of records[0]: records before it were dropped by retention. */
  base: number;
  waiters: Set<() => void>;
  appendsSinceCheck: number;
}

interface Topic {
  readonly name: string;
  readonly partitions: Partition[];
  readonly retentionMs: number;
}

interface Member {
  readonly id: number;
  readonly options: ConsumeOptions | TransactionalConsumeOptions;
  closed: boolean;
  /** Partitions this member owns, by "topic#partition"; each owner loop stops when its flag flips. */
  readonly owned: Map<string, { stop: boolean; done: Promise<void> }>;
}

interface Group {
  readonly name: string;
  readonly members: Member[];
  /** Committed offset per "topic#partition". */
  readonly offsets: Map<string, number>;
  /** Rebalances run one at a time, so two joins can never both hand out the same partition. */
  rebalancing: Promise<void>;
}

export interface MemoryBusOptions {
  readonly defaultPartitions?: number;
  readonly retryBaseMs?: number;
  readonly retryCapMs?: number;
  readonly now?: () => number;
}

export class MemoryBus implements BusAdapter {
  readonly kind = 'memory';
  private readonly topics = new Map<string, Topic>();
  private readonly groups = new Map<string, Group>();
  private nextMemberId = 1;
  private closed = false;
  private readonly defaultPartitions: number;
  private readonly retryBaseMs: number;
  private readonly retryCapMs: number;
  private readonly now: () => number;

  constructor(options: MemoryBusOptions = {}) {
    this.defaultPartitions = options.defaultPartitions ?? DEFAULT_PARTITIONS;
    this.retryBaseMs = options.retryBaseMs ?? 20;
    this.retryCapMs = options.retryCapMs ?? 2_000;
    this.now = options.now ?? Date.now;
  }

  async ensureTopics(configs: readonly TopicConfig[]): Promise<void> {
    for (const config of configs) this.topic(config.topic, config.partitions, config.retentionMs);
  }

  async produce(topicName: string, records: readonly OutgoingRecord[]): Promise<void> {
    this.produceSync(topicName, records);
  }

  /** Synchronous append, for in-process producers on hot paths that need no await. */
  produceSync(topicName: string, records: readonly OutgoingRecord[]): void {
    if (this.closed) throw new Error(`memory bus is closed: cannot produce to ${topicName}`);
    const topic = this.topic(topicName);
    const timestamp = this.now();
    const touched = new Map<Partition, number>();
    for (const record of records) {
      const index = partitionForKey(record.key, topic.partitions.length);
      const partition = topic.partitions[index]!;
      partition.records.push({
        topic: topicName,
        partition: index,
        offset: partition.base + partition.records.length,
        timestamp,
        key: record.key,
        value: record.value,
        headers: record.headers,
      });
      touched.set(partition, index);
    }
    for (const [partition, index] of touched) {
      this.applyRetention(topic, partition, index, timestamp);
      for (const wake of partition.waiters) wake();
      partition.waiters.clear();
    }
  }

  consume(options: ConsumeOptions): Promise<Consumer> {
    return this.join(options);
  }

  consumeTransactional(options: TransactionalConsumeOptions): Promise<Consumer> {
    return this.join(options);
  }

  private async join(options: ConsumeOptions | TransactionalConsumeOptions): Promise<Consumer> {
    if (this.closed) throw new Error('memory bus is closed: cannot consume');
    for (const name of options.topics) this.topic(name);
    let group = this.groups.get(options.group);
    if (!group) {
      group = { name: options.group, members: [], offsets: new Map(), rebalancing: Promise.resolve() };
      this.groups.set(options.group, group);
    }
    const member: Member = { id: this.nextMemberId++, options, closed: false, owned: new Map() };
    group.members.push(member);
    await this.rebalance(group);
    return {
      close: async () => {
        if (member.closed) return;
        member.closed = true;
        const stopping: Promise<void>[] = [];
        for (const [key, owned] of member.owned) {
          owned.stop = true;
          this.wakePartition(key);
          stopping.push(owned.done);
        }
        member.owned.clear();
        await Promise.all(stopping);
        const index = group.members.indexOf(member);
        if (index >= 0) group.members.splice(index, 1);
        if (!this.closed) await this.rebalance(group);
      },
    };
  }

  async committed(group: string, topic: string, partition: number): Promise<number> {
    return this.groups.get(group)?.offsets.get(`${topic}#${partition}`) ?? 0;
  }

  async read(topicName: string, partitionIndex: number, fromOffset: number, limit: number): Promise<ConsumedRecord[]> {
    const partition = this.topics.get(topicName)?.partitions[partitionIndex];
    if (!partition) return [];
    const start = Math.max(0, fromOffset - partition.base);
    return partition.records.slice(start, start + limit);
  }

  async partitions(topic: string): Promise<number> {
    return this.topic(topic).partitions.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    const stops: Promise<void>[] = [];
    for (const group of this.groups.values()) {
      for (const member of group.members) {
        member.closed = true;
        for (const owned of member.owned.values()) {
          owned.stop = true;
          stops.push(owned.done);
        }
      }
    }
    for (const topic of this.topics.values()) {
      for (const partition of topic.partitions) {
        for (const wake of partition.waiters) wake();
        partition.waiters.clear();
      }
    }
    await Promise.all(stops);
  }

  private topic(name: string, partitions = this.defaultPartitions, retentionMs = DEFAULT_RETENTION_MS): Topic {
    let topic = this.topics.get(name);
    if (!topic) {
      topic = {
        name,
        retentionMs,
        partitions: Array.from({ length: partitions }, () => ({ records: [], base: 0, waiters: new Set<() => void>(), appendsSinceCheck: 0 })),
      };
      this.topics.set(name, topic);
      // A topic born after a group subscribed by name still needs its partitions owned.
      for (const group of this.groups.values()) {
        if (group.members.some((m) => m.options.topics.includes(name))) void this.rebalance(group);
      }
    }
    return topic;
  }

  /**
   * Drops records every group reading the topic has committed, and records past the topic's
   * retention. Kafka keeps consumed records for replay; in one process nobody can replay after a
   * restart anyway, and keeping them would grow the heap by every message routed (and the GC pauses
   * with it). Records some group has not consumed yet are kept, so nothing accepted is lost.
   */
  private applyRetention(topic: Topic, partition: Partition, index: number, now: number): void {
    if (partition.records.length < RETENTION_CHECK_RECORDS || ++partition.appendsSinceCheck < RETENTION_CHECK_EVERY) return;
    partition.appendsSinceCheck = 0;
    const key = `${topic.name}#${index}`;
    let consumedByAll = Infinity;
    let readers = 0;
    for (const group of this.groups.values()) {
      if (!group.members.some((m) => m.options.topics.includes(topic.name))) continue;
      readers++;
      consumedByAll = Math.min(consumedByAll, group.offsets.get(key) ?? partition.base);
    }
    let drop = readers > 0 ? Math.max(0, consumedByAll - partition.base) : 0;
    while (drop < partition.records.length && now - partition.records[drop]!.timestamp > topic.retentionMs) drop++;
    if (drop === 0) return;
    partition.records.splice(0, drop);
    partition.base += drop;
  }

  private rebalance(group: Group): Promise<void> {
    group.rebalancing = group.rebalancing.then(() => this.assign(group));
    return group.rebalancing;
  }

  /** Round-robin assignment of every (topic, partition) the group reads over its live members. */
  private async assign(group: Group): Promise<void> {
    const wanted = new Map<string, Member>();
    const keys: string[] = [];
    const topicNames = new Set(group.members.flatMap((m) => m.options.topics));
    for (const name of [...topicNames].sort()) {
      const topic = this.topics.get(name);
      if (!topic) continue;
      const readers = group.members.filter((m) => m.options.topics.includes(name));
      topic.partitions.forEach((_, index) => {
        const key = `${name}#${index}`;
        keys.push(key);
        wanted.set(key, readers[index % readers.length]!);
      });
    }
    // Stop every loop that moves before starting its new owner, so a partition never has two readers.
    const stopping: Promise<void>[] = [];
    for (const member of group.members) {
      for (const [key, owned] of member.owned) {
        if (wanted.get(key) !== member) {
          owned.stop = true;
          this.wakePartition(key);
          stopping.push(owned.done);
          member.owned.delete(key);
        }
      }
    }
    await Promise.all(stopping);
    for (const key of keys) {
      const member = wanted.get(key)!;
      if (member.closed || member.owned.has(key)) continue;
      const control = { stop: false, done: Promise.resolve() };
      member.owned.set(key, control);
      control.done = this.runPartition(group, member, key, control);
    }
  }

  private wakePartition(key: string): void {
    const [name, index] = splitKey(key);
    const partition = this.topics.get(name)?.partitions[index];
    if (!partition) return;
    for (const wake of partition.waiters) wake();
    partition.waiters.clear();
  }

  private async runPartition(group: Group, member: Member, key: string, control: { stop: boolean }): Promise<void> {
    const [name, index] = splitKey(key);
    const topic = this.topics.get(name)!;
    const partition = topic.partitions[index]!;
    if (!group.offsets.has(key)) {
      group.offsets.set(key, member.options.startAt === 'latest' ? partition.base + partition.records.length : partition.base);
    }
    let attempt = 0;
    const options = member.options;
    while (!control.stop && !member.closed) {
      const offset = Math.max(group.offsets.get(key)!, partition.base);
      const record = partition.records[offset - partition.base];
      if (!record) {
        await new Promise<void>((resolve) => partition.waiters.add(resolve));
        continue;
      }
      try {
        let next = offset + 1;
        if ('transactionalId' in options) {
          const batch = partition.records.slice(offset - partition.base, offset - partition.base + (options.maxBatch ?? 500));
          const staged: { topic: string; records: readonly OutgoingRecord[] }[] = [];
          const committed: (() => void)[] = [];
          const taken = await options.handler(batch, { produce: (topic, records) => void staged.push({ topic, records }), afterCommit: (task) => void committed.push(task) });
          next = offset + takenOf(taken, batch.length);
          // One synchronous step: the output appears and the offset moves together, or (stopped) neither.
          if (control.stop) continue;
          for (const { topic, records } of staged) this.produceSync(topic, records);
          group.offsets.set(key, next);
          for (const task of committed) task();
          attempt = 0;
          // A handler that never waits on I/O would keep this loop in microtasks: timers, sockets and
          // other consumers' records would wait behind a whole backlog. One turn of the event loop per
          // batch, as a broker round trip would give.
          await new Promise<void>((resolve) => setImmediate(resolve));
          continue;
        }
        await options.handler(record);
        attempt = 0;
        // A member that lost the partition mid-handler must not move the group's offset.
        if (!control.stop) group.offsets.set(key, next);
      } catch {
        const delay = backoffDelay(attempt++, this.retryBaseMs, this.retryCapMs);
        await new Promise<void>((resolve) => setTimeout(resolve, delay));
      }
    }
  }
}

function splitKey(key: string): [string, number] {
  const hash = key.lastIndexOf('#');
  return [key.slice(0, hash), Number(key.slice(hash + 1))];
}

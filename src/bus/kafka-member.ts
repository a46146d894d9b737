/**
 * One member of a Kafka consumer group behind the Bus port's `consume()`: records are handled one at
 * a time per partition, an offset is committed only after its handler resolved, a failed record is
 * handed to the handler again after a backoff (never skipped), and a lost connection restarts the
 * member with backoff until the cluster answers again.
 *
 * The library's MessagesStream fetches for every partition the member owns and knows nothing of
 * handlers, so this keeps a queue per partition on top of it. Group membership uses the classic
 * (eager) protocol: every rebalance takes all partitions away and hands them out again, so before
 * each JoinGroup (the `protocolsMetadata` hook, the one place the library calls before rejoining)
 * the member lets running handlers finish for a short grace, commits what they finished and drops
 * its queues; after the join each partition restarts from the group's committed offset.
 *
 * Batch delivery (consume-transform-produce) is pipelined one deep per partition: the next batch is
 * decided while the one before commits, and committed only after it (ADR 0019, drainBatches()).
 */
import { Consumer as KafkaConsumer, FetchIsolationLevels, stringDeserializer } from '@platformatic/kafka';
import type { CommitOptionsPartition, ConsumerGroupJoinPayload, Message, MessagesStream } from '@platformatic/kafka';
import { backoffDelay } from '../core/clock.ts';
import { ArcError } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { BatchCycle } from './batch-cycle.ts';
import { baseClientOptions, describeServers, isRetryableKafkaError, kafkaErrorDetail } from './kafka-config.ts';
import type { KafkaConnectionOptions } from './kafka-config.ts';
import type { ConsumeOptions, ConsumedRecord, Consumer, Headers } from './ports.ts';
import { takenPrefix } from './ports.ts';

type KafkaMessage = Message<string, Buffer, string, string>;
type Stream = MessagesStream<string, Buffer, string, string>;
type LibraryConsumer = KafkaConsumer<string, Buffer, string, string>;

export interface MemberSettings {
  readonly connection: KafkaConnectionOptions;
  readonly logger: Logger;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly rebalanceTimeoutMs: number;
  /** How long a rebalance waits for running handlers before giving their partitions up uncommitted. */
  readonly revokeGraceMs: number;
  /** How long close() waits for running handlers. */
  readonly closeGraceMs: number;
  readonly retryBaseMs: number;
  readonly retryCapMs: number;
  /** Records fetched but not yet handled, over all partitions, before fetching pauses. */
  readonly maxBufferedRecords: number;
  readonly fetchMaxWaitMs: number;
  /** Bounds on one fetch response, whole and per partition (KafkaBusOptions.fetchMaxBytes). */
  readonly fetchMaxBytes: number;
  readonly fetchMaxBytesPerPartition: number;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Creates the subscribed topics when missing; runs before every (re)start. */
  readonly prepare: (topics: readonly string[]) => Promise<void>;
}

/**
 * Batch delivery for consume-transform-produce, pipelined one deep: `decide` gets up to `maxBatch`
 * queued records of one partition and resolves to the batch's commit, which commits their offsets
 * itself (in its transaction), so the member does not. The next batch is decided while the one
 * before commits; its commit is called only once that one has committed, and never if it failed.
 */
export interface BatchDelivery {
  readonly maxBatch: number;
  /**
   * Runs the handler of one batch and resolves to its commit. `previous` is the batch of the same
   * partition committing meanwhile, if any: its records, and its commit (rejects when that fails,
   * in which case what this call decided is discarded and redelivered).
   */
  readonly decide: (records: readonly ConsumedRecord[], previous: CommittingBatch | undefined) => Promise<DecidedBatch>;
  /**
   * Runs before newly assigned partitions are handled: fences their previous owner and lets its
   * last transaction finish, so the committed offsets read right after are final.
   */
  readonly fence: (partitions: readonly { readonly topic: string; readonly partition: number }[]) => Promise<void>;
}

/** A decided batch: how many of the records handed over it took (a prefix; the rest open the next batch), and its commit. */
export interface DecidedBatch {
  readonly taken: number;
  readonly commit: () => Promise<void>;
}

/** A batch whose commit is under way while the next one of its partition is decided. */
export interface CommittingBatch {
  readonly records: readonly ConsumedRecord[];
  /** Resolves once it committed (its afterCommit tasks run); rejects when it did not. */
  readonly committed: Promise<void>;
}

/** Group details a transactional offset commit must carry (KIP-447 fencing). */
export interface MemberGroupInfo {
  readonly consumer: LibraryConsumer;
  readonly groupId: string;
  readonly generationId: number;
  readonly memberId: string;
  readonly coordinatorId: number;
}

interface PartitionState {
  readonly key: string;
  readonly topic: string;
  readonly partition: number;
  readonly generation: number;
  /** Next offset to accept from the stream; unknown until the stream has positioned the partition. */
  next: bigint | undefined;
  /** Where the stream positioned the partition (records arriving move `next` on, not this). */
  start: bigint | undefined;
  /**
   * Fetches numbered up to this one were sent before the partition was last positioned (assigned, or
   * sought to the committed offset): their records are dropped and they do not move the stream's position.
   */
  staleThrough: number;
  /** Set once the start position is committed: only then are records handed to the handler. */
  active: boolean;
  /** A rebalance is coming: finish the running handler, start no other. */
  revoking: boolean;
  /** Given up: never handle or commit for this assignment again. */
  stopped: boolean;
  readonly queue: KafkaMessage[];
  draining: boolean;
  /** Ends a backoff sleep early when the partition is revoked or stopped. */
  wake: (() => void) | undefined;
}

interface PendingCommit {
  readonly key: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly leaderEpoch: number;
  readonly generation: number;
}

interface Session {
  readonly consumer: LibraryConsumer;
  stream: Stream | undefined;
  phase: 'starting' | 'running' | 'ended';
  readonly states: Map<string, PartitionState>;
  readonly pending: Map<string, PendingCommit>;
  flushing: Promise<void> | undefined;
  commitRetry: NodeJS.Timeout | undefined;
  buffered: number;
  paused: boolean;
  /** Fetch requests the stream has sent so far: the number of the last one. */
  fetches: number;
  ready: Promise<void>;
  resolveReady: () => void;
  rejectReady: (error: unknown) => void;
}

const EMPTY = Buffer.alloc(0);
const COMMIT_FLUSH_TIMEOUT_MS = 5_000;
const TEARDOWN_TIMEOUT_MS = 10_000;
const RESTART_BASE_MS = 250;
const RESTART_CAP_MS = 5_000;

export class KafkaGroupMember implements Consumer {
  private readonly settings: MemberSettings;
  private readonly options: ConsumeOptions;
  private readonly onClosed: (member: KafkaGroupMember) => void;
  private readonly logger: Logger;
  private session: Session | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartAttempt = 0;
  /** The running handler call per partition, across sessions: a partition never has two at once here. */
  private readonly inflight = new Map<string, Promise<void>>();
  /** Batch delivery's decide and commit times, for when to decide a batch that would not be full. */
  private readonly cycle = new BatchCycle();

  private readonly batch: BatchDelivery | undefined;

  constructor(settings: MemberSettings, options: ConsumeOptions, onClosed: (member: KafkaGroupMember) => void, batch?: BatchDelivery) {
    this.settings = settings;
    this.options = options;
    this.batch = batch;
    this.onClosed = onClosed;
    this.logger = settings.logger;
  }

  get group(): string {
    return this.options.group;
  }

  /**
   * Resolves once the member has joined and its partitions are positioned, so a `startAt: 'latest'`
   * member sees everything produced after this. If the cluster cannot be reached the member keeps
   * retrying in the background and this resolves anyway: a service starts degraded rather than not at all.
   */
  async start(): Promise<void> {
    try {
      await this.openSession();
    } catch (error) {
      if (this.closed) return;
      if (!isRetryableKafkaError(error)) {
        await this.close();
        throw new ArcError('INTERNAL', `Kafka at ${this.servers()} refused consumer group ${this.group}: ${kafkaErrorDetail(error)}`, { retryable: false, cause: error });
      }
      this.logger.warn({ group: this.group, topics: this.options.topics, err: kafkaErrorDetail(error) }, `Kafka at ${this.servers()} unreachable; consumer group member will keep retrying`);
      this.scheduleRestart();
    }
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** The live group details when this member owns the record's partition right now; else undefined. */
  groupInfoFor(record: ConsumedRecord): MemberGroupInfo | undefined {
    const session = this.session;
    if (!session || session.phase === 'ended') return undefined;
    const state = session.states.get(partitionKey(record.topic, record.partition));
    const consumer = session.consumer;
    if (!state || state.stopped || state.generation !== consumer.generationId) return undefined;
    if (consumer.memberId === null || consumer.coordinatorId === null) return undefined;
    return { consumer, groupId: this.group, generationId: consumer.generationId, memberId: consumer.memberId, coordinatorId: consumer.coordinatorId };
  }

  private servers(): string {
    return describeServers(this.settings.connection.bootstrapServers);
  }

  private async openSession(): Promise<void> {
    const s = this.settings;
    await s.prepare(this.options.topics);
    if (this.closed) return;
    let resolveReady: () => void = () => undefined;
    let rejectReady: (error: unknown) => void = () => undefined;
    const ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    // A failure before anyone awaits `ready` must not surface as an unhandled rejection.
    ready.catch(() => undefined);
    const consumer: LibraryConsumer = new KafkaConsumer<string, Buffer, string, string>({
      ...baseClientOptions(s.connection, 'consumer', { connectTimeoutMs: s.connectTimeoutMs, requestTimeoutMs: s.requestTimeoutMs }),
      groupId: this.group,
      autocommit: false,
      sessionTimeout: s.sessionTimeoutMs,
      heartbeatInterval: s.heartbeatIntervalMs,
      rebalanceTimeout: s.rebalanceTimeoutMs,
      maxWaitTime: s.fetchMaxWaitMs,
      maxBytes: s.fetchMaxBytes,
      maxBytesPerPartition: s.fetchMaxBytesPerPartition,
      // The library's default too; explicit because produceTransactional relies on it: records of an
      // open or aborted transaction are never handed to a handler.
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      deserializers: { key: stringDeserializer, headerKey: stringDeserializer, headerValue: stringDeserializer },
      protocolsMetadata: () => this.beforeJoin(session),
    });
    const session: Session = {
      consumer,
      stream: undefined,
      phase: 'starting',
      states: new Map(),
      pending: new Map(),
      flushing: undefined,
      commitRetry: undefined,
      buffered: 0,
      paused: false,
      fetches: 0,
      ready,
      resolveReady,
      rejectReady,
    };
    this.session = session;
    this.numberFetches(session);
    consumer.on('error', (error: Error) => this.failed(session, error));
    consumer.on('consumer:heartbeat:stalled', (payload) => {
      this.failed(session, new Error(`group heartbeats stalled for ${payload.stalledFor} ms${payload.lastError ? `: ${kafkaErrorDetail(payload.lastError)}` : ''}`));
    });
    consumer.on('consumer:group:join', (payload: ConsumerGroupJoinPayload) => this.joined(session, payload));
    try {
      // A failure the consumer reports while it joins ends the wait too, whether or not consume() settles.
      const stream = await Promise.race([
        consumer.consume({
          topics: [...this.options.topics],
          mode: 'committed',
          fallbackMode: this.options.startAt === 'latest' ? 'latest' : 'earliest',
          autocommit: false,
          maxWaitTime: s.fetchMaxWaitMs,
          maxBytes: s.fetchMaxBytes,
          maxBytesPerPartition: s.fetchMaxBytesPerPartition,
        }),
        session.ready.then(() => new Promise<never>(() => undefined)),
      ]);
      session.stream = stream;
      stream.on('data', (message: KafkaMessage) => this.received(session, message));
      stream.on('offsets', () => this.positioned(session));
      stream.on('error', (error: Error) => this.failed(session, error));
      stream.on('close', () => this.failed(session, new Error('the message stream closed')));
      if (this.closed) return;
      // Positioning is a listing and a commit away; if it drags on, the member runs anyway and
      // handles records once positioned, rather than holding consume() hostage.
      if (await within(session.ready, s.rebalanceTimeoutMs)) await session.ready;
      else this.logger.warn({ group: this.group }, `partitions not positioned after ${s.rebalanceTimeoutMs} ms; continuing`);
      if (session.phase === 'starting') session.phase = 'running';
    } catch (error) {
      await this.endSession(session, false);
      throw error;
    }
  }

  /** Before every JoinGroup: finish (briefly) what runs, commit it, and let every partition go. */
  private async beforeJoin(session: Session): Promise<Buffer> {
    const states = [...session.states.values()].filter((state) => !state.stopped);
    if (states.length === 0) return EMPTY;
    for (const state of states) {
      state.revoking = true;
      state.wake?.();
    }
    await within(this.settle(states.map((state) => state.key)), this.settings.revokeGraceMs);
    for (const state of states) this.stop(session, state);
    await within(this.flush(session), COMMIT_FLUSH_TIMEOUT_MS);
    return EMPTY;
  }

  private joined(session: Session, payload: ConsumerGroupJoinPayload): void {
    if (session.phase === 'ended') return;
    for (const state of session.states.values()) this.stop(session, state);
    session.states.clear();
    const generation = payload.generationId ?? session.consumer.generationId;
    for (const assignment of payload.assignments ?? []) {
      for (const partition of assignment.partitions) {
        const key = partitionKey(assignment.topic, partition);
        session.states.set(key, {
          key,
          topic: assignment.topic,
          partition,
          generation,
          next: undefined,
          start: undefined,
          staleThrough: session.fetches,
          active: false,
          revoking: false,
          stopped: false,
          queue: [],
          draining: false,
          wake: undefined,
        });
      }
    }
  }

  /**
   * The stream has positioned its partitions (committed offset, or the start point for a group with
   * none). Records fetched before this are from the previous assignment and were dropped; from here
   * on they are accepted. The start point is committed before anything is handled, so a partition
   * that moves before its first commit resumes where this member started instead of re-deciding.
   */
  private positioned(session: Session): void {
    const stream = session.stream;
    if (session.phase === 'ended' || !stream) return;
    const fresh: PartitionState[] = [];
    for (const state of session.states.values()) {
      if (state.stopped || state.next !== undefined) continue;
      const position = stream.offsetsToFetch.get(state.key);
      if (position === undefined) continue;
      state.next = position;
      state.start = position;
      fresh.push(state);
    }
    if (fresh.length === 0) {
      session.resolveReady();
      return;
    }
    void this.activate(session, fresh);
  }

  /**
   * Newly assigned partitions: fence their previous owner (batch delivery), read where the group is,
   * record a start point for a group with none, then hand records to the handler. A batch member
   * handles nothing before the fence and the offsets are through: without them it could handle again
   * what the previous owner's last transaction committed, so it retries until they are (or the session
   * ends). A plain member goes on without them: only a move before its first commit re-decides the start.
   */
  private async activate(session: Session, states: PartitionState[]): Promise<void> {
    const byTopic = new Map<string, number[]>();
    for (const state of states) byTopic.set(state.topic, [...(byTopic.get(state.topic) ?? []), state.partition]);
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.batch) await this.batch.fence(states.map((state) => ({ topic: state.topic, partition: state.partition })));
        const committed = await session.consumer.listCommittedOffsets({ topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) });
        for (const state of states) {
          const offset = committed.get(state.topic)?.[state.partition];
          if (offset === undefined || offset < 0n) {
            this.markCommit(session, state, state.start!, -1);
            this.seek(session, state, state.start!);
          } else {
            if (offset > state.start!) this.logger.info({ group: this.group, topic: state.topic, partition: state.partition, from: String(state.start), to: String(offset) }, 'skipping records the previous owner committed in its last transaction');
            this.seek(session, state, offset);
          }
        }
        await within(this.flush(session), COMMIT_FLUSH_TIMEOUT_MS);
        if (attempt > 0) this.logger.info({ group: this.group, partitions: states.map((state) => state.key), attempts: attempt + 1 }, 'new partitions fenced and positioned; handling them');
        break;
      } catch (error) {
        if (!this.batch) {
          this.logger.warn({ group: this.group, err: kafkaErrorDetail(error) }, 'could not record the start offsets of new partitions');
          break;
        }
        if (session.phase === 'ended') return;
        if (states.every((state) => state.stopped)) {
          session.resolveReady();
          return;
        }
        this.logger.warn({ group: this.group, partitions: states.map((state) => state.key), attempt, err: kafkaErrorDetail(error) }, 'could not fence the previous owner of new partitions or read their offsets; retrying before handling them');
        await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt, this.settings.retryBaseMs * 20, RESTART_CAP_MS)));
      }
    }
    for (const state of states) {
      if (state.stopped) continue;
      state.active = true;
      void this.drain(session, state);
    }
    session.resolveReady();
  }

  /**
   * Resumes the partition exactly at `offset`, the group's committed offset read after the fence
   * (or the start point just committed for a group with none), backwards as well as forwards. The
   * stream's own position is not to be trusted here: it was read before the previous owner's last
   * transaction had finished (OffsetFetch without require_stable), and a fetch sent before the
   * rebalance, answered after the stream re-read the offsets, moves it on to where that fetch ended,
   * past records nobody handled (a member that kept its partition through a rebalance lost them so).
   * Everything fetched so far is dropped, queued or still to arrive, and the stream fetches from here.
   */
  private seek(session: Session, state: PartitionState, offset: bigint): void {
    state.staleThrough = session.fetches;
    state.next = offset;
    this.released(session, state.queue.length);
    state.queue.length = 0;
    session.stream?.offsetsToFetch.set(state.key, offset);
  }

  /**
   * Numbers the stream's fetch requests and marks each record with the number of its fetch, so that
   * a seek can tell fetches sent before it. A stale answer's records are dropped in received(), and
   * the position it would set for the sought partition is put back (the stream sends the next fetch
   * on a later tick; one fetch per broker is in flight, so none of that partition answers meanwhile).
   */
  private numberFetches(session: Session): void {
    const consumer = session.consumer;
    const fetch = consumer.fetch.bind(consumer) as (options: unknown, callback: (error: Error | null, response: unknown) => void) => void;
    const numbered = (options: unknown, callback?: (error: Error | null, response: unknown) => void): unknown => {
      if (typeof callback !== 'function') return (fetch as unknown as (options: unknown) => Promise<unknown>)(options);
      const number = ++session.fetches;
      fetch(options, (error, response) => {
        if (error || !response) {
          callback(error, response);
          return;
        }
        markFetch(response, number);
        const positions = session.stream?.offsetsToFetch;
        const kept: [string, bigint | undefined][] = [];
        for (const state of session.states.values()) {
          if (number <= state.staleThrough) kept.push([state.key, positions?.get(state.key)]);
        }
        try {
          callback(error, response);
        } finally {
          for (const [key, position] of kept) {
            if (position !== undefined) positions?.set(key, position);
          }
        }
      });
      return undefined;
    };
    (consumer as unknown as { fetch: typeof numbered }).fetch = numbered;
  }

  /** Drops queued records before `offset`: the group's committed offset already covers them. */
  private dropBelow(session: Session, state: PartitionState, offset: bigint): number {
    const before = state.queue.length;
    const kept = state.queue.filter((message) => message.offset >= offset);
    state.queue.length = 0;
    state.queue.push(...kept);
    this.released(session, before - kept.length);
    return before - kept.length;
  }

  private received(session: Session, message: KafkaMessage): void {
    if (session.phase === 'ended') return;
    const state = session.states.get(partitionKey(message.topic, message.partition));
    if (!state || state.stopped || state.next === undefined) return;
    // Records the stream fetched for an earlier generation may still sit in its buffer.
    const metadata = message.metadata as { consumer?: { generationId?: number }; [FETCH_NUMBER]?: number } | undefined;
    const generation = metadata?.consumer?.generationId;
    if (generation !== undefined && generation !== state.generation) return;
    // Fetched before the partition was positioned: the stream fetches it again from there.
    const fetched = metadata?.[FETCH_NUMBER];
    if (fetched !== undefined && fetched <= state.staleThrough) return;
    // The stream re-fetches from the committed offset after every join: what is already queued is skipped.
    if (message.offset < state.next) return;
    state.next = message.offset + 1n;
    state.queue.push(message);
    session.buffered++;
    if (!session.paused && session.buffered >= this.settings.maxBufferedRecords) {
      session.paused = true;
      session.stream?.pause();
    }
    if (state.active) void this.drain(session, state);
  }

  private async drain(session: Session, state: PartitionState): Promise<void> {
    if (state.draining) return;
    state.draining = true;
    try {
      if (this.batch) {
        await this.drainBatches(session, state);
        return;
      }
      while (state.active && !state.revoking && !state.stopped) {
        const message = state.queue[0];
        if (!message) break;
        if (!(await this.handle(session, state, message))) break;
        state.queue.shift();
        this.released(session, 1);
      }
    } finally {
      state.draining = false;
      // Records that arrived while the pipeline was winding down (received() found it draining) are not left waiting.
      if (this.batch && state.queue.length > 0 && state.active && !state.revoking && !state.stopped) void this.drain(session, state);
    }
  }

  /** True once the handler resolved (its offset is then marked for commit); false when the partition was taken away first. */
  private handle(session: Session, state: PartitionState, message: KafkaMessage): Promise<boolean> {
    const record = toRecord(message);
    return this.untilHandled(
      state,
      async () => {
        await this.options.handler(record);
        // Marked before the run settles, so a rebalance waiting on running handlers commits this one.
        // A partition stopped meanwhile (closed, or the grace ran out) hands the record on instead.
        if (!state.stopped) this.markCommit(session, state, message.offset + 1n, message.leaderEpoch);
      },
      (error, attempt) => this.logger.debug({ topic: record.topic, partition: record.partition, offset: record.offset, attempt, err: kafkaErrorDetail(error) }, 'handler failed; redelivering after a backoff'),
    );
  }

  /**
   * Batch delivery of one partition, pipelined one deep, for as long as it has records and stays
   * assigned: batch N+1 is decided (its handler runs) while batch N's transaction commits. N+1's
   * commit is called only after N committed, so transactions of a partition still begin one at a
   * time and in order, and each batch's afterCommit tasks run after its own commit. When N fails,
   * N+1's decision is discarded (not committed, its afterCommit tasks never run) and both are
   * redelivered from N's first record: the handler must be idempotent for a batch it decided but
   * that never committed, as it already is for a failed transaction.
   *
   * A failed transaction may have committed all the same (the broker went away before it answered).
   * So before each retry the partition's transactional id is fenced, which settles that transaction
   * one way or the other, and the group's committed offset is read again: the records it now covers
   * are dropped, not handled twice. The retry takes what is queued then, records that arrived during
   * the outage included. A partition being taken away decides nothing further; the commit under way
   * is waited for (within the revoke grace, as any running handler).
   */
  private async drainBatches(session: Session, state: PartitionState): Promise<void> {
    // Never two pipelines of one partition at once, across sessions too.
    for (let previous = this.inflight.get(state.key); previous; previous = this.inflight.get(state.key)) await previous;
    if (!state.active || state.revoking || state.stopped) return;
    const run = this.pipeline(session, state);
    this.inflight.set(state.key, run);
    try {
      await run;
    } finally {
      if (this.inflight.get(state.key) === run) this.inflight.delete(state.key);
    }
  }

  private async pipeline(session: Session, state: PartitionState): Promise<void> {
    const delivery = this.batch!;
    let committing: { readonly count: number; readonly batch: CommittingBatch; readonly outcome: Promise<unknown>; readonly startedAt: number } | undefined;
    let failures = 0;
    let first: Error | undefined;
    let mustResync = false;
    const gone = (): boolean => !state.active || state.revoking || state.stopped;
    /** After a failure: back off; false when the partition was taken away meanwhile. */
    const failed = async (error: unknown): Promise<boolean> => {
      first ??= error instanceof Error ? error : new Error(String(error));
      this.logger.warn({ topic: state.topic, partition: state.partition, records: state.queue.length, attempt: failures, err: kafkaErrorDetail(error) }, 'batch not committed; redelivering after a backoff');
      failures++;
      mustResync = true;
      if (gone()) return false;
      await this.backoff(state, backoffDelay(failures - 1, this.settings.retryBaseMs, this.settings.retryCapMs));
      return !gone();
    };
    /** The batch under way committed: its records leave the queue. */
    const done = (count: number): void => {
      if (state.stopped) return;
      state.queue.splice(0, count);
      this.released(session, count);
      if (failures > 0) {
        this.logger.info({ group: this.group, topic: state.topic, partition: state.partition, records: count, failedAttempts: failures, firstError: kafkaErrorDetail(first) }, `batch committed after ${failures} failed attempt(s): ${state.topic}[${state.partition}] is flowing again`);
        failures = 0;
        first = undefined;
      }
    };
    for (;;) {
      if (gone()) {
        if (committing && (await committing.outcome) === undefined) done(committing.count);
        return;
      }
      if (mustResync) {
        // Nothing is committing here: a failure ended the batch under way, if any.
        try {
          await this.resync(session, state);
          mustResync = false;
        } catch (error) {
          if (!(await failed(error))) return;
          continue;
        }
      }
      const skip = committing?.count ?? 0;
      if (committing && state.queue.length - skip < delivery.maxBatch) {
        // A batch that would not be full is decided as late as still finishes with the commit under
        // way: records arriving meanwhile join it instead of waiting a whole cycle for the next one.
        const lateBy = this.cycle.lateBy(performance.now() - committing.startedAt);
        if (lateBy > 0) {
          await within(committing.outcome, lateBy);
          if (gone()) continue;
        }
      }
      const messages = state.queue.slice(skip, skip + delivery.maxBatch);
      if (messages.length === 0) {
        if (!committing) return;
        // Nothing to decide meanwhile: wait for the commit, then look again.
        const { count, outcome } = committing;
        const error = await outcome;
        committing = undefined;
        if (error !== undefined) {
          if (!(await failed(error))) return;
        } else done(count);
        continue;
      }
      const records = messages.map(toRecord);
      let decided: DecidedBatch | undefined;
      let decideError: unknown;
      const decideStarted = performance.now();
      try {
        decided = await delivery.decide(records, committing?.batch);
        this.cycle.decided(performance.now() - decideStarted);
      } catch (error) {
        decideError = error ?? new Error('batch handler failed');
      }
      if (committing) {
        const { count, outcome } = committing;
        const error = await outcome;
        committing = undefined;
        if (error !== undefined) {
          // What this batch decided is discarded: both are redelivered from the first uncommitted record.
          if (!(await failed(error))) return;
          continue;
        }
        done(count);
      }
      if (!decided) {
        if (!(await failed(decideError))) return;
        continue;
      }
      // Decided but not begun: a partition taken away meanwhile goes to its next owner with these records.
      if (gone()) return;
      const { taken, commit } = decided;
      const startedAt = performance.now();
      const outcome = commit().then(
        () => void this.cycle.committed(performance.now() - startedAt),
        (error: unknown) => error ?? new Error('batch commit failed'),
      );
      const committed = outcome.then((error) => {
        if (error !== undefined) throw error;
      });
      // Read by the next batch's decide only when it must wait; a failure is handled through `outcome`.
      committed.catch(() => undefined);
      committing = { count: taken, batch: { records: takenPrefix(records, taken), committed }, outcome, startedAt };
    }
  }

  /** Before a batch is retried: settle its last transaction (fence) and drop what the group's offset covers now. */
  private async resync(session: Session, state: PartitionState): Promise<void> {
    await this.batch!.fence([{ topic: state.topic, partition: state.partition }]);
    const committed = await session.consumer.listCommittedOffsets({ topics: [{ topic: state.topic, partitions: [state.partition] }] });
    const offset = committed.get(state.topic)?.[state.partition];
    if (offset === undefined || offset < 0n) return;
    if (state.next !== undefined && offset > state.next) state.next = offset;
    const dropped = this.dropBelow(session, state, offset);
    if (dropped > 0) {
      this.logger.warn({ group: this.group, topic: state.topic, partition: state.partition, committed: String(offset), dropped }, 'the failed transaction had committed after all (its answer was lost): its records are not handled again');
    }
  }

  /**
   * Runs `work` until it resolves, never two at once per partition, backing off after each failure;
   * false as soon as the partition is being taken away (its records then go to the next owner).
   */
  private async untilHandled(state: PartitionState, work: () => Promise<void>, failed: (error: unknown, attempt: number) => void): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const previous = this.inflight.get(state.key);
      if (previous) await previous;
      if (state.revoking || state.stopped) return false;
      let ok = true;
      const run = (async () => {
        try {
          await work();
        } catch (error) {
          ok = false;
          failed(error, attempt);
        }
      })();
      this.inflight.set(state.key, run);
      await run;
      if (this.inflight.get(state.key) === run) this.inflight.delete(state.key);
      if (ok) return true;
      if (state.revoking || state.stopped) return false;
      await this.backoff(state, backoffDelay(attempt, this.settings.retryBaseMs, this.settings.retryCapMs));
    }
  }

  private backoff(state: PartitionState, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        state.wake = undefined;
        resolve();
      }
      state.wake = done;
    });
  }

  private released(session: Session, count: number): void {
    session.buffered = Math.max(0, session.buffered - count);
    if (session.paused && session.buffered <= this.settings.maxBufferedRecords / 2) {
      session.paused = false;
      session.stream?.resume();
    }
  }

  private stop(session: Session, state: PartitionState): void {
    if (state.stopped) return;
    state.stopped = true;
    state.active = false;
    state.wake?.();
    this.released(session, state.queue.length);
    state.queue.length = 0;
  }

  /** Resolves when none of these partitions has a handler running. */
  private async settle(keys: readonly string[]): Promise<void> {
    for (;;) {
      const running = keys.map((key) => this.inflight.get(key)).filter((p): p is Promise<void> => p !== undefined);
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  private markCommit(session: Session, state: PartitionState, offset: bigint, leaderEpoch: number): void {
    if (session.phase === 'ended') return;
    session.pending.set(state.key, { key: state.key, topic: state.topic, partition: state.partition, offset, leaderEpoch, generation: state.generation });
    void this.flush(session);
  }

  /** Commits everything marked so far; one commit request at a time, newest offset per partition. */
  private flush(session: Session): Promise<void> {
    session.flushing ??= this.flushLoop(session).finally(() => {
      session.flushing = undefined;
    });
    return session.flushing;
  }

  private async flushLoop(session: Session): Promise<void> {
    while (session.pending.size > 0) {
      const batch = [...session.pending.values()];
      session.pending.clear();
      // An offset from an older generation would be refused, and its partition may be someone else's now.
      const current = batch.filter((entry) => entry.generation === session.consumer.generationId);
      if (current.length === 0) continue;
      const offsets: CommitOptionsPartition[] = current.map((entry) => ({ topic: entry.topic, partition: entry.partition, offset: entry.offset, leaderEpoch: entry.leaderEpoch }));
      try {
        await session.consumer.commit({ offsets });
      } catch (error) {
        for (const entry of current) {
          if (!session.pending.has(entry.key)) session.pending.set(entry.key, entry);
        }
        if (session.phase === 'ended') return;
        this.logger.warn({ group: this.group, err: kafkaErrorDetail(error) }, 'offset commit failed; will retry');
        clearTimeout(session.commitRetry);
        session.commitRetry = setTimeout(() => void this.flush(session), 1_000);
        return;
      }
    }
  }

  private failed(session: Session, error: unknown): void {
    if (session.phase === 'ended' || this.closed) return;
    if (session.phase === 'starting') {
      session.rejectReady(error);
      return;
    }
    this.logger.warn({ group: this.group, err: kafkaErrorDetail(error) }, `Kafka consumer group member lost its session with ${this.servers()}; restarting`);
    void this.endSession(session, false).then(() => this.scheduleRestart());
  }

  private scheduleRestart(): void {
    if (this.closed) return;
    clearTimeout(this.restartTimer);
    const delay = backoffDelay(this.restartAttempt++, RESTART_BASE_MS, RESTART_CAP_MS);
    this.restartTimer = setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    if (this.closed) return;
    try {
      await this.openSession();
      if (this.restartAttempt > 0) this.logger.info({ group: this.group }, `Kafka consumer group member resumed at ${this.servers()}`);
      this.restartAttempt = 0;
    } catch (error) {
      if (this.closed) return;
      this.logger.warn({ group: this.group, attempt: this.restartAttempt, err: kafkaErrorDetail(error) }, `Kafka at ${this.servers()} still unreachable; consumer group member retrying`);
      this.scheduleRestart();
    }
  }

  /**
   * Ends a session. Graceful (close): handlers running now finish but are not committed, what finished
   * before is committed, and the member leaves the group so its partitions move at once. Otherwise
   * (a lost connection) it only lets go of the library's clients.
   */
  private async endSession(session: Session, graceful: boolean): Promise<void> {
    if (session.phase === 'ended') return;
    const wasRunning = session.phase === 'running';
    session.phase = 'ended';
    const keys = [...session.states.keys()];
    for (const state of session.states.values()) this.stop(session, state);
    session.rejectReady(new ArcError('CLOSED', `consumer group member ${this.group} stopped`, { retryable: false }));
    if (graceful) {
      if (!(await within(this.settle(keys), this.settings.closeGraceMs))) {
        this.logger.warn({ group: this.group }, `handlers still running after ${this.settings.closeGraceMs} ms; leaving the group without them`);
      }
      if (wasRunning) await within(this.flushEnded(session), COMMIT_FLUSH_TIMEOUT_MS);
    }
    clearTimeout(session.commitRetry);
    const stream = session.stream;
    try {
      if (stream && !stream.destroyed) await within(stream.close(), TEARDOWN_TIMEOUT_MS);
    } catch {
      // Already failed: nothing left to release.
    }
    try {
      // Force: the stream is closed above; without force a stream the library still counts blocks leaving.
      if (!(await within(session.consumer.close(true), TEARDOWN_TIMEOUT_MS))) {
        this.logger.warn({ group: this.group }, 'Kafka consumer did not close in time');
      }
    } catch (error) {
      this.logger.debug({ group: this.group, err: kafkaErrorDetail(error) }, 'Kafka consumer close failed');
    }
  }

  /** flushLoop refuses to run for an ended session; on close the marked offsets still belong to the group. */
  private async flushEnded(session: Session): Promise<void> {
    if (session.flushing) await session.flushing.catch(() => undefined);
    const current = [...session.pending.values()].filter((entry) => entry.generation === session.consumer.generationId);
    session.pending.clear();
    if (current.length === 0) return;
    try {
      await session.consumer.commit({ offsets: current.map((entry) => ({ topic: entry.topic, partition: entry.partition, offset: entry.offset, leaderEpoch: entry.leaderEpoch })) });
    } catch (error) {
      this.logger.warn({ group: this.group, err: kafkaErrorDetail(error) }, 'final offset commit failed; the next owner will see some records again');
    }
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    const session = this.session;
    if (session) await this.endSession(session, true);
    this.onClosed(this);
  }
}

const FETCH_NUMBER = 'arcnetFetch';

/** Puts the fetch's number in every record's metadata, which the stream copies into the message's. */
function markFetch(response: unknown, number: number): void {
  const topics = (response as { responses?: { partitions?: { records?: { records?: { metadata?: Record<string, unknown> }[] }[] }[] }[] }).responses ?? [];
  const mark = { [FETCH_NUMBER]: number };
  for (const topic of topics) {
    for (const partition of topic.partitions ?? []) {
      for (const batch of partition.records ?? []) {
        for (const record of batch.records ?? []) record.metadata = record.metadata ? { ...record.metadata, ...mark } : mark;
      }
    }
  }
}

function partitionKey(topic: string, partition: number): string {
  return `${topic}:${partition}`;
}

function toRecord(message: KafkaMessage): ConsumedRecord {
  const headers: Record<string, string> = {};
  for (const [key, value] of message.headers) {
    if (typeof key === 'string') headers[key] = typeof value === 'string' ? value : '';
  }
  return {
    topic: message.topic,
    partition: message.partition,
    offset: Number(message.offset),
    timestamp: Number(message.timestamp),
    key: message.key ?? '',
    value: message.value ?? EMPTY,
    headers: headers as Headers,
  };
}

/** Waits for the promise up to `ms`; true when it settled in time (its rejection is swallowed). */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The regional inference scheduler (seed 000 §3, seed 001 Pattern 1), fixed where the seed was
 * wrong: the reservation is an atomic lease with a fencing token (not read-check-write), it lives
 * apart from telemetry (a telemetry update can never erase it), and retries back off.
 *
 * The decision comes from the in-memory candidate index fed by telemetry; the lease store is the
 * arbiter when several schedulers race for one node.
 */
import { backoffDelay, sleep, type Clock } from '../core/clock.ts';
import { newId } from '../core/ids.ts';
import { errorMessage } from '../core/errors.ts';
import { RecentMap } from '../core/recent-map.ts';
import type { Logger } from '../core/logging.ts';
import type { InferenceDispatch, InferenceRequest, InferenceResult, NodeTelemetry, Priority } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import type { BatchItem, BatchOutput, MessageBus, MessageMeta, Screened } from '../bus/typed-bus.ts';
import type { ConsumedRecord } from '../bus/ports.ts';
import { HEADER_MAX_LATENCY_MS, HEADER_MODEL, HEADER_PRIORITY, HEADER_REQUEST_ID } from '../contracts/screen-headers.ts';
import type { Consumer } from '../bus/ports.ts';
import type { DocumentStore, LeaseStore } from '../store/ports.ts';
import { nodeFromTelemetry, type NodeState } from '../mesh/node.ts';
import { HEADER_ENDPOINT } from './dispatch-router.ts';
import { InferenceCandidateIndex } from '../placement/candidate-index.ts';
import { inferenceProfile, type InferenceProfileConfig } from './profile.ts';
import { AdmissionController, chooseUnderBacklog, explain, KAFKA_ADMISSION_POLICY, rejectionCode, type AdmissionPolicy, type RejectionCode, type Turnaway } from './admission.ts';
import { HEADER_WAITING_SINCE, pastDeadline, WaitingRoom, waitedOut, type WaitingPolicy } from './waiting-room.ts';

export interface SchedulerConfig {
  readonly placement: InferenceProfileConfig;
  readonly reservationTtlMs: number;
  /** Further reservation attempts after the first, each on the next-best candidate. */
  readonly maxRetries: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  /** Geozones whose requests this scheduler routes; undefined routes every geozone. */
  readonly geozones?: readonly string[];
  /** Deadlines and queue budgets per priority (./admission.ts); DEFAULT_ADMISSION_POLICY when absent. */
  readonly admission?: AdmissionPolicy;
  /**
   * Requests routed per batch at most (default 500): a batch is decided whole before the next, so
   * under a backlog its size bounds how long its last request waits behind the others.
   */
  readonly maxBatch?: number;
  /**
   * Records a batch looks at (default: maxBatch). Past capacity most of them are turned away from
   * their headers at a small part of what routing costs, so a batch may look at more than it routes:
   * it takes records until `maxBatch` of them are to be routed, and the rest open the next batch.
   */
  readonly screenBatch?: number;
  /** How many requests may wait for a free node per model, by priority (./waiting-room.ts); DEFAULT_WAITING_POLICY when absent. */
  readonly waiting?: WaitingPolicy;
}

export const DEFAULT_SCHEDULER_CONFIG: Omit<SchedulerConfig, 'placement'> = {
  reservationTtlMs: 30_000,
  maxRetries: 3,
  backoffBaseMs: 2,
  backoffCapMs: 100,
};

export type RoutingOutcome =
  | {
      readonly status: 'dispatched';
      readonly dispatch: InferenceDispatch;
      readonly nodeName: string;
      readonly forwarded: boolean;
      readonly attempts: number;
      readonly decisionMs: number;
    }
  | {
      readonly status: 'rejected';
      readonly reason: string;
      readonly rejectedBy: Readonly<Record<string, number>>;
      readonly decisionMs: number;
      /** What kind of no: no node fits or could be reserved, or turned away before placement (./admission.ts). */
      readonly code: RejectionCode | 'no-candidate';
    };

export interface SchedulerObserver {
  routed?(outcome: RoutingOutcome, request: InferenceRequest): void;
  completed?(result: InferenceResult, geozone: string | undefined): void;
}

export interface SchedulerDeps {
  readonly bus: MessageBus;
  readonly leases: LeaseStore;
  readonly clock: Clock;
  readonly config: SchedulerConfig;
  readonly logger: Logger;
  /** Consumer-group prefix and lease holder identity of this scheduler instance. */
  readonly instanceId: string;
  /**
   * Consumer group of the routing step; schedulers sharing it share the requests (default
   * `arc-scheduler`). Its name also names the step's transactional producers, so it must be the same
   * on every replica and stable across restarts.
   */
  readonly group?: string;
  /** Where the last known node states are (the aggregator's documents): the index starts from them instead of replaying telemetry. */
  readonly nodes?: DocumentStore;
  readonly observer?: SchedulerObserver;
}


interface InFlight {
  readonly nodeId: string;
  readonly geozone: string;
  readonly token: number;
  readonly request: InferenceRequest;
}

interface PendingRelease {
  readonly name: string;
  readonly token: number;
  readonly nodeId: string;
}

interface StagedDispatch {
  readonly dispatch: InferenceDispatch;
  readonly nodeName: string;
  readonly forwarded: boolean;
  readonly geozone: string;
  readonly score: number;
}

/** One lease asked for in a round of decide(): the request (by its index in the batch) and the node it would go to. */
interface Ask {
  readonly index: number;
  readonly nodeId: string;
  readonly nodeName: string;
  readonly geozone: string;
  readonly score: number;
  readonly forwarded: boolean;
}

/** How a batch reached decide(): when each request arrived, and whether it is waiting for a free node already. */
interface Queued {
  readonly arrivedAt: readonly number[];
  readonly traceparents: readonly (string | undefined)[];
  /** A full batch: more wait behind it, so the admission policy's queue budgets apply. */
  readonly backlogged: boolean;
  /** From the waiting topic: admitted already, only its deadline is left to check. */
  readonly waiting: boolean;
  /** Per request: admission judged it from its headers already. */
  readonly screened: readonly boolean[];
}

/** A request the screen turned away from its headers alone. */
export interface Shed {
  readonly id: string;
  readonly priority: Priority;
  readonly maxLatencyMs: number;
  readonly modelId: string | undefined;
  readonly geozone: string;
  readonly turnaway: Turnaway;
  /** How long it had waited, ms. */
  readonly waited: number;
}

const PRIORITIES: ReadonlySet<string> = new Set<Priority>(['critical', 'normal', 'background']);
const isPriority = (value: string | undefined): value is Priority => value !== undefined && PRIORITIES.has(value);
interface ScreenAsk {
  readonly id: string;
  readonly priority: Priority;
  readonly maxLatencyMs: number;
}

/** What admission needs from a request's headers (src/contracts/screen-headers.ts), if they are all there and well formed. */
function screenable(record: ConsumedRecord): ScreenAsk | undefined {
  const { headers } = record;
  const id = headers[HEADER_REQUEST_ID];
  const priority = headers[HEADER_PRIORITY];
  const maxLatencyMs = Number(headers[HEADER_MAX_LATENCY_MS]);
  if (id === undefined || !isPriority(priority) || !Number.isInteger(maxLatencyMs) || maxLatencyMs < 1) return undefined;
  return { id, priority, maxLatencyMs };
}

const PRIORITY_RANK: Readonly<Record<Priority, number>> = { critical: 0, normal: 1, background: 2 };

type ShedKind = 'expired' | 'over-budget' | 'displaced' | 'below-floor';
const shedKind = (turnaway: Turnaway): ShedKind => (turnaway === 'expired' || turnaway === 'over-budget' || turnaway === 'displaced' ? turnaway : 'below-floor');

/** The reason an `inference.shed` event gives for all of its requests, by kind of turnaway. */
const SHED_REASONS: Readonly<Record<ShedKind, string>> = {
  expired: 'expired: waited for a scheduler past its maxLatencyMs; not dispatched late',
  'over-budget': 'overloaded: the scheduler is saturated and it waited past what its priority may queue; retry later',
  displaced: 'overloaded: the scheduler is saturated and routed more urgent or fresher requests in its place; retry later',
  'below-floor': 'overloaded: the scheduler is saturated and sheds lower priorities while more urgent requests wait; retry later',
};

/** Requests routed per transaction by default: the batch that queued while the previous one committed, up to this. */
const MAX_BATCH = 500;
/**
 * On the in-process bus a batch costs no round trip, and one decided whole keeps its last request
 * (and every other consumer) waiting behind it, so few are routed per batch; it looks at many, so
 * turning away what cannot be served keeps up with several times capacity (bench section 2).
 */
export const IN_PROCESS_BATCHING = { maxBatch: 32, screenBatch: 500 } as const satisfies Pick<SchedulerConfig, 'maxBatch' | 'screenBatch'>;
/** On Kafka a batch is a transaction: as many are routed as queued meanwhile (MAX_BATCH), within budgets of a few batch cycles. */
export const KAFKA_ROUTING = { admission: KAFKA_ADMISSION_POLICY } as const satisfies Pick<SchedulerConfig, 'admission'>;
/** Lease releases coalesced into one write. */
const RELEASE_BATCH = 1_000;

/** Redeliveries come within seconds (a failed handler, a rebalance): a 20,000-request window covers that at 10,000 req/s without filling the heap. */
const REMEMBERED_DECISIONS = 20_000;

/** The consumer group of schedulers serving these geozones: replicas with the same zones share it. */
export function schedulerGroup(geozones: readonly string[]): string {
  return `arc-scheduler-${[...geozones].sort().join('+')}`;
}

/** The consumer group of a scheduler group's second routing step, over requests waiting for a free node. */
export function waitingGroupOf(group: string): string {
  return `${group}-waiting`;
}

export function reservationLease(nodeId: string): string {
  return `reservation/${nodeId}`;
}

export class InferenceScheduler {
  readonly index: InferenceCandidateIndex;
  private readonly deps: SchedulerDeps;
  private readonly zones: ReadonlySet<string> | undefined;
  private readonly inFlight = new Map<string, InFlight>();
  /** Decisions by request id: a redelivered request gets its first decision, never a second dispatch. */
  private readonly decided = new RecentMap<string, RoutingOutcome>(REMEMBERED_DECISIONS);
  /**
   * Results of requests another scheduler dispatched (a replica, or one that died): if this one later
   * finds the node's lease still held by such a request, the lease is over in all but name and it
   * releases it, instead of leaving the node idle until the dead scheduler's lease runs out.
   */
  private readonly completedElsewhere = new RecentMap<string, { nodeId: string; token: number }>(REMEMBERED_DECISIONS);
  /** How many such leases this instance has freed since it started (reported on the role's /health). */
  private reclaimed = 0;
  /** Dispatches staged in a batch that has not committed yet: a retry of the batch reuses the node and token. */
  private readonly staged = new Map<string, StagedDispatch>();
  /** Which process holds each node's session, from telemetry headers. */
  private readonly endpoints = new Map<string, string>();
  private readonly consumers: Consumer[] = [];
  /** Partitions this instance has routed from and when it last did, so taking one over is logged once. */
  private readonly routing = new Map<string, number>();
  private expiryTimer: NodeJS.Timeout | undefined;
  private releases: PendingRelease[] = [];
  private readonly admission: AdmissionController;
  private readonly waiting: WaitingRoom;
  private releasing: Promise<void> = Promise.resolve();

  private get maxBatch(): number {
    return this.deps.config.maxBatch ?? MAX_BATCH;
  }

  private get screenBatch(): number {
    return Math.max(this.maxBatch, this.deps.config.screenBatch ?? this.maxBatch);
  }

  constructor(deps: SchedulerDeps) {
    this.deps = deps;
    this.admission = new AdmissionController(deps.config.admission);
    this.waiting = new WaitingRoom(deps.config.waiting);
    this.index = new InferenceCandidateIndex(inferenceProfile(deps.config.placement), deps.config.placement.offlineAfterMs);
    this.zones = deps.config.geozones ? new Set(deps.config.geozones) : undefined;
  }

  async start(): Promise<void> {
    const { bus, instanceId } = this.deps;
    const group = this.deps.group ?? 'arc-scheduler';
    if (this.deps.nodes) {
      // The last known state of every node, so this instance routes at once instead of waiting a telemetry period.
      for (const version of await this.deps.nodes.list<NodeState>('nodes')) {
        if (version.body && version.body.status !== 'offline') this.index.upsert(version.body);
      }
    }
    // Every scheduler instance reads all telemetry and all results: its index must see every node it may forward to.
    const fresh = { startAt: 'latest' as const };
    this.consumers.push(await bus.subscribe(`${instanceId}-index`, [topics.telemetry], 'NodeTelemetry', (t, meta) => this.observeTelemetry(t, meta), fresh));
    this.consumers.push(await bus.subscribe(`${instanceId}-results`, [topics.inferenceResult], 'InferenceResult', (r) => this.onResult(r), fresh));
    this.consumers.push(
      await bus.subscribeTransactional<'InferenceRequest', Shed>(group, [topics.inferenceRequest], 'InferenceRequest', (batch, output, screened) => this.routeBatch(batch, output, screened), {
        transactionalId: group,
        maxBatch: this.screenBatch,
        screen: (records) => this.screen(records),
      }),
    );
    const waitingGroup = waitingGroupOf(group);
    this.consumers.push(
      await bus.subscribeTransactional(waitingGroup, [topics.inferenceWaiting], 'InferenceRequest', (batch, output) => this.routeWaiting(batch, output), {
        transactionalId: waitingGroup,
        maxBatch: this.maxBatch,
      }),
    );
    this.expiryTimer = setInterval(() => void this.expireReservations(), 1_000);
    this.expiryTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    await Promise.all(this.consumers.splice(0).map((c) => c.close()));
    await this.flushReleases();
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Requests this instance parked to wait for a free node that have not been decided yet. */
  get waitingCount(): number {
    return this.waiting.size;
  }

  /** Reservations of completed requests another scheduler dispatched (a replica, or one that died) that this one freed. */
  get reclaimedReservations(): number {
    return this.reclaimed;
  }

  /** The request partitions this instance has routed from, with when it last routed a batch from each. */
  routedFrom(): { source: string; lastBatchAt: string }[] {
    return [...this.routing].map(([source, at]) => ({ source, lastBatchAt: new Date(at).toISOString() }));
  }

  observeTelemetry(telemetry: NodeTelemetry, meta?: MessageMeta): void {
    const now = this.deps.clock.now();
    const endpoint = meta?.record.headers[HEADER_ENDPOINT];
    if (endpoint) this.endpoints.set(telemetry.id, endpoint);
    this.index.upsert(nodeFromTelemetry(telemetry, now, this.index.node(telemetry.id)));
  }

  /** Routes one request outside the bus (tests, tools): its dispatch or rejection is published at once. */
  async route(request: InferenceRequest): Promise<RoutingOutcome> {
    const staged: { topic: string; publish: () => Promise<void> }[] = [];
    const tasks: (() => void)[] = [];
    const { bus } = this.deps;
    const output: BatchOutput = {
      publish: (topic, schema, message, options) => void staged.push({ topic, publish: () => bus.publish(topic, schema, message, options) }),
      afterCommit: (task) => void tasks.push(task),
    };
    const [outcome] = await this.decide([request], output);
    if (outcome === undefined) throw new Error(`request ${request.id} was parked outside a batch`);
    try {
      for (const item of staged) await item.publish();
    } catch (error) {
      // Not dispatched: give the node back so the request can be routed again.
      const stagedDispatch = this.staged.get(request.id);
      this.staged.delete(request.id);
      if (stagedDispatch) {
        this.index.release(stagedDispatch.dispatch.nodeId, stagedDispatch.dispatch.fencingToken);
        await this.deps.leases.release({ name: reservationLease(stagedDispatch.dispatch.nodeId), token: stagedDispatch.dispatch.fencingToken! });
      }
      throw error;
    }
    for (const task of tasks) task();
    return outcome!;
  }

  /**
   * Admission from the record's headers, before its body is decoded: past capacity most of a batch is
   * turned away, and decoding it only to reject it would cost what routing it does. Anything this
   * cannot judge (no headers, already staged or decided) is decoded and decided whole.
   *
   * More in hand than one batch routes (`maxBatch`) is a backlog. Overload (./admission.ts tells it
   * from a catch-up) routes the most urgent, then latest, requests within their deadline and budget,
   * as many as a batch routes, and turns the rest of what it looked at away: the slots stay full and
   * what is dispatched has waited least. Otherwise records are taken in order until `maxBatch` are to
   * be routed, and the rest open the next batch.
   */
  screen(records: readonly ConsumedRecord[]): (Shed | undefined)[] {
    const now = this.deps.clock.now();
    const quota = this.maxBatch;
    const backlogged = records.length > quota || records.length >= this.screenBatch;
    if (backlogged && this.admission.overloaded(records[0]!.timestamp, now)) return this.screenOverload(records, now);
    const verdicts: (Shed | undefined)[] = [];
    let toRoute = 0;
    for (let i = 0; i < records.length && toRoute < quota; i++) {
      const record = records[i]!;
      const ask = this.screenAsk(record);
      if (ask === 'elsewhere') {
        verdicts.push(undefined);
        continue;
      }
      if (ask === 'decide') {
        toRoute++;
        verdicts.push(undefined);
        continue;
      }
      const turnaway = this.admission.turnaway(ask, record.timestamp, now, backlogged);
      if (turnaway === undefined) toRoute++;
      verdicts.push(turnaway === undefined ? undefined : this.shedVerdict(record, ask, turnaway, now));
    }
    return verdicts;
  }

  /** The screen of an overloaded batch: every record is taken, `maxBatch` of them are routed. */
  private screenOverload(records: readonly ConsumedRecord[], now: number): (Shed | undefined)[] {
    const verdicts = new Array<Shed | undefined>(records.length);
    const candidates: number[] = [];
    const asks: ScreenAsk[] = [];
    const priorities: Priority[] = [];
    let decideWhole = 0;
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      const ask = this.screenAsk(record);
      if (ask === 'elsewhere') continue;
      if (ask === 'decide') {
        decideWhole++;
        continue;
      }
      const turnaway = this.admission.beyondWait(ask, record.timestamp, now);
      if (turnaway !== undefined) {
        verdicts[i] = this.shedVerdict(record, ask, turnaway, now);
        continue;
      }
      candidates.push(i);
      asks.push(ask);
      priorities.push(ask.priority);
    }
    // At least one slot: a critical request behind requests decided whole still moves.
    const { chosen, taken } = chooseUnderBacklog(priorities, Math.max(1, this.maxBatch - decideWhole), (p) => this.admission.unbudgeted(p));
    for (let k = 0; k < taken; k++) {
      if (chosen[k]) continue;
      const i = candidates[k]!;
      verdicts[i] = this.shedVerdict(records[i]!, asks[k]!, 'displaced', now);
    }
    // More critical requests than slots: the batch ends after the last one routed, the rest come next.
    if (taken < candidates.length) verdicts.length = candidates[taken - 1]! + 1;
    return verdicts;
  }

  /**
   * What the screen can tell of a record from its headers: another zone's request (not routed here),
   * one to decode and decide whole (no headers, or staged or decided already: it keeps its decision),
   * or the priority and deadline to judge it by.
   */
  private screenAsk(record: ConsumedRecord): ScreenAsk | 'elsewhere' | 'decide' {
    const ask = screenable(record);
    if (ask === undefined) return 'decide';
    if (this.zones && !this.zones.has(record.key)) return 'elsewhere';
    return this.decided.has(ask.id) || this.staged.has(ask.id) ? 'decide' : ask;
  }

  private shedVerdict(record: ConsumedRecord, ask: ScreenAsk, turnaway: Turnaway, now: number): Shed {
    return { id: ask.id, priority: ask.priority, maxLatencyMs: ask.maxLatencyMs, modelId: record.headers[HEADER_MODEL], geozone: record.key, turnaway, waited: Math.max(0, now - record.timestamp) };
  }

  /** The routing step of one batch: decisions are staged in `output` and take effect when it commits. */
  async routeBatch(batch: readonly BatchItem<InferenceRequest>[], output: BatchOutput, screened: readonly Screened<Shed>[] = []): Promise<void> {
    if (screened.length > 0) this.shed(screened.map((s) => s.verdict), output);
    const mine = batch.filter((item) => !this.zones || this.zones.has(item.message.requesterGeozone));
    if (mine.length === 0) return;
    const requests = mine.map((item) => item.message);
    const { topic, partition } = batch[0]!.meta.record;
    const source = `${topic}[${partition}]`;
    const first = !this.routing.has(source);
    this.routing.set(source, this.deps.clock.now());
    if (first) {
      this.deps.logger.info({ source, geozone: requests[0]!.requesterGeozone }, `routing requests from ${source}`);
    }
    await this.decide(requests, output, {
      arrivedAt: mine.map((item) => item.meta.record.timestamp),
      traceparents: mine.map((item) => item.meta.traceparent),
      backlogged: batch.length + screened.length >= this.maxBatch,
      waiting: false,
      // The screen judged these already: judged twice, a catch-up would see the first request's wait grow.
      screened: mine.map((item) => screenable(item.meta.record) !== undefined),
    });
  }

  /**
   * The routing step of requests parked to wait for a free node (./waiting-room.ts): once a node of
   * their model is released (or a short poll passes), they are decided again, most urgent first: a
   * dispatch, a rejection once their deadline has passed, or another wait.
   */
  async routeWaiting(batch: readonly BatchItem<InferenceRequest>[], output: BatchOutput): Promise<void> {
    const mine = batch
      .filter((item) => !this.zones || this.zones.has(item.message.requesterGeozone))
      .map((item) => {
        const since = Number(item.meta.record.headers[HEADER_WAITING_SINCE]);
        return { item, since: Number.isFinite(since) && since > 0 ? since : item.meta.record.timestamp };
      })
      .sort((a, b) => PRIORITY_RANK[a.item.message.priority] - PRIORITY_RANK[b.item.message.priority] || a.since - b.since);
    if (mine.length === 0) return;
    const requests = mine.map(({ item }) => item.message);
    const earliest = Math.min(...mine.map(({ item, since }) => since + item.message.maxLatencyMs));
    await this.waiting.ready(requests, earliest, this.deps.clock.now());
    await this.decide(requests, output, {
      arrivedAt: mine.map(({ since }) => since),
      traceparents: mine.map(({ item }) => item.meta.traceparent),
      backlogged: false,
      waiting: true,
      screened: [],
    });
  }

  /**
   * Filter, score, reserve (all of the batch's leases in one round trip), stage the dispatches.
   * Idempotent per request id: a decided request keeps its decision; a staged one keeps its node and token.
   */
  private async decide(requests: readonly InferenceRequest[], output: BatchOutput, queue?: Queued): Promise<(RoutingOutcome | undefined)[]> {
    const { clock, leases, config } = this.deps;
    const started = performance.now();
    const outcomes: (RoutingOutcome | undefined)[] = requests.map((request) => this.decided.get(request.id));
    const attempts = new Array<number>(requests.length).fill(0);
    const conflicts = new Array<number>(requests.length).fill(0);
    const rejections: { index: number; outcome: RoutingOutcome & { status: 'rejected' } }[] = [];
    if (queue) {
      // Turned away before placement costs no lease and no explanation: past capacity this is what keeps the queue short.
      const now = clock.now();
      requests.forEach((request, i) => {
        // A staged request was admitted on its first delivery; its redelivery keeps its node.
        if (outcomes[i] !== undefined || this.staged.has(request.id) || queue.screened[i] === true) return;
        const verdict = queue.waiting ? waitedOut(request, queue.arrivedAt[i]!, now) : this.admission.judge(request, queue.arrivedAt[i]!, now, queue.backlogged);
        if (verdict.admit) return;
        const outcome = { status: 'rejected' as const, reason: verdict.reason, rejectedBy: {}, decisionMs: performance.now() - started, code: verdict.code };
        outcomes[i] = outcome;
        rejections.push({ index: i, outcome });
      });
    }
    let open = requests.map((_, i) => i).filter((i) => outcomes[i] === undefined);
    for (let round = 0; round <= config.maxRetries && open.length > 0; round++) {
      if (round > 0) await sleep(backoffDelay(round - 1, config.backoffBaseMs, config.backoffCapMs));
      const now = clock.now();
      const asks: Ask[] = [];
      const fresh = this.keepStaged(requests, open, now, asks);
      for (const i of fresh) {
        const request = requests[i]!;
        const candidate = this.index.best(request, now);
        if (!candidate) continue;
        // Held for this request while the batch decides, so the next request of the batch picks another node.
        this.index.reserve({ nodeId: candidate.node.id, holder: request.id, token: 0, expiresAt: now + config.reservationTtlMs });
        asks.push({ index: i, nodeId: candidate.node.id, nodeName: candidate.node.name, geozone: candidate.node.geozone, score: candidate.score, forwarded: candidate.forwarded });
      }
      if (asks.length === 0) break;
      let granted;
      try {
        granted = await leases.acquireMany(asks.map((ask) => ({ name: reservationLease(ask.nodeId), holder: requests[ask.index]!.id, ttlMs: config.reservationTtlMs })));
      } catch (error) {
        for (const ask of asks) if (!this.staged.has(requests[ask.index]!.id)) this.index.release(ask.nodeId, 0);
        throw error;
      }
      // After the grant: a node's next dispatch is never stamped before the result that freed it.
      const grantedAt = clock.now();
      const retry: number[] = [];
      asks.forEach((ask, k) => {
        const lease = granted[k]!;
        const request = requests[ask.index]!;
        attempts[ask.index]!++;
        if (!lease.ok) {
          // Another scheduler holds it: keep the node out of our candidates until its lease ends, or
          // until the release, when its request has already completed.
          const completed = this.completedElsewhere.get(lease.holder);
          if (completed?.nodeId === ask.nodeId) this.reclaim(ask.nodeId, lease.holder, completed.token, lease.expiresAt);
          else this.index.reserve({ nodeId: ask.nodeId, holder: lease.holder, token: 0, expiresAt: lease.expiresAt });
          this.staged.delete(request.id);
          conflicts[ask.index]!++;
          retry.push(ask.index);
          return;
        }
        const { grant } = lease;
        this.index.reserve({ nodeId: ask.nodeId, holder: request.id, token: grant.token, expiresAt: grant.expiresAt });
        // The staged dispatch again only under the same grant: a lease that ran out and was granted anew has a new token.
        const previous = this.staged.get(request.id)?.dispatch;
        const dispatch: InferenceDispatch = previous?.nodeId === ask.nodeId && previous.fencingToken === grant.token ? previous : {
          schemaVersion: 1,
          requestId: request.id,
          nodeId: ask.nodeId,
          modelId: request.modelId,
          contextWindowTokens: request.contextWindowTokens,
          dispatchedAt: new Date(grantedAt).toISOString(),
          fencingToken: grant.token,
          geozone: ask.geozone,
          requesterGeozone: request.requesterGeozone,
          score: Math.round(ask.score * 1000) / 1000,
          priority: request.priority,
          maxLatencyMs: request.maxLatencyMs,
        };
        this.stage(request.id, { dispatch, nodeName: ask.nodeName, forwarded: ask.forwarded, geozone: ask.geozone, score: ask.score });
        const endpoint = this.endpoints.get(ask.nodeId);
        output.publish(topics.dispatch(ask.geozone), 'InferenceDispatch', dispatch, endpoint ? { headers: { [HEADER_ENDPOINT]: endpoint } } : {});
        outcomes[ask.index] = { status: 'dispatched', dispatch, nodeName: ask.nodeName, forwarded: ask.forwarded, attempts: attempts[ask.index]!, decisionMs: performance.now() - started };
      });
      open = retry;
    }
    const now = clock.now();
    // The full pipeline over every node is the slow path: requests alike in all but id share one explanation.
    const explanations = new Map<string, ReturnType<InferenceCandidateIndex['explain']>>();
    const parked: { index: number; until: number }[] = [];
    const seatedInBatch = new Map<string, number>();
    requests.forEach((request, i) => {
      if (outcomes[i] !== undefined) return;
      const alike = `${request.modelId}\u0000${request.requesterGeozone}\u0000${request.contextWindowTokens}\u0000${request.priority}\u0000${request.maxLatencyMs}`;
      let explanation = explanations.get(alike);
      if (explanation === undefined) explanations.set(alike, (explanation = this.index.explain(request, now)));
      let reason =
        conflicts[i]! > 0 && attempts[i]! > config.maxRetries
          ? `no node could be reserved for ${request.modelId} after ${attempts[i]} attempts: each candidate was taken by another scheduler first`
          : explanation.reason;
      let code: RejectionCode | 'no-candidate' = 'no-candidate';
      // Every node that fits is reserved: a node may free up within the deadline, so the request waits for one.
      const fitsWhenFree = conflicts[i]! > 0 || (explanation.rejectedBy['not-reserved'] ?? 0) > 0;
      if (queue && fitsWhenFree) {
        const since = queue.arrivedAt[i]! > 0 ? queue.arrivedAt[i]! : now;
        const late = pastDeadline(request, since, now, queue.waiting, this.admission.policyInUse);
        if (late) {
          // Its deadline passed while the batch decided: a node may still free up, but too late for it.
          reason = late.reason;
          code = late.code;
        } else {
          const seat = this.waiting.seat(request, now, seatedInBatch.get(request.modelId));
          if (seat.ok) {
            if (!this.waiting.has(request.id)) seatedInBatch.set(request.modelId, (seatedInBatch.get(request.modelId) ?? 0) + 1);
            const traceparent = queue.traceparents[i];
            output.publish(topics.inferenceWaiting, 'InferenceRequest', request, { headers: { [HEADER_WAITING_SINCE]: String(since) }, ...(traceparent ? { traceparent } : {}) });
            parked.push({ index: i, until: since + request.maxLatencyMs });
            return;
          }
          reason = `${reason}; ${seat.reason}`;
        }
      }
      const outcome = { status: 'rejected' as const, reason, rejectedBy: explanation.rejectedBy, decisionMs: performance.now() - started, code };
      outcomes[i] = outcome;
      rejections.push({ index: i, outcome });
    });
    for (const { index, outcome } of rejections) {
      const request = requests[index]!;
      output.publish(topics.systemEvent, 'SystemEvent', {
        schemaVersion: 1,
        id: newId(),
        timestamp: new Date(now).toISOString(),
        kind: 'inference.rejected',
        severity: 'warn',
        message: `request ${request.id.slice(0, 8)} rejected: ${outcome.reason}`,
        geozone: request.requesterGeozone,
        subjectId: request.id,
        details: { requestId: request.id, modelId: request.modelId, priority: request.priority, reason: outcome.reason, rejectedBy: outcome.rejectedBy, code: outcome.code },
      });
    }
    const decided = outcomes;
    output.afterCommit(() => {
      for (const { index, until } of parked) this.waiting.parked(requests[index]!, until);
      requests.forEach((request, i) => {
        const outcome = decided[i];
        if (outcome === undefined || this.decided.has(request.id)) return;
        this.waiting.left(request.id);
        this.staged.delete(request.id);
        if (outcome.status === 'dispatched') {
          const { dispatch } = outcome;
          this.inFlight.set(request.id, { nodeId: dispatch.nodeId, geozone: dispatch.geozone ?? request.requesterGeozone, token: dispatch.fencingToken!, request });
        }
        this.decided.set(request.id, outcome);
        this.deps.observer?.routed?.(outcome, request);
      });
    });
    return decided;
  }

  /**
   * One event per kind of turnaway and zone for the requests a batch's screen turned away
   * (`inference.shed`, with their ids), not one each: at five times capacity the events alone would
   * outweigh the routing.
   */
  private shed(verdicts: readonly Shed[], output: BatchOutput): void {
    const now = this.deps.clock.now();
    // By kind, then zone: no key string built per request.
    const byKind = new Map<Turnaway, Map<string, Shed[]>>();
    for (const verdict of verdicts) {
      let zones = byKind.get(verdict.turnaway);
      if (zones === undefined) byKind.set(verdict.turnaway, (zones = new Map()));
      let group = zones.get(verdict.geozone);
      if (group === undefined) zones.set(verdict.geozone, (group = []));
      group.push(verdict);
    }
    for (const group of [...byKind.values()].flatMap((zones) => [...zones.values()])) {
      const { turnaway, geozone } = group[0]!;
      const code = rejectionCode(turnaway);
      const byPriority: Partial<Record<Priority, number>> = {};
      for (const v of group) byPriority[v.priority] = (byPriority[v.priority] ?? 0) + 1;
      const reason = SHED_REASONS[shedKind(turnaway)];
      output.publish(topics.systemEvent, 'SystemEvent', {
        schemaVersion: 1,
        id: newId(),
        timestamp: new Date(now).toISOString(),
        kind: 'inference.shed',
        severity: 'warn',
        message: `${group.length} request(s) rejected: ${reason} (${Object.entries(byPriority).map(([p, n]) => `${n} ${p}`).join(', ')})`,
        geozone,
        details: { code, reason, requestIds: group.map((v) => v.id), byPriority, example: explain(turnaway, group[0]!, group[0]!.waited, this.admission.policyInUse).reason },
      });
    }
    output.afterCommit(() => {
      const observer = this.deps.observer?.routed;
      if (!observer) return;
      // Words without the wait, one string per kind of reason: the observer sees every shed request.
      const reasons = new Map<string, string>();
      for (const v of verdicts) {
        const request: InferenceRequest = { schemaVersion: 1, id: v.id, modelId: v.modelId ?? 'unknown', contextWindowTokens: 1, priority: v.priority, maxLatencyMs: v.maxLatencyMs, requesterGeozone: v.geozone };
        const kind = `${v.turnaway}\u0000${v.priority}\u0000${v.maxLatencyMs}`;
        let reason = reasons.get(kind);
        if (reason === undefined) reasons.set(kind, (reason = explain(v.turnaway, v, undefined, this.admission.policyInUse).reason));
        observer({ status: 'rejected', reason, rejectedBy: {}, decisionMs: 0, code: rejectionCode(v.turnaway) }, request);
      }
    });
  }

  /**
   * A redelivered batch (its transaction failed) asks again for the nodes its staged requests hold,
   * renewing their leases, and reserves them in the index again first, so the batch's other requests
   * pass them by. A staged request whose node has since gone to another request (its reservation ran
   * out while the broker was away, and the node was reserved again, or another staged request of this
   * batch asks for it) is decided afresh: one node asked for twice would fail the whole batch, and the
   * redelivered batch with it, for good. Returns the indexes of the requests still to be placed.
   */
  private keepStaged(
    requests: readonly InferenceRequest[],
    open: readonly number[],
    now: number,
    asks: Ask[],
  ): number[] {
    const fresh: number[] = [];
    const claimed = new Set<string>();
    for (const i of open) {
      const request = requests[i]!;
      const previous = this.staged.get(request.id);
      if (!previous) {
        fresh.push(i);
        continue;
      }
      const { nodeId, fencingToken } = previous.dispatch;
      const held = this.index.reservation(nodeId);
      if (claimed.has(nodeId) || (held !== undefined && held.holder !== request.id && held.expiresAt > now)) {
        this.staged.delete(request.id);
        this.deps.logger.info({ requestId: request.id, nodeId }, 'a redelivered request\'s node went to another request meanwhile; deciding it again');
        fresh.push(i);
        continue;
      }
      claimed.add(nodeId);
      this.index.reserve({ nodeId, holder: request.id, token: fencingToken ?? 0, expiresAt: now + this.deps.config.reservationTtlMs });
      asks.push({ index: i, nodeId, nodeName: previous.nodeName, geozone: previous.geozone, score: previous.score, forwarded: previous.forwarded });
    }
    return fresh;
  }

  private stage(requestId: string, entry: StagedDispatch): void {
    this.staged.set(requestId, entry);
    // Entries of batches that moved to another scheduler are never committed here; their leases expire.
    if (this.staged.size > REMEMBERED_DECISIONS) {
      const oldest = this.staged.keys().next().value;
      if (oldest !== undefined) this.staged.delete(oldest);
    }
  }

  private onResult(result: InferenceResult): void {
    const flight = this.inFlight.get(result.requestId);
    const token = result.fencingToken ?? flight?.token;
    if (flight) this.inFlight.delete(result.requestId);
    if (token !== undefined) {
      // The token check keeps a late result from freeing a node that was since reserved again.
      // The scheduler that dispatched frees the lease (one write, not one per replica), and takes the
      // node back into its candidates once the store has it free: sooner, its next acquire would meet
      // its own lease and park the node as someone else's. Another scheduler frees it only once it has
      // met that lease itself (the dispatcher may be dead); until then it remembers the result.
      if (flight) this.queueRelease({ name: reservationLease(result.nodeId), token, nodeId: result.nodeId });
      else {
        const parked = this.index.reservation(result.nodeId);
        if (parked?.holder === result.requestId) this.reclaim(result.nodeId, result.requestId, token, parked.expiresAt);
        else {
          if (this.index.release(result.nodeId, token)) this.nodeFreed(result.nodeId);
          this.completedElsewhere.set(result.requestId, { nodeId: result.nodeId, token });
        }
      }
    }
    this.deps.observer?.completed?.(result, flight?.geozone);
  }

  /**
   * Frees the lease of a completed request this scheduler did not dispatch. Releasing by token is safe
   * whoever releases: a grant the node has since moved past has another token, and is left alone.
   */
  private reclaim(nodeId: string, holder: string, token: number, expiresAt: number): void {
    this.completedElsewhere.delete(holder);
    this.reclaimed++;
    // Parked under the grant's own token, so the release's index update takes the node back.
    this.index.reserve({ nodeId, holder, token, expiresAt });
    this.queueRelease({ name: reservationLease(nodeId), token, nodeId });
    this.deps.logger.info({ nodeId, requestId: holder, token }, 'freeing the reservation of a completed request another scheduler dispatched');
  }

  /** Releases are coalesced: at thousands of results a second, one write per result would be the bottleneck. */
  private queueRelease(grant: PendingRelease): void {
    this.releases.push(grant);
    if (this.releases.length === 1 || this.releases.length >= RELEASE_BATCH) void this.flushReleases();
  }

  private flushReleases(): Promise<void> {
    this.releasing = this.releasing.then(async () => {
      while (this.releases.length > 0) {
        const batch = this.releases.splice(0, RELEASE_BATCH);
        try {
          await this.deps.leases.releaseMany(batch.map(({ name, token }) => ({ name, token })));
          for (const { nodeId, token } of batch) if (this.index.release(nodeId, token)) this.nodeFreed(nodeId);
        } catch (error) {
          // Not retried: a lease not released ends with its TTL (so does the index's reservation), and
          // retrying into an outage would pile up.
          this.deps.logger.warn({ err: errorMessage(error), leases: batch.length }, 'could not release reservations; they end with their TTL');
        }
      }
    });
    return this.releasing;
  }

  /** Requests waiting for a node of one of its models may get this one now. */
  private nodeFreed(nodeId: string): void {
    const node = this.index.node(nodeId);
    if (node) this.waiting.nodeFreed(node.modelsLoaded);
  }

  private async expireReservations(): Promise<void> {
    const now = this.deps.clock.now();
    for (const expired of this.index.expire(now)) {
      this.nodeFreed(expired.nodeId);
      const flight = this.inFlight.get(expired.holder);
      if (!flight || flight.token !== expired.token) continue;
      this.inFlight.delete(expired.holder);
      const node = this.index.node(expired.nodeId);
      const result: InferenceResult = {
        schemaVersion: 1,
        requestId: expired.holder,
        nodeId: expired.nodeId,
        latencyMs: this.deps.config.reservationTtlMs,
        status: 'failed',
        completedAt: new Date(now).toISOString(),
        fencingToken: expired.token,
        error: `no result from node ${node?.name ?? expired.nodeId} within the ${this.deps.config.reservationTtlMs / 1000} s reservation`,
      };
      try {
        await this.deps.bus.publish(topics.inferenceResult, 'InferenceResult', result);
      } catch (error) {
        this.deps.logger.error({ err: errorMessage(error), requestId: expired.holder }, 'could not publish the timeout of an expired reservation');
      }
    }
  }
}

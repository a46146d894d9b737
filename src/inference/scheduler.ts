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
import type { Logger } from '../core/logging.ts';
import type { InferenceDispatch, InferenceRequest, InferenceResult, NodeTelemetry, SystemEvent } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { Consumer } from '../bus/ports.ts';
import type { LeaseStore } from '../store/ports.ts';
import { nodeFromTelemetry } from '../mesh/node.ts';
import { InferenceCandidateIndex } from '../placement/candidate-index.ts';
import { inferenceProfile, type InferenceProfileConfig } from '../placement/inference-profile.ts';

export interface SchedulerConfig {
  readonly placement: InferenceProfileConfig;
  readonly reservationTtlMs: number;
  /** Further reservation attempts after the first, each on the next-best candidate. */
  readonly maxRetries: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  /** Geozones whose requests this scheduler routes; undefined routes every geozone. */
  readonly geozones?: readonly string[];
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
  | { readonly status: 'rejected'; readonly reason: string; readonly rejectedBy: Readonly<Record<string, number>>; readonly decisionMs: number };

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
  readonly observer?: SchedulerObserver;
}

interface InFlight {
  readonly nodeId: string;
  readonly geozone: string;
  readonly token: number;
  readonly request: InferenceRequest;
}

/** Redeliveries come within seconds (a failed handler, a rebalance): a 20,000-request window covers that at 10,000 req/s without filling the heap. */
const REMEMBERED_DECISIONS = 20_000;

export function reservationLease(nodeId: string): string {
  return `reservation/${nodeId}`;
}

export class InferenceScheduler {
  readonly index: InferenceCandidateIndex;
  private readonly deps: SchedulerDeps;
  private readonly zones: ReadonlySet<string> | undefined;
  private readonly inFlight = new Map<string, InFlight>();
  /** Decisions by request id: a redelivered request gets its first decision, never a second dispatch. */
  private readonly decided = new Map<string, RoutingOutcome>();
  private readonly consumers: Consumer[] = [];
  private expiryTimer: NodeJS.Timeout | undefined;

  constructor(deps: SchedulerDeps) {
    this.deps = deps;
    this.index = new InferenceCandidateIndex(inferenceProfile(deps.config.placement), deps.config.placement.offlineAfterMs);
    this.zones = deps.config.geozones ? new Set(deps.config.geozones) : undefined;
  }

  async start(): Promise<void> {
    const { bus, instanceId } = this.deps;
    // Every scheduler instance reads all telemetry: its index must see every node it may forward to.
    this.consumers.push(await bus.subscribe(`${instanceId}-index`, [topics.telemetry], 'NodeTelemetry', (t) => this.observeTelemetry(t)));
    this.consumers.push(await bus.subscribe('arc-scheduler-results', [topics.inferenceResult], 'InferenceResult', (r) => this.onResult(r)));
    this.consumers.push(
      await bus.subscribe('arc-scheduler', [topics.inferenceRequest], 'InferenceRequest', async (request) => {
        if (this.zones && !this.zones.has(request.requesterGeozone)) return;
        await this.route(request);
      }),
    );
    this.expiryTimer = setInterval(() => void this.expireReservations(), 1_000);
    this.expiryTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    await Promise.all(this.consumers.splice(0).map((c) => c.close()));
  }

  observeTelemetry(telemetry: NodeTelemetry): void {
    const now = this.deps.clock.now();
    this.index.upsert(nodeFromTelemetry(telemetry, now, this.index.node(telemetry.id)));
  }

  /** Filter, score, reserve, dispatch. Idempotent per request id. */
  async route(request: InferenceRequest): Promise<RoutingOutcome> {
    const previous = this.decided.get(request.id);
    if (previous) return previous;
    const { clock, leases, config, bus } = this.deps;
    const started = performance.now();
    let attempts = 0;
    let conflicts = 0;
    for (let attempt = 0; attempt <= config.maxRetries; attempt++) {
      const now = clock.now();
      const candidate = this.index.best(request, now);
      if (!candidate) break;
      attempts++;
      const leaseName = reservationLease(candidate.node.id);
      const lease = await leases.acquire(leaseName, request.id, config.reservationTtlMs);
      if (!lease.ok) {
        // Another scheduler holds it: keep the node out of our candidates until its lease ends.
        this.index.reserve({ nodeId: candidate.node.id, holder: lease.holder, token: 0, expiresAt: lease.expiresAt });
        conflicts++;
        await sleep(backoffDelay(attempt, config.backoffBaseMs, config.backoffCapMs));
        continue;
      }
      const { grant } = lease;
      this.index.reserve({ nodeId: candidate.node.id, holder: request.id, token: grant.token, expiresAt: grant.expiresAt });
      const dispatch: InferenceDispatch = {
        schemaVersion: 1,
        requestId: request.id,
        nodeId: candidate.node.id,
        modelId: request.modelId,
        contextWindowTokens: request.contextWindowTokens,
        dispatchedAt: new Date(now).toISOString(),
        fencingToken: grant.token,
        geozone: candidate.node.geozone,
        requesterGeozone: request.requesterGeozone,
        score: Math.round(candidate.score * 1000) / 1000,
        priority: request.priority,
        maxLatencyMs: request.maxLatencyMs,
      };
      this.inFlight.set(request.id, { nodeId: candidate.node.id, geozone: candidate.node.geozone, token: grant.token, request });
      try {
        await bus.publish(topics.dispatch(candidate.node.geozone), 'InferenceDispatch', dispatch);
      } catch (error) {
        // Not dispatched: give the node back so the request can be retried (the bus redelivers it).
        this.inFlight.delete(request.id);
        this.index.release(candidate.node.id, grant.token);
        await leases.release(grant);
        throw error;
      }
      const outcome: RoutingOutcome = {
        status: 'dispatched',
        dispatch,
        nodeName: candidate.node.name,
        forwarded: candidate.forwarded,
        attempts,
        decisionMs: performance.now() - started,
      };
      this.remember(request.id, outcome);
      this.deps.observer?.routed?.(outcome, request);
      return outcome;
    }
    const explanation = this.index.explain(request, clock.now());
    const reason =
      conflicts > 0 && attempts > config.maxRetries
        ? `no node could be reserved for ${request.modelId} after ${attempts} attempts: each candidate was taken by another scheduler first`
        : explanation.reason;
    const outcome: RoutingOutcome = { status: 'rejected', reason, rejectedBy: explanation.rejectedBy, decisionMs: performance.now() - started };
    this.remember(request.id, outcome);
    this.deps.observer?.routed?.(outcome, request);
    await this.publishEvent({
      kind: 'inference.rejected',
      severity: 'warn',
      message: `request ${request.id.slice(0, 8)} rejected: ${reason}`,
      geozone: request.requesterGeozone,
      subjectId: request.id,
      details: { requestId: request.id, modelId: request.modelId, priority: request.priority, reason, rejectedBy: explanation.rejectedBy },
    });
    return outcome;
  }

  private async onResult(result: InferenceResult): Promise<void> {
    const flight = this.inFlight.get(result.requestId);
    const token = result.fencingToken ?? flight?.token;
    if (flight) this.inFlight.delete(result.requestId);
    if (token !== undefined) {
      // The token check keeps a late result from freeing a node that was since reserved again.
      this.index.release(result.nodeId, token);
      await this.deps.leases.release({ name: reservationLease(result.nodeId), token });
    }
    this.deps.observer?.completed?.(result, flight?.geozone);
  }

  private async expireReservations(): Promise<void> {
    const now = this.deps.clock.now();
    for (const expired of this.index.expire(now)) {
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

  private remember(requestId: string, outcome: RoutingOutcome): void {
    this.decided.set(requestId, outcome);
    if (this.decided.size > REMEMBERED_DECISIONS) {
      const oldest = this.decided.keys().next().value;
      if (oldest !== undefined) this.decided.delete(oldest);
    }
  }

  private async publishEvent(event: Omit<SystemEvent, 'schemaVersion' | 'id' | 'timestamp'>): Promise<void> {
    await this.deps.bus.publish(topics.systemEvent, 'SystemEvent', {
      schemaVersion: 1,
      id: newId(),
      timestamp: new Date(this.deps.clock.now()).toISOString(),
      ...event,
    });
  }
}

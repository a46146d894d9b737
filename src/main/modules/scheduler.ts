/**
 * The inference scheduler module: routes the geozones' requests (filter, score, reserve, dispatch).
 * Reservations are chosen by the store underneath: on PostgreSQL they are the store's leases, shared
 * by every scheduler process; on SQLite they live in memory (ADR 0005), their tokens floored by a
 * start epoch kept in the store so they only increase across restarts. On Kafka the index starts
 * from the stored node documents instead of waiting a telemetry period.
 */
import type { KvStore, LeaseStore } from '../../store/ports.ts';
import { MemoryLeaseStore } from '../../store/memory-leases.ts';
import { InferenceScheduler, DEFAULT_SCHEDULER_CONFIG, IN_PROCESS_BATCHING, KAFKA_ROUTING, schedulerGroup, type SchedulerObserver } from '../../inference/scheduler.ts';
import { DEFAULT_INFERENCE_PROFILE, type InferenceProfileConfig } from '../../inference/profile.ts';
import type { ArcMetrics } from '../../api/metrics.ts';
import type { Engines } from '../engines.ts';
import type { ModuleHandle } from './module.ts';

/** Reservation tokens one start may hand out before the next start's tokens begin (2^32, so 2^21 starts fit in a safe integer). */
export const RESERVATION_TOKENS_PER_EPOCH = 2 ** 32;
const EPOCH_KEY = 'system/epoch';

/** A counter bumped once per start with compare-and-set, so two starts never share an epoch. */
export async function nextEpoch(kv: KvStore): Promise<number> {
  for (;;) {
    const current = await kv.get<number>(EPOCH_KEY);
    const next = (current?.value ?? 0) + 1;
    const written = await kv.put(EPOCH_KEY, next, { expectedRevision: current?.modRevision ?? 0 });
    if (written.ok) return next;
  }
}

export interface SchedulerOptions {
  readonly geozones: readonly string[];
  readonly reservationTtlMs?: number;
  readonly maxRetries?: number;
  readonly placement?: InferenceProfileConfig;
  readonly metrics?: ArcMetrics;
  /**
   * Count requests and their outcomes in the metrics. Where the inference module runs in the same
   * process its tracker counts them; a scheduler process of its own has no tracker and counts here.
   */
  readonly countRequests?: boolean;
}

export interface SchedulerModule extends ModuleHandle {
  readonly scheduler: InferenceScheduler;
}

export async function startSchedulerModule(engines: Engines, options: SchedulerOptions): Promise<SchedulerModule> {
  const { bus, stores, clock, logger, instanceId } = engines;
  let reservations: LeaseStore;
  if (engines.kinds.store === 'postgres') {
    reservations = stores.leases;
  } else {
    const epoch = await nextEpoch(stores.kv);
    reservations = new MemoryLeaseStore({ clock, tokenFloor: epoch * RESERVATION_TOKENS_PER_EPOCH });
  }
  const group = schedulerGroup(options.geozones);
  const config = {
    ...DEFAULT_SCHEDULER_CONFIG,
    placement: options.placement ?? DEFAULT_INFERENCE_PROFILE,
    reservationTtlMs: options.reservationTtlMs ?? DEFAULT_SCHEDULER_CONFIG.reservationTtlMs,
    maxRetries: options.maxRetries ?? DEFAULT_SCHEDULER_CONFIG.maxRetries,
    geozones: options.geozones,
    ...(engines.kinds.bus === 'kafka' ? KAFKA_ROUTING : IN_PROCESS_BATCHING),
  };
  const scheduler = new InferenceScheduler({
    bus,
    leases: reservations,
    clock,
    logger: logger.child({ component: 'scheduler' }),
    instanceId,
    group,
    ...(engines.kinds.bus === 'kafka' ? { nodes: stores.documents } : {}),
    ...(options.metrics ? { observer: schedulerObserver(options.metrics, options.countRequests ?? false) } : {}),
    config,
  });
  await scheduler.start();
  return {
    name: 'scheduler',
    scheduler,
    api: { reservationOf: (nodeId) => scheduler.index.reservation(nodeId) },
    health: () => {
      const known = scheduler.index.size;
      return {
        // With no node known it would turn every request away.
        ready: known > 0,
        ...(known > 0 ? {} : { notReady: `no node of ${options.geozones.join(', ')} known yet: waiting for node documents or telemetry` }),
        details: {
          geozones: options.geozones,
          group,
          reservationTtlMs: config.reservationTtlMs,
          maxRetries: config.maxRetries,
          nodesKnown: known,
          reservations: scheduler.index.reservationCount(),
          inFlight: scheduler.inFlightCount,
          // Requests parked until a node of their model frees up (src/inference/waiting-room.ts).
          waitingForNode: scheduler.waitingCount,
          // Leases of another scheduler's completed requests this one freed (see InferenceScheduler.reclaim).
          reclaimedReservations: scheduler.reclaimedReservations,
          routing: scheduler.routedFrom(),
        },
      };
    },
    stop: () => scheduler.stop(),
  };
}

/** Decision times always; requests and what came back for them only when `countRequests`. */
function schedulerObserver(metrics: ArcMetrics, countRequests: boolean): SchedulerObserver {
  return {
    routed: (outcome, request) => {
      metrics.decisionSamples.add(outcome.decisionMs);
      metrics.zones.decided(request.requesterGeozone, outcome.decisionMs);
      metrics.routingDecision.observe({ outcome: outcome.status }, outcome.decisionMs);
      if (countRequests) metrics.requests.inc({ geozone: request.requesterGeozone, status: outcome.status });
    },
    ...(countRequests
      ? {
          completed: (result, geozone) => {
            if (geozone === undefined) return;
            metrics.requests.inc({ geozone, status: result.status });
            metrics.inferenceLatency.observe({ geozone }, result.latencyMs);
          },
        }
      : {}),
  };
}

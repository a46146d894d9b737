/**
 * A scheduler dies with nodes reserved. Its leases would keep those nodes idle until they run out;
 * the surviving scheduler frees each one whose request has completed, whichever it learns first:
 * the result, or the lease it runs into.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { seededUuid } from '../../src/core/ids.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { MessageBus } from '../../src/bus/typed-bus.ts';
import { MemoryLeaseStore } from '../../src/store/memory-leases.ts';
import { InferenceScheduler, DEFAULT_SCHEDULER_CONFIG, reservationLease, type RoutingOutcome } from '../../src/inference/scheduler.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../../src/inference/profile.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { InferenceRequest, NodeTelemetry } from '../../src/contracts/messages.ts';
import { until } from '../support/until.ts';

const RESERVATION_TTL_MS = 60_000;
const BEST = seededUuid('node-best');
const OTHER = seededUuid('node-other');

function telemetry(id: string, gpuUtilization: number): NodeTelemetry {
  return {
    schemaVersion: 2, id, geohash: '9q9k6m', energySource: 'grid', batteryLevel: 0.9, gpuUtilization,
    gpuMemoryFreeGb: 40, modelsLoaded: ['m'], timestamp: new Date().toISOString(), geozone: 'CAISO',
  };
}

function request(name: string): InferenceRequest {
  return { schemaVersion: 1, id: seededUuid(name), modelId: 'm', contextWindowTokens: 8, priority: 'normal', maxLatencyMs: 100, requesterGeozone: 'CAISO' };
}

const dispatchedTo = (outcome: RoutingOutcome): string | undefined => (outcome.status === 'dispatched' ? outcome.dispatch.nodeId : undefined);

describe('scheduler failover: reservations of a dead scheduler', () => {
  let schedulers: InferenceScheduler[] = [];
  afterEach(async () => {
    await Promise.all(schedulers.map((s) => s.stop()));
    schedulers = [];
  });

  /** Two schedulers on one bus and one lease store; both know a busy and an idle node. */
  async function twoSchedulers(): Promise<{ bus: MessageBus; leases: MemoryLeaseStore; dead: InferenceScheduler; survivor: InferenceScheduler }> {
    const bus = new MessageBus(new MemoryBus());
    const leases = new MemoryLeaseStore({ clock: systemClock });
    const make = (name: string): InferenceScheduler =>
      new InferenceScheduler({
        bus, leases, clock: systemClock, logger: silentLogger, instanceId: name,
        config: { ...DEFAULT_SCHEDULER_CONFIG, reservationTtlMs: RESERVATION_TTL_MS, backoffBaseMs: 0, backoffCapMs: 1, placement: DEFAULT_INFERENCE_PROFILE },
      });
    const [dead, survivor] = [make('scheduler-dead'), make('scheduler-survivor')];
    schedulers = [survivor];
    for (const scheduler of [dead, survivor]) {
      await scheduler.start();
      scheduler.observeTelemetry(telemetry(BEST, 0.1));
      scheduler.observeTelemetry(telemetry(OTHER, 0.5));
    }
    return { bus, leases, dead, survivor };
  }

  async function complete(bus: MessageBus, outcome: RoutingOutcome): Promise<void> {
    if (outcome.status !== 'dispatched') throw new Error(`expected a dispatch, got: ${outcome.reason}`);
    const { dispatch } = outcome;
    await bus.publish(topics.inferenceResult, 'InferenceResult', {
      schemaVersion: 1, requestId: dispatch.requestId, nodeId: dispatch.nodeId, latencyMs: 5, status: 'completed',
      completedAt: new Date().toISOString(), fencingToken: dispatch.fencingToken!,
    });
  }

  it('frees a node whose result came before it met the lease, long before the lease runs out', async () => {
    const { bus, leases, dead, survivor } = await twoSchedulers();
    const first = await dead.route(request('first'));
    expect(dispatchedTo(first)).toBe(BEST);
    // SIGKILL in effect: it reads nothing more and releases nothing.
    await dead.stop();
    await complete(bus, first);

    // The survivor wants the best node and meets the dead scheduler's lease: it frees it, and takes
    // the node on a retry once the release is through, or for the next request.
    const second = await survivor.route(request('second'));
    const onBest = dispatchedTo(second) === BEST ? second : await survivor.route(request('third'));
    expect(dispatchedTo(onBest)).toBe(BEST);
    expect(onBest.status === 'dispatched' && onBest.dispatch.fencingToken).toBeGreaterThan(first.status === 'dispatched' ? first.dispatch.fencingToken! : Infinity);
    expect((await leases.current(reservationLease(BEST)))?.holder).toBe(onBest.status === 'dispatched' ? onBest.dispatch.requestId : undefined);
    expect(survivor.reclaimedReservations).toBe(1);
  });

  it('frees a node it parked as another scheduler\'s once that request\'s result arrives', async () => {
    const { bus, leases, dead, survivor } = await twoSchedulers();
    const first = await dead.route(request('first'));
    expect(dispatchedTo(first)).toBe(BEST);
    await dead.stop();

    // Met before the result: parked as the other scheduler's.
    expect(dispatchedTo(await survivor.route(request('second')))).toBe(OTHER);
    expect(survivor.index.reservation(BEST)?.holder).toBe(request('first').id);
    await complete(bus, first);
    await until(async () => (await leases.current(reservationLease(BEST))) === undefined, 'the completed request\'s lease to be released', 5_000);
    await until(() => survivor.index.reservation(BEST) === undefined, 'the node back among the candidates', 5_000);
    expect(dispatchedTo(await survivor.route(request('third')))).toBe(BEST);
    expect(survivor.reclaimedReservations).toBe(1);
  });

  it('leaves alone a lease whose request has not completed: that node may still be working', async () => {
    const { dead, survivor, leases } = await twoSchedulers();
    const first = await dead.route(request('first'));
    await dead.stop();
    expect(dispatchedTo(await survivor.route(request('second')))).toBe(OTHER);
    const third = await survivor.route(request('third'));
    expect(third.status).toBe('rejected');
    expect((await leases.current(reservationLease(BEST)))?.token).toBe(first.status === 'dispatched' ? first.dispatch.fencingToken : -1);
    expect(survivor.reclaimedReservations).toBe(0);
  });
});

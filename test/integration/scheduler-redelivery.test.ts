/**
 * A batch whose transaction did not commit is handed to the scheduler again, after a broker outage
 * perhaps long after, with the requests that queued meanwhile. The retry keeps each staged request's
 * node while its reservation holds, never asks for one node twice in a batch (the lease store refuses
 * the whole batch then, and the partition would be stuck on it for good), and a dispatch always
 * carries the token of the lease it was granted.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { seededUuid } from '../../src/core/ids.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { MessageBus, type BatchItem, type BatchOutput } from '../../src/bus/typed-bus.ts';
import { MemoryLeaseStore } from '../../src/store/memory-leases.ts';
import { InferenceScheduler, DEFAULT_SCHEDULER_CONFIG, reservationLease } from '../../src/inference/scheduler.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../../src/inference/profile.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { InferenceDispatch, InferenceRequest, NodeTelemetry } from '../../src/contracts/messages.ts';

const TTL_MS = 30_000;
const NODES = ['node-a', 'node-b', 'node-c', 'node-d'].map((name) => seededUuid(name));

function telemetry(id: string, gpuUtilization: number, now: number): NodeTelemetry {
  return {
    schemaVersion: 2, id, geohash: '9q9k6m', energySource: 'grid', batteryLevel: 0.9, gpuUtilization,
    gpuMemoryFreeGb: 40, modelsLoaded: ['m'], timestamp: new Date(now).toISOString(), geozone: 'CAISO',
  };
}

function request(name: string): InferenceRequest {
  return { schemaVersion: 1, id: seededUuid(name), modelId: 'm', contextWindowTokens: 8, priority: 'normal', maxLatencyMs: 100, requesterGeozone: 'CAISO' };
}

function items(requests: readonly InferenceRequest[]): BatchItem<InferenceRequest>[] {
  return requests.map((message, offset) => ({
    message,
    meta: { record: { topic: topics.inferenceRequest, partition: 2, offset, timestamp: 0, key: 'CAISO', value: new Uint8Array(), headers: {} }, traceparent: undefined },
  }));
}

/** One attempt at a batch: what it would publish, and its after-commit tasks (run only when `commit`). */
async function attempt(scheduler: InferenceScheduler, requests: readonly InferenceRequest[], commit: boolean): Promise<InferenceDispatch[]> {
  const dispatches: InferenceDispatch[] = [];
  const tasks: (() => void)[] = [];
  const output: BatchOutput = {
    publish: (topic, schema, message) => {
      if (schema === 'InferenceDispatch') dispatches.push(message as InferenceDispatch);
    },
    afterCommit: (task) => void tasks.push(task),
  };
  await scheduler.routeBatch(items(requests), output);
  if (commit) for (const task of tasks) task();
  return dispatches;
}

describe('scheduler: a batch redelivered after its transaction failed', () => {
  function setup(): { clock: ManualClock; leases: MemoryLeaseStore; scheduler: InferenceScheduler; heartbeat: () => void } {
    const clock = new ManualClock();
    const leases = new MemoryLeaseStore({ clock });
    const scheduler = new InferenceScheduler({
      bus: new MessageBus(new MemoryBus()), leases, clock, logger: silentLogger, instanceId: 'scheduler-1',
      config: { ...DEFAULT_SCHEDULER_CONFIG, reservationTtlMs: TTL_MS, backoffBaseMs: 0, backoffCapMs: 1, placement: DEFAULT_INFERENCE_PROFILE },
    });
    const heartbeat = (): void => NODES.forEach((id, i) => scheduler.observeTelemetry(telemetry(id, 0.1 * (i + 1), clock.now())));
    heartbeat();
    return { clock, leases, scheduler, heartbeat };
  }

  async function expectHeld(leases: MemoryLeaseStore, dispatches: readonly InferenceDispatch[]): Promise<void> {
    expect(new Set(dispatches.map((d) => d.nodeId)).size, 'one node per dispatch').toBe(dispatches.length);
    for (const dispatch of dispatches) {
      const lease = await leases.current(reservationLease(dispatch.nodeId));
      expect({ holder: lease?.holder, token: lease?.token }).toEqual({ holder: dispatch.requestId, token: dispatch.fencingToken });
    }
  }

  it('keeps a staged request\'s node and token when the retry comes within its reservation', async () => {
    const { clock, leases, scheduler } = setup();
    const [first] = await attempt(scheduler, [request('r1'), request('r2')], false);
    clock.advance(TTL_MS / 2);
    const retried = await attempt(scheduler, [request('r1'), request('r2'), request('r3')], true);
    expect(retried).toHaveLength(3);
    expect(retried[0]).toEqual(first);
    await expectHeld(leases, retried);
  });

  it('asks for each node once when the staged reservations ran out during the outage', async () => {
    const { clock, leases, scheduler, heartbeat } = setup();
    await attempt(scheduler, [request('r1'), request('r2')], false);
    // The broker was away longer than the reservation: the index and the store both let the nodes go.
    clock.advance(TTL_MS + 1_000);
    heartbeat();
    const retried = await attempt(scheduler, [request('r1'), request('r2'), request('r3'), request('r4')], true);
    expect(retried.map((d) => d.requestId)).toEqual(['r1', 'r2', 'r3', 'r4'].map((name) => request(name).id));
    await expectHeld(leases, retried);
  });

  it('gives a staged request another node when its node went to a request of another batch meanwhile', async () => {
    const { clock, leases, scheduler, heartbeat } = setup();
    const [staged] = await attempt(scheduler, [request('r1')], false);
    clock.advance(TTL_MS + 1_000);
    heartbeat();
    // Another partition's batch commits first and takes the best node, now free.
    const [other] = await attempt(scheduler, [request('other')], true);
    expect(other!.nodeId).toBe(staged!.nodeId);
    const retried = await attempt(scheduler, [request('r1'), request('r2')], true);
    expect(retried).toHaveLength(2);
    expect(retried.map((d) => d.nodeId)).not.toContain(other!.nodeId);
    await expectHeld(leases, [other!, ...retried]);
  });
});

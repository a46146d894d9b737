/**
 * The scheduler asks admission (src/inference/admission.ts) before it places: a request that waited
 * past its deadline is rejected as expired (no lease taken, no dispatch), and in a full batch (a
 * backlog) background and normal requests past their queue budget are shed as overloaded, and
 * lower priorities even when fresh while critical ones wait, and critical ones are still placed. Each rejection is an `inference.rejected` event with its code and
 * reason. A request already staged (its batch's transaction failed) keeps its node on redelivery.
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
import type { InferenceDispatch, InferenceRequest, NodeTelemetry, Priority, SystemEvent } from '../../src/contracts/messages.ts';

const NODES = Array.from({ length: 8 }, (_, i) => seededUuid(`admission-node-${i}`));
const BATCH = 4;

function telemetry(id: string, now: number): NodeTelemetry {
  return { schemaVersion: 2, id, geohash: '9q9k6m', energySource: 'grid', batteryLevel: 0.9, gpuUtilization: 0.1, gpuMemoryFreeGb: 40, modelsLoaded: ['m'], timestamp: new Date(now).toISOString(), geozone: 'CAISO' };
}

function request(name: string, priority: Priority = 'normal', maxLatencyMs = 1_000): InferenceRequest {
  return { schemaVersion: 1, id: seededUuid(name), modelId: 'm', contextWindowTokens: 8, priority, maxLatencyMs, requesterGeozone: 'CAISO' };
}

interface Attempt {
  readonly dispatches: InferenceDispatch[];
  readonly rejections: SystemEvent[];
}

describe('scheduler admission: deadlines and shedding under a backlog', () => {
  function setup(): { clock: ManualClock; leases: MemoryLeaseStore; scheduler: InferenceScheduler; route: (requests: readonly { r: InferenceRequest; arrivedAt: number }[], commit?: boolean) => Promise<Attempt> } {
    const clock = new ManualClock();
    const leases = new MemoryLeaseStore({ clock });
    const scheduler = new InferenceScheduler({
      bus: new MessageBus(new MemoryBus()), leases, clock, logger: silentLogger, instanceId: 'scheduler-1',
      config: { ...DEFAULT_SCHEDULER_CONFIG, maxBatch: BATCH, backoffBaseMs: 0, backoffCapMs: 1, placement: DEFAULT_INFERENCE_PROFILE },
    });
    for (const id of NODES) scheduler.observeTelemetry(telemetry(id, clock.now()));
    const route = async (requests: readonly { r: InferenceRequest; arrivedAt: number }[], commit = true): Promise<Attempt> => {
      const dispatches: InferenceDispatch[] = [];
      const rejections: SystemEvent[] = [];
      const tasks: (() => void)[] = [];
      const output: BatchOutput = {
        publish: (_topic, schema, message) => {
          if (schema === 'InferenceDispatch') dispatches.push(message as InferenceDispatch);
          if (schema === 'SystemEvent') rejections.push(message as SystemEvent);
        },
        afterCommit: (task) => void tasks.push(task),
      };
      const items: BatchItem<InferenceRequest>[] = requests.map(({ r, arrivedAt }, offset) => ({
        message: r,
        meta: { record: { topic: topics.inferenceRequest, partition: 0, offset, timestamp: arrivedAt, key: 'CAISO', value: new Uint8Array(), headers: {} }, traceparent: undefined },
      }));
      await scheduler.routeBatch(items, output);
      if (commit) for (const task of tasks) task();
      return { dispatches, rejections };
    };
    return { clock, leases, scheduler, route };
  }

  it('rejects a request past its deadline as expired, taking no lease, even without a backlog', async () => {
    const { clock, leases, route } = setup();
    const late = request('late', 'critical', 500);
    const { dispatches, rejections } = await route([{ r: late, arrivedAt: clock.now() - 800 }]);
    expect(dispatches).toEqual([]);
    expect(rejections).toHaveLength(1);
    expect(rejections[0]).toMatchObject({ kind: 'inference.rejected', subjectId: late.id, details: { code: 'expired', priority: 'critical' } });
    expect(rejections[0]!.message).toMatch(/expired: waited 800 ms for a scheduler, past its maxLatencyMs of 500 ms/);
    for (const id of NODES) expect(await leases.current(reservationLease(id))).toBeUndefined();
  });

  it('in a full batch, sheds the background and normal requests past their budget, and a fresh background one while critical ones wait; places the critical one', async () => {
    const { clock, route } = setup();
    const waited = clock.now() - 10;
    const batch = [request('bg', 'background'), request('norm', 'normal'), request('crit', 'critical'), request('fresh', 'background')];
    const { dispatches, rejections } = await route([
      { r: batch[0]!, arrivedAt: waited },
      { r: batch[1]!, arrivedAt: waited },
      { r: batch[2]!, arrivedAt: waited },
      { r: batch[3]!, arrivedAt: clock.now() - 1 },
    ]);
    expect(dispatches.map((d) => d.requestId)).toEqual([batch[2]!.id]);
    expect(rejections.map((e) => [e.subjectId, (e.details as { code: string }).code])).toEqual([
      [batch[0]!.id, 'overloaded'],
      [batch[1]!.id, 'overloaded'],
      [batch[3]!.id, 'overloaded'],
    ]);
    expect(rejections[0]!.message).toMatch(/overloaded: the scheduler is saturated and this background request waited 10 ms/);
    expect(rejections[2]!.message).toMatch(/sheds background requests while critical requests wait/);
  });

  it('sheds nothing from a batch that is not full, however long it waited short of its deadline', async () => {
    const { clock, route } = setup();
    const { dispatches, rejections } = await route([{ r: request('alone', 'background'), arrivedAt: clock.now() - 300 }]);
    expect(rejections).toEqual([]);
    expect(dispatches).toHaveLength(1);
  });

  it('keeps a staged request\'s node when its batch comes again past the deadline, and decides each request once', async () => {
    const { clock, route } = setup();
    const r = request('staged', 'normal', 100);
    const arrivedAt = clock.now();
    const first = await route([{ r, arrivedAt }], false);
    expect(first.dispatches).toHaveLength(1);
    clock.advance(5_000);
    const again = await route([{ r, arrivedAt }]);
    expect(again.rejections).toEqual([]);
    expect(again.dispatches.map((d) => [d.nodeId, d.fencingToken])).toEqual([[first.dispatches[0]!.nodeId, first.dispatches[0]!.fencingToken]]);
    // Decided: a third delivery publishes nothing new.
    expect(await route([{ r, arrivedAt }])).toEqual({ dispatches: [], rejections: [] });
  });
});

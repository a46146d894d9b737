/**
 * Every node that fits is reserved: a request waits for one to free up until its deadline instead
 * of being rejected at once (issue 15). It is parked on the waiting topic in the routing
 * transaction, dispatched to the node whose result frees it, rejected as expired when none frees in
 * time, kept by another scheduler when the one that parked it stops, and the wait per model is
 * bounded by priority. All through the bus and the scheduler's own consumers, on a real clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { seededUuid } from '../../src/core/ids.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { MessageBus } from '../../src/bus/typed-bus.ts';
import type { Consumer } from '../../src/bus/ports.ts';
import { MemoryLeaseStore } from '../../src/store/memory-leases.ts';
import { InferenceScheduler, DEFAULT_SCHEDULER_CONFIG } from '../../src/inference/scheduler.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../../src/inference/profile.ts';
import { DEFAULT_WAITING_POLICY, WaitingRoom, type WaitingPolicy } from '../../src/inference/waiting-room.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { InferenceDispatch, InferenceRequest, NodeTelemetry, Priority, SystemEvent } from '../../src/contracts/messages.ts';
import { until } from '../support/until.ts';

const ZONE = 'CAISO';
const NODES = [seededUuid('waiting-node-a'), seededUuid('waiting-node-b')];

function telemetry(id: string): NodeTelemetry {
  return {
    schemaVersion: 2, id, geohash: '9q9k6m', energySource: 'grid', batteryLevel: 0.9, gpuUtilization: 0.1,
    gpuMemoryFreeGb: 40, modelsLoaded: ['m'], timestamp: new Date().toISOString(), geozone: ZONE,
  };
}

function request(name: string, maxLatencyMs: number, priority: Priority = 'normal'): InferenceRequest {
  return { schemaVersion: 1, id: seededUuid(name), modelId: 'm', contextWindowTokens: 8, priority, maxLatencyMs, requesterGeozone: ZONE };
}

interface Mesh {
  readonly bus: MessageBus;
  readonly dispatches: Map<string, { dispatch: InferenceDispatch; at: number }[]>;
  readonly rejections: Map<string, { event: SystemEvent; at: number }>;
  readonly scheduler: (name: string, waiting?: WaitingPolicy) => Promise<InferenceScheduler>;
  readonly send: (r: InferenceRequest) => Promise<number>;
  readonly complete: (d: InferenceDispatch) => Promise<void>;
}

describe('scheduler: waiting for a free node until the deadline', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function mesh(): Promise<Mesh> {
    const bus = new MessageBus(new MemoryBus());
    const leases = new MemoryLeaseStore({ clock: systemClock });
    const dispatches = new Map<string, { dispatch: InferenceDispatch; at: number }[]>();
    const rejections = new Map<string, { event: SystemEvent; at: number }>();
    const watchers: Consumer[] = [
      await bus.subscribe('test-dispatches', [topics.dispatch(ZONE)], 'InferenceDispatch', (dispatch) => {
        const seen = dispatches.get(dispatch.requestId) ?? [];
        seen.push({ dispatch, at: Date.now() });
        dispatches.set(dispatch.requestId, seen);
      }),
      await bus.subscribe('test-events', [topics.systemEvent], 'SystemEvent', (event) => {
        if (event.kind === 'inference.rejected' && event.subjectId) rejections.set(event.subjectId, { event, at: Date.now() });
      }),
    ];
    cleanups.push(async () => {
      await Promise.all(watchers.map((w) => w.close()));
    });
    return {
      bus,
      dispatches,
      rejections,
      scheduler: async (name, waiting = DEFAULT_WAITING_POLICY) => {
        const scheduler = new InferenceScheduler({
          bus, leases, clock: systemClock, logger: silentLogger, instanceId: name,
          config: { ...DEFAULT_SCHEDULER_CONFIG, backoffBaseMs: 0, backoffCapMs: 1, placement: DEFAULT_INFERENCE_PROFILE, waiting },
        });
        // Known before it reads (as a role's scheduler loads them from the node documents first).
        for (const id of NODES) scheduler.observeTelemetry(telemetry(id));
        await scheduler.start();
        cleanups.push(() => scheduler.stop());
        return scheduler;
      },
      send: async (r) => {
        const at = Date.now();
        await bus.publish(topics.inferenceRequest, 'InferenceRequest', r);
        return at;
      },
      complete: (dispatch) =>
        bus.publish(topics.inferenceResult, 'InferenceResult', {
          schemaVersion: 1, requestId: dispatch.requestId, nodeId: dispatch.nodeId, latencyMs: 5, status: 'completed',
          completedAt: new Date().toISOString(), fencingToken: dispatch.fencingToken!,
        }),
    };
  }

  /** Both nodes taken by requests that stay running until the test completes them. */
  async function allReserved(m: Mesh): Promise<InferenceDispatch[]> {
    const holders = [request('holder-0', 2_000), request('holder-1', 2_000)];
    for (const r of holders) await m.send(r);
    await until(() => holders.every((r) => m.dispatches.has(r.id)), 'both nodes reserved', 5_000);
    return holders.map((r) => m.dispatches.get(r.id)![0]!.dispatch);
  }

  it('dispatches a request with a 2 s deadline to the node that frees within it, once', async () => {
    const m = await mesh();
    const scheduler = await m.scheduler('scheduler-1');
    const [first] = await allReserved(m);
    const waiter = request('waits-and-gets-one', 2_000);
    const sentAt = await m.send(waiter);
    await until(() => scheduler.waitingCount === 1, 'the request parked', 2_000);
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(m.dispatches.has(waiter.id)).toBe(false);
    expect(m.rejections.has(waiter.id)).toBe(false);

    const freedAt = Date.now();
    await m.complete(first!);
    await until(() => m.dispatches.has(waiter.id), 'the waiting request dispatched', 1_500);
    const { dispatch, at } = m.dispatches.get(waiter.id)![0]!;
    expect(dispatch.nodeId).toBe(first!.nodeId);
    expect(dispatch.fencingToken).toBeGreaterThan(first!.fencingToken!);
    expect(at).toBeGreaterThanOrEqual(freedAt);
    // Dispatched within its deadline, and soon after the release (not at the next poll of a slow loop).
    expect(at - sentAt).toBeLessThan(2_000);
    expect(at - freedAt).toBeLessThan(300);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(m.dispatches.get(waiter.id)).toHaveLength(1);
    expect(m.rejections.has(waiter.id)).toBe(false);
    expect(scheduler.waitingCount).toBe(0);
  });

  it('rejects it as expired at its 2 s deadline when no node frees, and never dispatches it late', async () => {
    const m = await mesh();
    const scheduler = await m.scheduler('scheduler-1');
    await allReserved(m);
    const waiter = request('waits-in-vain', 2_000);
    const sentAt = await m.send(waiter);
    await until(() => m.rejections.has(waiter.id), 'the expiry', 4_000);
    const { event, at } = m.rejections.get(waiter.id)!;
    expect(event.details).toMatchObject({ code: 'expired', requestId: waiter.id, modelId: 'm' });
    expect(event.message).toMatch(/expired: waited 2\d{3} ms for a node of m to free up and none did within its maxLatencyMs of 2000 ms; not dispatched late/);
    expect(at - sentAt).toBeGreaterThanOrEqual(2_000);
    expect(at - sentAt).toBeLessThan(2_500);
    expect(m.dispatches.has(waiter.id)).toBe(false);
    expect(scheduler.waitingCount).toBe(0);
  });

  it('is dispatched by another scheduler when the one that parked it stops (nothing parked is lost)', async () => {
    const m = await mesh();
    const parking = await m.scheduler('scheduler-1');
    const [first] = await allReserved(m);
    const waiter = request('outlives-its-scheduler', 5_000);
    await m.send(waiter);
    await until(() => parking.waitingCount === 1, 'the request parked', 2_000);
    await parking.stop();
    const survivor = await m.scheduler('scheduler-2');
    // The survivor learns the node is free from the result, and the parked request is on the waiting topic.
    await m.complete(first!);
    await until(() => m.dispatches.has(waiter.id), 'the survivor dispatched the parked request', 4_000);
    expect(m.dispatches.get(waiter.id)!.map((d) => d.dispatch.nodeId)).toEqual([first!.nodeId]);
    expect(survivor.waitingCount).toBe(0);
  });

  it('bounds the wait per model by priority: a full share is rejected at once with the reason, a critical request still waits', async () => {
    const m = await mesh();
    const policy: WaitingPolicy = { perModel: 4, share: { critical: 1, normal: 0.5, background: 0.25 }, pollMs: 50 };
    const scheduler = await m.scheduler('scheduler-1', policy);
    await allReserved(m);
    const normals = [0, 1, 2].map((i) => request(`normal-${i}`, 3_000));
    for (const r of normals) await m.send(r);
    await until(() => m.rejections.has(normals[2]!.id), 'the third normal request turned away', 2_000);
    expect(scheduler.waitingCount).toBe(2);
    expect(m.rejections.get(normals[2]!.id)!.event.message).toMatch(/2 nodes already reserved; the wait for a free node of m is full \(2 waiting; a normal request may wait while fewer than 2 do\)/);
    const critical = request('critical', 3_000, 'critical');
    await m.send(critical);
    await until(() => scheduler.waitingCount === 3, 'the critical request waits', 2_000);
    expect(m.rejections.has(critical.id)).toBe(false);
  });
});

describe('WaitingRoom', () => {
  it('lets each priority fill its share of a model\'s wait, forgets a seat once its request left, and frees seats of entries long past their deadline', () => {
    const room = new WaitingRoom({ perModel: 4, share: { critical: 1, normal: 0.5, background: 0.25 }, pollMs: 50 });
    const r = (id: string, priority: Priority, modelId = 'm') => ({ id, priority, modelId });
    expect(room.seat(r('b1', 'background'), 0).ok).toBe(true);
    room.parked(r('b1', 'background'), 1_000);
    expect(room.seat(r('b2', 'background'), 0)).toMatchObject({ ok: false });
    expect(room.seat(r('b2', 'background', 'other'), 0).ok).toBe(true);
    expect(room.seat(r('b1', 'background'), 0).ok).toBe(true);
    expect(room.seat(r('n1', 'normal'), 0).ok).toBe(true);
    room.parked(r('n1', 'normal'), 1_000);
    expect(room.seat(r('n2', 'normal'), 0)).toMatchObject({ ok: false });
    expect(room.seat(r('c1', 'critical'), 0).ok).toBe(true);
    room.left('n1');
    expect(room.seat(r('n2', 'normal'), 0).ok).toBe(true);
    room.parked(r('n2', 'normal'), 1_000);
    expect(room.size).toBe(2);
    // Their deadlines passed a while ago: another replica decided them, or they were lost to it.
    expect(room.seat(r('n3', 'normal'), 2_500).ok).toBe(true);
    expect(room.size).toBe(0);
  });

  it('wakes the waiting step when a node of the model is released, not for another model', async () => {
    const room = new WaitingRoom({ ...DEFAULT_WAITING_POLICY, pollMs: 5_000 });
    room.parked({ id: 'w', modelId: 'm', priority: 'normal' }, Date.now() + 10_000);
    let woke = false;
    const ready = room.ready([{ id: 'w', modelId: 'm' }], Date.now() + 10_000, Date.now()).then(() => { woke = true; });
    room.nodeFreed(['other']);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(woke).toBe(false);
    room.nodeFreed(['x', 'm']);
    await ready;
    expect(woke).toBe(true);
  });
});

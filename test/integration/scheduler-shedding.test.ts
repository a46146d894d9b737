/**
 * Shedding through the real in-process bus: requests queued long enough to be past their queue
 * budget are turned away from their record headers (arc-priority, arc-max-latency-ms,
 * arc-request-id), before their bodies are decoded, in one `inference.shed` event per code and zone
 * listing their ids; the tracker (what the API answers from) marks each of them rejected with the
 * reason; critical requests in the same full batches are dispatched. A request without those
 * headers is still judged, after decoding, by the same admission.
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
import { InferenceTracker } from '../../src/inference/tracker.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../../src/inference/profile.ts';
import { DEFAULT_ADMISSION_POLICY } from '../../src/inference/admission.ts';
import { topics } from '../../src/contracts/topics.ts';
import { HEADER_PRIORITY } from '../../src/contracts/screen-headers.ts';
import type { InferenceDispatch, InferenceRequest, NodeTelemetry, Priority, SystemEvent } from '../../src/contracts/messages.ts';
import { until } from '../support/until.ts';

const ZONE = 'CAISO';

function request(name: string, priority: Priority): InferenceRequest {
  return { schemaVersion: 1, id: seededUuid(name), modelId: 'm', contextWindowTokens: 8, priority, maxLatencyMs: 60_000, requesterGeozone: ZONE };
}

function telemetry(i: number): NodeTelemetry {
  return { schemaVersion: 2, id: seededUuid(`shed-node-${i}`), geohash: '9q9k6m', energySource: 'grid', batteryLevel: 0.9, gpuUtilization: 0.1, gpuMemoryFreeGb: 40, modelsLoaded: ['m'], timestamp: new Date().toISOString(), geozone: ZONE };
}

describe('scheduler shedding on the in-process bus', () => {
  const closing: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closing.splice(0).reverse()) await close();
  });

  it('sheds a backlog\'s background and normal requests from their headers in one event, dispatches the critical ones, and the tracker marks each shed one rejected', async () => {
    // Every record stamped 50 ms in the past: past the 2 ms and 4 ms budgets, far from the deadline.
    const memory = new MemoryBus({ now: () => Date.now() - 50 });
    const bus = new MessageBus(memory);
    await bus.ensureTopics([ZONE]);
    closing.push(() => memory.close());
    const scheduler = new InferenceScheduler({
      bus, leases: new MemoryLeaseStore({}), clock: systemClock, logger: silentLogger, instanceId: 'shed-test',
      config: { ...DEFAULT_SCHEDULER_CONFIG, admission: { ...DEFAULT_ADMISSION_POLICY, sustainMs: 0 }, maxBatch: 4, placement: DEFAULT_INFERENCE_PROFILE },
    });
    for (let i = 0; i < 8; i++) scheduler.observeTelemetry(telemetry(i));
    const tracker = new InferenceTracker();
    await tracker.start(bus, [ZONE], 'shed-test');
    closing.push(() => tracker.stop());
    const events: SystemEvent[] = [];
    const dispatches: InferenceDispatch[] = [];
    const readers: Consumer[] = [
      await bus.subscribe('shed-test-events', [topics.systemEvent], 'SystemEvent', (e) => void events.push(e)),
      await bus.subscribe('shed-test-dispatch', [topics.dispatch(ZONE)], 'InferenceDispatch', (d) => void dispatches.push(d)),
    ];
    closing.push(async () => {
      for (const reader of readers) await reader.close();
    });

    const priorities: Priority[] = ['background', 'normal', 'critical', 'background', 'normal', 'background', 'critical', 'normal'];
    const requests = priorities.map((p, i) => request(`shed-${i}`, p));
    for (const r of requests) {
      tracker.submitted(r, Date.now());
      await bus.publish(topics.inferenceRequest, 'InferenceRequest', r);
    }
    await scheduler.start();
    closing.push(() => scheduler.stop());

    const critical = requests.filter((r) => r.priority === 'critical').map((r) => r.id);
    const shedIds = requests.filter((r) => r.priority !== 'critical').map((r) => r.id);
    await until(() => dispatches.length === critical.length && events.filter((e) => e.kind === 'inference.shed').flatMap((e) => e.details!['requestIds'] as string[]).length === shedIds.length, 'the batches decided');
    expect(dispatches.map((d) => d.requestId).sort()).toEqual([...critical].sort());
    const shed = events.filter((e) => e.kind === 'inference.shed');
    // Two full batches of four: one event each, not one per request, and no per-request rejection.
    expect(shed).toHaveLength(2);
    expect(events.filter((e) => e.kind === 'inference.rejected')).toEqual([]);
    expect(shed.flatMap((e) => e.details!['requestIds'] as string[]).sort()).toEqual([...shedIds].sort());
    expect(shed[0]).toMatchObject({ geozone: ZONE, details: { code: 'overloaded' } });
    expect(shed[0]!.message).toMatch(/request\(s\) rejected: overloaded/);
    expect(shed[0]!.details!['example']).toMatch(/waited \d+ ms, more than the \d ms a (background|normal) request may queue/);
    await until(() => shedIds.every((id) => tracker.get(id)?.status === 'rejected'), 'the tracker to mark every shed request rejected');
    expect(tracker.get(shedIds[0]!)!.reason).toMatch(/^overloaded: the scheduler is saturated/);
    expect(tracker.get(critical[0]!)!.status).toBe('dispatched');
  });

  it('stamps the screen headers on every published request', () => {
    const bus = new MessageBus(new MemoryBus());
    const record = bus.encode(topics.inferenceRequest, 'InferenceRequest', request('stamped', 'background'));
    expect(record.headers).toMatchObject({ 'arc-request-id': seededUuid('stamped'), [HEADER_PRIORITY]: 'background', 'arc-max-latency-ms': '60000', 'arc-model': 'm' });
  });
});

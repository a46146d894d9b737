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
import { InferenceScheduler, DEFAULT_SCHEDULER_CONFIG, type SchedulerConfig } from '../../src/inference/scheduler.ts';
import { InferenceTracker } from '../../src/inference/tracker.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../../src/inference/profile.ts';
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

  /** A scheduler over 8 nodes on a fresh in-process bus, with a tracker and readers of its events and dispatches; `requests` queued before it starts. */
  async function shedding(name: string, config: Partial<SchedulerConfig>, requests: readonly InferenceRequest[], memory = new MemoryBus()) {
    const bus = new MessageBus(memory);
    await bus.ensureTopics([ZONE]);
    closing.push(() => memory.close());
    const scheduler = new InferenceScheduler({
      bus, leases: new MemoryLeaseStore({}), clock: systemClock, logger: silentLogger, instanceId: name,
      config: { ...DEFAULT_SCHEDULER_CONFIG, placement: DEFAULT_INFERENCE_PROFILE, ...config },
    });
    for (let i = 0; i < 8; i++) scheduler.observeTelemetry(telemetry(i));
    const tracker = new InferenceTracker();
    await tracker.start(bus, [ZONE], name);
    closing.push(() => tracker.stop());
    const events: SystemEvent[] = [];
    const dispatches: InferenceDispatch[] = [];
    const readers: Consumer[] = [
      await bus.subscribe(`${name}-events`, [topics.systemEvent], 'SystemEvent', (e) => void events.push(e)),
      await bus.subscribe(`${name}-dispatch`, [topics.dispatch(ZONE)], 'InferenceDispatch', (d) => void dispatches.push(d)),
    ];
    closing.push(async () => {
      for (const reader of readers) await reader.close();
    });
    for (const r of requests) {
      tracker.submitted(r, Date.now());
      await bus.publish(topics.inferenceRequest, 'InferenceRequest', r);
    }
    await scheduler.start();
    closing.push(() => scheduler.stop());
    const shedIds = (): string[] => events.filter((e) => e.kind === 'inference.shed').flatMap((e) => e.details!['requestIds'] as string[]);
    return { tracker, events, dispatches, shedIds };
  }

  it('sheds a backlog\'s background and normal requests from their headers in one event, dispatches the critical ones, and the tracker marks each shed one rejected', async () => {
    // Every record stamped 50 ms in the past: past the 2 ms and 4 ms budgets, far from the deadline.
    const priorities: Priority[] = ['background', 'normal', 'critical', 'background', 'normal', 'background', 'critical', 'normal'];
    const requests = priorities.map((p, i) => request(`shed-${i}`, p));
    const { tracker, events, dispatches } = await shedding('shed-test', { maxBatch: 4 }, requests, new MemoryBus({ now: () => Date.now() - 50 }));

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

  it('under sustained overload routes every critical request and the latest others, and turns the rest away at once, each told why', async () => {
    // Twelve queued before the scheduler starts: one batch sees them all. It routes 4 a batch and
    // looks at up to 50; budgets far away and overload from the first full batch, so what is turned
    // away is turned away for want of a slot alone.
    const priorities: Priority[] = ['normal', 'background', 'critical', 'normal', 'background', 'normal', 'critical', 'background', 'normal', 'critical', 'background', 'normal'];
    const requests = priorities.map((p, i) => request(`overload-${i}`, p));
    const { tracker, events, dispatches, shedIds } = await shedding('overload-test', {
      maxBatch: 4,
      screenBatch: 50,
      admission: { queueBudgetMs: { background: 60_000, normal: 60_000 }, overloadAfterMs: 0 },
    }, requests);

    // Three critical ones and the latest normal one fill the four slots; the other eight are turned away.
    const routed = [requests[2]!, requests[6]!, requests[9]!, requests[11]!].map((r) => r.id);
    const away = requests.map((r) => r.id).filter((id) => !routed.includes(id));
    await until(() => dispatches.length === routed.length && shedIds().length === away.length, 'the overloaded batch decided');
    expect(dispatches.map((d) => d.requestId).sort()).toEqual([...routed].sort());
    expect(shedIds().sort()).toEqual([...away].sort());
    const shed = events.filter((e) => e.kind === 'inference.shed');
    expect(shed).toHaveLength(1);
    expect(shed[0]!.message).toMatch(/^8 request\(s\) rejected: overloaded.*\(4 normal, 4 background\)/);
    await until(() => away.every((id) => tracker.get(id)?.status === 'rejected'), 'the tracker to mark every request turned away rejected');
    expect(tracker.get(away[0]!)!.reason).toBe('overloaded: the scheduler is saturated and routed more urgent or fresher requests in its place; retry later');
    expect(shed[0]!.details!['example']).toBe('overloaded: the scheduler is saturated and routed more urgent or fresher requests than this normal one in its place; retry later');
    expect(tracker.get(requests[1]!.id)!.reason).toMatch(/in its place/);
  });

  it('stamps the screen headers on every published request', () => {
    const bus = new MessageBus(new MemoryBus());
    const record = bus.encode(topics.inferenceRequest, 'InferenceRequest', request('stamped', 'background'));
    expect(record.headers).toMatchObject({ 'arc-request-id': seededUuid('stamped'), [HEADER_PRIORITY]: 'background', 'arc-max-latency-ms': '60000', 'arc-model': 'm' });
  });
});

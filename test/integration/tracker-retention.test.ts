/**
 * The tracker's window is bounded by count and by age (src/inference/tracker.ts): settled requests
 * are forgotten a retention after they settled, except the newest RECENT_RING, which stay listable;
 * unsettled ones (pending, or dispatched without a result) are kept until they settle, up to their
 * own, longer retention; the count bound still holds. Ages come from an injected clock and sweeps are
 * called directly; dispatches and results go through the real in-process bus.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { seededUuid } from '../../src/core/ids.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { MessageBus } from '../../src/bus/typed-bus.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { InferenceRequest } from '../../src/contracts/messages.ts';
import { InferenceTracker, RECENT_RING, SWEEP_CHUNK } from '../../src/inference/tracker.ts';
import { until } from '../support/until.ts';

const ZONE = 'CAISO';
const SETTLED_MS = 1_000;
const UNSETTLED_MS = 5_000;

function request(name: string): InferenceRequest {
  return { schemaVersion: 1, id: seededUuid(name), modelId: 'm', contextWindowTokens: 8, priority: 'normal', maxLatencyMs: 2_000, requesterGeozone: ZONE };
}

describe('inference tracker retention', () => {
  let now = 0;
  const closing: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closing.splice(0).reverse()) await close();
    now = 0;
  });
  const tracker = (capacity?: number): InferenceTracker =>
    new InferenceTracker({ now: () => now, settledRetentionMs: SETTLED_MS, unsettledRetentionMs: UNSETTLED_MS, ...(capacity === undefined ? {} : { capacity }) });
  /** Submitted and failed at once (the publish threw): settled without a bus. */
  const failed = (t: InferenceTracker, name: string): string => {
    const r = request(name);
    t.submitted(r, now);
    t.notPublished(r.id, 'bus away', now);
    return r.id;
  };

  it('forgets settled requests a retention after they settled, keeps the newest RECENT_RING whatever their age, and keeps pending ones until their own retention', async () => {
    const t = tracker();
    const settled = Array.from({ length: RECENT_RING + 500 }, (_, i) => failed(t, `settled-${i}`));
    const pending = Array.from({ length: 200 }, (_, i) => {
      const r = request(`pending-${i}`);
      t.submitted(r, now);
      return r.id;
    });
    expect(t.size).toBe(RECENT_RING + 700);

    now = SETTLED_MS - 1;
    expect(await t.sweep()).toBe(0);
    now = SETTLED_MS;
    // 1,700 created: the newest 1,000 are 200 pending and the last 800 settled; the 700 older settled ones go.
    expect(await t.sweep()).toBe(700);
    expect(t.get(settled[0]!)).toBeUndefined();
    expect(t.get(settled[699]!)).toBeUndefined();
    expect(t.get(settled[700]!)?.status).toBe('failed');
    expect(t.recent(RECENT_RING)).toHaveLength(RECENT_RING);
    expect(pending.every((id) => t.get(id)?.status === 'pending')).toBe(true);

    // Pending past their retention: forgotten, newest or not.
    now = UNSETTLED_MS;
    expect(await t.sweep()).toBe(200);
    expect(pending.some((id) => t.get(id) !== undefined)).toBe(false);
    expect(t.size).toBe(800);

    // Once newer requests push them out of the newest 1,000, the old settled ones go at their next look.
    Array.from({ length: RECENT_RING }, (_, i) => failed(t, `later-${i}`));
    now += 2 * SETTLED_MS;
    expect(await t.sweep()).toBe(800);
    expect(t.get(settled[settled.length - 1]!)).toBeUndefined();
    expect(t.size).toBe(RECENT_RING);
    expect(t.forgotten).toBe(700 + 200 + 800);
  });

  it('sweeps a large backlog in chunks and still forgets all of it', async () => {
    const t = tracker();
    const count = SWEEP_CHUNK * 3 + RECENT_RING;
    for (let i = 0; i < count; i++) failed(t, `bulk-${i}`);
    now = SETTLED_MS;
    expect(await t.sweep()).toBe(count - RECENT_RING);
    expect(t.size).toBe(RECENT_RING);
  });

  it('does not forget a request submitted again after its publish failed, by its first settling', async () => {
    const t = tracker();
    const retried = request('retried');
    t.submitted(retried, now);
    t.notPublished(retried.id, 'bus away', now);
    for (let i = 0; i < RECENT_RING; i++) failed(t, `after-${i}`);
    now = SETTLED_MS / 2;
    t.submitted(retried, now);
    now = SETTLED_MS;
    await t.sweep();
    expect(t.get(retried.id)?.status).toBe('pending');
  });

  it('keeps the count bound: past capacity the oldest request is forgotten whatever its state', () => {
    const t = tracker(10);
    const ids = Array.from({ length: 11 }, (_, i) => failed(t, `cap-${i}`));
    expect(t.size).toBe(10);
    expect(t.get(ids[0]!)).toBeUndefined();
    expect(t.get(ids[10]!)?.status).toBe('failed');
  });

  it('keeps a dispatched request while it awaits its result, and forgets it a retention after the result', async () => {
    const memory = new MemoryBus();
    const bus = new MessageBus(memory);
    await bus.ensureTopics([ZONE]);
    closing.push(() => memory.close());
    const t = tracker();
    await t.start(bus, [ZONE], 'retention-test');
    closing.push(() => t.stop());
    const r = request('dispatched');
    const nodeId = seededUuid('node');
    t.submitted(r, now);
    await bus.publish(topics.dispatch(ZONE), 'InferenceDispatch', { schemaVersion: 1, requestId: r.id, nodeId, modelId: 'm', contextWindowTokens: 8, dispatchedAt: new Date().toISOString(), fencingToken: 1, geozone: ZONE, requesterGeozone: ZONE });
    await until(() => t.get(r.id)?.status === 'dispatched', 'the dispatch to reach the tracker');
    // Not among the newest 1,000 any more, and long past the settled retention: still awaited, so kept.
    for (let i = 0; i < RECENT_RING; i++) failed(t, `filler-${i}`);
    now = UNSETTLED_MS - 1;
    await t.sweep();
    expect(t.get(r.id)?.status).toBe('dispatched');

    await bus.publish(topics.inferenceResult, 'InferenceResult', { schemaVersion: 1, requestId: r.id, nodeId, latencyMs: 5, status: 'completed', completedAt: new Date().toISOString(), fencingToken: 1 });
    await until(() => t.get(r.id)?.status === 'completed', 'the result to reach the tracker');
    now += SETTLED_MS - 1;
    await t.sweep();
    expect(t.get(r.id)?.status).toBe('completed');
    now += 1;
    await t.sweep();
    expect(t.get(r.id)).toBeUndefined();
  });
});

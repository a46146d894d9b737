/**
 * What the typed bus tells its observer (the Prometheus counters): every record a subscription
 * took counted once as consumed, a transactional subscription's per batch (screened records too),
 * dead-lettered ones as dead-lettered instead; through the real in-process bus.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { seededUuid } from '../../src/core/ids.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { MessageBus, type BusObserver } from '../../src/bus/typed-bus.ts';
import type { Consumer } from '../../src/bus/ports.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { SystemEvent } from '../../src/contracts/messages.ts';
import { until } from '../support/until.ts';

function event(i: number): SystemEvent {
  return { schemaVersion: 1, id: seededUuid(`observed-${i}`), timestamp: new Date().toISOString(), kind: 'test.observed', severity: 'info', message: `event ${i}` };
}

describe('the typed bus observer', () => {
  const closing: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closing.splice(0).reverse()) await close();
  });

  function observed(): { observer: BusObserver; calls: { consumed: number; consumedTotal: number; deadLettered: number } } {
    const calls = { consumed: 0, consumedTotal: 0, deadLettered: 0 };
    return {
      calls,
      observer: {
        consumed: (topic, _group, count) => {
          expect(topic).toBe(topics.systemEvent);
          calls.consumed++;
          calls.consumedTotal += count;
        },
        deadLettered: () => void calls.deadLettered++,
      },
    };
  }

  async function busWith(observer: BusObserver): Promise<{ memory: MemoryBus; bus: MessageBus }> {
    const memory = new MemoryBus();
    closing.push(() => memory.close());
    const bus = new MessageBus(memory, { observer });
    await bus.ensureTopics([]);
    return { memory, bus };
  }

  it('counts a transactional batch once, screened records included, and a dead-lettered record only as dead-lettered', async () => {
    const { observer, calls } = observed();
    const { memory, bus } = await busWith(observer);
    const records = Array.from({ length: 300 }, (_, i) => bus.encode(topics.systemEvent, 'SystemEvent', event(i)));
    records.splice(150, 0, { key: 'broken', value: Buffer.from('{"schemaVersion":1}'), headers: { 'arc-schema': 'SystemEvent', 'content-type': 'application/json' } });
    memory.produceSync(topics.systemEvent, records);
    let handled = 0;
    const consumer: Consumer = await bus.subscribeTransactional<'SystemEvent', 'odd'>(
      'observed-tx',
      [topics.systemEvent],
      'SystemEvent',
      async (batch, _output, screened) => {
        handled += batch.length + screened.length;
      },
      { transactionalId: 'observed-tx', maxBatch: 100, screen: (offered) => offered.map((record) => (record.key.endsWith('1') ? 'odd' : undefined)) },
    );
    closing.push(() => consumer.close());
    await until(() => calls.consumedTotal + calls.deadLettered === 301, 'every record counted', 5_000);
    expect(handled).toBe(300);
    expect(calls.consumedTotal).toBe(300);
    expect(calls.deadLettered).toBe(1);
    // One call per batch of at most 100: a labelled counter is not looked up per record.
    expect(calls.consumed).toBeGreaterThanOrEqual(3);
    expect(calls.consumed).toBeLessThanOrEqual(10);
  });

  it('counts each record of a plain subscription once', async () => {
    const { observer, calls } = observed();
    const { memory, bus } = await busWith(observer);
    memory.produceSync(topics.systemEvent, Array.from({ length: 20 }, (_, i) => bus.encode(topics.systemEvent, 'SystemEvent', event(i))));
    const consumer = await bus.subscribe('observed-plain', [topics.systemEvent], 'SystemEvent', () => undefined);
    closing.push(() => consumer.close());
    await until(() => calls.consumedTotal === 20, 'every record counted', 5_000);
    expect(calls.consumed).toBe(20);
  });
});

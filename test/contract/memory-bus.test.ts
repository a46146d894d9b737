import { describe, it, expect } from 'vitest';
import { busContract } from './bus.contract.ts';
import { MemoryBus } from '../../src/bus/memory.ts';

busContract('memory', async () => new MemoryBus({ retryBaseMs: 5, retryCapMs: 20 }));

describe('memory bus retention', () => {
  it('drops what every group has consumed and keeps what any group still needs', async () => {
    const bus = new MemoryBus({ defaultPartitions: 1 });
    let fast = 0;
    let slowRelease: () => void = () => undefined;
    const slowGate = new Promise<void>((resolve) => { slowRelease = resolve; });
    let slow = 0;
    await bus.consume({ group: 'fast', topics: ['t'], handler: () => void fast++ });
    const slowConsumer = await bus.consume({ group: 'slow', topics: ['t'], handler: async () => { await slowGate; slow++; } });
    for (let i = 0; i < 5_000; i++) await bus.produce('t', [{ key: 'k', value: new Uint8Array([1]), headers: {} }]);
    while (fast < 5_000) await new Promise((resolve) => setTimeout(resolve, 5));
    // The slow group is stuck on its first record: nothing may be dropped yet.
    expect((await bus.read('t', 0, 0, 1))[0]?.offset).toBe(0);
    slowRelease();
    while (slow < 5_000) await new Promise((resolve) => setTimeout(resolve, 5));
    for (let i = 0; i < 1_024; i++) await bus.produce('t', [{ key: 'k', value: new Uint8Array([2]), headers: {} }]);
    while (fast < 6_024 || slow < 6_024) await new Promise((resolve) => setTimeout(resolve, 5));
    for (let i = 0; i < 600; i++) await bus.produce('t', [{ key: 'k', value: new Uint8Array([3]), headers: {} }]);
    // What both groups consumed before the last check is gone; the newest records are still there.
    const kept = await bus.read('t', 0, 0, 10_000);
    expect(kept[0]!.offset).toBeGreaterThanOrEqual(6_024);
    expect(kept.at(-1)!.offset).toBe(6_623);
    await slowConsumer.close();
    await bus.close();
  });
});

import { describe, it, expect } from 'vitest';
import { leaseStoreContract } from './leases.contract.ts';
import { MemoryLeaseStore } from '../../src/store/memory-leases.ts';

leaseStoreContract('memory', async (clock) => ({ leases: new MemoryLeaseStore({ clock }), close: async () => undefined }));

describe('memory leases', () => {
  it('grants tokens above the floor, so a new process never reissues a token an old one gave out', async () => {
    const before = new MemoryLeaseStore({ tokenFloor: 5 * 2 ** 32 });
    const old = await before.acquire('reservation/n1', 'r1', 30_000);
    const after = new MemoryLeaseStore({ tokenFloor: 6 * 2 ** 32 });
    const fresh = await after.acquire('reservation/n1', 'r2', 30_000);
    expect(old.ok && fresh.ok && fresh.grant.token > old.grant.token).toBe(true);
    // A result carrying the old process's token cannot release the new reservation.
    expect(old.ok && (await after.release(old.grant))).toBe(false);
  });
});

/**
 * A request that would wait for a node to free up, judged at the last clock reading of its
 * decision: it waits while its deadline is ahead, and once the deadline has passed it is expired,
 * parked or fresh, never "no candidate" (CI caught a request whose deadline passed between the
 * admission's reading and that one rejected as `no-candidate`).
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADMISSION_POLICY } from '../../src/inference/admission.ts';
import { pastDeadline, waitedOut } from '../../src/inference/waiting-room.ts';

const request = { modelId: 'm', maxLatencyMs: 2_000, priority: 'normal' as const };

describe('a waiting request at its deadline', () => {
  it('waits while the deadline is ahead, even by a fraction of a millisecond', () => {
    expect(pastDeadline(request, 10_000, 11_999.6, true, DEFAULT_ADMISSION_POLICY)).toBeUndefined();
    expect(pastDeadline(request, 10_000, 11_000, false, DEFAULT_ADMISSION_POLICY)).toBeUndefined();
  });

  it('is expired from the deadline on, with the reason of a parked request or of a fresh one', () => {
    expect(pastDeadline(request, 10_000, 12_000, true, DEFAULT_ADMISSION_POLICY)).toEqual({
      code: 'expired',
      reason: 'expired: waited 2000 ms for a node of m to free up and none did within its maxLatencyMs of 2000 ms; not dispatched late',
    });
    expect(pastDeadline(request, 10_000, 12_003, false, DEFAULT_ADMISSION_POLICY)).toEqual({
      code: 'expired',
      reason: 'expired: waited 2003 ms for a scheduler, past its maxLatencyMs of 2000 ms; not dispatched late',
    });
  });

  it('covers the moment the admission let through: admitted at one reading, expired at the next', () => {
    // Admitted 1 ms before the deadline; the decision's last reading is 1 ms after it.
    expect(waitedOut(request, 10_000, 11_999).admit).toBe(true);
    expect(pastDeadline(request, 10_000, 12_001, true, DEFAULT_ADMISSION_POLICY)?.code).toBe('expired');
  });
});

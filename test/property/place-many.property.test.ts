/**
 * `placeMany` is the one-pass form of placing a job's n executions: it must pick the same workers,
 * in the same order, as n calls of the reference `place`, each excluding the workers already chosen.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { place, placeMany } from '../../src/placement/framework.ts';
import { jobProfile, type JobAsk, type WorkerCandidate } from '../../src/jobs/profile.ts';

const worker = fc.record({
  id: fc.uuid(),
  online: fc.boolean(),
  // Multiples of 5 as real reputations are, so ties (broken by id) are common.
  reputation: fc.integer({ min: 0, max: 30 }).map((r) => r * 5),
  cpuCores: fc.constantFrom(1, 2, 4, 8),
  memoryGb: fc.constantFrom(1, 2, 4, 16),
  gpu: fc.boolean(),
  allocatedCpu: fc.constantFrom(0, 0.5, 1, 2),
  allocatedMemoryGb: fc.constantFrom(0, 0.5, 1),
  cpuUsage: fc.constantFrom(0, 0.25, 0.5, 1),
  enrolledBy: fc.constantFrom(null, 'e1', 'e2'),
}) satisfies fc.Arbitrary<WorkerCandidate>;

describe('placeMany', () => {
  it('chooses exactly what repeated place() with exclusion chooses, and explains any shortfall', () => {
    const profile = jobProfile();
    fc.assert(
      fc.property(
        fc.uniqueArray(worker, { selector: (w) => w.id, maxLength: 40 }),
        fc.integer({ min: 1, max: 7 }),
        fc.record({ cpu: fc.constantFrom(0.5, 1, 2), memoryGb: fc.constantFrom(0.5, 1, 4), gpu: fc.boolean() }),
        (workers, count, need) => {
          const excluded = new Set<string>(workers.slice(0, 2).map((w) => w.id));
          const ask: JobAsk = { jobId: 'job', ...need, excluded };
          const context = { now: 0, isReserved: () => false };
          const sequential: string[] = [];
          const growing = new Set(excluded);
          for (let i = 0; i < count; i++) {
            const decision = place(profile, workers, { ...ask, excluded: growing }, context);
            if (decision.kind === 'none') break;
            sequential.push(decision.node.id);
            growing.add(decision.node.id);
          }
          const { placed, shortfall } = placeMany(profile, workers, ask, context, count);
          expect(placed.map((p) => p.node.id)).toEqual(sequential);
          expect(shortfall === undefined).toBe(sequential.length === count);
          if (shortfall) expect(shortfall.reason).toMatch(/^no candidate for the request/);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

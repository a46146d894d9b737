/**
 * The bridge's classifier (`src/training/classifier.ts`) against seed 000's rules written out
 * independently here: FLOPs > threshold, dataset > threshold, urgency critical → HPC, else
 * federated; an explicit target always wins; the reason names the first rule that matched and the
 * job's own values. Boundaries are drawn on purpose: exactly at a threshold, and the next double
 * either side of it.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { classify, DEFAULT_THRESHOLDS, formatFlops, formatGb, type ClassifiableJob, type ClassifierThresholds } from '../../src/training/classifier.ts';

const urgency = fc.constantFrom<ClassifiableJob['urgency']>(undefined, 'low', 'normal', 'critical');

/** A value near the threshold: exactly at it, one double either side, or anywhere in range. */
function near(threshold: number, max: number): fc.Arbitrary<number> {
  const below = threshold > 0 ? threshold - ulp(threshold) : 0;
  return fc.oneof(
    fc.constant(threshold),
    fc.constant(threshold + ulp(threshold)),
    fc.constant(below),
    fc.double({ min: 0, max, noNaN: true, noDefaultInfinity: true }),
  );
}

function ulp(x: number): number {
  const buffer = new Float64Array([x]);
  const bits = new BigInt64Array(buffer.buffer);
  bits[0] = bits[0]! + 1n;
  return buffer[0]! - x;
}

const thresholds: fc.Arbitrary<ClassifierThresholds> = fc.oneof(
  fc.constant(DEFAULT_THRESHOLDS),
  fc.record({ hpcFlops: fc.double({ min: 1, max: 1e25, noNaN: true }), hpcDatasetGb: fc.double({ min: 0.001, max: 1e6, noNaN: true }) }),
);

const case_ = thresholds.chain((t) =>
  fc.record({
    thresholds: fc.constant(t),
    job: fc.record(
      {
        estimatedFlops: near(t.hpcFlops, 1e26),
        datasetSizeGb: near(t.hpcDatasetGb, 1e7),
        urgency,
        target: fc.constantFrom<ClassifiableJob['target']>(undefined, undefined, undefined, 'hpc', 'federated'),
      },
      { requiredKeys: ['estimatedFlops', 'datasetSizeGb'] },
    ),
  }),
);

describe('classifier (seed 000 §4)', () => {
  it('routes exactly as the seed\'s rules, in their order, an explicit target first', () => {
    fc.assert(
      fc.property(case_, ({ job, thresholds: t }) => {
        const got = classify(job, t);
        if (job.target !== undefined) {
          expect(got).toMatchObject({ target: job.target, rule: 'explicit' });
          return;
        }
        const rule = job.estimatedFlops > t.hpcFlops ? 'flops' : job.datasetSizeGb > t.hpcDatasetGb ? 'dataset' : job.urgency === 'critical' ? 'urgency' : 'default';
        expect(got.rule).toBe(rule);
        expect(got.target).toBe(rule === 'default' ? 'federated' : 'hpc');
        if (rule === 'flops') expect(got.reason).toBe(`estimated ${formatFlops(job.estimatedFlops)} FLOPs is over the ${formatFlops(t.hpcFlops)} FLOPs HPC threshold`);
        if (rule === 'dataset') expect(got.reason).toBe(`dataset ${formatGb(job.datasetSizeGb)} GB is over the ${formatGb(t.hpcDatasetGb)} GB HPC threshold`);
        if (rule === 'default') expect(got.reason).toContain(`dataset ${formatGb(job.datasetSizeGb)} GB is not over`);
      }),
      { numRuns: 5_000 },
    );
  });

  it('keeps a job exactly at both thresholds federated, and sends the next value up to HPC', () => {
    fc.assert(
      fc.property(thresholds, (t) => {
        expect(classify({ estimatedFlops: t.hpcFlops, datasetSizeGb: t.hpcDatasetGb }, t).target).toBe('federated');
        expect(classify({ estimatedFlops: t.hpcFlops + ulp(t.hpcFlops), datasetSizeGb: 0 }, t).rule).toBe('flops');
        expect(classify({ estimatedFlops: 0, datasetSizeGb: t.hpcDatasetGb + ulp(t.hpcDatasetGb) }, t).rule).toBe('dataset');
      }),
    );
  });

  it('never prints a value over its threshold as the threshold itself', () => {
    fc.assert(
      fc.property(thresholds, (t) => {
        const over = classify({ estimatedFlops: t.hpcFlops + ulp(t.hpcFlops), datasetSizeGb: 0 }, t).reason;
        expect(over).not.toBe(`estimated ${formatFlops(t.hpcFlops)} FLOPs is over the ${formatFlops(t.hpcFlops)} FLOPs HPC threshold`);
      }),
    );
  });

  it('says the seed\'s sentences for the seed\'s examples', () => {
    expect(classify({ estimatedFlops: 1e15, datasetSizeGb: 250 }).reason).toBe('dataset 250 GB is over the 100 GB HPC threshold');
    expect(classify({ estimatedFlops: 2e18, datasetSizeGb: 250 }).reason).toBe('estimated 2e18 FLOPs is over the 1e18 FLOPs HPC threshold');
    expect(classify({ estimatedFlops: 1e15, datasetSizeGb: 1, urgency: 'critical' })).toEqual({ target: 'hpc', rule: 'urgency', reason: 'urgency critical goes to HPC' });
    expect(classify({ estimatedFlops: 1e18, datasetSizeGb: 100, urgency: 'normal' })).toEqual({
      target: 'federated',
      rule: 'default',
      reason: 'federated: estimated 1e18 FLOPs is not over 1e18, dataset 100 GB is not over 100 GB, urgency normal is not critical',
    });
    expect(classify({ estimatedFlops: 1e20, datasetSizeGb: 500, target: 'federated' })).toEqual({ target: 'federated', rule: 'explicit', reason: 'the submitter asked for federated' });
  });
});

/**
 * When the Kafka pipeline decides a batch that would not be full (src/bus/batch-cycle.ts): late
 * enough that the decision ends as the commit under way does, never before anything is measured,
 * and at once when deciding takes as long as committing.
 */
import { describe, expect, it } from 'vitest';
import { BatchCycle } from '../../src/bus/batch-cycle.ts';

describe('batch cycle', () => {
  it('decides at once until a commit and a decision have been measured', () => {
    const cycle = new BatchCycle();
    expect(cycle.lateBy(0)).toBeLessThanOrEqual(0);
    cycle.decided(2);
    expect(cycle.lateBy(0)).toBeLessThanOrEqual(0);
  });

  it('waits out the commit time less the decision time, less what the commit has run already', () => {
    const cycle = new BatchCycle();
    cycle.committed(8);
    cycle.decided(3);
    expect(cycle.lateBy(0)).toBe(5);
    expect(cycle.lateBy(4)).toBe(1);
    expect(cycle.lateBy(6)).toBeLessThanOrEqual(0);
  });

  it('decides at once when deciding takes as long as committing (a loaded scheduler keeps the pipeline full)', () => {
    const cycle = new BatchCycle();
    cycle.committed(5);
    cycle.decided(9);
    expect(cycle.lateBy(0)).toBeLessThan(0);
  });

  it('follows the times as they change, without one outlier taking over, and ignores readings that are not times', () => {
    const cycle = new BatchCycle();
    cycle.committed(10);
    cycle.committed(100);
    expect(cycle.commitMs).toBeGreaterThan(10);
    expect(cycle.commitMs).toBeLessThan(50);
    for (let i = 0; i < 50; i++) cycle.committed(4);
    expect(cycle.commitMs).toBeCloseTo(4, 1);
    cycle.committed(Number.NaN);
    cycle.committed(-1);
    cycle.committed(Number.POSITIVE_INFINITY);
    expect(cycle.commitMs).toBeCloseTo(4, 1);
  });
});

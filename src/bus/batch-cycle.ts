/**
 * How long a partition's batches take to decide and to commit, as moving averages: the pipeline of
 * ./kafka-member.ts starts deciding a batch that would not be full so that it is ready as the commit
 * under way ends, not the moment that commit begins (records arriving meanwhile join it rather than
 * wait a whole cycle for the next). Until measured both are 0, which decides at once, as before.
 */
const WEIGHT = 0.2;

export class BatchCycle {
  private commit = 0;
  private decide = 0;

  get commitMs(): number {
    return this.commit;
  }

  get decideMs(): number {
    return this.decide;
  }

  committed(ms: number): void {
    this.commit = average(this.commit, ms);
  }

  decided(ms: number): void {
    this.decide = average(this.decide, ms);
  }

  /** How much later than `elapsedMs` into a commit to start deciding the next batch: 0 or less decides now. */
  lateBy(elapsedMs: number): number {
    return this.commit - this.decide - elapsedMs;
  }
}

function average(current: number, sample: number): number {
  if (!Number.isFinite(sample) || sample < 0) return current;
  return current === 0 ? sample : current + WEIGHT * (sample - current);
}

/** Small fixed-memory statistics for live status: recent-sample percentiles and per-second rates. */

/** The p-th percentile (0..100) of ascending values, nearest rank; NaN when there are none. */
export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export class RollingSamples {
  private readonly values: Float64Array;
  private next = 0;
  private filled = 0;

  constructor(capacity = 10_000) {
    this.values = new Float64Array(capacity);
  }

  add(value: number): void {
    this.values[this.next] = value;
    this.next = (this.next + 1) % this.values.length;
    if (this.filled < this.values.length) this.filled++;
  }

  get count(): number {
    return this.filled;
  }

  /** Percentiles (0..100) of the retained samples; NaN when there are none. */
  percentiles(...ps: number[]): number[] {
    if (this.filled === 0) return ps.map(() => Number.NaN);
    const sorted = this.values.slice(0, this.filled).sort();
    return ps.map((p) => percentileOfSorted(sorted, p));
  }
}

/** Events per second over a sliding window of whole seconds. */
export class RateMeter {
  private readonly buckets: Float64Array;
  private readonly seconds: Float64Array;
  private readonly now: () => number;

  constructor(windowSeconds = 10, now: () => number = Date.now) {
    this.buckets = new Float64Array(windowSeconds);
    this.seconds = new Float64Array(windowSeconds).fill(-1);
    this.now = now;
  }

  mark(count = 1): void {
    const second = Math.floor(this.now() / 1000);
    const slot = second % this.buckets.length;
    if (this.seconds[slot] !== second) {
      this.seconds[slot] = second;
      this.buckets[slot] = 0;
    }
    this.buckets[slot]! += count;
  }

  /** Mean rate over the completed seconds of the window. */
  perSecond(): number {
    const current = Math.floor(this.now() / 1000);
    let total = 0;
    let seconds = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      const second = this.seconds[i]!;
      if (second >= 0 && second < current && current - second <= this.buckets.length - 1) {
        total += this.buckets[i]!;
      }
    }
    seconds = this.buckets.length - 1;
    return total / seconds;
  }
}

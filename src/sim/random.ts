/**
 * Seedable randomness for the simulator. Everything random in a simulated node or a load stream
 * draws from one of these, so a seed reproduces a run exactly (tests, demos, bug reports).
 */

/** mulberry32: tiny, fast, and good enough for simulation; not for anything security-related. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Picks by weight; weights need not sum to 1. */
export function weightedPick<T>(entries: readonly (readonly [T, number])[], random: () => number): T {
  const total = entries.reduce((sum, [, weight]) => sum + weight, 0);
  let roll = random() * total;
  for (const [value, weight] of entries) {
    roll -= weight;
    if (roll < 0) return value;
  }
  // Floating-point rounding can leave a sliver past the last bucket.
  const last = entries[entries.length - 1];
  if (!last) throw new RangeError('weightedPick needs at least one entry');
  return last[0];
}

/** An exponential draw with the given mean: Poisson-process inter-arrival times. */
export function exponential(mean: number, random: () => number): number {
  // 1 - random() is in (0, 1], so the log is finite.
  return -Math.log(1 - random()) * mean;
}

/** A v4-shaped UUID from the seeded source, so generated request ids are reproducible too. */
export function randomUuid(random: () => number): string {
  let hex = '';
  for (let i = 0; i < 4; i++) hex += Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, '0');
  const variant = ((parseInt(hex[16] ?? '0', 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * A map that remembers only the newest `capacity` keys it was given: setting one more forgets the
 * oldest. For windows such as "requests decided lately", where unbounded growth would fill the heap.
 *
 * Eviction walks a ring of keys, not Map.keys().next(): after many deletions that walks every deleted
 * slot at the front (15 µs a call at 20,000 entries). A key deleted and set again keeps its first ring
 * slot too, so it may be forgotten early; callers use it for keys set once.
 */
export class RecentMap<K, V> {
  private readonly entries = new Map<K, V>();
  private readonly ring: (K | undefined)[];
  private next = 0;
  readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`RecentMap capacity must be a positive integer, got ${capacity}`);
    this.ring = new Array<K | undefined>(capacity);
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    return this.entries.get(key);
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  set(key: K, value: V): void {
    if (this.entries.has(key)) {
      this.entries.set(key, value);
      return;
    }
    const oldest = this.ring[this.next];
    if (oldest !== undefined) this.entries.delete(oldest);
    this.ring[this.next] = key;
    this.next = (this.next + 1) % this.capacity;
    this.entries.set(key, value);
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }
}

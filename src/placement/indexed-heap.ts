/**
 * A max-heap of ids by score with O(log n) update and removal by id; ties go to the lower id.
 * Each entry carries its own position, so a sift step is two array writes and two property writes
 * rather than map updates: at 100,000 nodes per heap that is what keeps a routing decision flat.
 */
interface Entry {
  readonly id: string;
  score: number;
  position: number;
}

export class IndexedMaxHeap {
  private readonly heap: Entry[] = [];
  private readonly entries = new Map<string, Entry>();

  get size(): number {
    return this.heap.length;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  peekId(): string | undefined {
    return this.heap[0]?.id;
  }

  peekScore(): number {
    return this.heap[0]?.score ?? -Infinity;
  }

  upsert(id: string, score: number): void {
    const entry = this.entries.get(id);
    if (entry === undefined) {
      const created: Entry = { id, score, position: this.heap.length };
      this.entries.set(id, created);
      this.heap.push(created);
      this.up(created.position);
      return;
    }
    const old = entry.score;
    entry.score = score;
    if (score > old) this.up(entry.position);
    else this.down(entry.position);
  }

  remove(id: string): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined) return false;
    this.entries.delete(id);
    const last = this.heap.pop()!;
    if (last !== entry) {
      this.heap[entry.position] = last;
      last.position = entry.position;
      this.up(last.position);
      this.down(last.position);
    }
    return true;
  }

  private static before(a: Entry, b: Entry): boolean {
    return a.score > b.score || (a.score === b.score && a.id < b.id);
  }

  private up(i: number): void {
    const heap = this.heap;
    const moving = heap[i]!;
    while (i > 0) {
      const parentIndex = (i - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (!IndexedMaxHeap.before(moving, parent)) break;
      heap[i] = parent;
      parent.position = i;
      i = parentIndex;
    }
    heap[i] = moving;
    moving.position = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const moving = heap[i]!;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      let child = left;
      if (right < n && IndexedMaxHeap.before(heap[right]!, heap[left]!)) child = right;
      const candidate = heap[child]!;
      if (!IndexedMaxHeap.before(candidate, moving)) break;
      heap[i] = candidate;
      candidate.position = i;
      i = child;
    }
    heap[i] = moving;
    moving.position = i;
  }
}

/**
 * A max-heap of ids by score with O(log n) update and removal by id; ties go to the lower id.
 * Each entry carries its own position, so a sift step is two array writes and two property writes
 * rather than map updates: at 100,000 nodes per heap that is what keeps a routing decision flat.
 *
 * The top can be set aside and put back later through the member handle `upsert` returned, with no
 * lookup by id either way: a node reserved and released thousands of times a second leaves and
 * rejoins its heaps without touching their maps.
 */

/** An id's place in one heap, as `upsert` returns it; pass it to `putBack` after `setAsideTop`. */
export interface HeapMember {
  readonly id: string;
  readonly score: number;
}

/** `position` of an entry set aside (known, out of the heap) and of one removed (forgotten). */
const ASIDE = -1;
const REMOVED = -2;

interface Entry extends HeapMember {
  score: number;
  position: number;
}

export class IndexedMaxHeap {
  private readonly heap: Entry[] = [];
  private readonly entries = new Map<string, Entry>();

  get size(): number {
    return this.heap.length;
  }

  /** In the heap now (an id set aside is known but not in it). */
  has(id: string): boolean {
    const entry = this.entries.get(id);
    return entry !== undefined && entry.position >= 0;
  }

  peekId(): string | undefined {
    return this.heap[0]?.id;
  }

  peekScore(): number {
    return this.heap[0]?.score ?? -Infinity;
  }

  /** Adds the id or moves it to its new score (putting it back if it was set aside); its member handle. */
  upsert(id: string, score: number): HeapMember {
    const entry = this.entries.get(id);
    if (entry === undefined) {
      const created: Entry = { id, score, position: ASIDE };
      this.entries.set(id, created);
      this.attach(created);
      return created;
    }
    const old = entry.score;
    entry.score = score;
    if (entry.position === ASIDE) this.attach(entry);
    else if (score > old) this.up(entry.position);
    else this.down(entry.position);
    return entry;
  }

  /** Forgets the id; true when it was known (in the heap or set aside). */
  remove(id: string): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined) return false;
    this.entries.delete(id);
    if (entry.position >= 0) this.detach(entry);
    entry.position = REMOVED;
    return true;
  }

  /** Takes the top out of the heap, still known: `putBack` with its handle returns it at its score. */
  setAsideTop(): HeapMember | undefined {
    const top = this.heap[0];
    if (top === undefined) return undefined;
    this.detach(top);
    top.position = ASIDE;
    return top;
  }

  /** Puts a member set aside back at its score; one in the heap already, or removed since, is left as it is. */
  putBack(member: HeapMember): void {
    const entry = member as Entry;
    if (entry.position === ASIDE) this.attach(entry);
  }

  private attach(entry: Entry): void {
    entry.position = this.heap.length;
    this.heap.push(entry);
    this.up(entry.position);
  }

  private detach(entry: Entry): void {
    const last = this.heap.pop()!;
    if (last !== entry) {
      this.heap[entry.position] = last;
      last.position = entry.position;
      this.up(last.position);
      this.down(last.position);
    }
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

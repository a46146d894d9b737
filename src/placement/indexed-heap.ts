/** A max-heap of ids by score with O(log n) update and removal by id; ties go to the lower id. */
export class IndexedMaxHeap {
  private readonly ids: string[] = [];
  private readonly scores: number[] = [];
  private readonly positions = new Map<string, number>();

  get size(): number {
    return this.ids.length;
  }

  has(id: string): boolean {
    return this.positions.has(id);
  }

  peekId(): string | undefined {
    return this.ids[0];
  }

  peekScore(): number {
    return this.scores[0] ?? -Infinity;
  }

  upsert(id: string, score: number): void {
    const at = this.positions.get(id);
    if (at === undefined) {
      this.ids.push(id);
      this.scores.push(score);
      this.positions.set(id, this.ids.length - 1);
      this.up(this.ids.length - 1);
      return;
    }
    const old = this.scores[at]!;
    this.scores[at] = score;
    if (score > old) this.up(at);
    else this.down(at);
  }

  remove(id: string): boolean {
    const at = this.positions.get(id);
    if (at === undefined) return false;
    const last = this.ids.length - 1;
    this.swap(at, last);
    this.ids.pop();
    this.scores.pop();
    this.positions.delete(id);
    if (at < this.ids.length) {
      this.up(at);
      this.down(at);
    }
    return true;
  }

  private before(i: number, j: number): boolean {
    const a = this.scores[i]!;
    const b = this.scores[j]!;
    return a > b || (a === b && this.ids[i]! < this.ids[j]!);
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.ids.length;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let top = i;
      if (left < n && this.before(left, top)) top = left;
      if (right < n && this.before(right, top)) top = right;
      if (top === i) return;
      this.swap(i, top);
      i = top;
    }
  }

  private swap(i: number, j: number): void {
    if (i === j) return;
    const id = this.ids[i]!;
    const score = this.scores[i]!;
    this.ids[i] = this.ids[j]!;
    this.scores[i] = this.scores[j]!;
    this.ids[j] = id;
    this.scores[j] = score;
    this.positions.set(this.ids[i]!, i);
    this.positions.set(id, j);
  }
}

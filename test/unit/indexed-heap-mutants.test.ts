/**
 * The indexed max-heap against a plain model (a Map of id → score, best found by a scan): after
 * every upsert and removal the top, its score, the size and membership must match the model, and
 * draining the heap must give every id best first, ties to the lower id. Scores come from a small
 * range so that ties, raised scores and lowered scores are all common.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IndexedMaxHeap, type HeapMember } from '../../src/placement/indexed-heap.ts';

type Op =
  | { readonly kind: 'upsert'; readonly id: string; readonly score: number }
  | { readonly kind: 'remove'; readonly id: string }
  | { readonly kind: 'aside' }
  | { readonly kind: 'putBack'; readonly pick: number };

const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'];
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('upsert' as const), id: fc.constantFrom(...ids), score: fc.integer({ min: 0, max: 5 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), id: fc.constantFrom(...ids) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('aside' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('putBack' as const), pick: fc.nat({ max: 20 }) }) },
);

/** Best first: higher score, then lower id. */
function order(model: ReadonlyMap<string, number>): string[] {
  return [...model].sort(([idA, a], [idB, b]) => b - a || (idA < idB ? -1 : 1)).map(([id]) => id);
}

describe('IndexedMaxHeap', () => {
  it('is empty at first: no top, a top score of -Infinity, size 0', () => {
    const heap = new IndexedMaxHeap();
    expect(heap.size).toBe(0);
    expect(heap.peekId()).toBeUndefined();
    expect(heap.peekScore()).toBe(-Infinity);
    expect(heap.has('a')).toBe(false);
    expect(heap.remove('a')).toBe(false);
  });

  it('upserting a known id updates its score instead of adding it again', () => {
    const heap = new IndexedMaxHeap();
    heap.upsert('a', 1);
    heap.upsert('a', 3);
    expect(heap.size).toBe(1);
    expect(heap.peekScore()).toBe(3);
    expect(heap.remove('a')).toBe(true);
    expect(heap.size).toBe(0);
    expect(heap.peekId()).toBeUndefined();
  });

  it('breaks ties to the lower id whatever the insertion order', () => {
    for (const insertion of [['b', 'a', 'c'], ['c', 'b', 'a'], ['a', 'c', 'b']]) {
      const heap = new IndexedMaxHeap();
      for (const id of insertion) heap.upsert(id, 7);
      expect(heap.peekId()).toBe('a');
    }
  });

  it('moves an entry up when its score rises and down when it falls', () => {
    const heap = new IndexedMaxHeap();
    for (const [id, score] of [['a', 5], ['b', 4], ['c', 3], ['d', 2], ['e', 1]] as const) heap.upsert(id, score);
    heap.upsert('e', 9);
    expect(heap.peekId()).toBe('e');
    heap.upsert('e', 0);
    expect(heap.peekId()).toBe('a');
    heap.upsert('a', 0);
    expect(heap.peekId()).toBe('b');
  });

  it('restores the order when the entry moved into a removed slot must rise', () => {
    // Upserted in this order the array is [6, 3, 5, 1, 2, 0, 4]: removing the 1 under the 3 moves the 4 (last) into its
    // slot, where it is better than its new parent and has to move up, not down.
    const heap = new IndexedMaxHeap();
    for (const score of [6, 3, 0, 1, 2, 4, 5]) heap.upsert(`s${score}`, score);
    heap.remove('s1');
    const drained: number[] = [];
    while (heap.size > 0) {
      drained.push(heap.peekScore());
      heap.remove(heap.peekId()!);
    }
    expect(drained).toEqual([6, 5, 4, 3, 2, 0]);
  });

  it('sets the top aside and puts it back at its score, without forgetting it', () => {
    const heap = new IndexedMaxHeap();
    heap.upsert('a', 5);
    heap.upsert('b', 3);
    const a = heap.setAsideTop()!;
    expect(a).toMatchObject({ id: 'a', score: 5 });
    expect(heap.has('a')).toBe(false);
    expect(heap.peekId()).toBe('b');
    expect(heap.size).toBe(1);
    heap.putBack(a);
    heap.putBack(a);
    expect(heap.peekId()).toBe('a');
    expect(heap.size).toBe(2);
    // Removed while set aside: its handle no longer puts it back.
    heap.setAsideTop();
    expect(heap.remove('a')).toBe(true);
    heap.putBack(a);
    expect(heap.has('a')).toBe(false);
    expect(heap.size).toBe(1);
  });

  it('matches the model after every operation, and drains best first', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
        const heap = new IndexedMaxHeap();
        const model = new Map<string, number>();
        // Ids set aside, by the handle that puts them back; every handle given out, stale ones too.
        const aside = new Map<string, HeapMember>();
        const handles: HeapMember[] = [];
        for (const op of ops) {
          if (op.kind === 'upsert') {
            heap.upsert(op.id, op.score);
            model.set(op.id, op.score);
            aside.delete(op.id);
          } else if (op.kind === 'remove') {
            const known = model.delete(op.id) || aside.delete(op.id);
            expect(heap.remove(op.id)).toBe(known);
          } else if (op.kind === 'aside') {
            const best = order(model)[0];
            const member = heap.setAsideTop();
            expect(member?.id).toBe(best);
            if (member && best !== undefined) {
              expect(member.score).toBe(model.get(best));
              model.delete(best);
              aside.set(best, member);
              handles.push(member);
            }
          } else if (handles.length > 0) {
            const member = handles[op.pick % handles.length]!;
            heap.putBack(member);
            if (aside.get(member.id) === member) {
              aside.delete(member.id);
              model.set(member.id, member.score);
            }
          }
          const best = order(model)[0];
          expect(heap.peekId()).toBe(best);
          expect(heap.peekScore()).toBe(best === undefined ? -Infinity : model.get(best));
          expect(heap.size).toBe(model.size);
          for (const id of ids) expect(heap.has(id)).toBe(model.has(id));
        }
        const drained: string[] = [];
        for (let id = heap.peekId(); id !== undefined; id = heap.peekId()) {
          drained.push(id);
          heap.remove(id);
        }
        expect(drained).toEqual(order(model));
      }),
      { numRuns: 300 },
    );
  });
});

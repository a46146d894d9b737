/**
 * The placement framework on a small profile of its own (two filters, two weighted scorers), so
 * each claim of `framework.ts` is checked apart from any one family's plugins: the tie-break is a
 * strict order, a placement explains its score, a rejection names what removed the nodes in words a
 * person can read, and `placeMany`'s shortfall says what the sequential `place` calls would have said.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { better, explainRejection, PASS, place, placeMany, type PlacementContext, type Profile } from '../../src/placement/framework.ts';

interface Box {
  readonly id: string;
  readonly cores: number;
  readonly gpu: boolean;
  readonly load: number;
}
interface Need {
  readonly cores: number;
  readonly gpu: boolean;
}

const profile: Profile<Box, Need> = {
  name: 'boxes',
  filters: [
    { name: 'gpu', rejects: 'without a GPU', filter: (box, need) => (!need.gpu || box.gpu ? PASS : { ok: false, reason: 'no GPU' }) },
    { name: 'cores', rejects: 'with too few cores', filter: (box, need) => (box.cores >= need.cores ? PASS : { ok: false, reason: 'too few cores' }) },
  ],
  scorers: [
    { plugin: { name: 'cores', score: (box) => box.cores }, weight: 2 },
    { plugin: { name: 'idle', score: (box) => 1 - box.load }, weight: 10 },
  ],
};
const context: PlacementContext = { now: 0, isReserved: () => false };
const box = (id: string, cores: number, gpu = false, load = 0): Box => ({ id, cores, gpu, load });

const boxArb = fc.record({ cores: fc.integer({ min: 1, max: 4 }), gpu: fc.boolean(), load: fc.constantFrom(0, 0.5, 1) });
const boxesArb = fc.array(boxArb, { maxLength: 12 }).map((boxes) => boxes.map((b, i) => ({ id: `box-${String(i).padStart(2, '0')}`, ...b })));
const needArb = fc.record({ cores: fc.integer({ min: 1, max: 4 }), gpu: fc.boolean() });

describe('better', () => {
  it('prefers the higher score, then the lower id, and never prefers a node to itself', () => {
    expect(better(2, 'b', 1, 'a')).toBe(true);
    expect(better(1, 'a', 2, 'b')).toBe(false);
    expect(better(1, 'a', 1, 'b')).toBe(true);
    expect(better(1, 'b', 1, 'a')).toBe(false);
    expect(better(1, 'a', 1, 'a')).toBe(false);
  });
});

describe('place', () => {
  it('explains a placement: one weighted term per scorer, adding up to the score', () => {
    const decision = place(profile, [box('small', 2, false, 0.5), box('big', 4, false, 0.5)], { cores: 1, gpu: false }, context);
    expect(decision.kind).toBe('placed');
    if (decision.kind !== 'placed') return;
    expect(decision.node.id).toBe('big');
    expect(decision.breakdown).toEqual({ cores: 2 * 4, idle: 10 * 0.5 });
    expect(decision.score).toBe(2 * 4 + 10 * 0.5);
  });

  it('names "the request" when no subject is given, and says when there are no nodes at all', () => {
    const none = place(profile, [box('a', 1)], { cores: 2, gpu: false }, context);
    expect(none.kind === 'none' && none.reason).toMatch(/^no candidate for the request among 1 node: 1 node with too few cores$/);
    const empty = place(profile, [], { cores: 1, gpu: false }, context, 'job 7');
    expect(empty).toEqual({ kind: 'none', reason: 'no candidate for job 7: no nodes are known', rejectedBy: {}, considered: 0 });
  });
});

describe('explainRejection', () => {
  it('counts nodes in the singular and the plural, in the order of the profile\'s filters', () => {
    expect(explainRejection(profile, { cores: 1, gpu: 2 }, 3, 'x')).toBe('no candidate for x among 3 nodes: 2 nodes without a GPU, 1 node with too few cores');
    expect(explainRejection(profile, { gpu: 1 }, 1, 'x')).toBe('no candidate for x among 1 node: 1 node without a GPU');
    expect(explainRejection(profile, { gpu: 0, cores: 2 }, 2, 'x')).toBe('no candidate for x among 2 nodes: 2 nodes with too few cores');
  });
});

describe('placeMany', () => {
  it('places nothing and owes nothing when asked for no node, still counting the rejections', () => {
    const { placed, shortfall } = placeMany(profile, [box('a', 4), box('b', 1)], { cores: 2, gpu: false }, context, 0);
    expect(placed).toEqual([]);
    expect(shortfall).toBeUndefined();
    const short = placeMany(profile, [box('a', 4), box('b', 1)], { cores: 2, gpu: false }, context, 2).shortfall;
    expect(short?.reason).toBe('no candidate for the request among 1 node: 1 node with too few cores (after placing 1)');
  });

  it('explains a shortfall as place() would over the nodes left after the placed ones were taken', () => {
    fc.assert(
      fc.property(boxesArb, needArb, fc.integer({ min: 1, max: 6 }), (boxes, need, count) => {
        const { placed, shortfall } = placeMany(profile, boxes, need, context, count, 'the job');
        if (placed.length === count) {
          expect(shortfall).toBeUndefined();
          return;
        }
        const taken = new Set(placed.map((p) => p.node.id));
        const rest = place(profile, boxes.filter((b) => !taken.has(b.id)), need, context, 'the job');
        expect(rest.kind).toBe('none');
        if (rest.kind !== 'none' || shortfall === undefined) throw new Error('expected a shortfall');
        expect(shortfall.reason).toBe(placed.length > 0 ? `${rest.reason} (after placing ${placed.length})` : rest.reason);
        expect(shortfall.rejectedBy).toEqual(rest.rejectedBy);
        expect(shortfall.considered).toBe(boxes.length);
        for (const p of placed) expect(p.breakdown).toEqual({ cores: 2 * p.node.cores, idle: 10 * (1 - p.node.load) });
      }),
      { numRuns: 500 },
    );
  });
});

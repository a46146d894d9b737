/**
 * The services planner over random clusters, blueprints and slice keys: every place satisfies every
 * rule of the profile (checked here from the rules, not through the plugins), no artifact ever runs
 * more instances than its owning blueprint asks, the plan is the same for the same view in any
 * order, and applying it then planning again changes nothing.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SLICE_STATES, sliceKey, type Blueprint, type SliceSpec } from '../../src/services/model.ts';
import type { ExistingSlice, Plan, PlanView, ServiceNode } from '../../src/services/plan.ts';
import { applyPlan, planServices } from '../../src/services/planner.ts';
import { DEFAULT_SLICE_RESOURCES, resourcesOf } from '../../src/services/profile.ts';
import { seededRandom } from '../../src/sim/random.ts';

const NOW = 1_700_000_000_000;
const TAGS = ['live_node', 'data_node', 'ram_128gb', 'region_eu'];
const DATASETS = ['s3://d/1', 's3://d/2', 's3://d/3'];
const ARTIFACTS = ['g:a:1', 'g:b:1', 'g:c:1', 'g:d:1', 'g:e:1'];
/** Two more ids than nodes can have: keys on nodes the mesh no longer knows. */
const NODE_IDS = Array.from({ length: 10 }, (_, i) => `n-${i}`);
const RUNS = 200;

const nodeArb = fc.record({
  id: fc.constantFrom(...NODE_IDS.slice(0, 8)),
  name: fc.constant('node'),
  status: fc.constantFrom('online', 'online', 'online', 'busy', 'draining', 'offline'),
  tags: fc.subarray(TAGS),
  cpuCores: fc.constantFrom(0.5, 1, 2, 4),
  memoryGb: fc.constantFrom(0.25, 0.5, 1, 4),
  cpuLoad: fc.constantFrom(0, 0.25, 0.5, 0.9),
  datasetsHot: fc.subarray(DATASETS),
}) satisfies fc.Arbitrary<ServiceNode>;

const sliceArb = fc.record(
  {
    artifact: fc.constantFrom(...ARTIFACTS),
    instances: fc.integer({ min: 0, max: 6 }),
    run: fc.constant({ kind: 'process' as const, command: ['serve'] }),
    resources: fc.record({ cpu: fc.constantFrom(0.1, 0.25, 0.5, 1), memoryMb: fc.constantFrom(64, 128, 512) }),
    requiredTags: fc.subarray(TAGS, { maxLength: 2 }),
    datasets: fc.subarray(DATASETS),
  },
  { requiredKeys: ['artifact', 'instances', 'run'] },
) satisfies fc.Arbitrary<SliceSpec>;

const blueprintArb = fc.record({
  name: fc.constantFrom('alpha', 'beta', 'gamma'),
  // Artifacts may repeat across blueprints (the first by name owns them), never within one.
  slices: fc.uniqueArray(sliceArb, { selector: (s) => s.artifact, minLength: 1, maxLength: 3 }),
  timestamp: fc.constant(NOW),
}) satisfies fc.Arbitrary<Blueprint>;

const existingArb = fc.record({
  nodeId: fc.constantFrom(...NODE_IDS),
  artifact: fc.constantFrom(...ARTIFACTS),
  record: fc.record({
    state: fc.constantFrom(...SLICE_STATES),
    timestamp: fc.constant(NOW - 1_000),
    version: fc.integer({ min: 1, max: 5 }),
    instance: fc.integer({ min: 1, max: 8 }),
    blueprint: fc.constantFrom('alpha', 'beta', 'old'),
    epoch: fc.constant(1),
    // Few distinct times, so scale-down often breaks ties by instance.
    placedAt: fc.integer({ min: 0, max: 3 }).map((t) => NOW - 10_000 + t),
  }),
}) satisfies fc.Arbitrary<ExistingSlice>;

const viewArb = fc
  .record({
    blueprints: fc.uniqueArray(blueprintArb, { selector: (b) => b.name, maxLength: 3 }),
    nodes: fc.uniqueArray(nodeArb, { selector: (n) => n.id, maxLength: 8 }),
    slices: fc.uniqueArray(existingArb, { selector: (s) => sliceKey(s.nodeId, s.artifact), maxLength: 20 }),
    epoch: fc.constant(2),
    now: fc.constant(NOW),
  })
  .map((view): PlanView => view);

const NOT_RUNNING = new Set(['UNLOAD', 'UNLOADING', 'FAILED']);

/** The slice each artifact runs as: the first blueprint by name that names it. */
function owners(view: PlanView): Map<string, SliceSpec & { readonly blueprint: string }> {
  const owned = new Map<string, SliceSpec & { readonly blueprint: string }>();
  for (const blueprint of [...view.blueprints].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    for (const slice of blueprint.slices) if (!owned.has(slice.artifact)) owned.set(slice.artifact, { ...slice, blueprint: blueprint.name });
  }
  return owned;
}

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const random = seededRandom(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('services planner', () => {
  it('places only where every rule allows: ready, tagged, in the partition, one per node, within capacity', () => {
    fc.assert(
      fc.property(viewArb, (view) => {
        const plan = planServices(view);
        const nodes = new Map(view.nodes.map((n) => [n.id, n]));
        const owned = owners(view);
        const forgotten = new Set(plan.changes.filter((c) => c.kind === 'forget').map((c) => sliceKey(c.nodeId, c.artifact)));
        const keys = new Set(view.slices.map((s) => sliceKey(s.nodeId, s.artifact)).filter((k) => !forgotten.has(k)));
        const used = new Map<string, { cpu: number; memoryMb: number }>();
        const use = (nodeId: string, artifact: string): void => {
          const need = owned.has(artifact) ? resourcesOf(owned.get(artifact)!) : DEFAULT_SLICE_RESOURCES;
          const sum = used.get(nodeId) ?? { cpu: 0, memoryMb: 0 };
          used.set(nodeId, { cpu: sum.cpu + need.cpu, memoryMb: sum.memoryMb + need.memoryMb });
        };
        for (const s of view.slices) if (!forgotten.has(sliceKey(s.nodeId, s.artifact))) use(s.nodeId, s.artifact);
        const placedOn = new Set<string>();
        for (const change of plan.changes) {
          if (change.kind !== 'place') continue;
          const node = nodes.get(change.nodeId);
          const slice = owned.get(change.artifact);
          expect(node).toBeDefined();
          expect(slice).toBeDefined();
          expect(['online', 'busy']).toContain(node!.status);
          const required = slice!.requiredTags ?? [];
          for (const tag of required) expect(node!.tags).toContain(tag);
          expect(node!.tags.includes('live_node')).toBe(required.includes('live_node'));
          const key = sliceKey(change.nodeId, change.artifact);
          expect(keys.has(key)).toBe(false);
          keys.add(key);
          use(change.nodeId, change.artifact);
          placedOn.add(change.nodeId);
        }
        // Each place checked room before it took it, so a node's final total fits.
        for (const nodeId of placedOn) {
          const node = nodes.get(nodeId)!;
          expect(used.get(nodeId)!.cpu).toBeLessThanOrEqual(node.cpuCores + 1e-9);
          expect(used.get(nodeId)!.memoryMb).toBeLessThanOrEqual(node.memoryGb * 1_024);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('never leaves an artifact with more running instances than asked, and reaches the ask unless it says why not', () => {
    fc.assert(
      fc.property(viewArb, (view) => {
        const plan = planServices(view);
        const after = applyPlan(view, plan);
        const owned = owners(view);
        const live = new Set(view.nodes.filter((n) => n.status !== 'offline').map((n) => n.id));
        const running = new Map<string, number>();
        for (const s of after.slices) {
          expect(live.has(s.nodeId)).toBe(true);
          if (!NOT_RUNNING.has(s.record.state)) running.set(s.artifact, (running.get(s.artifact) ?? 0) + 1);
        }
        for (const [artifact, count] of running) expect(count).toBeLessThanOrEqual(owned.get(artifact)?.instances ?? 0);
        for (const [artifact, slice] of owned) {
          const count = running.get(artifact) ?? 0;
          if (count === slice.instances) continue;
          const unplaced = plan.unplaced.find((u) => u.artifact === artifact && u.blueprint === slice.blueprint);
          expect(unplaced).toMatchObject({ wanted: slice.instances, placed: count });
          expect(unplaced?.reason).toMatch(/^no candidate for /);
        }
        // A new instance takes a number no surviving key of its artifact holds.
        for (const artifact of ARTIFACTS) {
          const numbers = after.slices.filter((s) => s.artifact === artifact).map((s) => s.record.instance);
          for (const change of plan.changes) if (change.kind === 'place' && change.artifact === artifact) expect(numbers.filter((n) => n === change.instance)).toHaveLength(1);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('is deterministic: the same view twice, or in any order, gives the same plan', () => {
    fc.assert(
      fc.property(viewArb, fc.integer(), (view, seed) => {
        const plan: Plan = planServices(view);
        expect(planServices(view)).toEqual(plan);
        const reordered: PlanView = { ...view, blueprints: shuffled(view.blueprints, seed), nodes: shuffled(view.nodes, seed + 1), slices: shuffled(view.slices, seed + 2) };
        expect(planServices(reordered)).toEqual(plan);
      }),
      { numRuns: RUNS },
    );
  });

  it('converges: planning the applied plan again changes nothing', () => {
    fc.assert(
      fc.property(viewArb, fc.constantFrom('LOAD' as const, 'ACTIVE' as const), (view, placedState) => {
        const plan = planServices(view);
        const again = planServices(applyPlan(view, plan, placedState));
        expect(again.changes).toEqual([]);
        expect(again.unplaced.map((u) => [u.artifact, u.blueprint, u.wanted, u.placed])).toEqual(plan.unplaced.map((u) => [u.artifact, u.blueprint, u.wanted, u.placed]));
      }),
      { numRuns: RUNS },
    );
  });
});

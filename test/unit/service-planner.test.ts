/**
 * The services planner (`planServices`) and its profile, one rule at a time: seed 002's strict
 * hardware partitioning, data locality before CPU load, required tags and resources, a dead node's
 * keys forgotten and their instances re-placed, a FAILED instance replaced on another node, scale up
 * to the lowest free instance numbers and down newest first, a removed blueprint's instances
 * stopped, and the same plan whatever order the view lists things in.
 */
import { describe, expect, it } from 'vitest';
import type { Blueprint, SliceRecord, SliceSpec, SliceState } from '../../src/services/model.ts';
import type { ExistingSlice, Plan, PlanChange, PlanView, ServiceNode } from '../../src/services/plan.ts';
import { applyPlan, planServices } from '../../src/services/planner.ts';
import { SERVICE_FILTERS, serviceProfile, serviceRegistry } from '../../src/services/profile.ts';

const NOW = 1_700_000_000_000;
const LIVE = 'org.example:live:1.0';
const DATA = 'org.example:etl:1.0';
const ECHO = 'org.example:echo:1.0';

function node(id: string, overrides: Partial<ServiceNode> = {}): ServiceNode {
  return { id, name: `node ${id}`, status: 'online', tags: [], cpuCores: 4, memoryGb: 8, cpuLoad: 0, datasetsHot: [], ...overrides };
}

function slice(artifact: string, instances: number, overrides: Partial<SliceSpec> = {}): SliceSpec {
  return { artifact, instances, run: { kind: 'process', command: ['serve'] }, ...overrides };
}

function blueprint(name: string, ...slices: SliceSpec[]): Blueprint {
  return { name, slices, timestamp: NOW - 60_000 };
}

function key(nodeId: string, artifact: string, instance: number, state: SliceState = 'ACTIVE', overrides: Partial<SliceRecord> = {}): ExistingSlice {
  return { nodeId, artifact, record: { state, timestamp: NOW - 1_000, version: 3, instance, blueprint: 'web', epoch: 1, placedAt: NOW - 10_000 + instance, ...overrides } };
}

function viewOf(blueprints: Blueprint[], nodes: ServiceNode[], slices: ExistingSlice[] = []): PlanView {
  return { blueprints, nodes, slices, now: NOW, epoch: 2 };
}

const ofKind = <K extends PlanChange['kind']>(plan: Plan, kind: K): Extract<PlanChange, { kind: K }>[] =>
  plan.changes.filter((c): c is Extract<PlanChange, { kind: K }> => c.kind === kind);
const placedOn = (plan: Plan): string[] => ofKind(plan, 'place').map((p) => p.nodeId);

describe('service profile', () => {
  it('registers every plugin under its name and assembles the default list in order', () => {
    expect(serviceRegistry.filterNames).toEqual(expect.arrayContaining([...SERVICE_FILTERS]));
    expect(serviceRegistry.scorerNames).toEqual(['data-locality', 'low-cpu-load', 'spread']);
    const profile = serviceProfile();
    expect(profile.name).toBe('service');
    expect(profile.filters.map((f) => f.name)).toEqual(['node-ready', 'hardware-partition', 'required-tags', 'runtime-available', 'one-per-node', 'resources-fit']);
    expect(() => serviceProfile({ partitionTags: [], weights: { dataLocality: 1, lowCpuLoad: 1, spread: 1 }, filters: ['node-ready', 'gpu-fit'] })).toThrow(/unknown service filter plugin "gpu-fit"/);
  });

  it('places a container slice only where the runner reaches a container engine, and says so when none does', () => {
    const container = slice('org.example:web:1.0', 1, { run: { kind: 'container', image: 'arcnet/busybox:test' } });
    const onlyProcesses = node('n-1', { runtimes: ['process'] });
    expect(placedOn(planServices(viewOf([blueprint('web', container)], [onlyProcesses, node('n-2', { runtimes: ['process', 'container'], cpuLoad: 0.9 })])))).toEqual(['n-2']);
    const none = planServices(viewOf([blueprint('web', container, slice(ECHO, 1))], [onlyProcesses]));
    expect(placedOn(none)).toEqual(['n-1']);
    expect(none.unplaced[0]).toMatchObject({ artifact: 'org.example:web:1.0', rejectedBy: { 'runtime-available': 1 } });
    expect(none.unplaced[0]!.reason).toMatch(/1 node without a runtime for the slice/);
  });

  it('does not place on offline or draining nodes', () => {
    const plan = planServices(viewOf([blueprint('web', slice(ECHO, 1))], [node('n-1', { status: 'draining' }), node('n-2', { status: 'offline' }), node('n-3', { status: 'busy', cpuLoad: 0.9 })]));
    expect(placedOn(plan)).toEqual(['n-3']);
  });
});

describe('hardware partitioning (seed 002)', () => {
  it('keeps a live_node slice off data nodes even when only data nodes have room, and says it is partitioning', () => {
    const nodes = [node('live-1', { tags: ['live_node'], cpuCores: 1 }), node('data-1', { tags: ['data_node'] }), node('data-2', { tags: ['data_node'] })];
    const plan = planServices(viewOf([blueprint('web', slice(LIVE, 1, { requiredTags: ['live_node'], resources: { cpu: 2, memoryMb: 256 } }))], nodes));
    expect(plan.changes).toEqual([]);
    expect(plan.unplaced).toHaveLength(1);
    const [unplaced] = plan.unplaced;
    expect(unplaced).toMatchObject({ artifact: LIVE, blueprint: 'web', wanted: 1, placed: 0, rejectedBy: { 'hardware-partition': 2, 'resources-fit': 1 } });
    expect(unplaced!.reason).toBe(
      `no candidate for ${LIVE} among 3 nodes: 2 nodes outside the slice's hardware partition (live_node nodes are reserved for live_node slices, and those slices for them), 1 node without enough free CPU or memory`,
    );
  });

  it('keeps every other slice off live nodes, even the idlest, and says so when they are all there is', () => {
    const mixed = planServices(viewOf([blueprint('web', slice(DATA, 2))], [node('live-1', { tags: ['live_node'] }), node('n-2', { cpuLoad: 0.7 }), node('n-3', { cpuLoad: 0.9 })]));
    expect(placedOn(mixed)).toEqual(['n-2', 'n-3']);
    const onlyLive = planServices(viewOf([blueprint('web', slice(DATA, 1, { requiredTags: ['data_node'] }))], [node('live-1', { tags: ['live_node', 'data_node'] }), node('live-2', { tags: ['live_node', 'data_node'] })]));
    expect(onlyLive.changes).toEqual([]);
    expect(onlyLive.unplaced[0]!.reason).toMatch(/among 2 nodes: 2 nodes outside the slice's hardware partition \(live_node nodes are reserved for live_node slices/);
  });

  it('partitions on every configured tag', () => {
    const profile = serviceProfile({ partitionTags: ['live_node', 'gpu_node'], weights: { dataLocality: 1_000, lowCpuLoad: 10, spread: 1 } });
    const nodes = [node('g-1', { tags: ['gpu_node'] }), node('l-1', { tags: ['live_node'] }), node('n-1', { cpuLoad: 0.5 })];
    expect(placedOn(planServices(viewOf([blueprint('web', slice(ECHO, 3))], nodes), profile))).toEqual(['n-1']);
    expect(placedOn(planServices(viewOf([blueprint('web', slice(ECHO, 3, { requiredTags: ['gpu_node'] }))], nodes), profile))).toEqual(['g-1']);
  });
});

describe('scoring', () => {
  it('prefers the node holding the slice\'s dataset hot over a less loaded one', () => {
    const nodes = [node('n-1', { cpuLoad: 0 }), node('n-2', { cpuLoad: 0.95, datasetsHot: ['s3://set/a'] }), node('n-3', { cpuLoad: 0.1, datasetsHot: ['s3://set/b'] })];
    const plan = planServices(viewOf([blueprint('web', slice(DATA, 1, { datasets: ['s3://set/a'] }))], nodes));
    expect(placedOn(plan)).toEqual(['n-2']);
    // A larger share of the datasets wins, whatever the load.
    const two = planServices(viewOf([blueprint('web', slice(DATA, 2, { datasets: ['s3://set/a', 's3://set/b'] }))], [...nodes, node('n-4', { cpuLoad: 0.99, datasetsHot: ['s3://set/a', 's3://set/b'] })]));
    expect(placedOn(two)).toEqual(['n-4', 'n-3']);
  });

  it('takes the lowest CPU load among otherwise equal nodes, and the lower id on a tie', () => {
    const nodes = [node('n-3', { cpuLoad: 0.2 }), node('n-1', { cpuLoad: 0.5 }), node('n-2', { cpuLoad: 0.2 }), node('n-4', { cpuLoad: 0.8 })];
    expect(placedOn(planServices(viewOf([blueprint('web', slice(ECHO, 3))], nodes)))).toEqual(['n-2', 'n-3', 'n-1']);
  });

  it('spreads the slices of a blueprint over nodes of equal load', () => {
    const nodes = [node('n-1'), node('n-2'), node('n-3'), node('n-4')];
    const plan = planServices(viewOf([blueprint('web', slice(ECHO, 2), slice(DATA, 2))], nodes));
    expect(ofKind(plan, 'place').map((p) => `${p.artifact}@${p.nodeId}`)).toEqual([`${ECHO}@n-1`, `${ECHO}@n-2`, `${DATA}@n-3`, `${DATA}@n-4`]);
  });
});

describe('filters', () => {
  it('places only on nodes carrying every required tag', () => {
    const nodes = [node('n-1', { tags: ['ram_128gb'] }), node('n-2', { tags: ['ram_128gb', 'region_eu'], cpuLoad: 0.9 }), node('n-3', { tags: ['region_eu'] })];
    const plan = planServices(viewOf([blueprint('web', slice(DATA, 2, { requiredTags: ['ram_128gb', 'region_eu'] }))], nodes));
    expect(placedOn(plan)).toEqual(['n-2']);
    expect(plan.unplaced[0]).toMatchObject({ wanted: 2, placed: 1, rejectedBy: { 'required-tags': 2 } });
    expect(plan.unplaced[0]!.reason).toBe(`no candidate for ${DATA} among 2 nodes: 2 nodes without a required tag (after placing 1)`);
  });

  it('fits resources beside what existing keys take, defaulting an unstated slice to 0.1 core and 64 MB', () => {
    const big = 'org.example:big:1.0';
    const blueprints = [blueprint('web', slice(DATA, 1, { resources: { cpu: 3, memoryMb: 1_024 } })), blueprint('batch', slice(big, 1, { resources: { cpu: 2, memoryMb: 512 } }))];
    const nodes = [node('n-1'), node('n-2', { cpuLoad: 0.5, memoryGb: 1 })];
    const plan = planServices(viewOf(blueprints, nodes, [key('n-1', big, 1)]));
    // n-1 has 2 of 4 cores free after the big instance; n-2 has cores but only 1,024 MB, which fits exactly.
    expect(ofKind(plan, 'place').map((p) => `${p.artifact}@${p.nodeId}`)).toEqual([`${DATA}@n-2`]);
    const tooBig = planServices(viewOf([blueprint('web', slice(DATA, 1, { resources: { cpu: 1, memoryMb: 1_025 } }))], [node('n-2', { memoryGb: 1 })]));
    expect(tooBig.unplaced[0]!.rejectedBy).toEqual({ 'resources-fit': 1 });
    // 40 default instances (4 cores) fill a 4-core node; the 41st does not fit.
    const many = Array.from({ length: 41 }, (_, i) => slice(`org.example:s${String(i).padStart(2, '0')}:1.0`, 1));
    const full = planServices(viewOf([blueprint('web', ...many)], [node('n-1', { memoryGb: 64 })]));
    expect(ofKind(full, 'place')).toHaveLength(40);
    expect(full.unplaced.map((u) => u.artifact)).toEqual(['org.example:s40:1.0']);
  });

  it('never over-commits a node across the slices of one plan', () => {
    const nodes = [node('n-1', { cpuCores: 1 })];
    const plan = planServices(viewOf([blueprint('a', slice(DATA, 1, { resources: { cpu: 0.6, memoryMb: 64 } })), blueprint('b', slice(ECHO, 1, { resources: { cpu: 0.6, memoryMb: 64 } }))], nodes));
    expect(ofKind(plan, 'place').map((p) => p.artifact)).toEqual([DATA]);
    expect(plan.unplaced).toMatchObject([{ artifact: ECHO, blueprint: 'b', rejectedBy: { 'resources-fit': 1 } }]);
  });

  it('runs at most one instance of a slice per node', () => {
    const plan = planServices(viewOf([blueprint('web', slice(ECHO, 3))], [node('n-1'), node('n-2')], [key('n-1', ECHO, 1)]));
    expect(ofKind(plan, 'place')).toEqual([{ kind: 'place', nodeId: 'n-2', artifact: ECHO, blueprint: 'web', instance: 2, reason: 'scale up: 1 of 3 running' }]);
    expect(plan.unplaced[0]).toMatchObject({ wanted: 3, placed: 2, rejectedBy: { 'one-per-node': 1 } });
    expect(plan.unplaced[0]!.reason).toBe(`no candidate for ${ECHO} among 1 node: 1 node already holding an instance of the slice (after placing 1)`);
  });
});

describe('reconciliation', () => {
  it('forgets the keys of an offline or vanished node and re-places their instances elsewhere', () => {
    const nodes = [node('n-1'), node('n-2', { status: 'offline' }), node('n-3', { cpuLoad: 0.4 }), node('n-4', { cpuLoad: 0.2 })];
    const slices = [key('n-1', ECHO, 1), key('n-2', ECHO, 2), key('n-9', ECHO, 3)];
    const plan = planServices(viewOf([blueprint('web', slice(ECHO, 3))], nodes, slices));
    expect(plan.changes).toEqual([
      { kind: 'forget', nodeId: 'n-2', artifact: ECHO, instance: 2, reason: 'node n-2 is offline: it cannot act on instance 2, so its key is deleted; re-placed on node n-4' },
      { kind: 'forget', nodeId: 'n-9', artifact: ECHO, instance: 3, reason: 'node n-9 is no longer in the mesh: it cannot act on instance 3, so its key is deleted; re-placed on node n-3' },
      { kind: 'place', nodeId: 'n-4', artifact: ECHO, blueprint: 'web', instance: 2, reason: 'node n-2 is offline: re-placed (1 of 3 running)' },
      { kind: 'place', nodeId: 'n-3', artifact: ECHO, blueprint: 'web', instance: 3, reason: 'node n-9 is no longer in the mesh: re-placed (1 of 3 running)' },
    ]);
    expect(plan.unplaced).toEqual([]);
  });

  it('says when a dead node\'s instance cannot be re-placed yet', () => {
    const plan = planServices(viewOf([blueprint('web', slice(ECHO, 2))], [node('n-1'), node('n-2', { status: 'offline' })], [key('n-1', ECHO, 1), key('n-2', ECHO, 2)]));
    expect(plan.changes).toEqual([{ kind: 'forget', nodeId: 'n-2', artifact: ECHO, instance: 2, reason: 'node n-2 is offline: it cannot act on instance 2, so its key is deleted; not re-placed yet: no node can take it (see unplaced)' }]);
    expect(plan.unplaced[0]).toMatchObject({ wanted: 2, placed: 1, rejectedBy: { 'node-ready': 1, 'one-per-node': 1 } });
  });

  it('forgets a key an offline node was unloading without re-placing it, and leaves a draining node\'s instances running', () => {
    const nodes = [node('n-1', { status: 'draining' }), node('n-2', { status: 'offline' }), node('n-3')];
    const plan = planServices(viewOf([blueprint('web', slice(ECHO, 1))], nodes, [key('n-1', ECHO, 1), key('n-2', ECHO, 2, 'UNLOADING')]));
    expect(plan.changes).toEqual([{ kind: 'forget', nodeId: 'n-2', artifact: ECHO, instance: 2, reason: 'node n-2 is offline: it cannot finish unloading instance 2, so its key is deleted' }]);
  });

  it('unloads a FAILED instance and re-places it on another node, even when its own node scores best', () => {
    const nodes = [node('n-1'), node('n-2', { cpuLoad: 0.6 }), node('n-3', { cpuLoad: 0.3 })];
    const slices = [key('n-1', ECHO, 1, 'FAILED', { reason: 'exited with code 1' }), key('n-2', ECHO, 2)];
    const plan = planServices(viewOf([blueprint('web', slice(ECHO, 2))], nodes, slices));
    expect(plan.changes).toEqual([
      { kind: 'stop', nodeId: 'n-1', artifact: ECHO, instance: 1, reason: 'instance 1 FAILED on node n-1 (exited with code 1): unloaded; re-placed on node n-3' },
      { kind: 'place', nodeId: 'n-3', artifact: ECHO, blueprint: 'web', instance: 3, reason: 'instance 1 FAILED on node n-1: re-placed on another node (1 of 2 running)' },
    ]);
  });

  it('scales up to the lowest free instance numbers: numbers of keys on their way out are not free', () => {
    const nodes = ['n-1', 'n-2', 'n-3', 'n-4', 'n-5', 'n-6'].map((id) => node(id));
    const slices = [key('n-1', ECHO, 1), key('n-2', ECHO, 2, 'UNLOADING'), key('n-3', ECHO, 4, 'UNLOAD')];
    const plan = planServices(viewOf([blueprint('web', slice(ECHO, 4))], nodes, slices));
    expect(ofKind(plan, 'place').map((p) => [p.nodeId, p.instance, p.reason])).toEqual([
      ['n-4', 3, 'scale up: 1 of 4 running'],
      ['n-5', 5, 'scale up: 1 of 4 running'],
      ['n-6', 6, 'scale up: 1 of 4 running'],
    ]);
    expect(plan.changes.every((c) => c.kind === 'place')).toBe(true);
  });

  it('scales down newest first: greatest placedAt, then greatest instance', () => {
    const nodes = ['n-1', 'n-2', 'n-3', 'n-4'].map((id) => node(id));
    const slices = [
      key('n-1', ECHO, 1, 'ACTIVE', { placedAt: NOW - 5_000 }),
      key('n-2', ECHO, 2, 'ACTIVE', { placedAt: NOW - 1_000 }),
      key('n-3', ECHO, 3, 'LOADING', { placedAt: NOW - 3_000 }),
      key('n-4', ECHO, 4, 'ACTIVE', { placedAt: NOW - 3_000 }),
    ];
    const plan = planServices(viewOf([blueprint('web', slice(ECHO, 2))], nodes, slices));
    expect(plan.changes).toEqual([
      { kind: 'stop', nodeId: 'n-2', artifact: ECHO, instance: 2, reason: 'scale down: 4 running, 2 wanted, newest first' },
      { kind: 'stop', nodeId: 'n-4', artifact: ECHO, instance: 4, reason: 'scale down: 4 running, 2 wanted, newest first' },
    ]);
  });

  it('stops every instance of a slice no blueprint names, and leaves the ones already leaving', () => {
    const nodes = [node('n-1'), node('n-2'), node('n-3'), node('n-4')];
    const slices = [key('n-1', ECHO, 1), key('n-2', ECHO, 2, 'FAILED'), key('n-3', ECHO, 3, 'UNLOADING'), key('n-4', ECHO, 4, 'UNLOAD')];
    const plan = planServices(viewOf([blueprint('other', slice(DATA, 0))], nodes, slices));
    expect(plan.changes).toEqual([
      { kind: 'stop', nodeId: 'n-2', artifact: ECHO, instance: 2, reason: `instance 2 FAILED on node n-2: unloaded; no blueprint names ${ECHO} any more` },
      { kind: 'stop', nodeId: 'n-1', artifact: ECHO, instance: 1, reason: `blueprint removed: no blueprint names ${ECHO} any more (instance 1 was blueprint web's)` },
    ]);
    expect(plan.unplaced).toEqual([]);
  });

  it('lets the first blueprint by name own an artifact two blueprints name', () => {
    const plan = planServices(viewOf([blueprint('zeta', slice(ECHO, 2)), blueprint('alpha', slice(ECHO, 1))], [node('n-1'), node('n-2')]));
    expect(ofKind(plan, 'place').map((p) => p.blueprint)).toEqual(['alpha']);
    expect(plan.unplaced).toEqual([{ artifact: ECHO, blueprint: 'zeta', wanted: 2, placed: 0, reason: `${ECHO} already belongs to blueprint alpha (one key per node and artifact, so one blueprint runs it); remove it from one of them`, rejectedBy: {} }]);
  });

  it('orders forgets, then stops, then places, and converges once applied', () => {
    const nodes = [node('n-1'), node('n-2', { status: 'offline' }), node('n-3'), node('n-4')];
    const slices = [key('n-1', DATA, 1), key('n-2', ECHO, 1), key('n-3', ECHO, 2, 'FAILED'), key('n-4', 'org.example:gone:1.0', 1)];
    const view = viewOf([blueprint('web', slice(ECHO, 2), slice(DATA, 0))], nodes, slices);
    const plan = planServices(view);
    expect(plan.changes.map((c) => `${c.kind} ${c.artifact}@${c.nodeId}`)).toEqual([
      `forget ${ECHO}@n-2`,
      `stop ${ECHO}@n-3`,
      `stop ${DATA}@n-1`,
      'stop org.example:gone:1.0@n-4',
      `place ${ECHO}@n-1`,
      `place ${ECHO}@n-4`,
    ]);
    const applied = applyPlan(view, plan);
    expect(applied.slices.find((s) => s.nodeId === 'n-3')!.record).toMatchObject({ state: 'UNLOAD', version: 4, timestamp: NOW });
    expect(applied.slices.filter((s) => s.record.state === 'LOAD')).toHaveLength(2);
    expect(planServices(applied).changes).toEqual([]);
    expect(planServices(applyPlan(view, plan, 'ACTIVE')).changes).toEqual([]);
  });

  it('gives the same plan whatever order the view lists blueprints, nodes and keys in', () => {
    const nodes = ['n-5', 'n-1', 'n-4', 'n-2', 'n-3'].map((id, i) => node(id, { cpuLoad: (i % 3) / 4, tags: i === 0 ? ['live_node'] : [] }));
    const slices = [key('n-3', ECHO, 2), key('n-1', ECHO, 1), key('n-2', DATA, 1, 'FAILED')];
    const blueprints = [blueprint('web', slice(ECHO, 3)), blueprint('etl', slice(DATA, 2)), blueprint('live', slice(LIVE, 1, { requiredTags: ['live_node'] }))];
    const plan = planServices(viewOf(blueprints, nodes, slices));
    const again = planServices(viewOf([...blueprints].reverse(), [...nodes].reverse(), [...slices].reverse()));
    expect(again).toEqual(plan);
    expect(planServices(viewOf(blueprints, nodes, slices))).toEqual(plan);
  });
});

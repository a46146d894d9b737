/**
 * The services family's pure planner (Nomad's reconciler shape): given the blueprints, the nodes and
 * every slice key, return the changes that bring the running instances to what the blueprints ask,
 * each with a reason, and what could not be placed with the framework's reason. No I/O, no clock but
 * `view.now`, no randomness; the cluster deployment manager writes the changes to the KV, fenced.
 *
 *   blueprints ─► owner per artifact (first blueprint by name) ─┐
 *   slice keys ─► per artifact: lost │ failed │ leaving │ running ─┼─► forget / stop / scale down
 *   nodes ─────► candidates with what their keys already take ───┴─► placeMany (profile.ts) ─► place
 *
 * Rules the tests hold (test/unit/service-planner.test.ts, test/property/service-planner.property.test.ts):
 * - a key on a node that is offline or gone is forgotten (the node cannot act on it) and its instance
 *   counts as gone; a FAILED instance is unloaded and counts as gone; UNLOAD and UNLOADING count as
 *   leaving: never running, never stopped again, and the node deletes the key itself;
 * - every key that survives the plan, whatever its state, holds its node's slot for its artifact,
 *   its instance number and its resources, so nothing is ever placed over a key or over capacity
 *   and a FAILED instance is re-placed on another node;
 * - after the plan, running plus placed never exceeds what the owning blueprint asks (0 for an
 *   artifact no blueprint names); scale-down stops the newest first;
 * - the same view in any order gives the same plan, and applying a plan (`applyPlan`) then planning
 *   again gives no change: nothing a plan does frees a slot or resources for a later plan, and an
 *   instance unplaced now is unplaced then, until the cluster changes.
 */
import { ArcError } from '../core/errors.ts';
import type { Profile } from '../placement/framework.ts';
import { placeMany } from '../placement/framework.ts';
import { sliceKey, type SliceRecord, type SliceSpec, type SliceState } from './model.ts';
import type { ExistingSlice, Plan, PlanChange, PlanView, Unplaced } from './plan.ts';
import { DEFAULT_SLICE_RESOURCES, resourcesOf, serviceProfile, type ServiceCandidate, type SliceAsk, type SliceResources } from './profile.ts';

type Forget = Extract<PlanChange, { kind: 'forget' }>;
type Stop = Extract<PlanChange, { kind: 'stop' }>;
type Place = Extract<PlanChange, { kind: 'place' }>;

/** Commands and progress of an instance on its way out: the node finishes them and deletes the key. */
const LEAVING_STATES: ReadonlySet<SliceState> = new Set(['UNLOAD', 'UNLOADING']);

/** A candidate the planner keeps up to date as it places, so later slices see earlier ones. */
interface Allocation extends ServiceCandidate {
  allocatedCpu: number;
  allocatedMemoryMb: number;
  instances: number;
}

interface Owner {
  readonly blueprint: string;
  readonly slice: SliceSpec;
  readonly resources: SliceResources;
}

/** An artifact's keys by what the plan does with them. */
interface Buckets {
  /** On a node that is offline or gone, and not already leaving: forgotten, and a cause for a replacement. */
  readonly lost: Lost[];
  /** On a node that is offline or gone, already being unloaded: forgotten only. */
  readonly lostLeaving: Lost[];
  readonly failed: ExistingSlice[];
  readonly running: ExistingSlice[];
  /** Every key that survives the plan, in any state: it keeps its instance number. */
  readonly surviving: ExistingSlice[];
}

/** A key on a node that cannot act on it any more. */
interface Lost {
  readonly existing: ExistingSlice;
  /** `is offline` or `is no longer in the mesh`. */
  readonly nodeGone: string;
}

/** Why an instance is gone and may need a replacement: its node, or its own failure on a live node. */
type Cause = Lost | { readonly existing: ExistingSlice; readonly nodeGone: undefined };

const DEFAULT_PROFILE = serviceProfile();
const NO_RESERVATIONS = (): boolean => false;

/** Code-unit order, not locale order: the same on every replica whatever its locale. */
const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

const byNode = (a: ExistingSlice, b: ExistingSlice): number => compareStrings(a.nodeId, b.nodeId);
const byLostNode = (a: Lost, b: Lost): number => byNode(a.existing, b.existing);

/** Newest first (scale-down order): greatest `placedAt`, then greatest instance, then greatest node id. */
const newestFirst = (a: ExistingSlice, b: ExistingSlice): number =>
  b.record.placedAt - a.record.placedAt || b.record.instance - a.record.instance || compareStrings(b.nodeId, a.nodeId);

export function planServices(view: PlanView, profile: Profile<ServiceCandidate, SliceAsk> = DEFAULT_PROFILE): Plan {
  const context = { now: view.now, isReserved: NO_RESERVATIONS };

  const allocations = new Map<string, Allocation>();
  for (const node of [...view.nodes].sort((a, b) => compareStrings(a.id, b.id))) {
    allocations.set(node.id, { id: node.id, node, allocatedCpu: 0, allocatedMemoryMb: 0, instances: 0 });
  }
  const candidates = [...allocations.values()];

  // The key is per node and artifact, so one blueprint runs an artifact: the first by name.
  const owners = new Map<string, Owner>();
  const unplaced: Unplaced[] = [];
  for (const blueprint of [...view.blueprints].sort((a, b) => compareStrings(a.name, b.name))) {
    for (const slice of blueprint.slices) {
      const owner = owners.get(slice.artifact);
      if (owner === undefined) {
        owners.set(slice.artifact, { blueprint: blueprint.name, slice, resources: resourcesOf(slice) });
        continue;
      }
      unplaced.push({
        artifact: slice.artifact,
        blueprint: blueprint.name,
        wanted: slice.instances,
        placed: 0,
        reason: `${slice.artifact} already belongs to blueprint ${owner.blueprint} (one key per node and artifact, so one blueprint runs it); remove it from one of them`,
        rejectedBy: {},
      });
    }
  }

  // One pass sorts every key into its artifact's buckets (Nomad's untainted / lost / failed), so no
  // later step scans the keys again; only the small buckets that name changes are sorted.
  const buckets = new Map<string, Buckets>();
  for (const existing of view.slices) {
    let bucket = buckets.get(existing.artifact);
    if (bucket === undefined) buckets.set(existing.artifact, (bucket = { lost: [], lostLeaving: [], failed: [], running: [], surviving: [] }));
    const allocation = allocations.get(existing.nodeId);
    if (allocation === undefined || allocation.node.status === 'offline') {
      const lost: Lost = { existing, nodeGone: allocation === undefined ? 'is no longer in the mesh' : 'is offline' };
      (LEAVING_STATES.has(existing.record.state) ? bucket.lostLeaving : bucket.lost).push(lost);
      continue;
    }
    // A forgotten key's number is free again; a surviving key keeps its number, its slot and its resources in any state.
    bucket.surviving.push(existing);
    if (existing.record.state === 'FAILED') bucket.failed.push(existing);
    else if (!LEAVING_STATES.has(existing.record.state)) bucket.running.push(existing);
    const resources = owners.get(existing.artifact)?.resources ?? DEFAULT_SLICE_RESOURCES;
    allocation.instances++;
    // Summed in input order: another order differs by a few ulps at most, far inside resources-fit's tolerance.
    allocation.allocatedCpu += resources.cpu;
    allocation.allocatedMemoryMb += resources.memoryMb;
  }

  const forgets: Forget[] = [];
  const stops: Stop[] = [];
  const places: Place[] = [];

  const reconcile = (artifact: string, owner: Owner | undefined): void => {
    const { lost, lostLeaving, failed, running, surviving } = buckets.get(artifact) ?? { lost: [], lostLeaving: [], failed: [], running: [], surviving: [] };
    lost.sort(byLostNode);
    lostLeaving.sort(byLostNode);
    failed.sort(byNode);
    const causes: Cause[] = [...lost, ...failed.map((existing) => ({ existing, nodeGone: undefined }))];

    const wanted = owner?.slice.instances ?? 0;
    const deficit = Math.max(0, wanted - running.length);
    const newPlaces: Place[] = [];
    if (owner !== undefined && deficit > 0) {
      const ask: SliceAsk = { blueprint: owner.blueprint, slice: owner.slice, resources: owner.resources, holders: new Set(surviving.map((s) => s.nodeId)) };
      const { placed, shortfall } = placeMany<Allocation, SliceAsk>(profile, candidates, ask, context, deficit, artifact);
      const numbers = lowestFree(new Set(surviving.map((s) => s.record.instance)), placed.length);
      for (const [i, { node }] of placed.entries()) {
        const cause = causes[i];
        const tally = `${running.length} of ${wanted} running`;
        const reason =
          cause === undefined
            ? `scale up: ${tally}`
            : cause.nodeGone !== undefined
              ? `node ${cause.existing.nodeId} ${cause.nodeGone}: re-placed (${tally})`
              : `instance ${cause.existing.record.instance} FAILED on node ${cause.existing.nodeId}: re-placed on another node (${tally})`;
        newPlaces.push({ kind: 'place', nodeId: node.id, artifact, blueprint: owner.blueprint, instance: numbers[i]!, reason });
        node.instances++;
        node.allocatedCpu += owner.resources.cpu;
        node.allocatedMemoryMb += owner.resources.memoryMb;
      }
      if (shortfall !== undefined) {
        unplaced.push({ artifact, blueprint: owner.blueprint, wanted, placed: running.length + placed.length, reason: shortfall.reason, rejectedBy: shortfall.rejectedBy });
      }
    }

    /** What became of a gone instance, said after the forget or stop that records it. */
    const fate = (i: number): string => {
      if (owner === undefined) return `no blueprint names ${artifact} any more`;
      if (i < newPlaces.length) return `re-placed on node ${newPlaces[i]!.nodeId}`;
      if (i < deficit) return 'not re-placed yet: no node can take it (see unplaced)';
      return `not re-placed: ${running.length} running already meet the ${wanted} wanted`;
    };
    for (const [i, cause] of causes.entries()) {
      const { nodeId, record } = cause.existing;
      if (cause.nodeGone !== undefined) {
        forgets.push({ kind: 'forget', nodeId, artifact, instance: record.instance, reason: `node ${nodeId} ${cause.nodeGone}: it cannot act on instance ${record.instance}, so its key is deleted; ${fate(i)}` });
      } else {
        const detail = record.reason === undefined ? '' : ` (${record.reason})`;
        stops.push({ kind: 'stop', nodeId, artifact, instance: record.instance, reason: `instance ${record.instance} FAILED on node ${nodeId}${detail}: unloaded; ${fate(i)}` });
      }
    }
    for (const { existing: { nodeId, record }, nodeGone } of lostLeaving) {
      forgets.push({ kind: 'forget', nodeId, artifact, instance: record.instance, reason: `node ${nodeId} ${nodeGone}: it cannot finish unloading instance ${record.instance}, so its key is deleted` });
    }
    if (owner === undefined) {
      for (const { nodeId, record } of running.sort(byNode)) {
        stops.push({ kind: 'stop', nodeId, artifact, instance: record.instance, reason: `blueprint removed: no blueprint names ${artifact} any more (instance ${record.instance} was blueprint ${record.blueprint}'s)` });
      }
    } else if (running.length > wanted) {
      for (const { nodeId, record } of [...running].sort(newestFirst).slice(0, running.length - wanted)) {
        stops.push({ kind: 'stop', nodeId, artifact, instance: record.instance, reason: `scale down: ${running.length} running, ${wanted} wanted, newest first` });
      }
    }
    places.push(...newPlaces);
  };

  // Blueprint name, then slice order: a deterministic order, and earlier slices are placed first.
  for (const [artifact, owner] of owners) reconcile(artifact, owner);
  for (const artifact of [...buckets.keys()].filter((a) => !owners.has(a)).sort(compareStrings)) reconcile(artifact, undefined);

  return { changes: [...forgets, ...stops, ...places], unplaced };
}

/** The `count` lowest numbers from 1 that `held` does not contain, ascending. */
function lowestFree(held: ReadonlySet<number>, count: number): number[] {
  const numbers: number[] = [];
  for (let n = 1; numbers.length < count; n++) if (!held.has(n)) numbers.push(n);
  return numbers;
}

/**
 * The view as it will be once the shell has applied `plan` and before any node acts: places become
 * new keys in `placedState` (LOAD as written; ACTIVE to simulate nodes that came up at once), stops
 * become UNLOAD, forgets are deleted. For tests and the bench: planning the result again must give
 * no change.
 */
export function applyPlan(view: PlanView, plan: Plan, placedState: 'LOAD' | 'ACTIVE' = 'LOAD'): PlanView {
  const forgotten = new Set<string>();
  const stopped = new Map<string, string>();
  for (const change of plan.changes) {
    if (change.kind === 'forget') forgotten.add(sliceKey(change.nodeId, change.artifact));
    else if (change.kind === 'stop') stopped.set(sliceKey(change.nodeId, change.artifact), change.reason);
  }
  const slices: ExistingSlice[] = [];
  const keys = new Set<string>();
  for (const existing of view.slices) {
    const key = sliceKey(existing.nodeId, existing.artifact);
    if (forgotten.has(key)) continue;
    keys.add(key);
    const reason = stopped.get(key);
    if (reason === undefined) {
      slices.push(existing);
      continue;
    }
    const record: SliceRecord = { ...existing.record, state: 'UNLOAD', timestamp: view.now, version: existing.record.version + 1, reason };
    slices.push({ ...existing, record });
  }
  for (const change of plan.changes) {
    if (change.kind !== 'place') continue;
    const key = sliceKey(change.nodeId, change.artifact);
    if (keys.has(key)) throw new ArcError('INTERNAL', `the plan places ${change.artifact} on node ${change.nodeId}, whose key for it still exists`, { retryable: false });
    keys.add(key);
    const record: SliceRecord = {
      state: placedState,
      timestamp: view.now,
      version: 1,
      instance: change.instance,
      blueprint: change.blueprint,
      epoch: view.epoch,
      placedAt: view.now,
      reason: change.reason,
    };
    slices.push({ nodeId: change.nodeId, artifact: change.artifact, record });
  }
  return { ...view, slices };
}

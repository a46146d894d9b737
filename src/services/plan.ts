/**
 * What the services planner reads and returns (`planner.ts`, pure, in the style of Nomad's
 * reconciler): blueprints, the nodes as the mesh sees them and every slice key, in; a list of changes
 * with a reason each, and what could not be placed with the framework's reason, out. The cluster
 * deployment manager (`cluster-manager.ts`, leader only) applies the changes to the KV, fenced.
 */
import type { Blueprint, SliceRecord } from './model.ts';

/** What placement reads of a node (from the mesh's node state). */
export interface ServiceNode {
  readonly id: string;
  readonly name: string;
  /**
   * Only `online` and `busy` nodes take new instances; `offline` nodes' instances are re-placed.
   * `unreported`: its runner is connected but the mesh has no telemetry of it yet (a leader that just
   * started): its instances stay, nothing new goes there.
   */
  readonly status: 'online' | 'busy' | 'draining' | 'offline' | 'unreported';
  readonly tags: readonly string[];
  readonly cpuCores: number;
  readonly memoryGb: number;
  /** 0..1 from its telemetry. */
  readonly cpuLoad: number;
  readonly datasetsHot: readonly string[];
  /** The runtimes its runner has (`process`, `container`); undefined: any (a test's or the bench's node). */
  readonly runtimes?: readonly ('process' | 'container')[];
}

/** One slice key as the planner sees it. */
export interface ExistingSlice {
  readonly nodeId: string;
  readonly artifact: string;
  readonly record: SliceRecord;
}

export interface PlanView {
  readonly blueprints: readonly Blueprint[];
  readonly nodes: readonly ServiceNode[];
  readonly slices: readonly ExistingSlice[];
  readonly now: number;
  /** The leader's fencing token: new instances carry it as their epoch. */
  readonly epoch: number;
}

export type PlanChange =
  /** Write `slices/{nodeId}/{artifact}` with state LOAD. */
  | { readonly kind: 'place'; readonly nodeId: string; readonly artifact: string; readonly blueprint: string; readonly instance: number; readonly reason: string }
  /** Write UNLOAD to a live node's key (scale down, blueprint removed, a FAILED instance replaced). */
  | { readonly kind: 'stop'; readonly nodeId: string; readonly artifact: string; readonly instance: number; readonly reason: string }
  /** Delete the key of a node that cannot act on it any more (offline, gone) or of an instance it finished unloading. */
  | { readonly kind: 'forget'; readonly nodeId: string; readonly artifact: string; readonly instance: number; readonly reason: string };

export interface Unplaced {
  readonly artifact: string;
  readonly blueprint: string;
  readonly wanted: number;
  /** Instances that are or will be running after this plan. */
  readonly placed: number;
  /** The framework's sentence: which filter removed how many nodes. */
  readonly reason: string;
  readonly rejectedBy: Readonly<Record<string, number>>;
}

export interface Plan {
  /** Forgets and stops first, then places: the shell applies them in this order. */
  readonly changes: readonly PlanChange[];
  readonly unplaced: readonly Unplaced[];
}

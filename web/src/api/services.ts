/**
 * The services management API's answers as the console reads them (src/api/service-routes.ts):
 * `GET /api/v1/status`, `/api/v1/blueprints`, `/api/v1/slices/:artifact` and `/api/v1/cluster/nodes`.
 * The model's own types (lifecycle states, blueprints, endpoint records, nodes) come from the server's
 * modules; the answer shapes, which that file builds inline, are spelled out here field by field.
 */
import type { NodeState } from '../../../src/mesh/node.ts';
import type { Blueprint, EndpointRecord, SliceSpec, SliceState } from '../../../src/services/model.ts';

export type { Blueprint, SliceSpec, SliceState };

/** Instances per state, only the states that have any, in lifecycle order. */
export type StateCounts = Partial<Record<SliceState, number>>;

/** One instance of a slice on a node (service-routes.ts `Instance`). */
export interface ServiceInstance {
  readonly node: string;
  readonly nodeName?: string;
  readonly instance: number;
  readonly state: SliceState;
  /** When the state was written (ms). */
  readonly timestamp: number;
  /** `host:port` once spawned. */
  readonly address?: string;
  readonly reason?: string;
  readonly restarts?: number;
}

/** The leader's word on what it could not place (service-routes.ts `Unplaced`). */
export interface Unplaced {
  readonly reason: string;
  readonly wanted: number;
  readonly placed: number;
  readonly blueprint?: string;
  /** How many nodes each filter removed. */
  readonly rejectedBy?: Readonly<Record<string, number>>;
}

export interface ServicesLeader {
  readonly holder: string;
  readonly epoch: number | null;
  readonly since: unknown;
}

/** One slice of one blueprint (service-routes.ts `SliceStatus`). */
export interface SliceStatus {
  readonly artifact: string;
  /** The router's prefix: `/{service}/…`. */
  readonly service: string;
  readonly blueprint: string;
  readonly wanted: number;
  readonly active: number;
  readonly states: StateCounts;
  readonly instances: readonly ServiceInstance[];
  readonly unplaced: Unplaced | null;
}

export interface BlueprintStatus {
  readonly name: string;
  readonly timestamp: number;
  readonly appliedBy?: string;
  readonly wanted: number;
  readonly active: number;
  readonly slices: readonly SliceStatus[];
}

/** A slice key no current blueprint names (removed or scaled away), until the leader has it unloaded. */
export type UnownedInstance = ServiceInstance & { readonly artifact: string; readonly blueprint: string };

/** `GET /api/v1/status`. */
export interface ServicesStatus {
  readonly leader: ServicesLeader | null;
  readonly blueprints: readonly BlueprintStatus[];
  readonly unowned: readonly UnownedInstance[];
  readonly totals: {
    readonly blueprints: number;
    readonly slices: number;
    readonly wanted: number;
    readonly instances: number;
    readonly active: number;
    readonly unplaced: number;
    readonly states: StateCounts;
  };
}

/** `GET /api/v1/blueprints`. */
export interface BlueprintList {
  readonly count: number;
  readonly blueprints: readonly Blueprint[];
}

/** An ACTIVE instance's entry point, as its node published it. */
export type SliceEndpoint = EndpointRecord & { readonly entryPoint: string };

/** `GET /api/v1/slices/:artifact`. */
export interface SliceAnswer {
  readonly artifact: string;
  readonly blueprints: readonly string[];
  readonly wanted: number;
  readonly active: number;
  readonly states: StateCounts;
  readonly slices: readonly SliceStatus[];
  readonly unowned: readonly (ServiceInstance & { readonly blueprint: string })[];
  readonly endpoints: readonly SliceEndpoint[];
  readonly unplaced: Unplaced | null;
}

/** A mesh node with the slice keys it holds. */
export type ClusterNode = Pick<NodeState, 'id' | 'name' | 'geozone' | 'status' | 'tags' | 'cpuLoad' | 'capacity' | 'datasetsHot'> & {
  readonly slices: number;
  readonly states: StateCounts;
};

/** `GET /api/v1/cluster/nodes`: `unknown` are nodes the mesh does not know that still hold slice keys. */
export interface ClusterNodes {
  readonly count: number;
  readonly nodes: readonly ClusterNode[];
  readonly unknown: readonly { readonly id: string; readonly slices: number; readonly states: StateCounts }[];
}

/** The node as the rest of ArcNet sees it: identity, capacity, telemetry, what is hot on it, status. */
import type { EnergySource, NodeCapacity, NodeTelemetry } from '../contracts/messages.ts';

export type NodeStatus = 'online' | 'busy' | 'draining' | 'offline';

export interface NodeState {
  readonly id: string;
  readonly name: string;
  readonly geozone: string;
  readonly geohash: string;
  readonly tags: readonly string[];
  readonly capacity: NodeCapacity;
  readonly energySource: EnergySource;
  readonly batteryLevel: number;
  readonly gpuUtilization: number;
  readonly gpuMemoryFreeGb: number;
  readonly cpuLoad: number;
  readonly modelsLoaded: readonly string[];
  readonly datasetsHot: readonly string[];
  readonly status: NodeStatus;
  /** When telemetry last arrived (receiver's clock, ms). */
  readonly lastSeen: number;
  /** When the node says its last telemetry was taken (ms). */
  readonly reportedAt: number;
  readonly reputation: number;
  /**
   * When this registry first heard of the node (receiver's clock, ms): seed 004's `registered_at` for
   * a node that is not a worker. Kept on the state (not read from the document's first version) so the
   * node list costs no store read; absent on documents written before it existed.
   */
  readonly firstSeen?: number;
}

/** Geohash prefixes of the three seed geozones, for telemetry that does not name its geozone. */
const GEOZONE_PREFIXES: readonly (readonly [string, string])[] = [
  ['9q', 'CAISO'], ['9r', 'CAISO'], ['9m', 'CAISO'],
  ['9v', 'ERCOT'], ['9u', 'ERCOT'], ['9t', 'ERCOT'],
  ['dq', 'PJM'], ['dr', 'PJM'], ['dp', 'PJM'], ['dn', 'PJM'],
];

export function geozoneForGeohash(geohash: string): string {
  for (const [prefix, zone] of GEOZONE_PREFIXES) if (geohash.startsWith(prefix)) return zone;
  return 'UNZONED';
}

/** A node's geozone: as it reports it, else as known before, else from where its geohash lies. */
export function geozoneOf(telemetry: NodeTelemetry, previous: NodeState | undefined): string {
  return telemetry.geozone ?? previous?.geozone ?? geozoneForGeohash(telemetry.geohash);
}

export const DEFAULT_REPUTATION = 100;

export function nodeFromTelemetry(telemetry: NodeTelemetry, receivedAt: number, previous: NodeState | undefined): NodeState {
  return {
    id: telemetry.id,
    name: telemetry.name ?? previous?.name ?? `node-${telemetry.id.slice(0, 8)}`,
    geozone: geozoneOf(telemetry, previous),
    geohash: telemetry.geohash,
    tags: telemetry.tags ?? previous?.tags ?? [],
    capacity: telemetry.capacity ?? previous?.capacity ?? { cpuCores: 0, memoryGb: 0, gpus: 0 },
    energySource: telemetry.energySource,
    batteryLevel: telemetry.batteryLevel,
    gpuUtilization: telemetry.gpuUtilization,
    gpuMemoryFreeGb: telemetry.gpuMemoryFreeGb,
    cpuLoad: telemetry.cpuLoad ?? previous?.cpuLoad ?? 0,
    modelsLoaded: telemetry.modelsLoaded,
    datasetsHot: telemetry.datasetsHot ?? previous?.datasetsHot ?? [],
    status: previous?.status === 'draining' ? 'draining' : 'online',
    lastSeen: receivedAt,
    reportedAt: Date.parse(telemetry.timestamp),
    reputation: previous?.reputation ?? DEFAULT_REPUTATION,
    firstSeen: previous?.firstSeen ?? receivedAt,
  };
}

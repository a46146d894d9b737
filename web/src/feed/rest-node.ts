/** A `GET /api/v1/nodes` row in the shape the feed's state holds nodes. */
import type { RestNode } from '../api/types.ts';
import type { MeshNode } from './state.ts';

/**
 * A node list row as the map holds it. A worker that sends no telemetry has no geohash: it keeps
 * an empty one, so it is counted and has its (off-map) marker and table row, but no dot.
 */
export function toMeshNode(rest: RestNode): MeshNode {
  return {
    id: rest.id,
    geohash: rest.geohash ?? '',
    energySource: rest.energySource ?? 'grid',
    batteryLevel: rest.batteryLevel ?? 0,
    gpuUtilization: rest.gpuUtilization ?? 0,
    gpuMemoryFreeGb: rest.gpuMemoryFreeGb ?? 0,
    modelsLoaded: rest.modelsLoaded ?? [],
    timestamp: rest.timestamp ?? rest.reportedAt ?? rest.lastSeen ?? '',
    geozone: rest.geozone,
    name: rest.name,
    cpuLoad: rest.cpuLoad ?? 0,
    tags: rest.tags ?? [],
    capacity: rest.capacity ?? { cpuCores: 0, memoryGb: 0, gpus: 0 },
    datasetsHot: rest.datasetsHot ?? [],
    status: (rest.status as MeshNode['status'] | undefined) ?? 'online',
    lastSeen: rest.lastSeen ?? '',
  };
}

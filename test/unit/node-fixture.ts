/** A healthy, idle, fresh node in CAISO with one model loaded, for unit tests to vary one field at a time. */
import type { NodeState } from '../../src/mesh/node.ts';

export const NOW = 1_000_000;

export function nodeState(id: string, overrides: Partial<NodeState> = {}): NodeState {
  return {
    id,
    name: `node-${id}`,
    geozone: 'CAISO',
    geohash: '9q9hvu',
    tags: [],
    capacity: { cpuCores: 8, memoryGb: 64, gpus: 4 },
    energySource: 'grid',
    batteryLevel: 1,
    gpuUtilization: 0,
    gpuMemoryFreeGb: 10,
    cpuLoad: 0,
    modelsLoaded: ['m'],
    datasetsHot: [],
    status: 'online',
    lastSeen: NOW,
    reportedAt: NOW,
    reputation: 100,
    ...overrides,
  };
}

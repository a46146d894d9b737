import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { InferenceCandidateIndex } from '../../src/placement/candidate-index.ts';
import { inferenceProfile, DEFAULT_INFERENCE_PROFILE } from '../../src/placement/inference-profile.ts';
import { place, scoreNode } from '../../src/placement/framework.ts';
import type { NodeState } from '../../src/mesh/node.ts';

const zones = ['CAISO', 'ERCOT', 'PJM'];
const models = ['llama-3-70b', 'mistral-7b', 'sdxl'];
const NOW = 1_000_000;

const nodeArb = (index: number): fc.Arbitrary<NodeState> =>
  fc.record({
    geozone: fc.constantFrom(...zones),
    energySource: fc.constantFrom('cogen' as const, 'grid' as const, 'battery' as const),
    batteryLevel: fc.constantFrom(0, 0.1, 0.2, 0.21, 0.5, 0.9, 1),
    gpuUtilization: fc.constantFrom(0, 0.3, 0.5, 0.84, 0.85, 0.9, 1),
    modelsLoaded: fc.subarray(models),
    silentFor: fc.constantFrom(0, 5_000, 29_000, 31_000, 120_000),
    status: fc.constantFrom('online' as const, 'online' as const, 'draining' as const, 'offline' as const),
  }).map((r) => ({
    id: `00000000-0000-4000-a000-${String(index).padStart(12, '0')}`,
    name: `node-${index}`,
    geozone: r.geozone,
    geohash: '9q9hvu',
    tags: [],
    capacity: { cpuCores: 8, memoryGb: 64, gpus: 4 },
    energySource: r.energySource,
    batteryLevel: r.batteryLevel,
    gpuUtilization: r.gpuUtilization,
    gpuMemoryFreeGb: 10,
    cpuLoad: 0,
    modelsLoaded: r.modelsLoaded,
    datasetsHot: [],
    status: r.status,
    lastSeen: NOW - r.silentFor,
    reportedAt: NOW - r.silentFor,
    reputation: 100,
  }));

// The seed's weights half the time, any weights otherwise: the index must agree with the pipeline for all.
const weightsArb = fc.oneof(
  fc.constant(DEFAULT_INFERENCE_PROFILE.weights),
  fc.record({ sameGeozone: fc.integer({ min: 0, max: 200 }), cogen: fc.integer({ min: 0, max: 200 }), gpuHeadroom: fc.integer({ min: 0, max: 200 }), battery: fc.integer({ min: 0, max: 200 }) }),
);

const meshArb = fc.integer({ min: 0, max: 40 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => nodeArb(i))));

describe('inference placement', () => {
  const profile = inferenceProfile(DEFAULT_INFERENCE_PROFILE);

  it('the index always chooses the highest-scoring feasible node (same as filtering and scoring every node), for any weights', () => {
    fc.assert(
      fc.property(meshArb, fc.array(fc.nat(), { maxLength: 10 }), fc.constantFrom(...models), fc.constantFrom(...zones, 'MISO'), weightsArb, (nodes, reservedPicks, modelId, requesterGeozone, weights) => {
        const profile = inferenceProfile({ ...DEFAULT_INFERENCE_PROFILE, weights });
        const index = new InferenceCandidateIndex(profile, DEFAULT_INFERENCE_PROFILE.offlineAfterMs);
        for (const node of nodes) index.upsert(node);
        for (const pick of reservedPicks) {
          const node = nodes[pick % Math.max(1, nodes.length)];
          if (node) index.reserve({ nodeId: node.id, holder: 'r', token: 1, expiresAt: NOW + 30_000 });
        }
        const ask = { modelId, requesterGeozone };
        const reference = place(profile, nodes, ask, index.context(NOW));
        const chosen = index.best(ask, NOW);
        if (reference.kind === 'none') {
          expect(chosen).toBeUndefined();
        } else {
          expect(chosen?.node.id).toBe(reference.node.id);
          expect(chosen?.score).toBeCloseTo(reference.score, 9);
          expect(chosen?.forwarded).toBe(reference.node.geozone !== requesterGeozone);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('never chooses a reserved node, and a released one becomes a candidate again', () => {
    fc.assert(
      fc.property(meshArb, fc.constantFrom(...models), (nodes, modelId) => {
        const index = new InferenceCandidateIndex(profile, DEFAULT_INFERENCE_PROFILE.offlineAfterMs);
        for (const node of nodes) index.upsert(node);
        const ask = { modelId, requesterGeozone: 'CAISO' };
        const taken: string[] = [];
        for (let candidate = index.best(ask, NOW); candidate; candidate = index.best(ask, NOW)) {
          expect(taken).not.toContain(candidate.node.id);
          taken.push(candidate.node.id);
          index.reserve({ nodeId: candidate.node.id, holder: `r${taken.length}`, token: taken.length, expiresAt: NOW + 30_000 });
          // Telemetry while reserved must not make the node a candidate again.
          index.upsert({ ...candidate.node, gpuUtilization: 0 });
        }
        const feasible = nodes.filter((n) => place(profile, [n], ask, { now: NOW, isReserved: () => false }).kind === 'placed');
        expect(taken.length).toBe(feasible.length);
        if (taken.length > 0) {
          index.release(taken[0]!);
          expect(index.best(ask, NOW)?.node.id).toBe(taken[0]);
        }
        // Once every reservation has expired, the choice is the reference choice over the nodes as last reported.
        const later = place(profile, [...index.allNodes()], ask, { now: NOW + 30_000, isReserved: () => false });
        expect(index.best(ask, NOW + 30_000)?.node.id ?? null).toBe(later.kind === 'placed' ? later.node.id : null);
        expect(index.reservationCount()).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('scores with the seed formula: 100 same geozone + 50 cogen + 30 (1 - GPU) + 20 battery', () => {
    fc.assert(
      fc.property(nodeArb(1), fc.constantFrom(...zones), (node, zone) => {
        const expected = (node.geozone === zone ? 100 : 0) + (node.energySource === 'cogen' ? 50 : 0) + 30 * (1 - node.gpuUtilization) + 20 * node.batteryLevel;
        expect(scoreNode(profile, node, { modelId: 'x', requesterGeozone: zone }, { now: NOW, isReserved: () => false })).toBeCloseTo(expected, 9);
      }),
    );
  });

  it('uses configured weights: with the geozone weight at 0, a better node in another zone wins', () => {
    const weighted = inferenceProfile({ ...DEFAULT_INFERENCE_PROFILE, weights: { ...DEFAULT_INFERENCE_PROFILE.weights, sameGeozone: 0 } });
    const base = { tags: [], capacity: { cpuCores: 1, memoryGb: 1, gpus: 1 }, gpuMemoryFreeGb: 1, cpuLoad: 0, datasetsHot: [], status: 'online' as const, lastSeen: NOW, reportedAt: NOW, reputation: 100, geohash: '9q9hvu', name: 'n', modelsLoaded: ['m'], batteryLevel: 1 };
    const nodes: NodeState[] = [
      { ...base, id: 'local', geozone: 'CAISO', energySource: 'grid', gpuUtilization: 0.5 },
      { ...base, id: 'remote', geozone: 'PJM', energySource: 'cogen', gpuUtilization: 0.1 },
    ];
    const ask = { modelId: 'm', requesterGeozone: 'CAISO' };
    const seedChoice = place(profile, nodes, ask, { now: NOW, isReserved: () => false });
    const weightedChoice = place(weighted, nodes, ask, { now: NOW, isReserved: () => false });
    expect(seedChoice.kind === 'placed' && seedChoice.node.id).toBe('local');
    expect(weightedChoice.kind === 'placed' && weightedChoice.node.id).toBe('remote');
    const index = new InferenceCandidateIndex(weighted, 30_000);
    for (const node of nodes) index.upsert(node);
    expect(index.best(ask, NOW)).toMatchObject({ node: { id: 'remote' }, forwarded: true });
  });

  it('explains a rejection by counting the nodes each filter removed', () => {
    const index = new InferenceCandidateIndex(profile, 30_000);
    const base = { tags: [], capacity: { cpuCores: 1, memoryGb: 1, gpus: 1 }, gpuMemoryFreeGb: 1, cpuLoad: 0, datasetsHot: [], status: 'online' as const, lastSeen: NOW, reportedAt: NOW, reputation: 100, geohash: '9q9hvu', geozone: 'CAISO', name: 'n' };
    index.upsert({ ...base, id: 'a', energySource: 'grid', batteryLevel: 1, gpuUtilization: 0.9, modelsLoaded: ['m'] });
    index.upsert({ ...base, id: 'b', energySource: 'battery', batteryLevel: 0.1, gpuUtilization: 0.1, modelsLoaded: ['m'] });
    index.upsert({ ...base, id: 'c', energySource: 'grid', batteryLevel: 1, gpuUtilization: 0.1, modelsLoaded: ['other'] });
    index.upsert({ ...base, id: 'd', energySource: 'grid', batteryLevel: 1, gpuUtilization: 0.1, modelsLoaded: ['m'], lastSeen: NOW - 60_000 });
    expect(index.best({ modelId: 'm', requesterGeozone: 'CAISO' }, NOW)).toBeUndefined();
    const why = index.explain({ modelId: 'm', requesterGeozone: 'CAISO' }, NOW);
    expect(why.rejectedBy).toEqual({ 'gpu-headroom': 1, 'battery-reserve': 1, 'model-loaded': 1, online: 1 });
    expect(why.reason).toBe('no candidate for m (requested from CAISO) among 4 nodes: 1 node without the model loaded, 1 node offline or draining, 1 node at or over 85 % GPU, 1 node on battery at or below 20 %');
  });
});

/**
 * The seed inference profile plugin by plugin: where each filter draws its line (the limits are
 * strict: 85 % GPU is too busy, 20 % battery is too low, 30 s of silence is still online), the
 * reason it gives a person, and what each scorer adds. The property tests hold the candidate index
 * to `place()` with the same profile, so they cannot see a wrong limit; these tests can.
 */
import { describe, expect, it } from 'vitest';
import { place, type FilterStatus, type PlacementContext } from '../../src/placement/framework.ts';
import {
  DEFAULT_INFERENCE_PROFILE,
  batteryReserveFilter,
  gpuHeadroomFilter,
  inferencePlugins,
  inferenceProfile,
  modelLoadedFilter,
  notReservedFilter,
  onlineFilter,
  type InferenceAsk,
} from '../../src/inference/profile.ts';
import { NOW, nodeState } from './node-fixture.ts';

const ask: InferenceAsk = { modelId: 'm', requesterGeozone: 'CAISO' };
const free: PlacementContext = { now: NOW, isReserved: () => false };
const reason = (status: FilterStatus): string | undefined => (status.ok ? undefined : status.reason);

describe('inference filters', () => {
  it('model-loaded passes a node with the model and names the missing model otherwise', () => {
    const filter = modelLoadedFilter();
    expect(filter.filter(nodeState('a', { modelsLoaded: ['x', 'm'] }), ask, free).ok).toBe(true);
    expect(reason(filter.filter(nodeState('a', { modelsLoaded: ['x'] }), ask, free))).toBe('model m not loaded');
  });

  it('gpu-headroom passes a node under the limit only, and reports its load against the limit', () => {
    const filter = gpuHeadroomFilter(0.85);
    expect(filter.filter(nodeState('a', { gpuUtilization: 0.84 }), ask, free).ok).toBe(true);
    expect(filter.filter(nodeState('a', { gpuUtilization: 0.85 }), ask, free).ok).toBe(false);
    expect(reason(filter.filter(nodeState('a', { gpuUtilization: 0.9 }), ask, free))).toBe('GPU at 90 % (limit 85 %)');
    expect(gpuHeadroomFilter(0.5).rejects).toBe('at or over 50 % GPU');
  });

  it('battery-reserve holds only nodes on battery to a level strictly over the minimum', () => {
    const filter = batteryReserveFilter(0.2);
    expect(filter.filter(nodeState('a', { energySource: 'battery', batteryLevel: 0.21 }), ask, free).ok).toBe(true);
    expect(filter.filter(nodeState('a', { energySource: 'battery', batteryLevel: 0.2 }), ask, free).ok).toBe(false);
    expect(filter.filter(nodeState('a', { energySource: 'grid', batteryLevel: 0 }), ask, free).ok).toBe(true);
    expect(filter.filter(nodeState('a', { energySource: 'cogen', batteryLevel: 0.1 }), ask, free).ok).toBe(true);
    expect(reason(filter.filter(nodeState('a', { energySource: 'battery', batteryLevel: 0.1 }), ask, free))).toBe('on battery at 10 % (needs over 20 %)');
  });

  it('online rejects offline and draining nodes and nodes silent past the limit, and says which', () => {
    const filter = onlineFilter(30_000);
    expect(filter.filter(nodeState('a', { lastSeen: NOW - 30_000 }), ask, free).ok).toBe(true);
    expect(filter.filter(nodeState('a', { status: 'busy' }), ask, free).ok).toBe(true);
    expect(reason(filter.filter(nodeState('a', { lastSeen: NOW - 30_001 }), ask, free))).toBe('node is offline');
    expect(reason(filter.filter(nodeState('a', { status: 'offline' }), ask, free))).toBe('node is offline');
    expect(reason(filter.filter(nodeState('a', { status: 'draining' }), ask, free))).toBe('node is draining');
  });

  it('not-reserved rejects exactly the nodes the context says are held', () => {
    const filter = notReservedFilter();
    const context: PlacementContext = { now: NOW, isReserved: (id) => id === 'held' };
    expect(filter.filter(nodeState('free'), ask, context).ok).toBe(true);
    expect(reason(filter.filter(nodeState('held'), ask, context))).toBe('reserved by another request');
  });
});

describe('inference profile', () => {
  it('builds every filter and scorer from the registry under its registry name', () => {
    const profile = inferenceProfile();
    expect(profile.name).toBe('inference');
    expect(profile.filters.map((f) => f.name).sort()).toEqual(Object.keys(inferencePlugins.filters).sort());
    for (const [name, make] of Object.entries(inferencePlugins.filters)) expect(make(DEFAULT_INFERENCE_PROFILE).name).toBe(name);
    expect(profile.scorers.map((s) => s.plugin.name).sort()).toEqual(Object.keys(inferencePlugins.scorers).sort());
    for (const [name, scorer] of Object.entries(inferencePlugins.scorers)) expect(scorer.name).toBe(name);
  });

  it('explains a placement term by term, named by scorer, with the configured weights', () => {
    const weights = { sameGeozone: 7, cogen: 5, gpuHeadroom: 3, battery: 2 };
    const profile = inferenceProfile({ ...DEFAULT_INFERENCE_PROFILE, weights });
    const decision = place(profile, [nodeState('a', { energySource: 'cogen', gpuUtilization: 0.25, batteryLevel: 0.5 })], ask, free);
    expect(decision.kind === 'placed' && decision.breakdown).toEqual({ 'same-geozone': 7, cogen: 5, 'gpu-headroom': 3 * 0.75, battery: 2 * 0.5 });
    const elsewhere = place(profile, [nodeState('a', { geozone: 'PJM' })], ask, free);
    expect(elsewhere.kind === 'placed' && elsewhere.breakdown).toEqual({ 'same-geozone': 0, cogen: 0, 'gpu-headroom': 3, battery: 2 });
  });

  it('counts reserved nodes as "already reserved" when nothing is left', () => {
    const decision = place(inferenceProfile(), [nodeState('a'), nodeState('b')], ask, { now: NOW, isReserved: () => true }, 'm');
    expect(decision).toMatchObject({ kind: 'none', rejectedBy: { 'not-reserved': 2 }, reason: 'no candidate for m among 2 nodes: 2 nodes already reserved' });
  });
});

describe('inference rejection summary', () => {
  it('names each filter by its phrase, with the configured limits', () => {
    const profile = inferenceProfile({ ...DEFAULT_INFERENCE_PROFILE, maxGpuUtilization: 0.6, minBatteryLevel: 0.3 });
    const nodes = [
      nodeState('no-model', { modelsLoaded: [] }),
      nodeState('offline', { status: 'offline' }),
      nodeState('draining', { status: 'draining' }),
      nodeState('busy-gpu', { gpuUtilization: 0.6 }),
      nodeState('low-battery', { energySource: 'battery', batteryLevel: 0.3 }),
    ];
    const decision = place(profile, nodes, ask, free, 'm');
    expect(decision.kind === 'none' && decision.reason).toBe(
      'no candidate for m among 5 nodes: 1 node without the model loaded, 2 nodes offline or draining, 1 node at or over 60 % GPU, 1 node on battery at or below 30 %',
    );
  });
});

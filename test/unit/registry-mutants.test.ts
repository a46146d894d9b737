/**
 * The plugin registry: a profile assembled from names holds the registered plugins in the listed
 * order with the listed weights; an unknown, repeated or misnamed plugin is refused with a sentence
 * that names it (and, for an unknown one, lists the known). The inference and job profiles assembled
 * from names are the seed's: same plugins, same order, same weights, same decisions.
 */
import { describe, expect, it } from 'vitest';
import { ArcError } from '../../src/core/errors.ts';
import type { NodeState } from '../../src/mesh/node.ts';
import { place, PASS, type FilterPlugin, type PlacementContext, type Profile, type ScorePlugin } from '../../src/placement/framework.ts';
import { PluginRegistry } from '../../src/placement/registry.ts';
import {
  DEFAULT_INFERENCE_PROFILE,
  SEED_INFERENCE_FILTERS,
  batteryReserveFilter,
  batteryScorer,
  cogenScorer,
  gpuHeadroomFilter,
  gpuHeadroomScorer,
  inferenceProfile,
  inferenceRegistry,
  modelLoadedFilter,
  notReservedFilter,
  onlineFilter,
  sameGeozoneScorer,
  type InferenceAsk,
} from '../../src/inference/profile.ts';
import { DEFAULT_JOB_PROFILE, jobProfile, jobRegistry, loadScorer, reputationScorer } from '../../src/jobs/profile.ts';
import { NOW, nodeState } from './node-fixture.ts';

interface Item {
  readonly id: string;
  readonly size: number;
}
interface Config {
  readonly limit: number;
}

const free: PlacementContext = { now: NOW, isReserved: () => false };
const small = (limit: number): FilterPlugin<Item, null> => ({ name: 'small', rejects: 'too big', filter: (item) => (item.size < limit ? PASS : { ok: false, reason: 'too big' }) });
const even: FilterPlugin<Item, null> = { name: 'even', rejects: 'odd', filter: (item) => (item.size % 2 === 0 ? PASS : { ok: false, reason: 'odd' }) };
const bigger: ScorePlugin<Item, null> = { name: 'bigger', score: (item) => item.size };

function toyRegistry(): PluginRegistry<Item, null, Config> {
  return new PluginRegistry<Item, null, Config>('toy')
    .registerFilter('small', (c) => small(c.limit))
    .registerFilter('even', () => even)
    .registerScorer('bigger', () => bigger);
}

function refusal(run: () => unknown): ArcError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ArcError);
    return error as ArcError;
  }
  throw new Error('expected a refusal');
}

describe('plugin registry', () => {
  it('assembles the named plugins, in the listed order, built from the config, with the listed weights', () => {
    const registry = toyRegistry();
    expect(registry.filterNames).toEqual(['small', 'even']);
    expect(registry.scorerNames).toEqual(['bigger']);
    const profile = registry.assemble({ filters: ['even', 'small'], scorers: [{ name: 'bigger', weight: 3 }] }, { limit: 5 });
    expect(profile.name).toBe('toy');
    expect(profile.filters.map((f) => f.name)).toEqual(['even', 'small']);
    expect(profile.scorers).toEqual([{ plugin: bigger, weight: 3 }]);
    const items = [
      { id: 'a', size: 2 },
      { id: 'b', size: 4 },
      { id: 'c', size: 6 },
      { id: 'd', size: 3 },
    ];
    expect(place(profile, items, null, free)).toMatchObject({ kind: 'placed', node: { id: 'b' }, score: 12, breakdown: { bigger: 12 } });
    expect(registry.assemble({ filters: [], scorers: [] }, { limit: 0 })).toEqual({ name: 'toy', filters: [], scorers: [] });
  });

  it('refuses an unknown filter or scorer by name, listing the known ones', () => {
    const registry = toyRegistry();
    const filter = refusal(() => registry.assemble({ filters: ['small', 'tiny'], scorers: [] }, { limit: 5 }));
    expect(filter.code).toBe('INVALID_INPUT');
    expect(filter.retryable).toBe(false);
    expect(filter.message).toBe('unknown toy filter plugin "tiny" (known: "small", "even")');
    const scorer = refusal(() => registry.assemble({ filters: [], scorers: [{ name: 'smaller', weight: 1 }] }, { limit: 5 }));
    expect(scorer.message).toBe('unknown toy scorer plugin "smaller" (known: "bigger")');
    const empty = refusal(() => new PluginRegistry<Item, null, Config>('none').assemble({ filters: ['x'], scorers: [] }, { limit: 1 }));
    expect(empty.message).toBe('unknown none filter plugin "x" (known: none)');
  });

  it('refuses a plugin listed twice, registered twice, or calling itself by another name', () => {
    const registry = toyRegistry();
    expect(refusal(() => registry.assemble({ filters: ['even', 'even'], scorers: [] }, { limit: 5 })).message).toBe('toy filter plugin "even" is listed twice');
    const twice = [
      { name: 'bigger', weight: 1 },
      { name: 'bigger', weight: 2 },
    ];
    expect(refusal(() => registry.assemble({ filters: [], scorers: twice }, { limit: 5 })).message).toBe('toy scorer plugin "bigger" is listed twice');
    const again = refusal(() => registry.registerFilter('even', () => even));
    expect(again.code).toBe('CONFLICT');
    expect(again.message).toBe('toy filter plugin "even" is already registered');
    expect(refusal(() => registry.registerScorer('bigger', () => bigger)).message).toBe('toy scorer plugin "bigger" is already registered');
    registry.registerFilter('alias', () => even).registerScorer('other', () => bigger);
    expect(refusal(() => registry.assemble({ filters: ['alias'], scorers: [] }, { limit: 5 })).message).toBe('toy filter plugin registered as "alias" calls itself "even"');
    expect(refusal(() => registry.assemble({ filters: [], scorers: [{ name: 'other', weight: 1 }] }, { limit: 5 })).message).toBe(
      'toy scorer plugin registered as "other" calls itself "bigger"',
    );
  });
});

describe('inference profile from names', () => {
  const ask: InferenceAsk = { modelId: 'm', requesterGeozone: 'CAISO' };

  it('is the seed profile: its five filters in order and its four scorers with the configured weights', () => {
    const profile = inferenceProfile();
    expect(profile.name).toBe('inference');
    expect(profile.filters.map((f) => f.name)).toEqual(['model-loaded', 'online', 'gpu-headroom', 'battery-reserve', 'not-reserved']);
    expect(SEED_INFERENCE_FILTERS).toEqual(profile.filters.map((f) => f.name));
    expect(profile.scorers).toEqual([
      { plugin: sameGeozoneScorer, weight: 100 },
      { plugin: cogenScorer, weight: 50 },
      { plugin: gpuHeadroomScorer, weight: 30 },
      { plugin: batteryScorer, weight: 20 },
    ]);
    expect(inferenceRegistry.filterNames).toEqual(['model-loaded', 'gpu-headroom', 'battery-reserve', 'online', 'not-reserved']);
    expect(inferenceRegistry.scorerNames).toEqual(['same-geozone', 'cogen', 'gpu-headroom', 'battery']);
  });

  it('lets config pick the plugins by name, and refuses one it does not know', () => {
    const config = { ...DEFAULT_INFERENCE_PROFILE, maxGpuUtilization: 0.5, filters: ['gpu-headroom'], scorers: [{ name: 'battery', weight: 2 }] };
    const profile = inferenceProfile(config);
    expect(profile.filters.map((f) => f.rejects)).toEqual([gpuHeadroomFilter(0.5).rejects]);
    expect(profile.scorers).toEqual([{ plugin: batteryScorer, weight: 2 }]);
    const nodes = [nodeState('no-model', { modelsLoaded: [], batteryLevel: 0.9 }), nodeState('busy', { gpuUtilization: 0.5, batteryLevel: 1 }), nodeState('low', { batteryLevel: 0.3 })];
    expect(place(profile, nodes, ask, free)).toMatchObject({ kind: 'placed', node: { id: 'no-model' }, score: 1.8, breakdown: { battery: 1.8 } });
    expect(() => inferenceProfile({ ...DEFAULT_INFERENCE_PROFILE, filters: ['model-loaded', 'gpu'] })).toThrow(
      'unknown inference filter plugin "gpu" (known: "model-loaded", "gpu-headroom", "battery-reserve", "online", "not-reserved")',
    );
    expect(() => inferenceProfile({ ...DEFAULT_INFERENCE_PROFILE, scorers: [{ name: 'geozone', weight: 1 }] })).toThrow(
      'unknown inference scorer plugin "geozone" (known: "same-geozone", "cogen", "gpu-headroom", "battery")',
    );
  });

  it('decides as the seed profile written out by hand does, placing and explaining', () => {
    const byHand: Profile<NodeState, InferenceAsk> = {
      name: 'inference',
      filters: [modelLoadedFilter(), onlineFilter(30_000), gpuHeadroomFilter(0.85), batteryReserveFilter(0.2), notReservedFilter()],
      scorers: [
        { plugin: sameGeozoneScorer, weight: 100 },
        { plugin: cogenScorer, weight: 50 },
        { plugin: gpuHeadroomScorer, weight: 30 },
        { plugin: batteryScorer, weight: 20 },
      ],
    };
    const nodes = [
      nodeState('no-model', { modelsLoaded: [] }),
      nodeState('silent', { lastSeen: NOW - 30_001 }),
      nodeState('busy', { gpuUtilization: 0.85 }),
      nodeState('flat', { energySource: 'battery', batteryLevel: 0.2 }),
      nodeState('held'),
      nodeState('far', { geozone: 'PJM', energySource: 'cogen' }),
      nodeState('near', { gpuUtilization: 0.4, batteryLevel: 0.5 }),
      nodeState('cogen', { energySource: 'cogen', gpuUtilization: 0.7 }),
    ];
    const context: PlacementContext = { now: NOW, isReserved: (id) => id === 'held' };
    const fromNames = inferenceProfile();
    expect(place(fromNames, nodes, ask, context)).toEqual(place(byHand, nodes, ask, context));
    expect(place(fromNames, nodes, ask, context)).toMatchObject({ kind: 'placed', node: { id: 'cogen' } });
    const left = nodes.slice(0, 5);
    expect(place(fromNames, left, ask, context, 'm')).toEqual(place(byHand, left, ask, context, 'm'));
  });
});

describe('job profile from names', () => {
  it('is the seed profile: its six filters in order, reputation and load with the configured weights', () => {
    const profile = jobProfile();
    expect(profile.name).toBe('job');
    expect(profile.filters.map((f) => f.name)).toEqual(['worker-online', 'distinct-worker', 'distinct-enrolment', 'gpu-fit', 'cpu-fit', 'memory-fit']);
    expect(profile.scorers).toEqual([
      { plugin: reputationScorer, weight: 1 },
      { plugin: loadScorer, weight: 10 },
    ]);
    expect(jobProfile({ weights: { reputation: 2, load: 3 } }).scorers.map((s) => s.weight)).toEqual([2, 3]);
    expect(jobProfile({ ...DEFAULT_JOB_PROFILE, filters: ['gpu-fit'], scorers: [{ name: 'load', weight: 1 }] })).toEqual({
      name: 'job',
      filters: [profile.filters[3]],
      scorers: [{ plugin: loadScorer, weight: 1 }],
    });
    expect(jobRegistry.scorerNames).toEqual(['reputation', 'load']);
    expect(() => jobProfile({ ...DEFAULT_JOB_PROFILE, filters: ['online'] })).toThrow(
      'unknown job filter plugin "online" (known: "worker-online", "distinct-worker", "distinct-enrolment", "gpu-fit", "cpu-fit", "memory-fit")',
    );
  });
});

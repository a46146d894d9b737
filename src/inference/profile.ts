/**
 * The inference family's placement plugins and profile (seed 000): filter model loaded, online,
 * GPU < 85 %, battery > 20 % when on battery, not reserved; score 100·same geozone + 50·cogen +
 * 30·(1 − GPU) + 20·battery. The plugins register into `inferenceRegistry`; `inferenceProfile()`
 * assembles the seed's list of names, or the names a configuration picks.
 */
import type { InferenceRequest } from '../contracts/messages.ts';
import type { NodeState } from '../mesh/node.ts';
import type { FilterPlugin, Profile, ScorePlugin } from '../placement/framework.ts';
import { PASS } from '../placement/framework.ts';
import { PluginRegistry, type WeightedName } from '../placement/registry.ts';

/** What routing needs of a request: the seed's request, or a dispatch-shaped subset of it. */
export type InferenceAsk = Pick<InferenceRequest, 'modelId' | 'requesterGeozone'>;

export interface InferenceProfileConfig {
  readonly maxGpuUtilization: number;
  readonly minBatteryLevel: number;
  readonly offlineAfterMs: number;
  readonly weights: { readonly sameGeozone: number; readonly cogen: number; readonly gpuHeadroom: number; readonly battery: number };
  /** Filter plugins by registry name, in order; the seed's list when absent. */
  readonly filters?: readonly string[];
  /** Scorer plugins by registry name with their weights; when absent, the seed's four with `weights`. */
  readonly scorers?: readonly WeightedName[];
}

export const DEFAULT_INFERENCE_PROFILE: InferenceProfileConfig = {
  maxGpuUtilization: 0.85,
  minBatteryLevel: 0.2,
  offlineAfterMs: 30_000,
  weights: { sameGeozone: 100, cogen: 50, gpuHeadroom: 30, battery: 20 },
};

type InferenceFilter = FilterPlugin<NodeState, InferenceAsk>;
type InferenceScorer = ScorePlugin<NodeState, InferenceAsk>;

export function modelLoadedFilter(): InferenceFilter {
  return {
    name: 'model-loaded',
    rejects: 'without the model loaded',
    filter: (node, request) => (node.modelsLoaded.includes(request.modelId) ? PASS : { ok: false, reason: `model ${request.modelId} not loaded` }),
  };
}

export function gpuHeadroomFilter(max: number): InferenceFilter {
  const percent = Math.round(max * 100);
  return {
    name: 'gpu-headroom',
    rejects: `at or over ${percent} % GPU`,
    filter: (node) => (node.gpuUtilization < max ? PASS : { ok: false, reason: `GPU at ${Math.round(node.gpuUtilization * 100)} % (limit ${percent} %)` }),
  };
}

export function batteryReserveFilter(min: number): InferenceFilter {
  const percent = Math.round(min * 100);
  return {
    name: 'battery-reserve',
    rejects: `on battery at or below ${percent} %`,
    filter: (node) =>
      node.energySource !== 'battery' || node.batteryLevel > min
        ? PASS
        : { ok: false, reason: `on battery at ${Math.round(node.batteryLevel * 100)} % (needs over ${percent} %)` },
  };
}

export function onlineFilter(offlineAfterMs: number): InferenceFilter {
  return {
    name: 'online',
    rejects: 'offline or draining',
    filter: (node, _request, context) =>
      node.status !== 'offline' && node.status !== 'draining' && context.now - node.lastSeen <= offlineAfterMs
        ? PASS
        : { ok: false, reason: `node is ${node.status === 'draining' ? 'draining' : 'offline'}` },
  };
}

export function notReservedFilter(): InferenceFilter {
  return {
    name: 'not-reserved',
    rejects: 'already reserved',
    filter: (node, _request, context) => (context.isReserved(node.id) ? { ok: false, reason: 'reserved by another request' } : PASS),
  };
}

export const sameGeozoneScorer: InferenceScorer = { name: 'same-geozone', score: (node, request) => (node.geozone === request.requesterGeozone ? 1 : 0) };
export const cogenScorer: InferenceScorer = { name: 'cogen', score: (node) => (node.energySource === 'cogen' ? 1 : 0) };
export const gpuHeadroomScorer: InferenceScorer = { name: 'gpu-headroom', score: (node) => 1 - node.gpuUtilization };
export const batteryScorer: InferenceScorer = { name: 'battery', score: (node) => node.batteryLevel };

/**
 * The plugins by name, registered into `inferenceRegistry` below, so a configuration can assemble
 * a profile without code. The candidate index (`src/placement/candidate-index.ts`) relies on one property of every plugin here: a filter depends only on the
 * node, the requested model, the clock and reservations; a scorer's only dependence on the request
 * is whether the node is in the requester's geozone.
 */
export const inferencePlugins = {
  filters: {
    'model-loaded': (_c: InferenceProfileConfig) => modelLoadedFilter(),
    'gpu-headroom': (c: InferenceProfileConfig) => gpuHeadroomFilter(c.maxGpuUtilization),
    'battery-reserve': (c: InferenceProfileConfig) => batteryReserveFilter(c.minBatteryLevel),
    online: (c: InferenceProfileConfig) => onlineFilter(c.offlineAfterMs),
    'not-reserved': (_c: InferenceProfileConfig) => notReservedFilter(),
  },
  scorers: {
    'same-geozone': sameGeozoneScorer,
    cogen: cogenScorer,
    'gpu-headroom': gpuHeadroomScorer,
    battery: batteryScorer,
  },
} as const;

/** Every inference plugin under its name: the one way a profile reaches them. A plugin added here must keep the property above. */
export const inferenceRegistry = new PluginRegistry<NodeState, InferenceAsk, InferenceProfileConfig>('inference');
for (const [name, make] of Object.entries(inferencePlugins.filters)) inferenceRegistry.registerFilter(name, make);
for (const [name, scorer] of Object.entries(inferencePlugins.scorers)) inferenceRegistry.registerScorer(name, () => scorer);

/** The seed's filters by name, in the order they run. */
export const SEED_INFERENCE_FILTERS: readonly string[] = ['model-loaded', 'online', 'gpu-headroom', 'battery-reserve', 'not-reserved'];

/** The seed's scorers, weighted by `config.weights`. */
export function seedInferenceScorers(weights: InferenceProfileConfig['weights']): readonly WeightedName[] {
  return [
    { name: 'same-geozone', weight: weights.sameGeozone },
    { name: 'cogen', weight: weights.cogen },
    { name: 'gpu-headroom', weight: weights.gpuHeadroom },
    { name: 'battery', weight: weights.battery },
  ];
}

export function inferenceProfile(config: InferenceProfileConfig = DEFAULT_INFERENCE_PROFILE): Profile<NodeState, InferenceAsk> {
  return inferenceRegistry.assemble({ filters: config.filters ?? SEED_INFERENCE_FILTERS, scorers: config.scorers ?? seedInferenceScorers(config.weights) }, config);
}

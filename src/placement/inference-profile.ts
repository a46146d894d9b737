/**
 * The inference profile of seed 000: filter model loaded, GPU < 85 %, battery > 20 % when on
 * battery, online, not reserved; score 100·same geozone + 50·cogen + 30·(1 − GPU) + 20·battery.
 */
import type { InferenceRequest } from '../contracts/messages.ts';
import type { NodeState } from '../mesh/node.ts';
import type { FilterPlugin, Profile, ScorePlugin } from './framework.ts';
import { PASS } from './framework.ts';

/** What routing needs of a request: the seed's request, or a dispatch-shaped subset of it. */
export type InferenceAsk = Pick<InferenceRequest, 'modelId' | 'requesterGeozone'>;

export interface InferenceProfileConfig {
  readonly maxGpuUtilization: number;
  readonly minBatteryLevel: number;
  readonly offlineAfterMs: number;
  readonly weights: { readonly sameGeozone: number; readonly cogen: number; readonly gpuHeadroom: number; readonly battery: number };
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
 * Registry of the plugins by name, so a configuration can assemble a profile without code.
 * The candidate index relies on one property of every plugin here: a filter depends only on the
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

export function inferenceProfile(config: InferenceProfileConfig = DEFAULT_INFERENCE_PROFILE): Profile<NodeState, InferenceAsk> {
  const f = inferencePlugins.filters;
  return {
    name: 'inference',
    filters: [f['model-loaded'](config), f.online(config), f['gpu-headroom'](config), f['battery-reserve'](config), f['not-reserved'](config)],
    scorers: [
      { plugin: sameGeozoneScorer, weight: config.weights.sameGeozone },
      { plugin: cogenScorer, weight: config.weights.cogen },
      { plugin: gpuHeadroomScorer, weight: config.weights.gpuHeadroom },
      { plugin: batteryScorer, weight: config.weights.battery },
    ],
  };
}

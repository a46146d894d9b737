/**
 * The services family's profile of the placement framework (seed 002's deployment rules): a slice
 * instance goes to a ready node that carries the slice's required tags, on the slice's side of every
 * hardware partition (a `live_node` runs live slices only, and a live slice runs there only), that
 * does not already hold the slice's key (`slices/{node}/{artifact}`: one instance per node) and has
 * room for it beside what the plan already put there. Among those, the node holding the slice's
 * datasets hot wins, then the least loaded CPU, then the node running fewer instances. The plugins
 * register into `serviceRegistry`; `serviceProfile()` assembles that list of names, or the names a
 * configuration picks.
 */
import type { FilterPlugin, Profile, ScorePlugin } from '../placement/framework.ts';
import { PASS } from '../placement/framework.ts';
import { PluginRegistry, type WeightedName } from '../placement/registry.ts';
import type { SliceSpec } from './model.ts';
import type { ServiceNode } from './plan.ts';

/** What placement reads of a node: the mesh's view of it plus what the plan has allocated on it. */
export interface ServiceCandidate {
  readonly id: string;
  readonly node: ServiceNode;
  /** Cores taken by the slice instances whose keys are on the node, including the ones this plan placed. */
  readonly allocatedCpu: number;
  readonly allocatedMemoryMb: number;
  /** Slice keys on the node in any state, including the ones this plan placed. */
  readonly instances: number;
}

/** What a slice instance needs, once a missing `resources` is defaulted. */
export interface SliceResources {
  readonly cpu: number;
  readonly memoryMb: number;
}

/** The slice instance being placed. */
export interface SliceAsk {
  readonly blueprint: string;
  readonly slice: SliceSpec;
  /** `slice.resources`, or `DEFAULT_SLICE_RESOURCES`: the planner resolves it once so filter and accounting agree. */
  readonly resources: SliceResources;
  /**
   * Nodes that hold a key of this artifact in any state (`slices/{node}/{artifact}`: one per node).
   * On the ask rather than a set of artifacts on every candidate: only the artifacts being placed
   * need it, and building a set per node on every plan was most of a plan's cost at 10,000 keys.
   */
  readonly holders: ReadonlySet<string>;
}

/** A slice that states no resources is a small HTTP service: a tenth of a core and 64 MB. */
export const DEFAULT_SLICE_RESOURCES: SliceResources = { cpu: 0.1, memoryMb: 64 };

export function resourcesOf(slice: Pick<SliceSpec, 'resources'>): SliceResources {
  return slice.resources ?? DEFAULT_SLICE_RESOURCES;
}

export interface ServiceProfileConfig {
  /**
   * Tags that partition the hardware strictly (seed 002): a node carrying one runs only slices that
   * require it, and a slice requiring one runs only on nodes carrying it.
   */
  readonly partitionTags: readonly string[];
  readonly weights: { readonly dataLocality: number; readonly lowCpuLoad: number; readonly spread: number };
  /** Filter plugins by registry name, in order; `SERVICE_FILTERS` when absent. */
  readonly filters?: readonly string[];
  /** Scorer plugins by registry name with their weights; when absent, the three below with `weights`. */
  readonly scorers?: readonly WeightedName[];
}

/**
 * Locality dominates: a slice names at most 64 datasets, so one more of them hot is worth at least
 * 1000/64 ≈ 15.6, more than the load and spread scores together can add (10 + 1). Load then ranks
 * nodes of equal locality; spread (at most 1) only nudges between nodes of nearly equal load, so
 * slices of one blueprint do not all crowd onto the same idlest nodes.
 */
export const DEFAULT_SERVICE_PROFILE: ServiceProfileConfig = {
  partitionTags: ['live_node'],
  weights: { dataLocality: 1_000, lowCpuLoad: 10, spread: 1 },
};

type ServiceFilter = FilterPlugin<ServiceCandidate, SliceAsk>;
type ServiceScorer = ScorePlugin<ServiceCandidate, SliceAsk>;

const round = (value: number): string => String(Math.round(value * 100) / 100);

export const nodeReadyFilter: ServiceFilter = {
  name: 'node-ready',
  rejects: 'offline, draining or not yet reported by the mesh',
  filter: (candidate) => (candidate.node.status === 'online' || candidate.node.status === 'busy' ? PASS : { ok: false, reason: `node is ${candidate.node.status}` }),
};

export function hardwarePartitionFilter(partitionTags: readonly string[]): ServiceFilter {
  const named = partitionTags.join(' / ');
  return {
    name: 'hardware-partition',
    rejects: `outside the slice's hardware partition (${named} nodes are reserved for ${named} slices, and those slices for them)`,
    filter: (candidate, ask) => {
      const required = ask.slice.requiredTags ?? [];
      for (const tag of partitionTags) {
        const carries = candidate.node.tags.includes(tag);
        const requires = required.includes(tag);
        if (carries && !requires) return { ok: false, reason: `reserved for ${tag} slices, and this slice does not require ${tag}` };
        if (requires && !carries) return { ok: false, reason: `not a ${tag} node, and this slice runs only on ${tag} nodes` };
      }
      return PASS;
    },
  };
}

export const requiredTagsFilter: ServiceFilter = {
  name: 'required-tags',
  rejects: 'without a required tag',
  filter: (candidate, ask) => {
    for (const tag of ask.slice.requiredTags ?? []) if (!candidate.node.tags.includes(tag)) return { ok: false, reason: `lacks the required tag ${tag}` };
    return PASS;
  },
};

/** A container slice needs a node whose runner reaches a container engine; every runner runs processes. */
export const runtimeAvailableFilter: ServiceFilter = {
  name: 'runtime-available',
  rejects: 'without a runtime for the slice (no container engine)',
  filter: (candidate, ask) => {
    const runtimes = candidate.node.runtimes;
    if (runtimes === undefined || runtimes.includes(ask.slice.run.kind)) return PASS;
    return { ok: false, reason: `runs ${runtimes.join(' and ') || 'nothing'}, not ${ask.slice.run.kind} slices` };
  },
};

export const onePerNodeFilter: ServiceFilter = {
  name: 'one-per-node',
  rejects: 'already holding an instance of the slice',
  filter: (candidate, ask) => (ask.holders.has(candidate.id) ? { ok: false, reason: `already holds the key of ${ask.slice.artifact}` } : PASS),
};

export const resourcesFitFilter: ServiceFilter = {
  name: 'resources-fit',
  rejects: 'without enough free CPU or memory',
  filter: (candidate, ask) => {
    const freeCpu = candidate.node.cpuCores - candidate.allocatedCpu;
    const freeMemoryMb = candidate.node.memoryGb * 1_024 - candidate.allocatedMemoryMb;
    // The tolerance absorbs float sums of tenths of cores; memory is whole megabytes.
    return ask.resources.cpu <= freeCpu + 1e-9 && ask.resources.memoryMb <= freeMemoryMb + 1e-9
      ? PASS
      : { ok: false, reason: `${round(freeCpu)} of ${candidate.node.cpuCores} cores and ${round(freeMemoryMb)} MB free, ${ask.resources.cpu} cores and ${ask.resources.memoryMb} MB needed` };
  },
};

/** The share of the slice's datasets the node already holds hot; 0 when the slice names none. */
export const dataLocalityScorer: ServiceScorer = {
  name: 'data-locality',
  score: (candidate, ask) => {
    const datasets = ask.slice.datasets ?? [];
    if (datasets.length === 0) return 0;
    let hot = 0;
    for (const dataset of datasets) if (candidate.node.datasetsHot.includes(dataset)) hot++;
    return hot / datasets.length;
  },
};

export const lowCpuLoadScorer: ServiceScorer = {
  name: 'low-cpu-load',
  score: (candidate) => 1 - Math.min(1, Math.max(0, candidate.node.cpuLoad)),
};

/** 1 on an empty node, ½ with one instance, ⅓ with two…: what this plan placed there counts too. */
export const spreadScorer: ServiceScorer = {
  name: 'spread',
  score: (candidate) => 1 / (1 + candidate.instances),
};

/** Every service plugin under its name: the one way a profile reaches them. */
export const serviceRegistry = new PluginRegistry<ServiceCandidate, SliceAsk, ServiceProfileConfig>('service');
serviceRegistry.registerFilter(nodeReadyFilter.name, () => nodeReadyFilter);
serviceRegistry.registerFilter('hardware-partition', (config) => hardwarePartitionFilter(config.partitionTags));
for (const filter of [requiredTagsFilter, runtimeAvailableFilter, onePerNodeFilter, resourcesFitFilter]) serviceRegistry.registerFilter(filter.name, () => filter);
for (const scorer of [dataLocalityScorer, lowCpuLoadScorer, spreadScorer]) serviceRegistry.registerScorer(scorer.name, () => scorer);

/**
 * The filters by name, in the order they run. The partition runs before the tags so that a live
 * slice turned away by data nodes is reported as partitioning, not as a missing tag: the operator
 * then knows that adding capacity to live nodes, not tagging data nodes, is the way out.
 */
export const SERVICE_FILTERS: readonly string[] = ['node-ready', 'hardware-partition', 'required-tags', 'runtime-available', 'one-per-node', 'resources-fit'];

export function serviceScorers(weights: ServiceProfileConfig['weights']): readonly WeightedName[] {
  return [
    { name: 'data-locality', weight: weights.dataLocality },
    { name: 'low-cpu-load', weight: weights.lowCpuLoad },
    { name: 'spread', weight: weights.spread },
  ];
}

export function serviceProfile(config: ServiceProfileConfig = DEFAULT_SERVICE_PROFILE): Profile<ServiceCandidate, SliceAsk> {
  return serviceRegistry.assemble({ filters: config.filters ?? SERVICE_FILTERS, scorers: config.scorers ?? serviceScorers(config.weights) }, config);
}

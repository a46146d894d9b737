/**
 * The services planner's speed (issue 14), pure and in one process, as the leader's deployment
 * manager calls it on every blueprint or node change:
 *
 *  (a) a blueprint change on a converged cluster of 1,000 nodes running 10,000 instances (20 slices
 *      of 500): one slice asks for 100 more, and the whole plan (every key classified, the new ones
 *      placed) must take p99 <= 50 ms;
 *  (b) placements per second at 5,000 nodes: a blueprint of 10 slices of 1,000 instances planned
 *      from no keys at all: goal >= 2,000/s.
 *
 * The cluster mixes live nodes (which take none of these slices: seed 002's partitioning), data
 * nodes with hot datasets that some slices want, and loads spread over 0..1, so every filter and
 * scorer does real work.
 */
import { loadavg } from 'node:os';
import { percentileOfSorted } from '../src/core/stats.ts';
import { seededRandom } from '../src/sim/random.ts';
import type { Blueprint, SliceSpec } from '../src/services/model.ts';
import type { PlanView, ServiceNode } from '../src/services/plan.ts';
import { applyPlan, planServices } from '../src/services/planner.ts';

export const SERVICES_CHANGE_GOAL_MS = 50;
export const SERVICES_PLACEMENT_GOAL_PER_SECOND = 2_000;

const DATASETS = Array.from({ length: 20 }, (_, i) => `s3://bench/set-${i}`);

function clusterOf(count: number, seed: number): ServiceNode[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, (_, i): ServiceNode => {
    const roll = random();
    const tags = roll < 0.1 ? ['live_node'] : roll < 0.4 ? ['data_node'] : [];
    return {
      id: `n-${String(i).padStart(5, '0')}`,
      name: `bench ${i}`,
      status: random() < 0.98 ? 'online' : 'busy',
      tags,
      cpuCores: [8, 16, 32][Math.floor(random() * 3)]!,
      memoryGb: [32, 64, 128][Math.floor(random() * 3)]!,
      cpuLoad: Math.round(random() * 100) / 100,
      datasetsHot: tags.includes('data_node') ? DATASETS.filter(() => random() < 0.2) : [],
    };
  });
}

function blueprintOf(slices: number, instances: number): Blueprint {
  return {
    name: 'bench',
    timestamp: 0,
    slices: Array.from({ length: slices }, (_, i): SliceSpec => ({
      artifact: `org.bench:svc-${String(i).padStart(2, '0')}:1.0`,
      instances,
      run: { kind: 'process', command: ['serve'] },
      resources: { cpu: 0.25, memoryMb: 256 },
      ...(i % 4 === 0 ? { datasets: [DATASETS[i % DATASETS.length]!, DATASETS[(i + 7) % DATASETS.length]!] } : {}),
    })),
  };
}

function withInstances(blueprint: Blueprint, sliceIndex: number, instances: number): Blueprint {
  return { ...blueprint, slices: blueprint.slices.map((s, i) => (i === sliceIndex ? { ...s, instances } : s)) };
}

function timed<T>(run: () => T): { result: T; ms: number } {
  const started = performance.now();
  const result = run();
  return { result, ms: performance.now() - started };
}

export interface ServicesBenchResult {
  readonly convergedBuildMs: number;
  readonly noChangeMs: number;
  readonly changePlaces: number;
  readonly changeMinMs: number;
  readonly changeP50Ms: number;
  readonly changeP99Ms: number;
  readonly changeRuns: number;
  readonly emptyNodes: number;
  readonly emptyPlaced: number;
  readonly emptyMedianMs: number;
  readonly placementsPerSecond: number;
}

export function servicesBench(quick: boolean): ServicesBenchResult {
  const nodes = clusterOf(1_000, 14);
  const blueprint = blueprintOf(20, 500);
  const empty: PlanView = { blueprints: [blueprint], nodes, slices: [], now: 1_000, epoch: 1 };
  const build = timed(() => applyPlan(empty, planServices(empty), 'ACTIVE'));
  const converged = build.result;
  if (converged.slices.length !== 10_000) throw new Error(`the bench cluster holds ${converged.slices.length} instances, not 10,000`);
  const noChange = timed(() => planServices(converged));
  if (noChange.result.changes.length > 0 || noChange.result.unplaced.length > 0) throw new Error('the converged bench cluster did not converge');

  const changed: PlanView = { ...converged, blueprints: [withInstances(blueprint, 7, 600)], now: 2_000 };
  const runs = quick ? 10 : 20;
  // The leader replans on every change: measure the planner warm, as it runs there.
  for (let i = 0; i < 10; i++) planServices(changed);
  const samples = new Float64Array(runs);
  let changePlaces = 0;
  for (let i = 0; i < runs; i++) {
    const { result, ms } = timed(() => planServices(changed));
    samples[i] = ms;
    changePlaces = result.changes.length;
  }
  samples.sort();

  const big = clusterOf(5_000, 15);
  const fromEmpty: PlanView = { blueprints: [blueprintOf(10, 1_000)], nodes: big, slices: [], now: 1_000, epoch: 1 };
  planServices(fromEmpty);
  const emptyRuns = quick ? 3 : 5;
  const emptySamples = new Float64Array(emptyRuns);
  let emptyPlaced = 0;
  for (let i = 0; i < emptyRuns; i++) {
    const { result, ms } = timed(() => planServices(fromEmpty));
    emptySamples[i] = ms;
    emptyPlaced = result.changes.length;
  }
  emptySamples.sort();
  const emptyMedianMs = percentileOfSorted(emptySamples, 50);
  return {
    convergedBuildMs: build.ms,
    noChangeMs: noChange.ms,
    changePlaces,
    changeMinMs: samples[0]!,
    changeP50Ms: percentileOfSorted(samples, 50),
    changeP99Ms: percentileOfSorted(samples, 99),
    changeRuns: runs,
    emptyNodes: big.length,
    emptyPlaced,
    emptyMedianMs,
    placementsPerSecond: emptyPlaced / (emptyMedianMs / 1_000),
  };
}

/** Async like every section of bench/run.ts, though the planner itself is synchronous. */
export async function servicesSection(quick: boolean): Promise<void> {
  console.log('11. Services planner (pure planServices): a blueprint change on 1,000 nodes x 10,000 instances; placements from no keys at 5,000 nodes');
  const r = servicesBench(quick);
  // Wall-clock figures on a shared host: the load average says how much of them is waiting for a CPU.
  const load = loadavg()[0]!.toFixed(1);
  const changeMet = r.changeP99Ms <= SERVICES_CHANGE_GOAL_MS;
  const rateMet = r.placementsPerSecond >= SERVICES_PLACEMENT_GOAL_PER_SECOND;
  console.log(`   converged: 20 slices x 500 instances on 1,000 nodes, planned and applied in ${r.convergedBuildMs.toFixed(0)} ms; replanned with no change in ${r.noChangeMs.toFixed(1)} ms`);
  console.log(`   one slice 500 -> 600 instances (${r.changePlaces} places): p50 ${r.changeP50Ms.toFixed(2)} ms, p99 ${r.changeP99Ms.toFixed(2)} ms over ${r.changeRuns} runs (goal p99 <= ${SERVICES_CHANGE_GOAL_MS} ms: ${changeMet ? 'MET' : 'NOT MET'}); fastest ${r.changeMinMs.toFixed(2)} ms, host load average ${load}`);
  console.log(`   ${r.emptyPlaced.toLocaleString('en')} instances (10 slices x 1,000) placed on ${r.emptyNodes.toLocaleString('en')} nodes from no keys in ${r.emptyMedianMs.toFixed(0)} ms (median): ${Math.round(r.placementsPerSecond).toLocaleString('en')} placements/s = ${(r.placementsPerSecond / SERVICES_PLACEMENT_GOAL_PER_SECOND).toFixed(1)}x the ${SERVICES_PLACEMENT_GOAL_PER_SECOND.toLocaleString('en')}/s goal (${rateMet ? 'MET' : 'NOT MET'})`);
}

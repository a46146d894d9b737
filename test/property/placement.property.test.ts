/**
 * The candidate index against the reference pipeline, driven the way the scheduler drives it:
 * telemetry (new nodes and changes to known ones), removals, silence past the offline limit,
 * reservations with leases, releases by right and wrong tokens, expiries, and decisions in between.
 * The reference shares no state with the index: the test keeps its own model of the nodes as last
 * reported and of the reservations held, and asks `place()` over that model at every decision.
 */
import { afterAll, beforeAll, describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { InferenceCandidateIndex, type Reservation } from '../../src/placement/candidate-index.ts';
import { IndexedMaxHeap } from '../../src/placement/indexed-heap.ts';
import { inferenceProfile, DEFAULT_INFERENCE_PROFILE, type InferenceAsk } from '../../src/inference/profile.ts';
import { place, scoreNode, type Profile } from '../../src/placement/framework.ts';
import type { NodeState, NodeStatus } from '../../src/mesh/node.ts';
import type { EnergySource } from '../../src/contracts/messages.ts';

const zones = ['CAISO', 'ERCOT', 'PJM'];
const models = ['llama-3-70b', 'mistral-7b', 'sdxl'];
const NOW = 1_000_000;
const OFFLINE_AFTER_MS = DEFAULT_INFERENCE_PROFILE.offlineAfterMs;
/** Node ids the operations draw from. */
const POOL_SIZE = 8;

const nodeId = (index: number): string => `00000000-0000-4000-a000-${String(index).padStart(12, '0')}`;

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
    id: nodeId(index),
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

// ------------------------------------------------------------------ operations

/** What one telemetry report says; `lag` is how long ago it was received, relative to the test's clock. */
interface Report {
  readonly geozone: string;
  readonly energySource: EnergySource;
  readonly batteryLevel: number;
  readonly gpuUtilization: number;
  readonly modelsLoaded: readonly string[];
  readonly status: NodeStatus;
  readonly lag: number;
}

/** One field of a known node's telemetry changes (the common case: a node reporting 10 % GPU, then 95 %). */
type Change =
  | { readonly field: 'gpuUtilization' | 'batteryLevel'; readonly value: number }
  | { readonly field: 'modelsLoaded'; readonly value: readonly string[] }
  | { readonly field: 'energySource'; readonly value: EnergySource }
  | { readonly field: 'geozone'; readonly value: string }
  | { readonly field: 'status'; readonly value: NodeStatus };

type Op =
  | { readonly kind: 'telemetry'; readonly node: number; readonly report: Report }
  | { readonly kind: 'change'; readonly node: number; readonly change: Change }
  | { readonly kind: 'remove'; readonly node: number }
  | { readonly kind: 'advance'; readonly ms: number }
  | { readonly kind: 'reserve'; readonly node: number; readonly ttl: number; readonly token: number }
  /** As the scheduler routes: the best candidate, then a reservation on it. */
  | { readonly kind: 'route'; readonly ask: InferenceAsk; readonly ttl: number; readonly token: number }
  /** `latest`: the node of the last reservation made, as when its request completes. */
  | { readonly kind: 'release'; readonly node: number | 'latest'; readonly token: 'held' | 'other' | 'any' }
  | { readonly kind: 'expire' }
  | { readonly kind: 'best'; readonly ask: InferenceAsk };

/**
 * Filter boundaries half the time, anything on a 1/64 grid otherwise, so scores often tie exactly.
 * Scored values are exact in binary except the battery boundaries 0.2 and 0.21 (GPU 0.85 and up is
 * never scored), and a score made with those either equals another exactly or differs from it by far
 * more than a rounding unit, so the index must match the reference exactly, ties to the lower id
 * included. On a 1 % grid it does not: two nodes of one geozone whose scores tie in decimals can
 * differ by one rounding unit for a requester inside the zone and not for one outside it, and the
 * index (which ranks a zone for a requester inside it) then picks the other of the two, e.g. with
 * the seed's weights, CAISO nodes at GPU 0 / battery 0 and GPU 0.22 / battery 0.33, asked from PJM.
 */
const fraction = (boundaries: readonly number[]): fc.Arbitrary<number> => fc.oneof(fc.constantFrom(...boundaries), fc.integer({ min: 0, max: 64 }).map((k) => k / 64));
const gpuArb = fraction([0, 0.125, 0.5, 0.84375, 0.85, 0.875, 0.95, 1]);
const batteryArb = fraction([0, 0.125, 0.2, 0.21, 0.5, 1]);
const energyArb = fc.constantFrom<EnergySource>('cogen', 'grid', 'battery');
const statusArb = fc.constantFrom<NodeStatus>('online', 'online', 'online', 'busy', 'draining', 'offline');
const modelsArb = fc.oneof({ weight: 2, arbitrary: fc.subarray(models) }, { weight: 1, arbitrary: fc.constant(models) });
const askArb: fc.Arbitrary<InferenceAsk> = fc.record({ modelId: fc.constantFrom(...models, ...models, 'whisper'), requesterGeozone: fc.constantFrom(...zones, 'MISO') });
// Most telemetry is fresh; some arrives old (from the store at startup), some from a clock a little ahead.
const lagArb = fc.constantFrom(0, 0, 0, 0, 1_000, OFFLINE_AFTER_MS - 1, OFFLINE_AFTER_MS, OFFLINE_AFTER_MS + 1, 120_000, -1_000);
const ttlArb = fc.constantFrom(0, 1, 1_000, 5_000, 30_000, 60_000);
// Mostly short steps, so nodes stay fresh for a while; now and then to either side of the offline limit.
const advanceArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(1, 500, 1_000, 5_000, 10_000) },
  { weight: 1, arbitrary: fc.constantFrom(OFFLINE_AFTER_MS - 1, OFFLINE_AFTER_MS, OFFLINE_AFTER_MS + 1, 60_000) },
);

const reportArb: fc.Arbitrary<Report> = fc.record({
  geozone: fc.constantFrom(...zones),
  energySource: energyArb,
  batteryLevel: batteryArb,
  gpuUtilization: gpuArb,
  modelsLoaded: modelsArb,
  status: statusArb,
  lag: lagArb,
});

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  { weight: 3, arbitrary: gpuArb.map((value): Change => ({ field: 'gpuUtilization', value })) },
  { weight: 2, arbitrary: batteryArb.map((value): Change => ({ field: 'batteryLevel', value })) },
  { weight: 2, arbitrary: modelsArb.map((value): Change => ({ field: 'modelsLoaded', value })) },
  { weight: 1, arbitrary: energyArb.map((value): Change => ({ field: 'energySource', value })) },
  { weight: 1, arbitrary: fc.constantFrom(...zones).map((value): Change => ({ field: 'geozone', value })) },
  { weight: 1, arbitrary: statusArb.map((value): Change => ({ field: 'status', value })) },
);

const opsArb = (poolSize: number, maxLength: number): fc.Arbitrary<Op[]> => {
  // Mostly the first few nodes, so most telemetry updates a node already known.
  const node = fc.oneof({ weight: 2, arbitrary: fc.nat({ max: 2 }) }, { weight: 1, arbitrary: fc.nat({ max: poolSize - 1 }) });
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('telemetry' as const), node, report: reportArb }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('change' as const), node, change: changeArb }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), node }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: advanceArb }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('reserve' as const), node, ttl: ttlArb, token: fc.nat({ max: 3 }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('route' as const), ask: askArb, ttl: ttlArb, token: fc.nat({ max: 3 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('release' as const), node: fc.oneof(node, fc.constant('latest' as const)), token: fc.constantFrom('held' as const, 'other' as const, 'any' as const) }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'expire' as const }) },
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('best' as const), ask: askArb }) },
  );
  return fc.array(op, { minLength: 1, maxLength, size: 'max' });
};

const scenarioArb = fc.record({ weights: weightsArb, ops: opsArb(POOL_SIZE, 60) });

// ------------------------------------------------------------------ the model

/**
 * A decision and an expiry are loops over heap tops, and an index whose heaps and membership lists
 * disagree can loop forever, which no test timeout interrupts (the loop never yields). Each call the
 * scenario makes into the index gets a budget of heap peeks, far above what a few nodes need, so such
 * a bug fails the property with a message instead of hanging the run.
 */
const PEEK_BUDGET = 1_000;
const unboundedPeekId = IndexedMaxHeap.prototype.peekId;
let peeksLeft = Infinity;

function bounded<T>(what: string, call: () => T): T {
  peeksLeft = PEEK_BUDGET;
  try {
    return call();
  } catch (error) {
    if (peeksLeft < 0) throw new Error(`${what} looped over heap tops without end (${PEEK_BUDGET} peeks)`, { cause: error });
    throw error;
  } finally {
    peeksLeft = Infinity;
  }
}

function nodeFrom(index: number, report: Report, now: number): NodeState {
  return {
    id: nodeId(index),
    name: `node-${index}`,
    geozone: report.geozone,
    geohash: '9q9hvu',
    tags: [],
    capacity: { cpuCores: 8, memoryGb: 64, gpus: 4 },
    energySource: report.energySource,
    batteryLevel: report.batteryLevel,
    gpuUtilization: report.gpuUtilization,
    gpuMemoryFreeGb: 10,
    cpuLoad: 0,
    modelsLoaded: report.modelsLoaded,
    datasetsHot: [],
    status: report.status,
    lastSeen: now - report.lag,
    reportedAt: now - report.lag,
    reputation: 100,
  };
}

const FIRST_REPORT: Report = { geozone: 'CAISO', energySource: 'grid', batteryLevel: 1, gpuUtilization: 0.125, modelsLoaded: models, status: 'online', lag: 0 };

/**
 * What the index should know, kept the plain way: every node as last reported, every reservation
 * held. A reservation whose lease has run out ends at the next decision or `expire()` (the index's
 * documented contract), and is reported by the next `expire()`.
 */
class Model {
  readonly nodes = new Map<string, NodeState>();
  readonly reservations = new Map<string, Reservation>();
  private expiredUnreported: Reservation[] = [];

  endExpired(now: number): void {
    for (const [id, held] of [...this.reservations]) {
      if (held.expiresAt > now) continue;
      this.reservations.delete(id);
      this.expiredUnreported.push(held);
    }
  }

  takeExpired(now: number): Reservation[] {
    this.endExpired(now);
    const expired = this.expiredUnreported;
    this.expiredUnreported = [];
    return expired;
  }

  release(id: string, token: number | undefined): Reservation | undefined {
    const held = this.reservations.get(id);
    if (!held || (token !== undefined && token !== held.token)) return undefined;
    this.reservations.delete(id);
    return held;
  }

  /** The reference decision: every node as last reported through the pipeline, reservations as the model holds them. */
  decide(profile: Profile<NodeState, InferenceAsk>, ask: InferenceAsk, now: number): { id: string; score: number; forwarded: boolean; node: NodeState } | undefined {
    this.endExpired(now);
    const decision = place(profile, this.nodes.values(), ask, { now, isReserved: (id) => (this.reservations.get(id)?.expiresAt ?? -Infinity) > now });
    if (decision.kind === 'none') return undefined;
    return { id: decision.node.id, score: decision.score, forwarded: decision.node.geozone !== ask.requesterGeozone, node: decision.node };
  }
}

const byNodeThenExpiry = (a: Reservation, b: Reservation): number => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : a.expiresAt - b.expiresAt || a.token - b.token);

/** Runs the operations against a fresh index and the model, comparing every observable answer. */
function runScenario(weights: typeof DEFAULT_INFERENCE_PROFILE.weights, ops: readonly Op[]): void {
  const profile = inferenceProfile({ ...DEFAULT_INFERENCE_PROFILE, weights });
  const index = new InferenceCandidateIndex(profile, OFFLINE_AFTER_MS);
  const model = new Model();
  let now = NOW;
  let step = 0;
  let sweeping = false;
  let latest = nodeId(0);

  const compareBest = (ask: InferenceAsk): ReturnType<Model['decide']> => {
    const expected = model.decide(profile, ask, now);
    const chosen = bounded('best()', () => index.best(ask, now));
    const where = `${sweeping ? 'final sweep' : `step ${step}`}: best(${ask.modelId} from ${ask.requesterGeozone}) at +${now - NOW} ms`;
    if (expected === undefined) {
      expect(chosen, where).toBeUndefined();
      return undefined;
    }
    expect(chosen, where).toBeDefined();
    expect({ id: chosen!.node.id, forwarded: chosen!.forwarded }, where).toEqual({ id: expected.id, forwarded: expected.forwarded });
    expect(chosen!.score, where).toBeCloseTo(expected.score, 9);
    // The node as last reported, not as it was when it entered a heap.
    expect(chosen!.node, where).toEqual(expected.node);
    return expected;
  };

  const reserve = (id: string, ttl: number, token: number): void => {
    const reservation: Reservation = { nodeId: id, holder: `request-${step}`, token, expiresAt: now + ttl };
    index.reserve(reservation);
    model.reservations.set(id, reservation);
    latest = id;
  };

  for (const op of ops) {
    step++;
    switch (op.kind) {
      case 'telemetry': {
        const node = nodeFrom(op.node, op.report, now);
        index.upsert(node);
        model.nodes.set(node.id, node);
        break;
      }
      case 'change': {
        const previous = model.nodes.get(nodeId(op.node)) ?? nodeFrom(op.node, FIRST_REPORT, now);
        const node: NodeState = { ...previous, [op.change.field]: op.change.value, lastSeen: now, reportedAt: now };
        index.upsert(node);
        model.nodes.set(node.id, node);
        break;
      }
      case 'remove':
        index.remove(nodeId(op.node));
        model.nodes.delete(nodeId(op.node));
        break;
      case 'advance':
        now += op.ms;
        break;
      case 'reserve':
        reserve(nodeId(op.node), op.ttl, op.token);
        break;
      case 'route': {
        const chosen = compareBest(op.ask);
        if (chosen) reserve(chosen.id, op.ttl, op.token);
        break;
      }
      case 'release': {
        const id = op.node === 'latest' ? latest : nodeId(op.node);
        const held = model.reservations.get(id);
        const token = op.token === 'any' ? undefined : op.token === 'held' ? (held?.token ?? 0) : (held?.token ?? 0) + 1;
        const expected = model.release(id, token);
        expect(index.release(id, token), `step ${step}: release(${id}, ${token})`).toEqual(expected);
        break;
      }
      case 'expire':
        expect(bounded('expire()', () => index.expire(now)).sort(byNodeThenExpiry), `step ${step}: expire at +${now - NOW} ms`).toEqual(model.takeExpired(now).sort(byNodeThenExpiry));
        break;
      case 'best':
        compareBest(op.ask);
        break;
    }
    expect(index.reservationCount(), `step ${step}: reservations held`).toBe(model.reservations.size);
    expect(index.size, `step ${step}: nodes known`).toBe(model.nodes.size);
  }

  // Every ask once more, then every lease run out: all of it must be reported, and nothing held.
  sweeping = true;
  for (const modelId of [...models, 'whisper']) for (const requesterGeozone of [...zones, 'MISO']) compareBest({ modelId, requesterGeozone });
  now += 10 * 60_000;
  expect(bounded('expire()', () => index.expire(now)).sort(byNodeThenExpiry), 'final expire').toEqual(model.takeExpired(now).sort(byNodeThenExpiry));
  expect(index.reservationCount()).toBe(0);
}

describe('inference placement', () => {
  const profile = inferenceProfile(DEFAULT_INFERENCE_PROFILE);

  beforeAll(() => {
    IndexedMaxHeap.prototype.peekId = function peekId(this: IndexedMaxHeap): string | undefined {
      if (--peeksLeft < 0) throw new Error('heap peek budget spent');
      return unboundedPeekId.call(this);
    };
  });
  afterAll(() => {
    IndexedMaxHeap.prototype.peekId = unboundedPeekId;
  });

  it('the index chooses what filtering and scoring every node would, through any interleaving of telemetry, removals, silence, reservations, releases and expiries, for any weights', () => {
    fc.assert(
      fc.property(scenarioArb, ({ weights, ops }) => runScenario(weights, ops)),
      { numRuns: 1000 },
    );
  });

  it('a node that reported 10 % GPU and then 95 % is no longer a candidate, and one that reported 95 % and then 10 % is', () => {
    const ask = { modelId: models[0]!, requesterGeozone: 'CAISO' };
    const gpu = (value: number): Op => ({ kind: 'change', node: 0, change: { field: 'gpuUtilization', value } });
    runScenario(DEFAULT_INFERENCE_PROFILE.weights, [gpu(0.1), { kind: 'best', ask }, gpu(0.95), { kind: 'best', ask }, gpu(0.1), { kind: 'best', ask }]);
    const index = new InferenceCandidateIndex(profile, OFFLINE_AFTER_MS);
    const node = nodeFrom(0, { ...FIRST_REPORT, gpuUtilization: 0.1 }, NOW);
    index.upsert(node);
    index.upsert({ ...node, gpuUtilization: 0.95 });
    expect(index.best(ask, NOW)).toBeUndefined();
  });

  it('never chooses a reserved node, and a released one becomes a candidate again', () => {
    fc.assert(
      fc.property(meshArb, fc.constantFrom(...models), (nodes, modelId) => {
        const index = new InferenceCandidateIndex(profile, OFFLINE_AFTER_MS);
        const lastReported = new Map<string, NodeState>();
        for (const node of nodes) {
          index.upsert(node);
          lastReported.set(node.id, node);
        }
        const ask = { modelId, requesterGeozone: 'CAISO' };
        const taken: string[] = [];
        for (let candidate = index.best(ask, NOW); candidate; candidate = index.best(ask, NOW)) {
          expect(taken).not.toContain(candidate.node.id);
          taken.push(candidate.node.id);
          index.reserve({ nodeId: candidate.node.id, holder: `r${taken.length}`, token: taken.length, expiresAt: NOW + 30_000 });
          // Telemetry while reserved must not make the node a candidate again.
          const update = { ...candidate.node, gpuUtilization: 0 };
          index.upsert(update);
          lastReported.set(update.id, update);
        }
        const feasible = nodes.filter((n) => place(profile, [n], ask, { now: NOW, isReserved: () => false }).kind === 'placed');
        expect(taken.length).toBe(feasible.length);
        if (taken.length > 0) {
          index.release(taken[0]!);
          expect(index.best(ask, NOW)?.node.id).toBe(taken[0]);
        }
        // Once every reservation has expired, the choice is the reference choice over the nodes as last reported.
        const later = place(profile, lastReported.values(), ask, { now: NOW + 30_000, isReserved: () => false });
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

import { describe, it, expect } from 'vitest';
import { validateMessage } from '../../src/contracts/validation.ts';
import { decodeGeohash } from '../../src/core/geohash.ts';
import { geozoneForGeohash } from '../../src/mesh/node.ts';
import { seededRandom, randomUuid } from '../../src/sim/random.ts';
import { CITIES, SimulatedNode, SIM_GEOZONES } from '../../src/sim/sim-node.ts';
import { createRequestStream, LoadGenerator, MAX_LATENCY_BY_PRIORITY } from '../../src/sim/load.ts';
import type { InferenceRequest } from '../../src/contracts/messages.ts';

const START = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

const BOUNDS: Record<string, { lng: [number, number]; lat: [number, number] }> = {
  CAISO: { lng: [-125, -114], lat: [32, 42] },
  ERCOT: { lng: [-107, -93], lat: [25, 37] },
  PJM: { lng: [-91, -73], lat: [36, 43] },
};

function makeNode(index: number, geozone = 'CAISO', seed = index + 1): SimulatedNode {
  return new SimulatedNode({ index, geozone, random: seededRandom(seed), now: START });
}

/** A node whose source is pinned, found by seed search so the test stays deterministic. */
function nodeOn(source: 'cogen' | 'grid' | 'battery'): SimulatedNode {
  for (let seed = 1; seed < 1000; seed++) {
    const node = makeNode(seed, 'ERCOT', seed);
    if (node.energySource === source) return node;
  }
  throw new Error(`no seed gives a ${source} node`);
}

describe('seededRandom', () => {
  it('is deterministic per seed and uniform on [0, 1)', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const draws = Array.from({ length: 10_000 }, () => a());
    expect(draws.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b()));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...draws)).toBeLessThan(1);
    expect(draws.reduce((s, x) => s + x, 0) / draws.length).toBeCloseTo(0.5, 1);
    expect(seededRandom(43)()).not.toBe(seededRandom(42)());
  });

  it('makes valid v4 UUIDs', () => {
    const random = seededRandom(7);
    for (let i = 0; i < 100; i++) expect(randomUuid(random)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('SimulatedNode identity', () => {
  it('is deterministic: same index and zone give the same node', () => {
    const a = makeNode(42, 'CAISO', 9);
    const b = makeNode(42, 'CAISO', 9);
    expect(a.telemetry(START)).toEqual(b.telemetry(START));
    expect(a.name).toBe('CAISO-SanDiego-042');
    expect(a.id).toBe(makeNode(42, 'CAISO', 1234).id);
    expect(a.id).not.toBe(makeNode(42, 'PJM').id);
  });

  it('places every city inside its zone, and the mesh maps the geohash back to that zone', () => {
    for (const [zone, cities] of Object.entries(CITIES)) {
      const box = BOUNDS[zone];
      expect(box).toBeDefined();
      for (const city of cities) {
        const [lng, lat] = decodeGeohash(city.geohash);
        expect(lng, `${zone} ${city.name} lng`).toBeGreaterThanOrEqual(box!.lng[0]);
        expect(lng, `${zone} ${city.name} lng`).toBeLessThanOrEqual(box!.lng[1]);
        expect(lat, `${zone} ${city.name} lat`).toBeGreaterThanOrEqual(box!.lat[0]);
        expect(lat, `${zone} ${city.name} lat`).toBeLessThanOrEqual(box!.lat[1]);
        expect(geozoneForGeohash(city.geohash)).toBe(zone);
      }
    }
  });

  it('has 4-8 GPUs, 1-3 distinct models, and a realistic energy mix across many nodes', () => {
    const nodes = SIM_GEOZONES.flatMap((zone) => Array.from({ length: 200 }, (_, i) => makeNode(i, zone, i * 7 + zone.length)));
    const sources = { cogen: 0, grid: 0, battery: 0 };
    let with70b = 0;
    let with8b = 0;
    for (const node of nodes) {
      expect(node.capacity.gpus).toBeGreaterThanOrEqual(4);
      expect(node.capacity.gpus).toBeLessThanOrEqual(8);
      expect(node.modelsLoaded.length).toBeGreaterThanOrEqual(1);
      expect(node.modelsLoaded.length).toBeLessThanOrEqual(3);
      expect(new Set(node.modelsLoaded).size).toBe(node.modelsLoaded.length);
      sources[node.energySource]++;
      if (node.modelsLoaded.includes('llama-3-70b')) with70b++;
      if (node.modelsLoaded.includes('llama-3-8b')) with8b++;
    }
    expect(sources.cogen / nodes.length).toBeCloseTo(0.35, 1);
    expect(sources.grid / nodes.length).toBeCloseTo(0.45, 1);
    expect(sources.battery / nodes.length).toBeCloseTo(0.2, 1);
    expect(with70b / nodes.length).toBeGreaterThan(0.35);
    expect(with8b / nodes.length).toBeGreaterThan(0.35);
  });

  it('rejects a zone it has no cities for', () => {
    expect(() => new SimulatedNode({ index: 0, geozone: 'MISO', random: seededRandom(1) })).toThrow(/MISO/);
  });
});

describe('SimulatedNode behaviour', () => {
  it('always produces valid NodeTelemetry v2 over many advances, under varying load', () => {
    for (const zone of SIM_GEOZONES) {
      for (let index = 0; index < 3; index++) {
        const node = makeNode(index, zone, 100 + index);
        const random = seededRandom(index);
        let now = START;
        for (let step = 0; step < 2000; step++) {
          const active = Math.floor(random() * 12);
          node.advance(10_000, active);
          now += 10_000;
          const telemetry = node.telemetry(now);
          const checked = validateMessage('NodeTelemetry', telemetry);
          if (!checked.ok) throw new Error(`${node.name} step ${step}: ${checked.error}`);
          if (telemetry.geozone !== zone) throw new Error(`${node.name} reported geozone ${telemetry.geozone}`);
        }
        expect(node.clock).toBe(now);
      }
    }
  });

  it('charges its battery on grid and cogen', () => {
    for (const source of ['grid', 'cogen'] as const) {
      const node = nodeOn(source);
      const before = node.batteryLevel;
      node.advance(5 * MINUTE, 0);
      expect(node.batteryLevel).toBeCloseTo(Math.min(1, before + 0.05), 6);
    }
  });

  it('drains its battery on battery, faster under load', () => {
    const idle = nodeOn('battery');
    const busy = nodeOn('battery');
    const start = idle.batteryLevel;
    for (let i = 0; i < 30; i++) {
      idle.advance(10_000, 0);
      busy.advance(10_000, 6);
    }
    expect(idle.batteryLevel).toBeLessThan(start);
    expect(busy.batteryLevel).toBeLessThan(idle.batteryLevel);
  });

  it('falls back to grid when the battery runs below 25 %', () => {
    const node = nodeOn('battery');
    let steps = 0;
    while (node.energySource === 'battery' && steps++ < 10_000) node.advance(10_000, 6);
    expect(node.energySource).toBe('grid');
    expect(node.batteryLevel).toBeGreaterThan(0.2);
  });

  it('GPU utilization follows the work, smoothed and clamped', () => {
    const node = makeNode(3);
    for (let i = 0; i < 30; i++) node.advance(10_000, 0);
    const idle = node.gpuUtilization;
    expect(idle).toBeGreaterThan(0.02);
    expect(idle).toBeLessThan(0.3);
    node.advance(1000, 3);
    const firstStep = node.gpuUtilization;
    expect(firstStep).toBeLessThan(idle + 0.45 - 0.1); // smoothed: not there in one step
    for (let i = 0; i < 30; i++) node.advance(10_000, 3);
    expect(node.gpuUtilization).toBeGreaterThan(idle + 0.3);
    for (let i = 0; i < 30; i++) node.advance(10_000, 20);
    expect(node.gpuUtilization).toBeLessThanOrEqual(1);
    expect(node.gpuUtilization).toBeGreaterThan(0.9);
  });

  it('goes silent for 40-120 s now and then, and comes back', () => {
    const node = new SimulatedNode({ index: 1, geozone: 'PJM', random: seededRandom(5), now: START, silencesPerHour: 6 });
    let now = START;
    const periods: number[] = [];
    let silentSince: number | undefined;
    for (let step = 0; step < 6 * 360; step++) {
      node.advance(10_000, 1);
      now += 10_000;
      const silent = node.isSilent(now);
      if (silent && silentSince === undefined) silentSince = now;
      if (!silent && silentSince !== undefined) {
        periods.push(now - silentSince);
        silentSince = undefined;
      }
    }
    expect(periods.length).toBeGreaterThan(5);
    // Sampled every 10 s, so a 40-120 s silence is seen as 30..120 s.
    for (const period of periods) {
      expect(period).toBeGreaterThanOrEqual(30_000);
      expect(period).toBeLessThanOrEqual(130_000);
    }
  });
});

describe('request stream', () => {
  const zones = ['CAISO', 'ERCOT', 'PJM'];
  const draws = 20_000;

  function sample(): InferenceRequest[] {
    const stream = createRequestStream({ rate: 50, geozones: zones, random: seededRandom(2026) });
    return Array.from({ length: draws }, () => stream.next());
  }

  it('produces valid requests with the configured mixes', () => {
    const requests = sample();
    const share = (pick: (r: InferenceRequest) => boolean): number => requests.filter(pick).length / draws;
    for (const request of requests.slice(0, 500)) {
      const checked = validateMessage('InferenceRequest', request);
      if (!checked.ok) throw new Error(checked.error);
    }
    const models = { 'llama-3-8b': 0.3, 'llama-3-70b': 0.25, 'mistral-7b': 0.2, 'qwen2.5-32b': 0.12, 'stable-diffusion-xl': 0.08, 'whisper-large-v3': 0.05 };
    for (const [model, expected] of Object.entries(models)) expect(Math.abs(share((r) => r.modelId === model) - expected)).toBeLessThan(0.015);
    const priorities = { critical: 0.1, normal: 0.7, background: 0.2 };
    for (const [priority, expected] of Object.entries(priorities)) expect(Math.abs(share((r) => r.priority === priority) - expected)).toBeLessThan(0.015);
    for (const zone of zones) expect(Math.abs(share((r) => r.requesterGeozone === zone) - 1 / 3)).toBeLessThan(0.015);
    expect(requests.filter((r) => r.maxLatencyMs !== MAX_LATENCY_BY_PRIORITY[r.priority])).toEqual([]);
    expect(new Set(requests.map((r) => r.id)).size).toBe(draws);
  });

  it('draws context windows log-uniformly in 128..32768', () => {
    const contexts = sample().map((r) => r.contextWindowTokens);
    expect(contexts.filter((c) => !Number.isInteger(c) || c < 128 || c > 32_768)).toEqual([]);
    // Log-uniform over 8 doublings: each doubling holds ~1/8, so below 256 and above 16384 are each ~12.5 %.
    const low = contexts.filter((c) => c < 256).length / draws;
    const high = contexts.filter((c) => c > 16_384).length / draws;
    const median = [...contexts].sort((a, b) => a - b)[draws / 2]!;
    expect(Math.abs(low - 0.125)).toBeLessThan(0.015);
    expect(Math.abs(high - 0.125)).toBeLessThan(0.015);
    expect(median).toBeGreaterThan(1800);
    expect(median).toBeLessThan(2300);
  });

  it('spaces arrivals as a Poisson process: mean 1000/rate, exponential spread', () => {
    for (const rate of [5, 200]) {
      const stream = createRequestStream({ rate, geozones: zones, random: seededRandom(rate) });
      const delays = Array.from({ length: draws }, () => stream.nextDelayMs());
      const mean = delays.reduce((s, d) => s + d, 0) / draws;
      expect(Math.abs(mean - 1000 / rate) / (1000 / rate)).toBeLessThan(0.03);
      // For an exponential, P(X > mean) = e^-1.
      expect(Math.abs(delays.filter((d) => d > 1000 / rate).length / draws - Math.exp(-1))).toBeLessThan(0.015);
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    }
  });

  it('is reproducible from its seed', () => {
    const a = createRequestStream({ rate: 10, geozones: zones, random: seededRandom(1) });
    const b = createRequestStream({ rate: 10, geozones: zones, random: seededRandom(1) });
    expect([a.next(), a.nextDelayMs(), a.next()]).toEqual([b.next(), b.nextDelayMs(), b.next()]);
  });
});

describe('LoadGenerator', () => {
  it('submits at the target rate, batching per tick, and counts failures', async () => {
    let calls = 0;
    const generator = new LoadGenerator({
      rate: 400,
      geozones: ['CAISO'],
      random: seededRandom(3),
      tickMs: 20,
      submit: async () => {
        calls++;
        if (calls % 4 === 0) throw new Error('no capacity');
      },
    });
    generator.start();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await generator.stop();
    const submitted = generator.submitted;
    // 400/s over ~0.3 s is ~120; timers are coarse, so the band is wide.
    expect(submitted).toBeGreaterThan(60);
    expect(submitted).toBeLessThan(190);
    expect(calls).toBe(submitted);
    expect(generator.failed).toBe(Math.floor(submitted / 4));
    expect(generator.inFlight).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(generator.submitted).toBe(submitted);
  });

  it('counts a submit that throws synchronously as failed', async () => {
    const generator = new LoadGenerator({
      rate: 1000,
      geozones: ['PJM'],
      random: seededRandom(4),
      tickMs: 10,
      submit: () => {
        throw new Error('sync failure');
      },
    });
    generator.start();
    await new Promise((resolve) => setTimeout(resolve, 60));
    await generator.stop();
    expect(generator.submitted).toBeGreaterThan(0);
    expect(generator.failed).toBe(generator.submitted);
  });
});

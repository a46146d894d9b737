/**
 * A simulated mesh node: a stable identity in a real city of its geozone, and telemetry that moves
 * the way a real site's would (batteries charge and drain, sources switch, GPUs follow the work,
 * sites drop off the network for a minute or two), all from a seeded random source.
 */
import type { EnergySource, NodeCapacity, NodeTelemetry } from '../contracts/messages.ts';
import type { AgentIdentity } from '../agent/protocol.ts';
import { seededUuid } from '../core/ids.ts';
import { weightedPick } from './random.ts';

export interface City {
  readonly name: string;
  /** 6-character geohash of the city centre (encoded from city-hall coordinates). */
  readonly geohash: string;
}

export const CITIES: Readonly<Record<string, readonly City[]>> = {
  CAISO: [
    { name: 'SanJose', geohash: '9q9k6m' },
    { name: 'LosAngeles', geohash: '9q5ctr' },
    { name: 'SanDiego', geohash: '9mudjg' },
    { name: 'Sacramento', geohash: '9qce7r' },
    { name: 'Fresno', geohash: '9qdbfp' },
  ],
  ERCOT: [
    { name: 'Houston', geohash: '9vk1mc' },
    { name: 'Dallas', geohash: '9vg4mq' },
    { name: 'Austin', geohash: '9v6kpv' },
    { name: 'SanAntonio', geohash: '9v1zqs' },
  ],
  PJM: [
    { name: 'Philadelphia', geohash: 'dr4e39' },
    { name: 'Washington', geohash: 'dqcjqf' },
    { name: 'Baltimore', geohash: 'dqcx88' },
    { name: 'Pittsburgh', geohash: 'dppn59' },
    { name: 'Columbus', geohash: 'dphgr6' },
  ],
};

export const SIM_GEOZONES: readonly string[] = Object.keys(CITIES);

/** GPU memory a loaded model pins (quantized weights where that is what sites run). */
export const MODEL_FOOTPRINT_GB: Readonly<Record<string, number>> = {
  'llama-3-70b': 40,
  'qwen2.5-32b': 20,
  'llama-3-8b': 16,
  'mistral-7b': 15,
  'stable-diffusion-xl': 10,
  'whisper-large-v3': 4,
};

// The two Llamas carry most of the weight so that a good share of nodes can serve the commonest requests.
const MODEL_MIX: readonly (readonly [string, number])[] = [
  ['llama-3-8b', 0.3],
  ['llama-3-70b', 0.28],
  ['mistral-7b', 0.15],
  ['qwen2.5-32b', 0.12],
  ['stable-diffusion-xl', 0.08],
  ['whisper-large-v3', 0.07],
];

const ENERGY_MIX: readonly (readonly [EnergySource, number])[] = [
  ['cogen', 0.35],
  ['grid', 0.45],
  ['battery', 0.2],
];

const GPU_CLASSES: readonly (readonly [{ readonly tag: string; readonly memoryGb: number }, number])[] = [
  [{ tag: 'h100', memoryGb: 80 }, 0.35],
  [{ tag: 'a100', memoryGb: 80 }, 0.4],
  [{ tag: 'l40s', memoryGb: 48 }, 0.25],
];

const SILENCE_COOLDOWN_MS = 60_000;
const CHARGE_PER_MIN = 0.01;
const DRAIN_IDLE_PER_MIN = 0.005;
const DRAIN_FULL_LOAD_PER_MIN = 0.025;
const BATTERY_FLOOR = 0.25;
const GPU_PER_REQUEST = 0.15;
const GPU_SMOOTHING_MS = 20_000;
/** Source-switch hazards per minute: rare, so a node's source is stable over a demo. */
const SWITCH_PER_MIN = { gridToBattery: 0.01, gridToCogen: 0.004, cogenToGrid: 0.004, batteryToGrid: 0.005 } as const;

export interface SimulatedNodeOptions {
  readonly index: number;
  readonly geozone: string;
  readonly random: () => number;
  /** The node's clock at creation (ms); advance() moves it. Defaults to Date.now(). */
  readonly now?: number;
  /** Expected silent periods per hour (default 0.25): a 30-node mesh sees one every ~8 minutes. */
  readonly silencesPerHour?: number;
}

export class SimulatedNode {
  readonly id: string;
  readonly index: number;
  readonly name: string;
  readonly geozone: string;
  readonly city: string;
  readonly geohash: string;
  readonly capacity: NodeCapacity;
  readonly modelsLoaded: readonly string[];
  readonly tags: readonly string[];
  private readonly random: () => number;
  private readonly idleGpu: number;
  private readonly silencesPerHour: number;
  private source: EnergySource;
  private battery: number;
  private gpu: number;
  private cpu: number;
  private time: number;
  private silentUntil = -Infinity;

  constructor(options: SimulatedNodeOptions) {
    const cities = CITIES[options.geozone];
    if (!cities) throw new RangeError(`no simulated cities for geozone "${options.geozone}" (known: ${SIM_GEOZONES.join(', ')})`);
    const random = options.random;
    this.random = random;
    this.index = options.index;
    this.geozone = options.geozone;
    this.id = seededUuid(`${options.geozone}-${options.index}`);
    // Round-robin over cities spreads a zone's nodes evenly across its metros.
    const city = cities[options.index % cities.length] ?? cities[0];
    if (!city) throw new RangeError(`geozone "${options.geozone}" has no cities`);
    this.city = city.name;
    this.geohash = city.geohash;
    this.name = `${options.geozone}-${city.name}-${String(options.index).padStart(3, '0')}`;

    const gpus = 4 + Math.floor(random() * 5);
    const gpuClass = weightedPick(GPU_CLASSES, random);
    this.capacity = { cpuCores: gpus * 16, memoryGb: gpus * 128, gpus, gpuMemoryGb: gpus * gpuClass.memoryGb };

    const modelCount = 1 + Math.floor(random() * 3);
    const remaining = [...MODEL_MIX];
    const models: string[] = [];
    while (models.length < modelCount && remaining.length > 0) {
      const model = weightedPick(remaining, random);
      models.push(model);
      remaining.splice(remaining.findIndex(([name]) => name === model), 1);
    }
    this.modelsLoaded = models;
    this.tags = [`gpu:${gpuClass.tag}`, `city:${city.name}`, 'simulated'];

    this.source = weightedPick(ENERGY_MIX, random);
    // Battery sites start well charged, or they would fall back to grid within minutes of starting.
    this.battery = this.source === 'battery' ? 0.6 + 0.4 * random() : 0.3 + 0.7 * random();
    this.idleGpu = 0.05 + 0.2 * random();
    this.gpu = this.idleGpu;
    this.cpu = 0.05 + 0.1 * random();
    this.time = options.now ?? Date.now();
    this.silencesPerHour = options.silencesPerHour ?? 0.25;
  }

  get energySource(): EnergySource {
    return this.source;
  }

  get batteryLevel(): number {
    return this.battery;
  }

  get gpuUtilization(): number {
    return this.gpu;
  }

  /** The node's own clock: creation time plus everything advanced. */
  get clock(): number {
    return this.time;
  }

  /** Concurrent requests the node's GPUs serve before they are saturated. */
  get slots(): number {
    return this.capacity.gpus;
  }

  identity(backend = 'simulated'): AgentIdentity {
    return {
      id: this.id,
      name: this.name,
      geozone: this.geozone,
      geohash: this.geohash,
      capacity: this.capacity,
      tags: [...this.tags],
      backend,
    };
  }

  /** While silent the site is unreachable: its telemetry must not be sent. */
  isSilent(now: number): boolean {
    return now < this.silentUntil;
  }

  /**
   * Moves the node `dtMs` forward with `activeRequests` running on it. Pass `now` to resynchronise the
   * node's clock with the caller's (silent periods are measured on it).
   */
  advance(dtMs: number, activeRequests: number, now?: number): void {
    const dt = Math.max(0, dtMs);
    const minutes = dt / 60_000;
    this.time = now ?? this.time + dt;

    if (this.source === 'battery') {
      this.battery -= (DRAIN_IDLE_PER_MIN + (DRAIN_FULL_LOAD_PER_MIN - DRAIN_IDLE_PER_MIN) * this.gpu) * minutes;
    } else {
      this.battery += CHARGE_PER_MIN * minutes;
    }
    this.battery = clamp01(this.battery);
    this.switchSource(minutes);

    const target = clamp01(this.idleGpu + GPU_PER_REQUEST * Math.max(0, activeRequests));
    const smoothing = 1 - Math.exp(-dt / GPU_SMOOTHING_MS);
    const noise = 0.02 * (2 * this.random() - 1);
    this.gpu = clamp01(this.gpu + (target - this.gpu) * smoothing + noise * Math.min(1, smoothing * 4));
    this.cpu = clamp01(0.05 + 0.45 * this.gpu + 0.03 * (2 * this.random() - 1));

    // A node that just came back stays up a while, so its return is seen before it can drop again.
    const canDrop = this.time >= this.silentUntil + SILENCE_COOLDOWN_MS;
    if (this.random() < hazard(this.silencesPerHour / 60, minutes) && canDrop) {
      this.silentUntil = this.time + 40_000 + this.random() * 80_000;
    }
  }

  telemetry(now: number): NodeTelemetry {
    const pinned = this.modelsLoaded.reduce((sum, model) => sum + (MODEL_FOOTPRINT_GB[model] ?? 8), 0);
    const total = this.capacity.gpuMemoryGb ?? 0;
    // KV cache and activations take a share of what the weights leave free, in step with utilization.
    const free = Math.max(0, (total - pinned) * (1 - 0.7 * this.gpu));
    return {
      schemaVersion: 2,
      id: this.id,
      geohash: this.geohash,
      energySource: this.source,
      batteryLevel: round3(this.battery),
      gpuUtilization: round3(this.gpu),
      gpuMemoryFreeGb: Math.round(free * 10) / 10,
      modelsLoaded: [...this.modelsLoaded],
      timestamp: new Date(now).toISOString(),
      geozone: this.geozone,
      name: this.name,
      cpuLoad: round3(this.cpu),
      capacity: { ...this.capacity },
      tags: [...this.tags],
    };
  }

  private switchSource(minutes: number): void {
    const roll = this.random();
    if (this.source === 'battery') {
      // The floor is the operator's reserve: below it the site goes back to the grid.
      if (this.battery < BATTERY_FLOOR || roll < hazard(SWITCH_PER_MIN.batteryToGrid, minutes)) this.source = 'grid';
    } else if (this.source === 'grid') {
      const toBattery = hazard(SWITCH_PER_MIN.gridToBattery, minutes);
      const toCogen = hazard(SWITCH_PER_MIN.gridToCogen, minutes);
      // Only a well-charged site would choose to go off-grid on its battery.
      if (roll < toBattery) {
        if (this.battery > 0.6) this.source = 'battery';
      } else if (roll < toBattery + toCogen) {
        this.source = 'cogen';
      }
    } else if (roll < hazard(SWITCH_PER_MIN.cogenToGrid, minutes)) {
      this.source = 'grid';
    }
  }
}

/** Probability that an event with `ratePerMinute` happens within `minutes`. */
function hazard(ratePerMinute: number, minutes: number): number {
  return 1 - Math.exp(-ratePerMinute * minutes);
}

function clamp01(value: number): number {
  return Math.min(1, Math.max(0, value));
}

function round3(value: number): number {
  return clamp01(Math.round(value * 1000) / 1000);
}

/**
 * What the routing sections of the bench share: a seeded mesh of nodes in three geozones, requests
 * whose ids carry their sequence number, the reservation stores of embedded mode, and a scheduler as
 * the embedded composition builds it.
 */
import { systemClock } from '../src/core/clock.ts';
import { seededUuid } from '../src/core/ids.ts';
import { silentLogger } from '../src/core/logging.ts';
import type { InferenceRequest, NodeTelemetry, Priority } from '../src/contracts/messages.ts';
import type { MessageBus } from '../src/bus/typed-bus.ts';
import { openSqliteStores } from '../src/store/sqlite.ts';
import { MemoryLeaseStore } from '../src/store/memory-leases.ts';
import type { LeaseStore } from '../src/store/ports.ts';
import { RESERVATION_TOKENS_PER_EPOCH } from '../src/main/embedded.ts';
import { InferenceScheduler, DEFAULT_SCHEDULER_CONFIG, type SchedulerConfig, type SchedulerObserver } from '../src/inference/scheduler.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../src/inference/profile.ts';

export const ZONES = ['CAISO', 'ERCOT', 'PJM'];
export const MODELS = ['llama-3-70b', 'llama-3-8b', 'mistral-7b', 'qwen2.5-32b', 'stable-diffusion-xl', 'whisper-large-v3'];

export function telemetry(zone: string, index: number, random: () => number): NodeTelemetry {
  const models = MODELS.filter(() => random() < 0.4);
  return {
    schemaVersion: 2,
    id: seededUuid(`bench-${zone}-${index}`),
    geohash: zone === 'CAISO' ? '9q9k6m' : zone === 'ERCOT' ? '9vk1mc' : 'dr4e39',
    energySource: (['cogen', 'grid', 'battery'] as const)[Math.floor(random() * 3)]!,
    batteryLevel: Math.round(random() * 1000) / 1000,
    gpuUtilization: Math.round(random() * 1000) / 1000,
    gpuMemoryFreeGb: 40,
    modelsLoaded: models.length > 0 ? models : ['llama-3-8b'],
    timestamp: new Date().toISOString(),
    geozone: zone,
    name: `${zone}-${index}`,
  };
}

/** Request ids carry their sequence number, so the bench finds send times in an array, not a map it would have to keep alive. */
export function requestId(sequence: number): string {
  return `00000000-0000-4000-a000-${sequence.toString(16).padStart(12, '0')}`;
}

export function sequenceOf(id: string): number {
  return Number.parseInt(id.slice(24), 16);
}

export function request(random: () => number, id: number, priority: Priority = 'normal', maxLatencyMs = 1000): InferenceRequest {
  return {
    schemaVersion: 1,
    id: requestId(id),
    modelId: MODELS[Math.floor(random() * 2)]!,
    contextWindowTokens: 1024,
    priority,
    maxLatencyMs,
    requesterGeozone: ZONES[Math.floor(random() * ZONES.length)]!,
  };
}

export function scheduler(bus: MessageBus, leases: LeaseStore, config: Partial<Omit<SchedulerConfig, 'placement'>> = {}, observer?: SchedulerObserver): InferenceScheduler {
  return new InferenceScheduler({
    bus,
    leases,
    clock: systemClock,
    logger: silentLogger,
    instanceId: 'bench',
    config: { ...DEFAULT_SCHEDULER_CONFIG, ...config, placement: DEFAULT_INFERENCE_PROFILE },
    ...(observer ? { observer } : {}),
  });
}

export type LeaseKind = 'memory' | 'sqlite';

/** The embedded mode's reservation store (ADR 0005), or the durable SQLite one for comparison. */
export function reservationStore(kind: LeaseKind, file: string): { leases: LeaseStore; close(): Promise<void> } {
  if (kind === 'memory') return { leases: new MemoryLeaseStore({ tokenFloor: RESERVATION_TOKENS_PER_EPOCH }), close: async () => undefined };
  return openSqliteStores({ path: file });
}

/**
 * Telemetry of the machine an agent runs on. GPU utilization follows the agent's own work (the
 * share of its GPU slots busy, smoothed) since no GPU query tool is assumed; energy source and
 * battery come from the operator's flags, as most sites know them better than the OS does.
 */
import { cpus, loadavg } from 'node:os';
import type { EnergySource, NodeTelemetry } from '../contracts/messages.ts';
import type { AgentIdentity } from './protocol.ts';
import type { InferenceBackend } from './ports.ts';

export interface LocalTelemetryOptions {
  readonly identity: AgentIdentity;
  readonly backend: InferenceBackend;
  readonly modelsLoaded: readonly string[];
  readonly energySource: EnergySource;
  readonly batteryLevel: number;
  readonly gpuMemoryGb: number;
  /** Datasets hot on this node (service placement prefers it for slices that want them). */
  readonly datasetsHot?: readonly string[];
}

export function localTelemetry(options: LocalTelemetryOptions): () => NodeTelemetry {
  const slots = Math.max(1, options.identity.capacity.gpus);
  const cores = Math.max(1, cpus().length);
  let gpu = 0;
  return () => {
    gpu = 0.6 * gpu + 0.4 * Math.min(1, options.backend.active / slots);
    const rounded = Math.round(gpu * 1000) / 1000;
    return {
      schemaVersion: 2,
      id: options.identity.id,
      geohash: options.identity.geohash,
      energySource: options.energySource,
      batteryLevel: options.batteryLevel,
      gpuUtilization: rounded,
      gpuMemoryFreeGb: Math.round(options.gpuMemoryGb * (1 - 0.7 * rounded) * 10) / 10,
      modelsLoaded: [...options.modelsLoaded],
      timestamp: new Date().toISOString(),
      geozone: options.identity.geozone,
      name: options.identity.name,
      cpuLoad: Math.min(1, Math.round(((loadavg()[0] ?? 0) / cores) * 1000) / 1000),
      capacity: options.identity.capacity,
      tags: options.identity.tags,
      ...(options.datasetsHot && options.datasetsHot.length > 0 ? { datasetsHot: [...options.datasetsHot] } : {}),
    };
  };
}

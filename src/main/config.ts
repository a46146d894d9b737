/** Everything `arcnet up` can be told, with the seeds' defaults. */
import { DEFAULT_INFERENCE_PROFILE, type InferenceProfileConfig } from '../inference/profile.ts';
import { DEFAULT_SCHEDULER_CONFIG } from '../inference/scheduler.ts';
import { DEFAULT_COORDINATOR_CONFIG, type CoordinatorConfig } from '../jobs/coordinator.ts';
import type { KafkaConnectionOptions } from '../bus/kafka-config.ts';
import type { ServerTls } from '../core/tls.ts';
import type { PostgresChoice } from './engines.ts';
import { DEFAULT_BRIDGE_CONFIG, type BridgeConfig } from '../training/bridge.ts';

/** The training bridge (issue 13): its workflow settings, and which adapters the module picks. */
export interface BridgeSettings extends Omit<BridgeConfig, 'stagingDir'> {
  /** Where datasets land; unset: `<dataDir>/hpc-staging` (a temporary directory when state is in memory). */
  readonly stagingDir?: string;
  /** `auto`: Slurm when `sbatch` is on PATH; `none`: HPC jobs wait in pending. */
  readonly hpcScheduler: 'slurm' | 'none' | 'auto';
  readonly slurmConf?: string;
  /** The POSIX mover's chunk size in bytes (default 64 MiB). */
  readonly chunkBytes?: number;
  /** Caps the POSIX mover's copy rate, bytes a second. */
  readonly maxBytesPerSecond?: number;
  /** The HPC system's Globus endpoint (collection): set, `globus://` datasets move through Globus Transfer to it. */
  readonly globusEndpoint?: string;
  /** The Globus Transfer API's base URL (default https://transfer.api.globus.org/v0.10). */
  readonly globusApi?: string;
  /** The staging directory's path as the Globus endpoint names it (default: its own path, an endpoint rooted at `/`). */
  readonly globusStagingPath?: string;
  /** A file holding the Globus access token, read at each request (so it can be refreshed); else ARCNET_GLOBUS_TOKEN. */
  readonly globusTokenFile?: string;
}

export interface EmbeddedConfig {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** HTTPS and WSS only on the API port (`--tls-cert`/`--tls-key`), with `ca` mTLS for agents and workers (`--tls-ca`). */
  readonly tls?: ServerTls;
  /** Where the SQLite store lives; null keeps state in memory only. */
  readonly dataDir: string | null;
  readonly geozones: readonly string[];
  readonly telemetryIntervalMs: number;
  readonly offlineAfterMs: number;
  readonly summaryIntervalMs: number;
  readonly reservationTtlMs: number;
  readonly maxRetries: number;
  readonly placement: InferenceProfileConfig;
  readonly api: {
    /** How long POST /api/v1/inference waits for the scheduler's decision before answering 202. */
    readonly decisionTimeoutMs: number;
    /** Undecided submissions beyond which new ones are shed with 503. */
    readonly maxAwaitingDecisions: number;
    /** Development only: no API keys, every caller an operator. */
    readonly insecureNoAuth: boolean;
    /** Requests a minute per API key, worker or source address; 0 for no limit. */
    readonly rateLimitPerMinute: number;
    /** Origins whose pages may call the API and open /telemetry (`--cors-origin`); empty: same-origin only. */
    readonly corsOrigins: readonly string[];
    /** The built console served at `/`; unset: `<repo>/web/dist` (src/api/console-delivery.ts). */
    readonly consoleDir?: string;
  };
  /** The verified-jobs coordinator (seed 004). */
  readonly jobs: CoordinatorConfig;
  /** The training bridge (seed 000 §4, issue 13). */
  readonly bridge: BridgeSettings;
  /**
   * External engines instead of the embedded ones: Kafka for the bus, PostgreSQL for state
   * (reservations then become durable leases there). Unset keeps the in-memory bus and SQLite.
   */
  readonly external?: {
    readonly kafka?: KafkaConnectionOptions;
    readonly postgres?: PostgresChoice;
  };
  readonly simulation: {
    readonly nodes: number;
    /** Inference requests per second from the built-in load; 0 for none. */
    readonly requestRate: number;
    readonly seed: number;
    readonly speed: number;
    readonly silencesPerHour?: number;
  };
}

export const DEFAULT_GEOZONES = ['CAISO', 'ERCOT', 'PJM'] as const;

export const DEFAULT_CONFIG: EmbeddedConfig = {
  host: '127.0.0.1',
  port: 8080,
  dataDir: '.arcnet',
  geozones: DEFAULT_GEOZONES,
  telemetryIntervalMs: 10_000,
  offlineAfterMs: 30_000,
  summaryIntervalMs: 60_000,
  reservationTtlMs: DEFAULT_SCHEDULER_CONFIG.reservationTtlMs,
  maxRetries: DEFAULT_SCHEDULER_CONFIG.maxRetries,
  placement: DEFAULT_INFERENCE_PROFILE,
  api: { decisionTimeoutMs: 5_000, maxAwaitingDecisions: 10_000, insecureNoAuth: false, rateLimitPerMinute: 100_000, corsOrigins: [] },
  jobs: DEFAULT_COORDINATOR_CONFIG,
  bridge: { ...DEFAULT_BRIDGE_CONFIG, hpcScheduler: 'auto' },
  simulation: { nodes: 60, requestRate: 20, seed: 42, speed: 1 },
};

export function withDefaults(
  overrides: Partial<Omit<EmbeddedConfig, 'simulation' | 'placement' | 'api' | 'jobs' | 'bridge'>> & {
    jobs?: Partial<CoordinatorConfig>;
    bridge?: Partial<BridgeSettings>;
    simulation?: Partial<EmbeddedConfig['simulation']>;
    placement?: Partial<InferenceProfileConfig>;
    api?: Partial<EmbeddedConfig['api']>;
  },
): EmbeddedConfig {
  const offlineAfterMs = overrides.offlineAfterMs ?? DEFAULT_CONFIG.offlineAfterMs;
  return {
    ...DEFAULT_CONFIG,
    ...overrides,
    offlineAfterMs,
    placement: { ...DEFAULT_CONFIG.placement, offlineAfterMs, ...overrides.placement },
    api: { ...DEFAULT_CONFIG.api, ...overrides.api },
    jobs: { ...DEFAULT_CONFIG.jobs, ...overrides.jobs },
    bridge: { ...DEFAULT_CONFIG.bridge, ...overrides.bridge },
    simulation: { ...DEFAULT_CONFIG.simulation, ...overrides.simulation },
  };
}

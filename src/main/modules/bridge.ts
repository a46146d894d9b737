/**
 * The training bridge's module (issue 13): the TrainingBridge on its adapters, the training API's
 * routes, and, where this process has a console feed, the `hpc` messages on it. Adapters are chosen
 * here and nowhere else: the POSIX mover (chunked copy with a manifest, chunk size
 * `bridge.chunk-size-bytes`) unless a Globus endpoint is configured, the Slurm scheduler when one is
 * configured (`auto`: when `sbatch` is on PATH), and a TransferJournal over the KV store so a
 * restarted bridge finds its transfers' notes.
 *
 * Without an HPC scheduler the bridge still classifies and routes: HPC jobs wait in `pending` and
 * the module's health says so ("no HPC scheduler: jobs wait in pending"), so `arcnet up` on a laptop
 * without Slurm takes training jobs and shows why they do not move.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import type { Engines } from '../engines.ts';
import type { BridgeSettings } from '../config.ts';
import type { KvStore } from '../../store/ports.ts';
import { errorMessage } from '../../core/errors.ts';
import { topics } from '../../contracts/topics.ts';
import type { Consumer } from '../../bus/ports.ts';
import type { ConsoleHub } from '../../api/console-hub.ts';
import { registerTrainingRoutes } from '../../api/training-routes.ts';
import { TrainingBridge, type BridgeConfig } from '../../training/bridge.ts';
import type { DataMover, HpcScheduler, TransferJournal } from '../../training/ports.ts';
import { PosixDataMover } from '../../training/posix-mover.ts';
import { SlurmScheduler } from '../../training/slurm-scheduler.ts';
import type { ModuleHandle } from './module.ts';

export type HpcSchedulerChoice = 'slurm' | 'none' | 'auto';

export interface BridgeModuleOptions {
  readonly config: BridgeConfig;
  /** `auto` (default): Slurm when `sbatch` is on PATH. */
  readonly hpcScheduler?: HpcSchedulerChoice;
  /** The cluster's slurm.conf; default: SLURM_CONF of this process. */
  readonly slurmConf?: string;
  /** The POSIX mover's chunk size (default 64 MiB; small in tests, so a dataset spans many). */
  readonly chunkBytes?: number;
  /** Caps the POSIX mover's copy rate (tests that need a transfer to last). */
  readonly maxBytesPerSecond?: number;
  /** Seed 000's `bridge.globus-endpoint`: datasets move through Globus Transfer to this endpoint. */
  readonly globusEndpoint?: string;
  /** Where this process has a console feed: each HpcJob published becomes an `hpc` message. */
  readonly hub?: ConsoleHub;
  /** Whether this process's API serves the training routes (the API server does; a bridge role has none). */
  readonly routes?: boolean;
}

export interface BridgeModule extends ModuleHandle {
  readonly bridge: TrainingBridge;
}

/** The module's options from the settings: the staging directory defaults to `<dataDir>/hpc-staging`. */
export function bridgeOptionsOf(settings: BridgeSettings, dataDir: string | null, extra: Pick<BridgeModuleOptions, 'hub' | 'routes'> = {}): BridgeModuleOptions {
  const { stagingDir, hpcScheduler, slurmConf, chunkBytes, maxBytesPerSecond, globusEndpoint, ...workflow } = settings;
  // Absolute: the Slurm job reads the dataset from its own working directory.
  const staging = resolve(stagingDir ?? (dataDir === null ? join(tmpdir(), 'arcnet-hpc-staging') : join(dataDir, 'hpc-staging')));
  return {
    config: { ...workflow, stagingDir: staging },
    hpcScheduler,
    ...(slurmConf === undefined ? {} : { slurmConf }),
    ...(chunkBytes === undefined ? {} : { chunkBytes }),
    ...(maxBytesPerSecond === undefined ? {} : { maxBytesPerSecond }),
    ...(globusEndpoint === undefined ? {} : { globusEndpoint }),
    ...extra,
  };
}

/** The mover's notes per transfer, in the KV store beside everything else the bridge keeps. */
export class KvTransferJournal implements TransferJournal {
  private readonly kv: KvStore;
  constructor(kv: KvStore) {
    this.kv = kv;
  }
  async load(transferId: string): Promise<Readonly<Record<string, unknown>> | undefined> {
    return (await this.kv.get<Record<string, unknown>>(`bridge/transfer/${transferId}`))?.value;
  }
  async save(transferId: string, notes: Readonly<Record<string, unknown>>): Promise<void> {
    await this.kv.put(`bridge/transfer/${transferId}`, notes);
  }
}

/** Whether a Slurm client is installed here: `sbatch` on PATH. */
export function sbatchOnPath(path: string = process.env['PATH'] ?? ''): boolean {
  return path.split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, 'sbatch')));
}

function chooseScheduler(options: BridgeModuleOptions): HpcScheduler | undefined {
  const choice = options.hpcScheduler ?? 'auto';
  if (choice === 'none' || (choice === 'auto' && !sbatchOnPath())) return undefined;
  return new SlurmScheduler({ ...(options.slurmConf ? { slurmConf: options.slurmConf } : {}) });
}

/** The POSIX mover; `bridge.globus-endpoint` is accepted and shown in the health, but the Globus mover is not wired in yet. */
function chooseMover(options: BridgeModuleOptions, journal: TransferJournal): DataMover {
  return new PosixDataMover({ journal, ...(options.chunkBytes ? { chunkBytes: options.chunkBytes } : {}), ...(options.maxBytesPerSecond ? { maxBytesPerSecond: options.maxBytesPerSecond } : {}) });
}

/** The console's `hpc` messages from what any bridge publishes (an `arcnet bridge` elsewhere too), from now on. */
function feedHpc(engines: Engines, hub: ConsoleHub | undefined): Promise<Consumer | undefined> {
  if (!hub) return Promise.resolve(undefined);
  return engines.bus.subscribe(`${engines.instanceId}-hpc-feed`, [topics.bridgePending, topics.bridgeIngress], 'HpcJob', (job) => hub.hpc(job), { startAt: 'latest' });
}

const trainingRoutes = (engines: Engines): ModuleHandle['api'] => ({
  routes: [(app) => registerTrainingRoutes(app, { bus: engines.bus, documents: engines.stores.documents, kv: engines.stores.kv, clock: engines.clock })],
});

/**
 * The training API without a bridge, for `arcnet server`: submissions are stored and published, and
 * the bridges (`arcnet bridge`) consume them; the console gets their `hpc` messages.
 */
export async function startTrainingApiModule(engines: Engines, options: { readonly hub?: ConsoleHub }): Promise<ModuleHandle> {
  const feed = await feedHpc(engines, options.hub);
  return {
    name: 'training',
    api: trainingRoutes(engines),
    health: () => ({ ready: true, details: { routes: '/api/v1/training', bridge: 'elsewhere (arcnet bridge)' } }),
    stop: async () => {
      await feed?.close();
    },
  };
}

export async function startBridgeModule(engines: Engines, options: BridgeModuleOptions): Promise<BridgeModule> {
  const { bus, stores, clock, logger, instanceId } = engines;
  const journal = new KvTransferJournal(stores.kv);
  const mover = chooseMover(options, journal);
  const scheduler = chooseScheduler(options);
  const bridgeLogger = logger.child({ component: 'bridge' });
  const feed = await feedHpc(engines, options.hub);
  const bridge = new TrainingBridge({ bus, documents: stores.documents, kv: stores.kv, leases: stores.leases, clock, logger: bridgeLogger, instanceId, mover, scheduler, config: options.config });
  try {
    await bridge.start();
  } catch (error) {
    await feed?.close();
    throw new Error(`the training bridge did not start: ${errorMessage(error)}`, { cause: error });
  }
  return {
    name: 'bridge',
    bridge,
    ...(options.routes ? { api: trainingRoutes(engines) } : {}),
    health: () => {
      const stats = bridge.stats();
      const details = {
        mover: mover.name,
        scheduler: scheduler?.name ?? null,
        stagingDir: options.config.stagingDir,
        ...(scheduler ? {} : { note: 'no HPC scheduler: jobs wait in pending' }),
        ...(options.globusEndpoint === undefined ? {} : { globusEndpoint: options.globusEndpoint, globus: 'not wired yet: globus:// datasets fail INVALID_REQUEST' }),
        ...stats,
      };
      return { ready: true, details };
    },
    stop: async () => {
      await bridge.stop();
      await feed?.close();
    },
  };
}

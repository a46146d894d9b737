/**
 * The training bridge's module (issue 13): the TrainingBridge on its adapters, the training API's
 * routes, and, where this process has a console feed, the `hpc` messages on it. Adapters are chosen
 * here and nowhere else: the data mover by the dataset's scheme (`file://`: the POSIX mover, a
 * chunked copy with a manifest, chunk size `bridge.chunk-size-bytes`; `globus://<endpoint>/<path>`:
 * the Globus mover, to the configured `bridge.globus-endpoint`, the staging directory named there as
 * `bridge.globus-staging-path`), the Slurm scheduler when one is configured (`auto`: when `sbatch` is
 * on PATH), and a TransferJournal over the KV store so a restarted bridge finds its transfers' notes.
 *
 * The Globus token comes from `--globus-token-file` (read at each request, so a refresher may
 * rewrite it) or ARCNET_GLOBUS_TOKEN; without one, or without an endpoint, `globus://` datasets fail
 * at once saying which is missing, and the health says so too.
 *
 * Without an HPC scheduler the bridge still classifies and routes: HPC jobs wait in `pending` and
 * the module's health says so ("no HPC scheduler: jobs wait in pending"), so `arcnet up` on a laptop
 * without Slurm takes training jobs and shows why they do not move.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, isAbsolute, join, posix, relative, resolve, sep } from 'node:path';
import type { Engines } from '../engines.ts';
import type { BridgeSettings } from '../config.ts';
import type { KvStore } from '../../store/ports.ts';
import { ArcError, errorMessage } from '../../core/errors.ts';
import { topics } from '../../contracts/topics.ts';
import type { Consumer } from '../../bus/ports.ts';
import type { ConsoleHub } from '../../api/console-hub.ts';
import { registerTrainingRoutes } from '../../api/training-routes.ts';
import { TrainingBridge, type BridgeConfig } from '../../training/bridge.ts';
import type { DataMover, HpcScheduler, TransferJournal, TransferOptions, TransferOutcome, TransferSpec } from '../../training/ports.ts';
import { PosixDataMover } from '../../training/posix-mover.ts';
import { GlobusDataMover } from '../../training/globus-mover.ts';
import { TRAINING_COLLECTION, type TrainingRecord } from '../../training/model.ts';
import { SlurmScheduler } from '../../training/slurm-scheduler.ts';
import type { ModuleHandle } from './module.ts';

export type HpcSchedulerChoice = 'slurm' | 'none' | 'auto';

export const DEFAULT_GLOBUS_API = 'https://transfer.api.globus.org/v0.10';

/** Where `globus://` datasets go: seed 000's `bridge.globus-endpoint`, with the API and token to reach it. */
export interface GlobusModuleOptions {
  /** The HPC system's endpoint (collection) id. */
  readonly endpoint: string;
  /** Default DEFAULT_GLOBUS_API. */
  readonly apiUrl?: string;
  /** The staging directory as the endpoint names it; default its own path (an endpoint rooted at `/`). */
  readonly stagingPath?: string;
  /** A file holding the access token, read at each request. */
  readonly tokenFile?: string;
  /** The token itself, for an embedding program; else `tokenFile`, else ARCNET_GLOBUS_TOKEN of this process. */
  readonly token?: string;
  /** How often a task is polled (default 1 s). */
  readonly pollIntervalMs?: number;
}

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
  /** Seed 000's `bridge.globus-endpoint` and its API: `globus://` datasets move through Globus Transfer to it. */
  readonly globus?: GlobusModuleOptions;
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
  const { stagingDir, hpcScheduler, slurmConf, chunkBytes, maxBytesPerSecond, globusEndpoint, globusApi, globusStagingPath, globusTokenFile, ...workflow } = settings;
  // Absolute: the Slurm job reads the dataset from its own working directory.
  const staging = resolve(stagingDir ?? (dataDir === null ? join(tmpdir(), 'arcnet-hpc-staging') : join(dataDir, 'hpc-staging')));
  return {
    config: { ...workflow, stagingDir: staging },
    hpcScheduler,
    ...(slurmConf === undefined ? {} : { slurmConf }),
    ...(chunkBytes === undefined ? {} : { chunkBytes }),
    ...(maxBytesPerSecond === undefined ? {} : { maxBytesPerSecond }),
    ...(globusEndpoint === undefined
      ? {}
      : { globus: { endpoint: globusEndpoint, ...(globusApi === undefined ? {} : { apiUrl: globusApi }), ...(globusStagingPath === undefined ? {} : { stagingPath: globusStagingPath }), ...(globusTokenFile === undefined ? {} : { tokenFile: globusTokenFile }) } }),
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

const invalidSetting = (message: string): ArcError => new ArcError('INVALID_INPUT', message, { retryable: false });

/** The Globus token as the mover asks for it; undefined when none is configured. A token file that cannot be read refuses the start. */
function globusToken(globus: GlobusModuleOptions, env: NodeJS.ProcessEnv = process.env): string | (() => Promise<string>) | undefined {
  if (globus.token !== undefined) return globus.token;
  const file = globus.tokenFile;
  if (file !== undefined) {
    let first: string;
    try {
      first = readFileSync(file, 'utf8').trim();
    } catch (error) {
      throw invalidSetting(`--globus-token-file ${file} cannot be read: ${errorMessage(error)}`);
    }
    if (first === '') throw invalidSetting(`--globus-token-file ${file} is empty: it should hold a Globus access token with the transfer scope`);
    return async () => (await readFile(file, 'utf8')).trim();
  }
  const fromEnv = env['ARCNET_GLOBUS_TOKEN']?.trim();
  return fromEnv ? fromEnv : undefined;
}

function globusApiOf(globus: GlobusModuleOptions): string {
  const api = globus.apiUrl ?? DEFAULT_GLOBUS_API;
  let url: URL | undefined;
  try {
    url = new URL(api);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) throw invalidSetting(`--globus-api / bridge.globus-api "${api}" is not an http(s) URL such as ${DEFAULT_GLOBUS_API}`);
  return api;
}

const SCHEMES = ['file', 'globus'] as const;
type Scheme = (typeof SCHEMES)[number];

const schemeOf = (uri: string): Scheme | undefined => SCHEMES.find((scheme) => uri.startsWith(`${scheme}://`));

/**
 * The bridge's one DataMover, choosing by the dataset's scheme: `file://` to the POSIX mover,
 * `globus://` to the Globus mover with the destination (`<staging>/<id>/<file>`) named as the
 * endpoint sees it. The ports stay as they are: the bridge passes the path Slurm reads, and only
 * here is it translated for Globus. A cancel goes to the mover that ran the transfer (asked of the
 * job's record after a restart).
 */
export class MoverByScheme implements DataMover {
  readonly name: string;
  private readonly posix: DataMover;
  private readonly globus: DataMover | undefined;
  /** Why `globus://` datasets cannot move here, when they cannot. */
  private readonly globusMissing: string | undefined;
  private readonly stagingDir: string;
  private readonly globusStagingPath: string;
  private readonly datasetOf: (transferId: string) => Promise<string | undefined>;
  private readonly routed = new Map<string, Scheme>();

  constructor(options: {
    readonly posix: DataMover;
    readonly globus?: { readonly mover: DataMover; readonly stagingPath: string } | { readonly missing: string };
    readonly stagingDir: string;
    /** The dataset URI of a transfer this process did not start (a cancel after a restart). */
    readonly datasetOf: (transferId: string) => Promise<string | undefined>;
  }) {
    this.posix = options.posix;
    const globus = options.globus;
    this.globus = globus && 'mover' in globus ? globus.mover : undefined;
    this.globusMissing = globus === undefined ? 'no Globus endpoint is configured (--globus-endpoint, bridge.globus-endpoint)' : 'missing' in globus ? globus.missing : undefined;
    this.stagingDir = options.stagingDir;
    this.globusStagingPath = globus && 'mover' in globus ? globus.stagingPath : options.stagingDir;
    this.datasetOf = options.datasetOf;
    this.name = this.globus ? `${this.posix.name}+${this.globus.name}` : this.posix.name;
  }

  transfer(spec: TransferSpec, options?: TransferOptions): Promise<TransferOutcome> {
    const scheme = schemeOf(spec.source);
    if (scheme === 'file') {
      this.routed.set(spec.transferId, scheme);
      return this.posix.transfer(spec, options);
    }
    if (scheme === 'globus') {
      if (!this.globus) return Promise.resolve({ status: 'failed', code: 'INVALID_REQUEST', reason: `${spec.source} is a Globus dataset, but ${this.globusMissing}` });
      this.routed.set(spec.transferId, scheme);
      return this.globus.transfer({ ...spec, destination: this.onEndpoint(spec.destination) }, options);
    }
    return Promise.resolve({ status: 'failed', code: 'INVALID_REQUEST', reason: `${spec.source}: the bridge moves file:// and globus:// datasets` });
  }

  async cancel(transferId: string): Promise<void> {
    const scheme = this.routed.get(transferId) ?? schemeOf((await this.datasetOf(transferId)) ?? '');
    if (scheme === 'globus') await this.globus?.cancel(transferId);
    else if (scheme === 'file') await this.posix.cancel(transferId);
  }

  /** The destination as the endpoint names it: the staging directory's part swapped for `globusStagingPath` (a path outside it is kept). */
  private onEndpoint(destination: string): string {
    const inside = relative(this.stagingDir, destination);
    if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) return destination;
    return posix.join(this.globusStagingPath, ...inside.split(sep));
  }
}

function chooseMover(options: BridgeModuleOptions, journal: TransferJournal, engines: Engines): { mover: DataMover; globusNote?: string } {
  const posixMover = new PosixDataMover({ journal, ...(options.chunkBytes ? { chunkBytes: options.chunkBytes } : {}), ...(options.maxBytesPerSecond ? { maxBytesPerSecond: options.maxBytesPerSecond } : {}) });
  const stagingDir = options.config.stagingDir;
  const datasetOf = async (id: string): Promise<string | undefined> => (await engines.stores.documents.get<TrainingRecord>(TRAINING_COLLECTION, id))?.body?.datasetUri;
  const globus = options.globus;
  if (!globus) return { mover: new MoverByScheme({ posix: posixMover, stagingDir, datasetOf }) };
  const stagingPath = globus.stagingPath ?? stagingDir;
  if (!stagingPath.startsWith('/')) throw invalidSetting(`--globus-staging-path / bridge.globus-staging-path "${stagingPath}" must be an absolute path on the endpoint`);
  const baseUrl = globusApiOf(globus);
  const token = globusToken(globus);
  if (token === undefined) {
    const missing = `no Globus token is configured (ARCNET_GLOBUS_TOKEN or --globus-token-file) for endpoint ${globus.endpoint}`;
    return { mover: new MoverByScheme({ posix: posixMover, globus: { missing }, stagingDir, datasetOf }), globusNote: `${missing}: globus:// datasets fail INVALID_REQUEST` };
  }
  const globusMover = new GlobusDataMover({
    baseUrl,
    token,
    journal,
    defaultEndpoint: globus.endpoint,
    transferTimeoutMs: options.config.transferTimeoutMs,
    ...(globus.pollIntervalMs === undefined ? {} : { pollIntervalMs: globus.pollIntervalMs }),
  });
  return { mover: new MoverByScheme({ posix: posixMover, globus: { mover: globusMover, stagingPath }, stagingDir, datasetOf }), globusNote: `globus:// datasets move through ${baseUrl} to endpoint ${globus.endpoint} at ${stagingPath}` };
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
  const { mover, globusNote } = chooseMover(options, journal, engines);
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
        ...(options.globus === undefined ? {} : { globusEndpoint: options.globus.endpoint, globus: globusNote }),
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

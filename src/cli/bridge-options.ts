/**
 * The training bridge's flags, shared by `arcnet up` and `arcnet bridge`: thresholds, the chunk
 * size, the staging directory, the poll interval, the HPC scheduler, seed 000's `:bridge` pair, and
 * the Globus mover's API, token file and staging path. A flag wins over its setting (`bridge.*` in
 * the config file, or its ARCNET_* variable), which wins over the default (src/training/bridge.ts
 * DEFAULT_BRIDGE_CONFIG). The Globus token itself is never a flag (it would show in `ps`): it is
 * read from ARCNET_GLOBUS_TOKEN, or from `--globus-token-file`.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { BridgeSettings } from '../main/config.ts';
import type { AppliedSettings } from '../main/settings.ts';
import { DEFAULT_THRESHOLDS } from '../training/classifier.ts';
import { int } from './options.ts';

export interface BridgeFlags {
  hpcScheduler?: string;
  slurmConf?: string;
  stagingDir?: string;
  chunkSize?: number;
  hpcPollInterval?: number;
  hpcFlopsThreshold?: number;
  hpcDatasetGbThreshold?: number;
  transferTimeout?: number;
  globusEndpoint?: string;
  globusApi?: string;
  globusTokenFile?: string;
  globusStagingPath?: string;
  bridgeLeaseTtl?: number;
  transferMaxRate?: number;
}

const SCHEDULERS = ['slurm', 'none', 'auto'] as const;

/** A number ≥ 0 as people write thresholds: `1e18`, `100`, `0.5`. */
const amount = (name: string) => (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a number ≥ 0 such as 1e18, got "${value}"`);
  return n;
};

const httpUrl = (value: string): string => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`--globus-api must be a URL such as https://transfer.api.globus.org/v0.10, got "${value}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InvalidArgumentError(`--globus-api must be an http(s) URL, got "${value}"`);
  return value;
};

const absolute = (value: string): string => {
  if (!value.startsWith('/')) throw new InvalidArgumentError(`--globus-staging-path must be an absolute path on the endpoint such as /lustre/arcnet/staging, got "${value}"`);
  return value;
};

const scheduler = (value: string): string => {
  if (!(SCHEDULERS as readonly string[]).includes(value)) throw new InvalidArgumentError(`--hpc-scheduler must be one of ${SCHEDULERS.join(', ')}, got "${value}"`);
  return value;
};

export function withBridgeOptions(command: Command): Command {
  return command
    .option('--hpc-scheduler <name>', 'where HPC training jobs run: slurm, none (they wait in pending) or auto (slurm when sbatch is on PATH; default, or bridge.hpc-scheduler)', scheduler)
    .option('--slurm-conf <file>', 'the Slurm cluster\'s slurm.conf (default $SLURM_CONF)')
    .option('--staging-dir <dir>', 'where HPC datasets land, <dir>/<job>/<file> (default <data-dir>/hpc-staging, or bridge.staging-dir)')
    .option('--chunk-size <bytes>', 'the POSIX mover\'s chunk: at most this much is sent again after a restart (default 64 MiB, or bridge.chunk-size-bytes)', int('--chunk-size', 1))
    .option('--hpc-poll-interval <ms>', 'one HPC scheduler status query per this many ms for all jobs (default 2000, or bridge.poll-interval-ms)', int('--hpc-poll-interval', 50))
    .option('--hpc-flops-threshold <flops>', 'estimated FLOPs over this go to HPC (seed: 1e18, or bridge.hpc-flops-threshold)', amount('--hpc-flops-threshold'))
    .option('--hpc-dataset-gb-threshold <gb>', 'datasets over this many GB go to HPC (seed: 100, or bridge.hpc-dataset-gb-threshold)', amount('--hpc-dataset-gb-threshold'))
    .option('--transfer-timeout <ms>', 'a dataset transfer running longer fails (seed: 3600000, or bridge.transfer-timeout-ms)', int('--transfer-timeout', 1))
    .option('--globus-endpoint <id>', 'the HPC system\'s Globus endpoint: globus://<endpoint>/<path> datasets move through Globus Transfer to it (seed\'s bridge.globus-endpoint; file:// ones stay with the POSIX mover)')
    .option('--globus-api <url>', 'the Globus Transfer API (default https://transfer.api.globus.org/v0.10, or bridge.globus-api)', httpUrl)
    .option('--globus-token-file <file>', 'a file holding the Globus access token, read at each request (default: the token in $ARCNET_GLOBUS_TOKEN; never on the command line)')
    .option('--globus-staging-path <path>', 'the staging directory as the Globus endpoint names it (default: the staging directory\'s own path, an endpoint rooted at /; or bridge.globus-staging-path)', absolute)
    .option('--transfer-max-rate <bytes>', 'caps the POSIX mover\'s copy rate in bytes a second (a shared filesystem; off by default)', int('--transfer-max-rate', 1))
    .option('--bridge-lease-ttl <ms>', 'a job\'s ownership lease: a dead bridge\'s jobs move after at most this long (default 10000)', int('--bridge-lease-ttl', 300));
}

/** The bridge's settings from flags over `bridge.*` settings; only what either gives. */
export function bridgeSettingsOf(flags: BridgeFlags, applied: Pick<AppliedSettings, 'bridge'>): Partial<BridgeSettings> {
  const set = applied.bridge ?? {};
  const flops = flags.hpcFlopsThreshold ?? set.hpcFlopsThreshold;
  const gb = flags.hpcDatasetGbThreshold ?? set.hpcDatasetGbThreshold;
  const pick = <T>(value: T | undefined, key: keyof BridgeSettings): Partial<BridgeSettings> => (value === undefined ? {} : ({ [key]: value } as Partial<BridgeSettings>));
  return {
    ...pick((flags.hpcScheduler ?? set.hpcScheduler) as BridgeSettings['hpcScheduler'] | undefined, 'hpcScheduler'),
    ...pick(flags.slurmConf, 'slurmConf'),
    ...pick(flags.stagingDir ?? set.stagingDir, 'stagingDir'),
    ...pick(flags.chunkSize ?? set.chunkBytes, 'chunkBytes'),
    ...pick(flags.hpcPollInterval ?? set.pollIntervalMs, 'pollIntervalMs'),
    ...pick(flags.transferTimeout ?? set.transferTimeoutMs, 'transferTimeoutMs'),
    ...pick(flags.globusEndpoint ?? set.globusEndpoint, 'globusEndpoint'),
    ...pick(flags.globusApi ?? set.globusApi, 'globusApi'),
    ...pick(flags.globusStagingPath ?? set.globusStagingPath, 'globusStagingPath'),
    ...pick(flags.globusTokenFile, 'globusTokenFile'),
    ...pick(flags.bridgeLeaseTtl, 'leaseTtlMs'),
    ...pick(flags.transferMaxRate, 'maxBytesPerSecond'),
    ...(flops === undefined && gb === undefined ? {} : { thresholds: { hpcFlops: flops ?? DEFAULT_THRESHOLDS.hpcFlops, hpcDatasetGb: gb ?? DEFAULT_THRESHOLDS.hpcDatasetGb } }),
  };
}

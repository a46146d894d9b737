/**
 * The job profile of the placement framework (seed 004's worker selection): required CPU, memory
 * and GPU must fit beside what the worker already runs; higher reputation first, lower load next.
 * A worker never runs two executions of one job, so redundancy means n different machines. The
 * plugins register into `jobRegistry`; `jobProfile()` assembles the seed's list of names, or the
 * names a configuration picks.
 */
import type { FilterPlugin, Profile, ScorePlugin } from '../placement/framework.ts';
import { PASS } from '../placement/framework.ts';
import { PluginRegistry, type WeightedName } from '../placement/registry.ts';

/** What placement reads of a worker: its record plus what the coordinator has allocated on it. */
export interface WorkerCandidate {
  readonly id: string;
  readonly online: boolean;
  readonly reputation: number;
  readonly cpuCores: number;
  readonly memoryGb: number;
  readonly gpu: boolean;
  readonly allocatedCpu: number;
  readonly allocatedMemoryGb: number;
  /** From the last heartbeat, 0..1. */
  readonly cpuUsage: number;
  /** The enrolment (token or operator key) that let the worker in: one party. */
  readonly enrolledBy: string | null;
}

export interface JobAsk {
  readonly jobId: string;
  readonly cpu: number;
  readonly memoryGb: number;
  readonly gpu: boolean;
  /** Workers that already hold an execution of this job. */
  readonly excluded: ReadonlySet<string>;
  /** For a job asking for `distinct_enrolments`: the parties that already hold one of its executions. */
  readonly excludedEnrolments?: ReadonlySet<string>;
}

/** Workers registered before enrolment existed share this party: none of them can prove otherwise. */
export const UNKNOWN_PARTY = 'unknown';

export interface JobProfileConfig {
  /** Score = reputation·w.reputation − load·w.load, load in 0..1: reputation dominates, load breaks near-ties. */
  readonly weights: { readonly reputation: number; readonly load: number };
  /** Filter plugins by registry name, in order; the seed's list when absent. */
  readonly filters?: readonly string[];
  /** Scorer plugins by registry name with their weights; when absent, reputation and load with `weights`. */
  readonly scorers?: readonly WeightedName[];
}

export const DEFAULT_JOB_PROFILE: JobProfileConfig = { weights: { reputation: 1, load: 10 } };

type JobFilter = FilterPlugin<WorkerCandidate, JobAsk>;
type JobScorer = ScorePlugin<WorkerCandidate, JobAsk>;

const round = (value: number): string => String(Math.round(value * 100) / 100);

export const workerOnlineFilter: JobFilter = {
  name: 'worker-online',
  rejects: 'offline',
  filter: (worker) => (worker.online ? PASS : { ok: false, reason: 'offline' }),
};

export const distinctWorkerFilter: JobFilter = {
  name: 'distinct-worker',
  rejects: 'already running or having run this job',
  filter: (worker, ask) => (ask.excluded.has(worker.id) ? { ok: false, reason: `already holds an execution of job ${ask.jobId}` } : PASS),
};

/**
 * BOINC's defence against one party filling a quorum: with `distinct_enrolments`, no two executions
 * of a job go to workers enrolled by the same token or operator key. It does not stop one party that
 * obtains several enrolment tokens (docs/security.md, "Remaining Sybil risk").
 */
export const distinctEnrolmentFilter: JobFilter = {
  name: 'distinct-enrolment',
  rejects: 'enrolled by the same party as another execution of this job',
  filter: (worker, ask) =>
    ask.excludedEnrolments === undefined || !ask.excludedEnrolments.has(worker.enrolledBy ?? UNKNOWN_PARTY)
      ? PASS
      : { ok: false, reason: `enrolled by ${worker.enrolledBy ?? 'an unknown party'}, like another execution of job ${ask.jobId}` },
};

export const cpuFitFilter: JobFilter = {
  name: 'cpu-fit',
  rejects: 'without enough free CPU',
  filter: (worker, ask) =>
    worker.allocatedCpu + ask.cpu <= worker.cpuCores + 1e-9 ? PASS : { ok: false, reason: `${round(worker.cpuCores - worker.allocatedCpu)} of ${worker.cpuCores} cores free, ${ask.cpu} needed` },
};

export const memoryFitFilter: JobFilter = {
  name: 'memory-fit',
  rejects: 'without enough free memory',
  filter: (worker, ask) =>
    worker.allocatedMemoryGb + ask.memoryGb <= worker.memoryGb + 1e-9
      ? PASS
      : { ok: false, reason: `${round(worker.memoryGb - worker.allocatedMemoryGb)} of ${worker.memoryGb} GB free, ${ask.memoryGb} GB needed` },
};

export const gpuFitFilter: JobFilter = {
  name: 'gpu-fit',
  rejects: 'without a GPU',
  filter: (worker, ask) => (!ask.gpu || worker.gpu ? PASS : { ok: false, reason: 'no GPU' }),
};

export const reputationScorer: JobScorer = { name: 'reputation', score: (worker) => worker.reputation };

/** The busier of what is allocated and what the worker last measured. */
export const loadScorer: JobScorer = {
  name: 'load',
  score: (worker) => -Math.max(worker.cpuCores > 0 ? worker.allocatedCpu / worker.cpuCores : 1, worker.cpuUsage),
};

/** Every job plugin under its name: the one way a profile reaches them. */
export const jobRegistry = new PluginRegistry<WorkerCandidate, JobAsk, JobProfileConfig>('job');
for (const filter of [workerOnlineFilter, distinctWorkerFilter, distinctEnrolmentFilter, gpuFitFilter, cpuFitFilter, memoryFitFilter]) jobRegistry.registerFilter(filter.name, () => filter);
for (const scorer of [reputationScorer, loadScorer]) jobRegistry.registerScorer(scorer.name, () => scorer);

/** The seed's filters by name, in the order they run. */
export const SEED_JOB_FILTERS: readonly string[] = ['worker-online', 'distinct-worker', 'distinct-enrolment', 'gpu-fit', 'cpu-fit', 'memory-fit'];

export function jobProfile(config: JobProfileConfig = DEFAULT_JOB_PROFILE): Profile<WorkerCandidate, JobAsk> {
  const scorers = config.scorers ?? [
    { name: 'reputation', weight: config.weights.reputation },
    { name: 'load', weight: config.weights.load },
  ];
  return jobRegistry.assemble({ filters: config.filters ?? SEED_JOB_FILTERS, scorers }, config);
}

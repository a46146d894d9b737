/**
 * "Why these workers", recomputed for each execution of a job: the worker records as they were when
 * the execution was scheduled, run through the job profile (`profile.ts`) with the placement
 * framework's own functions, give how many workers each filter removed, the best candidates with
 * their weighted terms, and the worker the profile picks. Pure: the route reads the documents.
 *
 * What it cannot know exactly, and says so: the CPU and memory other executions held at that moment
 * are derived from the executions it is given (the coordinator's recent jobs), scheduled before and
 * not finished by then; executions of older jobs are not among them.
 */
import type { JobExplanation } from '../contracts/console.ts';
import { better, firstFailure, scoreNode, type PlacementContext, type Profile } from '../placement/framework.ts';
import type { Job, JobExecution, WorkerRecord } from './model.ts';
import { UNKNOWN_PARTY, type JobAsk, type WorkerCandidate } from './profile.ts';

export const TOP_WORKERS = 5;

/** An execution of any job, with what its job asked for: what it held on its worker while it ran. */
export interface HeldExecution {
  readonly execution: Pick<JobExecution, 'id' | 'node_id' | 'scheduled_at' | 'completed_at'>;
  readonly cpu: number;
  readonly memoryGb: number;
}

export interface JobExplainInput {
  readonly job: Job;
  readonly executions: readonly JobExecution[];
  /** The worker records valid at each execution's scheduled_at, by execution id. */
  readonly workersAt: ReadonlyMap<string, readonly WorkerRecord[]>;
  /** Executions of the recent jobs (this job's included), for the allocations at each moment. */
  readonly held: readonly HeldExecution[];
  readonly profile: Profile<WorkerCandidate, JobAsk>;
  /** How many recent jobs `held` covers, for the approximation's sentence. */
  readonly recentJobs: number;
  readonly top?: number;
}

type Explained = JobExplanation['executions'][number];

function candidateOf(worker: WorkerRecord, allocated: { cpu: number; memoryGb: number } | undefined): WorkerCandidate {
  // The same reading of a record as the coordinator's (WorkerRegistry.candidates).
  return {
    id: worker.id,
    online: worker.status !== 'offline',
    reputation: worker.reputation_score,
    cpuCores: worker.cpu_cores,
    memoryGb: worker.memory_gb,
    gpu: worker.gpu_enabled,
    allocatedCpu: allocated?.cpu ?? 0,
    allocatedMemoryGb: allocated?.memoryGb ?? 0,
    cpuUsage: worker.cpu_usage,
    enrolledBy: worker.enrolled_by ?? null,
  };
}

function explainOne(input: JobExplainInput, execution: JobExecution, top: number): Explained {
  const { job, profile } = input;
  const at = Date.parse(execution.scheduled_at);
  // Placed at the same moment (one pass for a round) or before: the others of the job are excluded, so
  // the best that remains is the one this slot took.
  const holders = input.executions.filter((e) => e.id !== execution.id && Date.parse(e.scheduled_at) <= at).map((e) => e.node_id);
  const allocations = new Map<string, { cpu: number; memoryGb: number }>();
  for (const { execution: other, cpu, memoryGb } of input.held) {
    const scheduled = Date.parse(other.scheduled_at);
    // Allocated before this placement ran (those of the same moment were being placed with it) and not yet released.
    if (scheduled >= at || (other.completed_at !== null && Date.parse(other.completed_at) <= at)) continue;
    const sum = allocations.get(other.node_id) ?? { cpu: 0, memoryGb: 0 };
    sum.cpu += cpu;
    sum.memoryGb += memoryGb;
    allocations.set(other.node_id, sum);
  }
  const records = input.workersAt.get(execution.id) ?? [];
  const enrolmentOf = new Map(records.map((w) => [w.id, w.enrolled_by ?? null]));
  const ask: JobAsk = {
    jobId: job.id,
    cpu: job.required_cpu,
    memoryGb: job.required_memory,
    gpu: job.required_gpu,
    excluded: new Set(holders),
    ...(job.distinct_enrolments === true ? { excludedEnrolments: new Set(holders.map((id) => enrolmentOf.get(id) ?? UNKNOWN_PARTY)) } : {}),
  };
  const context: PlacementContext = { now: at, isReserved: () => false };
  const removed = new Map<string, number>(profile.filters.map((f) => [f.name, 0]));
  const best: { worker: WorkerCandidate; name: string; score: number }[] = [];
  for (const record of records) {
    const worker = candidateOf(record, allocations.get(record.id));
    const failed = firstFailure(profile, worker, ask, context);
    if (failed) {
      removed.set(failed.name, (removed.get(failed.name) ?? 0) + 1);
      continue;
    }
    const score = scoreNode(profile, worker, ask, context);
    if (best.length === top && !better(score, worker.id, best[top - 1]!.score, best[top - 1]!.worker.id)) continue;
    let i = best.length;
    while (i > 0 && better(score, worker.id, best[i - 1]!.score, best[i - 1]!.worker.id)) i--;
    best.splice(i, 0, { worker, name: record.name, score });
    if (best.length > top) best.pop();
  }
  return {
    executionId: execution.id,
    workerId: execution.node_id,
    placedAt: execution.scheduled_at,
    filters: profile.filters.map((f) => ({ name: f.name, removed: removed.get(f.name) ?? 0 })),
    candidates: best.map(({ worker, name, score }, i) => {
      const terms: Record<string, number> = {};
      for (const { plugin, weight } of profile.scorers) terms[plugin.name] = weight * plugin.score(worker, ask, context);
      return { workerId: worker.id, workerName: name, score, terms, chosen: i === 0 };
    }),
    agrees: best[0]?.worker.id === execution.node_id,
  };
}

export function explainJob(input: JobExplainInput): JobExplanation {
  const top = input.top ?? TOP_WORKERS;
  const executions = [...input.executions].sort((a, b) => (a.scheduled_at < b.scheduled_at ? -1 : a.scheduled_at > b.scheduled_at ? 1 : a.attempt - b.attempt));
  return {
    jobId: input.job.id,
    executions: executions.map((e) => explainOne(input, e, top)),
    approximations: [
      `CPU and memory held by other executions are derived from the executions of the coordinator's ${input.recentJobs} most recent jobs, scheduled before and not finished by each placement; executions of older jobs are not counted`,
      'worker records are the documents valid at each execution\'s scheduled time (heartbeats arrive every 30 s, so measured load may be up to that old)',
    ],
  };
}

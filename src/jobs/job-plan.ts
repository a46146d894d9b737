/**
 * The jobs coordinator's pure core (Nomad's reconciler shape): given one job's state, the reports
 * that arrived, the workers that were lost and `now`, return a plan: the executions to place (by
 * the job profile of the placement framework), the executions to stop and why, every execution
 * record changed and why, the verdict, and the reputation and credit changes per worker. No I/O,
 * no clock, no randomness but the injected `newId`; the coordinator persists the plan, then applies
 * it to memory, then tells workers (`src/jobs/coordinator.ts`).
 *
 *   reports ─┐
 *   lost ────┼─► apply to executions ─► timeouts, starvation ─► tally (verification.ts) ─► verdict
 *   now ─────┘                                                        │
 *                                          extend / waiting ─► placeMany (placement/framework.ts)
 *
 * Rules the property test holds (test/property/job-plan.property.test.ts):
 * - the same plan for every order the reports of one batch are listed in; the same verdict for
 *   every order and batching of arrivals; one report at a time in any order, also the same
 *   placements and per-worker totals (late results included). A batch may fail a doomed job before
 *   an extra is placed that one-at-a-time arrival would still have tried: extras are asked for
 *   only while consensus is reachable on what is known;
 * - an open job always has something outstanding (a running execution or a wanted slot that will
 *   be placed or abandoned within the scheduling timeout): it never waits on nothing;
 * - each execution is charged once, so a worker's counters always equal what its executions imply:
 *   `total_jobs_run` = executions that ended (reported, timed out, lost); `failed_jobs` = those whose
 *   own outcome is a failure or whose result disagreed; `successful_jobs_run` = agreeing results;
 *   reputation = +5 per agreeing and −10 per disagreeing result; credits = the job's
 *   `credits_required` per agreeing result. A failure the coordinator charged (a timeout) is
 *   withdrawn when the worker's own report arrives after all, and the report is charged instead.
 */
import type { Placed, Profile, Unplaceable } from '../placement/framework.ts';
import { place, placeMany } from '../placement/framework.ts';
import { ACTIVE_EXECUTION_STATUSES, FINAL_JOB_STATUSES, REPUTATION, type Job, type JobExecution } from './model.ts';
import { UNKNOWN_PARTY, type JobAsk, type WorkerCandidate } from './profile.ts';
import type { Report } from './reports.ts';
import { judgeLate, tally } from './verification.ts';
import type { WorkerChange } from './workers.ts';

/** The slots the verifier needs beside the executions (persisted with the job). */
export interface JobSlots {
  /** Executions wanted but not yet placed on a worker. */
  readonly unplaced: number;
  /** Wanted executions that found no worker in time; they count as failures. */
  readonly abandoned: number;
  /** Since when `unplaced` slots have waited (ms), or null. */
  readonly waitingSince: number | null;
}

/** What is stored per job: the API's job plus its slots. */
export interface StoredJob extends JobSlots {
  readonly job: Job;
}

export interface JobState extends StoredJob {
  /** In attempt order. */
  readonly executions: readonly JobExecution[];
}

export interface PlanRules {
  /** Allowance beyond an execution's own timeout for delivery and upload. */
  readonly executionGraceMs: number;
  /** How long a wanted execution may wait for an eligible worker before it counts as failed. */
  readonly schedulingTimeoutMs: number;
  readonly profile: Profile<WorkerCandidate, JobAsk>;
}

export interface PlanInput {
  readonly state: JobState;
  /** Reports that arrived for this job's executions, in any order. */
  readonly reports?: readonly Report[];
  /** Workers that went silent, node id → why: their running executions of this job fail. */
  readonly lost?: ReadonlyMap<string, string>;
  /** Every worker as placement sees it (allocations included); read only when something is placed or explained. */
  readonly workers: () => Iterable<WorkerCandidate>;
  readonly now: number;
  readonly rules: PlanRules;
  readonly newId: () => string;
}

export type PlanVerdict =
  | { readonly kind: 'open'; readonly outstanding: number; readonly reason: string }
  | { readonly kind: 'completed'; readonly hash: string; readonly votes: number; readonly decidedNow: boolean }
  | { readonly kind: 'failed'; readonly reason: string; readonly decidedNow: boolean };

/** An execution record the plan changed (or created), with every reason it changed. */
export interface ExecutionUpdate {
  readonly before: JobExecution | undefined;
  readonly execution: JobExecution;
  readonly reasons: readonly string[];
}

export interface Placement {
  readonly execution: JobExecution;
  readonly score: number;
  readonly reason: string;
}

/** An execution that ends without a result of its own. Superseded ones are cancelled on their worker. */
export interface Stop {
  readonly execution: JobExecution;
  readonly kind: 'superseded' | 'timed_out' | 'lost';
  readonly reason: string;
}

export type ReportOutcome = { readonly execution_id: string; readonly kind: 'recorded' | 'late' | 'duplicate' | 'unknown' };

export interface JobPlan {
  /** The job's state once the plan is applied, placed executions included. */
  readonly next: JobState;
  readonly place: readonly Placement[];
  readonly stop: readonly Stop[];
  /** Every changed or created execution, in attempt order. */
  readonly updates: readonly ExecutionUpdate[];
  readonly verdict: PlanVerdict;
  /** Per worker, ordered by node id; only workers whose counters change. */
  readonly workers: readonly WorkerChange[];
  readonly reports: readonly ReportOutcome[];
  /** True when the job record or its slots changed. */
  readonly jobChanged: boolean;
  /** Extra executions the verifier asked for (a failure or a split left consensus reachable only with more). */
  readonly extra: number;
  /** Why wanted executions are still unplaced, when they are. */
  readonly unplacedReason: string | undefined;
}

interface MutableChange {
  reputation: number;
  credits: number;
  total: number;
  failed: number;
  successful: number;
  reasons: string[];
}

const FAILED_BY_COORDINATOR = (e: JobExecution): boolean => (e.status === 'failed' || e.status === 'timed_out') && e.reported_at === null;

/** Reports in one canonical order; the first per execution counts, the rest are duplicates. */
function canonical(reports: readonly Report[]): readonly Report[] {
  if (reports.length < 2) return reports;
  const key = (r: Report): string => `${r.execution_id}\u0000${r.status}\u0000${r.result_hash ?? ''}\u0000${r.exit_code ?? ''}\u0000${r.error_message ?? ''}\u0000${r.duration_ms ?? ''}`;
  return [...reports].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

export function planJob(input: PlanInput): JobPlan {
  const { state, now, rules } = input;
  const at = new Date(now).toISOString();
  const decidedBefore = FINAL_JOB_STATUSES.has(state.job.status);
  let job = state.job;
  let slots: JobSlots = { unplaced: state.unplaced, abandoned: state.abandoned, waitingSince: state.waitingSince };
  const executions = [...state.executions];
  const indexOf = (id: string): number | undefined => {
    for (let i = 0; i < executions.length; i++) if (executions[i]!.id === id) return i;
    return undefined;
  };
  const reasons = new Map<string, string[]>();
  const changes = new Map<string, MutableChange>();
  const stops: Stop[] = [];
  const outcomes: ReportOutcome[] = [];

  const update = (i: number, next: JobExecution, why: string): void => {
    executions[i] = next;
    const list = reasons.get(next.id) ?? [];
    list.push(why);
    reasons.set(next.id, list);
  };
  const charge = (nodeId: string, delta: Partial<Omit<MutableChange, 'reasons'>>, why: string): void => {
    const change = changes.get(nodeId) ?? { reputation: 0, credits: 0, total: 0, failed: 0, successful: 0, reasons: [] };
    change.reputation += delta.reputation ?? 0;
    change.credits += delta.credits ?? 0;
    change.total += delta.total ?? 0;
    change.failed += delta.failed ?? 0;
    change.successful += delta.successful ?? 0;
    change.reasons.push(why);
    changes.set(nodeId, change);
  };
  const judge = (i: number, verdict: 'agree' | 'disagree', why: string): void => {
    const execution = executions[i]!;
    // A verdict is given once (null → agree/disagree), and only that transition moves the worker's counters.
    if (execution.verdict !== null) return;
    update(i, { ...execution, verdict }, why);
    if (verdict === 'agree') charge(execution.node_id, { reputation: REPUTATION.agree, successful: 1, credits: job.credits_required }, `+${REPUTATION.agree} and ${job.credits_required} credits: execution ${execution.id} of job ${job.id} agreed`);
    else charge(execution.node_id, { reputation: REPUTATION.disagree, failed: 1 }, `${REPUTATION.disagree}: execution ${execution.id} of job ${job.id} disagreed with the consensus`);
  };

  // 1. Reports: each execution's first report is recorded; a second is a duplicate.
  const taken = new Set<string>();
  for (const report of canonical(input.reports ?? [])) {
    const i = indexOf(report.execution_id);
    if (i === undefined) {
      outcomes.push({ execution_id: report.execution_id, kind: 'unknown' });
      continue;
    }
    const execution = executions[i]!;
    if (execution.reported_at !== null || taken.has(execution.id)) {
      outcomes.push({ execution_id: execution.id, kind: 'duplicate' });
      continue;
    }
    taken.add(execution.id);
    const wasActive = ACTIVE_EXECUTION_STATUSES.has(execution.status);
    const late = !wasActive || decidedBefore;
    outcomes.push({ execution_id: execution.id, kind: late ? 'late' : 'recorded' });
    const reported: JobExecution = {
      ...execution,
      status: report.status,
      started_at: execution.started_at ?? at,
      completed_at: at,
      reported_at: at,
      result: report.result,
      result_encoding: report.result_encoding,
      result_hash: report.result_hash,
      claimed_hash: report.claimed_hash,
      exit_code: report.exit_code,
      duration_ms: report.duration_ms,
      error_message: report.error_message,
      logs: report.logs,
    };
    update(i, reported, `reported ${report.status}${late ? ' (late)' : ''}`);
    const failed = report.status === 'completed' ? 0 : 1;
    if (FAILED_BY_COORDINATOR(execution)) {
      charge(execution.node_id, { failed: failed - 1 }, `execution ${execution.id} reported ${report.status} after the coordinator had given up on it: its own outcome counts instead`);
    } else {
      charge(execution.node_id, { total: 1, failed }, `execution ${execution.id} reported ${report.status}`);
    }
    if (decidedBefore && report.result_hash !== null) {
      // A late result for a decided job: judged against the consensus, so a slow honest worker still earns and a slow liar still pays.
      const verdict = judgeLate(job.result_hash, report.result_hash);
      if (verdict !== null) judge(i, verdict, `judged late against the consensus: ${verdict}`);
    }
  }

  let starved: string | undefined;
  if (!decidedBefore) {
    // 2. Executions on workers that went silent fail.
    const lost = input.lost ?? new Map<string, string>();
    executions.forEach((execution, i) => {
      const why = lost.get(execution.node_id);
      if (why === undefined || !ACTIVE_EXECUTION_STATUSES.has(execution.status)) return;
      const failed: JobExecution = { ...execution, status: 'failed', completed_at: at, error_message: why };
      update(i, failed, why);
      stops.push({ execution: failed, kind: 'lost', reason: why });
      charge(execution.node_id, { total: 1, failed: 1 }, `execution ${execution.id} failed: ${why}`);
    });
    // 3. Executions past their timeout and grace fail.
    // ISO-8601 instants of one format order as strings do: one conversion per plan, not a parse per execution.
    const overdueBefore = new Date(now - job.timeout_seconds * 1000 - rules.executionGraceMs).toISOString();
    executions.forEach((execution, i) => {
      if (!ACTIVE_EXECUTION_STATUSES.has(execution.status)) return;
      if ((execution.started_at ?? execution.scheduled_at) >= overdueBefore) return;
      const why = `no result within ${job.timeout_seconds} s plus ${rules.executionGraceMs / 1000} s grace`;
      const timedOut: JobExecution = { ...execution, status: 'timed_out', completed_at: at, error_message: why };
      update(i, timedOut, why);
      stops.push({ execution: timedOut, kind: 'timed_out', reason: why });
      charge(execution.node_id, { total: 1, failed: 1 }, `execution ${execution.id} timed out`);
    });
    // 4. Wanted executions that waited too long for a worker are abandoned, so the job still ends.
    if (slots.unplaced > 0 && slots.waitingSince !== null && now - slots.waitingSince > rules.schedulingTimeoutMs) {
      const reason = place(rules.profile, input.workers(), askOf(job, executions), { now, isReserved: () => false }, `an execution of job ${job.id}`);
      starved = `${slots.unplaced} wanted ${slots.unplaced === 1 ? 'execution' : 'executions'} found no worker within ${Math.round(rules.schedulingTimeoutMs / 1000)} s (${reason.kind === 'none' ? reason.reason : 'workers were busy'})`;
      slots = { unplaced: 0, abandoned: slots.abandoned + slots.unplaced, waitingSince: null };
    }
  }

  // 5. Decide.
  let verdict: PlanVerdict;
  const placements: Placement[] = [];
  let unplacedReason: string | undefined;
  let extra = 0;
  if (decidedBefore) {
    verdict = job.status === 'completed' ? { kind: 'completed', hash: job.result_hash ?? '', votes: executions.filter((e) => e.verdict === 'agree').length, decidedNow: false } : { kind: 'failed', reason: job.error_message ?? 'failed', decidedNow: false };
  } else {
    let decision = tally(job, executions, slots);
    // Wanted executions just found no worker in time: asking for more would only wait again.
    if (decision.kind === 'extend' && starved !== undefined) decision = { kind: 'unreachable', reason: `consensus ${job.consensus} of ${job.redundancy} is out of reach: ${starved}` };
    if (decision.kind === 'consensus') {
      const agreeing = new Set(decision.agreeing);
      const disagreeing = new Set(decision.disagreeing);
      let winner: JobExecution | undefined;
      executions.forEach((execution, i) => {
        if (agreeing.has(execution.id)) {
          winner ??= execution;
          judge(i, 'agree', `agrees with the consensus ${decision.hash.slice(0, 12)}…`);
        } else if (disagreeing.has(execution.id)) {
          judge(i, 'disagree', `disagrees with the consensus ${decision.hash.slice(0, 12)}…`);
        } else if (ACTIVE_EXECUTION_STATUSES.has(execution.status)) {
          const why = 'superseded: consensus was reached without it';
          const cancelled: JobExecution = { ...execution, status: 'cancelled', completed_at: at, error_message: why };
          update(i, cancelled, why);
          stops.push({ execution: cancelled, kind: 'superseded', reason: why });
        }
      });
      job = { ...job, status: 'completed', completed_at: at, result: winner?.result ?? null, result_encoding: winner?.result_encoding ?? null, result_hash: decision.hash, error_message: null };
      slots = { ...slots, unplaced: 0, waitingSince: null };
      verdict = { kind: 'completed', hash: decision.hash, votes: decision.votes, decidedNow: true };
    } else if (decision.kind === 'unreachable') {
      executions.forEach((execution, i) => {
        if (!ACTIVE_EXECUTION_STATUSES.has(execution.status)) return;
        const why = 'superseded: the job failed';
        const cancelled: JobExecution = { ...execution, status: 'cancelled', completed_at: at, error_message: why };
        update(i, cancelled, why);
        stops.push({ execution: cancelled, kind: 'superseded', reason: why });
      });
      job = { ...job, status: 'failed', completed_at: at, error_message: decision.reason };
      slots = { ...slots, unplaced: 0, waitingSince: null };
      verdict = { kind: 'failed', reason: decision.reason, decidedNow: true };
    } else {
      const why = decision.kind === 'extend' ? `extra: ${decision.reason}` : executions.length === 0 ? 'first round' : 'a wanted execution';
      if (decision.kind === 'extend') {
        extra = decision.extra;
        slots = { ...slots, unplaced: slots.unplaced + decision.extra, waitingSince: slots.waitingSince ?? now };
      }
      // 6. Place what is wanted, each on a worker that holds no execution of this job.
      if (slots.unplaced > 0) {
        const { placed, shortfall } = placeSlots(rules.profile, input.workers(), job, executions, now, slots.unplaced);
        for (const { node, score } of placed) {
          const execution = scheduledExecution(job.id, node.id, executions.length + 1, input.newId(), at);
          executions.push(execution);
          reasons.set(execution.id, [`placed (${why}) on the best worker, score ${Math.round(score * 100) / 100}`]);
          placements.push({ execution, score, reason: why });
        }
        slots = { ...slots, unplaced: slots.unplaced - placed.length };
        if (slots.unplaced === 0) slots = { ...slots, waitingSince: null };
        else unplacedReason = shortfall?.reason;
        if (placed.length > 0 && job.status === 'pending') job = { ...job, status: 'running', started_at: at };
      }
      const outstanding = executions.filter((e) => ACTIVE_EXECUTION_STATUSES.has(e.status)).length + slots.unplaced;
      verdict = { kind: 'open', outstanding, reason: decision.kind === 'extend' ? decision.reason : `waiting for ${outstanding} outstanding ${outstanding === 1 ? 'execution' : 'executions'}` };
    }
  }

  // Executions are only ever appended, so an execution's position is the same before and after.
  const updates: ExecutionUpdate[] = [];
  executions.forEach((execution, i) => {
    const why = reasons.get(execution.id);
    if (why) updates.push({ before: state.executions[i], execution, reasons: why });
  });
  const workers: WorkerChange[] = [...changes.entries()]
    .filter(([, c]) => c.reputation !== 0 || c.credits !== 0 || c.total !== 0 || c.failed !== 0 || c.successful !== 0)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([nodeId, c]) => ({ node_id: nodeId, reputation: c.reputation, credits: c.credits, total: c.total, failed: c.failed, successful: c.successful, reasons: c.reasons }));
  const jobChanged = job !== state.job || slots.unplaced !== state.unplaced || slots.abandoned !== state.abandoned || slots.waitingSince !== state.waitingSince;
  return {
    next: { job, ...slots, executions },
    place: placements,
    stop: stops,
    updates,
    verdict,
    workers,
    reports: outcomes,
    jobChanged,
    extra,
    unplacedReason,
  };
}

function askOf(job: Job, executions: readonly JobExecution[], enrolmentOf?: ReadonlyMap<string, string | null>, alsoOn: readonly string[] = []): JobAsk {
  const holders = [...executions.map((e) => e.node_id), ...alsoOn];
  return {
    jobId: job.id,
    cpu: job.required_cpu,
    memoryGb: job.required_memory,
    gpu: job.required_gpu,
    excluded: new Set(holders),
    ...(enrolmentOf ? { excludedEnrolments: new Set(holders.map((id) => enrolmentOf.get(id) ?? UNKNOWN_PARTY)) } : {}),
  };
}

/**
 * The best workers for `count` executions. Without `distinct_enrolments` one pass does it
 * (placeMany). With it, each pick changes who may take the next (its party is used up), which
 * placeMany's one pass cannot see, so the slots are placed one at a time.
 */
function placeSlots(
  profile: Profile<WorkerCandidate, JobAsk>,
  workers: Iterable<WorkerCandidate>,
  job: Job,
  executions: readonly JobExecution[],
  now: number,
  count: number,
): { placed: Placed<WorkerCandidate>[]; shortfall: Unplaceable | undefined } {
  const subject = `an execution of job ${job.id}`;
  if (job.distinct_enrolments !== true) return placeMany(profile, workers, askOf(job, executions), { now, isReserved: () => false }, count, subject);
  const candidates = [...workers];
  const enrolmentOf = new Map(candidates.map((c) => [c.id, c.enrolledBy]));
  const placed: Placed<WorkerCandidate>[] = [];
  for (let slot = 0; slot < count; slot++) {
    const outcome = place(profile, candidates, askOf(job, executions, enrolmentOf, placed.map((p) => p.node.id)), { now, isReserved: () => false }, subject);
    if (outcome.kind !== 'placed') return { placed, shortfall: outcome };
    placed.push(outcome);
  }
  return { placed, shortfall: undefined };
}

/** A new execution record, scheduled on its worker and not yet received. */
export function scheduledExecution(jobId: string, nodeId: string, attempt: number, id: string, at: string): JobExecution {
  return {
    id,
    job_id: jobId,
    node_id: nodeId,
    status: 'scheduled',
    attempt,
    scheduled_at: at,
    started_at: null,
    completed_at: null,
    reported_at: null,
    result: null,
    result_encoding: null,
    result_hash: null,
    claimed_hash: null,
    exit_code: null,
    duration_ms: null,
    error_message: null,
    logs: null,
    verdict: null,
  };
}

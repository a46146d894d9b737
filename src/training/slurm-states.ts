/**
 * What Slurm says about a job, in ArcNet's words: the records `scontrol show job --oneliner` prints,
 * read into fields, and every Slurm job state mapped to an HpcRunState with a reason sentence that
 * names the exit code or signal. Pure: the adapter (./slurm-scheduler.ts) runs the commands.
 *
 * An unknown state is reported as `running` with recognised:false and its word in the reason: a
 * state Slurm added after 22.05 is more likely a new flavour of "still busy" than an ending, and
 * calling a job that may still be running `failed` would let the bridge submit it again beside
 * itself. The bridge's own time limit ends a job whose state never becomes one we know.
 */
import { constants } from 'node:os';
import type { HpcJobStatus, HpcRunState } from './ports.ts';

/** ArcNet's HPC job ids become Slurm job names with this prefix, so they can be found again. */
export const JOB_NAME_PREFIX = 'arcnet-';

interface StateRule {
  readonly state: HpcRunState;
  /** What the word means, for the reason sentence. */
  readonly meaning: string;
  /** The job has ended: its exit code and signal are its outcome. */
  readonly ended: boolean;
}

/**
 * Every state and state flag Slurm 22.05 prints (src/common/slurm_protocol_defs.c job_state_string),
 * plus the ones squeue/sacct spell differently. Flags that replace the base state in scontrol's
 * output (COMPLETING, CONFIGURING, REQUEUED, RESIZING, ...) are here too.
 */
export const SLURM_STATES: Readonly<Record<string, StateRule>> = {
  PENDING: { state: 'queued', meaning: 'waiting to start', ended: false },
  CONFIGURING: { state: 'queued', meaning: 'allocated, waiting for its nodes to be ready', ended: false },
  REQUEUED: { state: 'queued', meaning: 'requeued to run again', ended: false },
  REQUEUE_HOLD: { state: 'queued', meaning: 'requeued and held until released', ended: false },
  REQUEUE_FED: { state: 'queued', meaning: 'requeued by the federation', ended: false },
  RESV_DEL_HOLD: { state: 'queued', meaning: 'held after its reservation was deleted', ended: false },
  POWER_UP_NODE: { state: 'queued', meaning: 'waiting for a node to power up', ended: false },
  RUNNING: { state: 'running', meaning: 'running', ended: false },
  COMPLETING: { state: 'running', meaning: 'ending (its processes are being cleaned up)', ended: false },
  SUSPENDED: { state: 'running', meaning: 'started, then paused by an operator or the scheduler', ended: false },
  STOPPED: { state: 'running', meaning: 'started, then stopped (SIGSTOP) with its resources kept', ended: false },
  SIGNALING: { state: 'running', meaning: 'being sent a signal', ended: false },
  RESIZING: { state: 'running', meaning: 'changing size', ended: false },
  STAGE_OUT: { state: 'running', meaning: 'staging out its burst buffer', ended: false },
  UPDATE_DB: { state: 'running', meaning: 'being recorded in the database', ended: false },
  COMPLETED: { state: 'completed', meaning: 'completed', ended: true },
  FAILED: { state: 'failed', meaning: 'failed', ended: true },
  TIMEOUT: { state: 'failed', meaning: 'over its time limit', ended: true },
  OUT_OF_MEMORY: { state: 'failed', meaning: 'ran out of memory', ended: true },
  NODE_FAIL: { state: 'failed', meaning: 'its node failed', ended: true },
  BOOT_FAIL: { state: 'failed', meaning: 'its node failed to boot', ended: true },
  LAUNCH_FAILED: { state: 'failed', meaning: 'Slurm could not launch it', ended: true },
  RECONFIG_FAIL: { state: 'failed', meaning: 'its node failed to reconfigure', ended: true },
  DEADLINE: { state: 'failed', meaning: 'past its deadline', ended: true },
  PREEMPTED: { state: 'failed', meaning: 'preempted by a higher-priority job and not requeued', ended: true },
  // Federation: the job started on another cluster; from here it is gone, and ArcNet does not follow it.
  REVOKED: { state: 'failed', meaning: 'revoked from this cluster (a federation sibling took it)', ended: true },
  // A site rule (usually EpilogSlurmctld) requeued it held after a particular exit code; it runs again
  // only if an operator releases it, so ArcNet takes the exit as the outcome.
  SPECIAL_EXIT: { state: 'failed', meaning: 'held after a special exit code (a site rule)', ended: true },
  CANCELLED: { state: 'cancelled', meaning: 'cancelled', ended: true },
};

/** sacct's and squeue's abbreviations, for callers that read those. */
const ABBREVIATIONS: Readonly<Record<string, string>> = {
  PD: 'PENDING', CF: 'CONFIGURING', RQ: 'REQUEUED', RH: 'REQUEUE_HOLD', RF: 'REQUEUE_FED', RD: 'RESV_DEL_HOLD', PO: 'POWER_UP_NODE',
  R: 'RUNNING', CG: 'COMPLETING', S: 'SUSPENDED', ST: 'STOPPED', SI: 'SIGNALING', RS: 'RESIZING', SO: 'STAGE_OUT', UD: 'UPDATE_DB',
  CD: 'COMPLETED', F: 'FAILED', TO: 'TIMEOUT', OOM: 'OUT_OF_MEMORY', NF: 'NODE_FAIL', BF: 'BOOT_FAIL', DL: 'DEADLINE',
  PR: 'PREEMPTED', RV: 'REVOKED', SE: 'SPECIAL_EXIT', CA: 'CANCELLED',
};

/** One job as `scontrol show job --oneliner` prints it, the fields the mapping needs. */
export interface SlurmJobRecord {
  readonly jobId: string;
  readonly jobName: string;
  /** The word as Slurm printed it (`CANCELLED`, `FAILED`, or sacct's `CANCELLED by 0`). */
  readonly jobState: string;
  /** Slurm's Reason= (`None`, `NonZeroExitCode`, `Resources`, ...). */
  readonly reason: string;
  readonly exitCode: number | undefined;
  readonly signal: number | undefined;
  /** TimeLimit= as printed: `[days-]hh:mm:ss`, `UNLIMITED`, `Partition_Limit`. */
  readonly timeLimit: string;
}

const field = (line: string, key: string): string | undefined => new RegExp(`(?:^| )${key}=(\\S*)`).exec(line)?.[1];

/**
 * Reads scontrol's one-line-per-job listing. JobName is the one field that may hold spaces (a
 * user's free text), so it is read up to the UserId= that always follows it.
 */
export function parseJobRecords(text: string): SlurmJobRecord[] {
  const records: SlurmJobRecord[] = [];
  for (const line of text.split('\n')) {
    const jobId = /^JobId=(\S+)/.exec(line)?.[1];
    if (jobId === undefined) continue;
    const exit = /(?:^| )ExitCode=(\d+):(\d+)/.exec(line);
    records.push({
      jobId,
      jobName: / JobName=(.*?) UserId=/.exec(line)?.[1] ?? field(line, 'JobName') ?? '',
      jobState: field(line, 'JobState') ?? '',
      reason: field(line, 'Reason') ?? 'None',
      exitCode: exit === null ? undefined : Number(exit[1]),
      signal: exit === null ? undefined : Number(exit[2]),
      timeLimit: field(line, 'TimeLimit') ?? 'UNLIMITED',
    });
  }
  return records;
}

/** `CANCELLED by 0` → CANCELLED (by uid 0); `CANCELLED+` (sacct's truncation mark) → CANCELLED; `cd` → COMPLETED. */
export function normaliseState(word: string): { readonly state: string; readonly byUid: string | undefined } {
  const [first = '', ...rest] = word.trim().split(/\s+/);
  const bare = first.replace(/\+$/, '').toUpperCase();
  const byUid = rest[0] === 'by' && rest[1] !== undefined ? rest[1] : undefined;
  return { state: ABBREVIATIONS[bare] ?? bare, byUid };
}

/** `00:01:00` → "1 min"; `1-02:00:00` → "1560 min"; UNLIMITED as it is. */
export function describeTimeLimit(limit: string): string {
  const match = /^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$/.exec(limit);
  if (match === null) return limit.toLowerCase().replace(/_/g, ' ');
  const [, days = '0', hours = '0', minutes = '0', seconds = '0'] = match;
  const total = ((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60 + Number(seconds);
  return total % 60 === 0 ? `${total / 60} min` : `${total} s`;
}

const SIGNAL_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(constants.signals).map(([name, number]) => [number, name]));

const signalText = (signal: number): string => {
  const name = SIGNAL_NAMES.get(signal);
  return name === undefined ? `signal ${signal}` : `signal ${signal} (${name})`;
};

/** ArcNet's id from a Slurm job name, or undefined for a job ArcNet did not name. */
export function jobIdFromName(jobName: string): string | undefined {
  return jobName.startsWith(JOB_NAME_PREFIX) && jobName.length > JOB_NAME_PREFIX.length ? jobName.slice(JOB_NAME_PREFIX.length) : undefined;
}

/** The HpcJobStatus for one of scontrol's records. */
export function jobStatus(record: SlurmJobRecord): HpcJobStatus {
  const { state: word, byUid } = normaliseState(record.jobState);
  const rule = SLURM_STATES[word];
  const base = { schedulerJobId: record.jobId, jobId: jobIdFromName(record.jobName), nativeState: word };
  const slurmReason = record.reason !== '' && record.reason !== 'None' && record.reason !== '(null)' ? ` (Slurm: ${record.reason})` : '';
  if (rule === undefined) {
    return {
      ...base,
      nativeState: record.jobState,
      state: 'running',
      recognised: false,
      reason: `Slurm reports state ${record.jobState || '(empty)'}, which ArcNet does not know; taken as still running until Slurm reports one it knows${slurmReason}`,
    };
  }
  if (!rule.ended) return { ...base, state: rule.state, recognised: true, reason: `${word}: ${rule.meaning}${slurmReason}` };

  const exitCode = record.exitCode;
  const signal = record.signal !== undefined && record.signal !== 0 ? record.signal : undefined;
  const outcome = [
    exitCode === undefined ? undefined : `exit code ${exitCode}`,
    signal === undefined ? undefined : `killed by ${signalText(signal)}`,
  ].filter((part) => part !== undefined).join(', ');
  let reason: string;
  if (word === 'COMPLETED' || word === 'FAILED') reason = `${word} with ${outcome || 'no exit code recorded'}${word === 'FAILED' ? slurmReason : ''}`;
  else if (word === 'TIMEOUT') reason = `TIMEOUT: over its ${describeTimeLimit(record.timeLimit)} limit`;
  else if (word === 'CANCELLED') reason = `CANCELLED${byUid === undefined ? '' : ` by uid ${byUid}`}${signal === undefined ? '' : ` (${signalText(signal)})`}`;
  else reason = `${word}: ${rule.meaning}${outcome === '' ? '' : ` (${outcome})`}${slurmReason}`;
  return {
    ...base,
    state: rule.state,
    recognised: true,
    ...(exitCode === undefined ? {} : { exitCode }),
    ...(signal === undefined ? {} : { signal }),
    reason,
  };
}

/** The word an unlisted job is reported with: Slurm has none for it. */
export const NOT_LISTED = 'NOT_LISTED';

/**
 * A job the controller no longer lists. Without slurmdbd there is no record of how it ended, so
 * the outcome is unknown: `failed`, said as such, never assumed completed.
 */
export function unlistedJobStatus(schedulerJobId: string, minJobAge = 'MinJobAge'): HpcJobStatus {
  return {
    schedulerJobId,
    jobId: undefined,
    state: 'failed',
    nativeState: NOT_LISTED,
    recognised: true,
    reason: `Slurm no longer knows job ${schedulerJobId} (ended more than ${minJobAge} ago, or lost); its outcome is unknown`,
  };
}

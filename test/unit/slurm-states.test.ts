/**
 * Slurm's words in ArcNet's: scontrol's records are read field by field (JobName may hold spaces),
 * every state Slurm 22.05 prints maps to a run state with a reason naming the exit code or signal,
 * an unknown state is surfaced (running, recognised:false, with its word), and which command
 * failures are worth a retry.
 */
import { describe, expect, it } from 'vitest';
import { commandFailure } from '../../src/training/slurm-commands.ts';
import { describeTimeLimit, jobStatus, normaliseState, parseJobRecords, SLURM_STATES, unlistedJobStatus, type SlurmJobRecord } from '../../src/training/slurm-states.ts';

// Captured from this machine's Slurm 22.05 (`exit 3`, then `kill -9 $$`, then scancel of a sleep).
const LISTING = [
  'JobId=1 JobName=sbatch UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:01 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-12-02T05:02:16 WorkDir=/tmp/sl StdOut=/tmp/sl/slurm-1.out Power= ',
  'JobId=2 JobName=sbatch UserId=root(0) GroupId=root(0) MCS_label=N/A JobState=FAILED Reason=JobLaunchFailure Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:9 DerivedExitCode=0:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A',
  'JobId=3 JobName=arcnet-x1 UserId=root(0) GroupId=root(0) JobState=CANCELLED Reason=None Dependency=(null) ExitCode=0:15 RunTime=00:00:02 TimeLimit=00:01:00 TimeMin=N/A',
  'JobId=4 JobName=my job with spaces UserId=root(0) GroupId=root(0) JobState=PENDING Reason=Resources Dependency=(null) ExitCode=0:0 TimeLimit=1-00:00:00',
  '',
].join('\n');

const record = (over: Partial<SlurmJobRecord>): SlurmJobRecord => ({
  jobId: '7', jobName: 'arcnet-h1', jobState: 'RUNNING', reason: 'None', exitCode: 0, signal: 0, timeLimit: 'UNLIMITED', ...over,
});

describe('parseJobRecords', () => {
  it('reads every job line, the fields the mapping needs', () => {
    const records = parseJobRecords(LISTING);
    expect(records.map((r) => r.jobId)).toEqual(['1', '2', '3', '4']);
    expect(records[0]).toEqual({ jobId: '1', jobName: 'sbatch', jobState: 'FAILED', reason: 'NonZeroExitCode', exitCode: 3, signal: 0, timeLimit: 'UNLIMITED' });
    // ExitCode, not DerivedExitCode.
    expect(records[1]).toMatchObject({ exitCode: 0, signal: 9 });
    expect(records[2]).toMatchObject({ jobName: 'arcnet-x1', timeLimit: '00:01:00' });
    expect(records[3]).toMatchObject({ jobName: 'my job with spaces', jobState: 'PENDING', reason: 'Resources' });
  });

  it('reads "No jobs in the system" as no records', () => {
    expect(parseJobRecords('No jobs in the system\n')).toEqual([]);
  });
});

describe('jobStatus', () => {
  it('maps the observed outcomes: exit 3, kill -9, scancel', () => {
    const [exit3, killed, cancelled] = parseJobRecords(LISTING).map(jobStatus);
    expect(exit3).toEqual({ schedulerJobId: '1', jobId: undefined, state: 'failed', nativeState: 'FAILED', recognised: true, exitCode: 3, reason: 'FAILED with exit code 3 (Slurm: NonZeroExitCode)' });
    expect(killed).toMatchObject({ state: 'failed', exitCode: 0, signal: 9, reason: 'FAILED with exit code 0, killed by signal 9 (SIGKILL) (Slurm: JobLaunchFailure)' });
    expect(cancelled).toMatchObject({ state: 'cancelled', jobId: 'x1', signal: 15, reason: 'CANCELLED (signal 15 (SIGTERM))' });
  });

  it('says COMPLETED with its exit code, and gives a running job no exit code', () => {
    expect(jobStatus(record({ jobState: 'COMPLETED' }))).toMatchObject({ state: 'completed', exitCode: 0, reason: 'COMPLETED with exit code 0' });
    const running = jobStatus(record({}));
    expect(running).toEqual({ schedulerJobId: '7', jobId: 'h1', state: 'running', nativeState: 'RUNNING', recognised: true, reason: 'RUNNING: running' });
  });

  it('names the limit a TIMEOUT went over', () => {
    expect(jobStatus(record({ jobState: 'TIMEOUT', timeLimit: '00:01:00', signal: 15 }))).toMatchObject({ state: 'failed', reason: 'TIMEOUT: over its 1 min limit', signal: 15 });
  });

  it('says why a pending job waits', () => {
    expect(jobStatus(record({ jobState: 'PENDING', reason: 'Resources' }))).toMatchObject({ state: 'queued', reason: 'PENDING: waiting to start (Slurm: Resources)' });
  });

  it.each([
    ['PENDING', 'queued'], ['CONFIGURING', 'queued'], ['REQUEUED', 'queued'], ['REQUEUE_HOLD', 'queued'], ['REQUEUE_FED', 'queued'],
    ['RESV_DEL_HOLD', 'queued'], ['POWER_UP_NODE', 'queued'],
    ['RUNNING', 'running'], ['COMPLETING', 'running'], ['SUSPENDED', 'running'], ['STOPPED', 'running'], ['SIGNALING', 'running'],
    ['RESIZING', 'running'], ['STAGE_OUT', 'running'], ['UPDATE_DB', 'running'],
    ['COMPLETED', 'completed'],
    ['FAILED', 'failed'], ['TIMEOUT', 'failed'], ['OUT_OF_MEMORY', 'failed'], ['NODE_FAIL', 'failed'], ['BOOT_FAIL', 'failed'],
    ['LAUNCH_FAILED', 'failed'], ['RECONFIG_FAIL', 'failed'], ['DEADLINE', 'failed'], ['PREEMPTED', 'failed'], ['REVOKED', 'failed'],
    ['SPECIAL_EXIT', 'failed'],
    ['CANCELLED', 'cancelled'],
  ] as const)('%s → %s, recognised, its word kept', (word, state) => {
    const status = jobStatus(record({ jobState: word, exitCode: 2, signal: 0 }));
    expect(status).toMatchObject({ state, nativeState: word, recognised: true });
    expect(status.reason.startsWith(word)).toBe(true);
    // Only an ended job carries an exit code, and its reason names it (TIMEOUT names its limit instead).
    if (SLURM_STATES[word]!.ended) {
      expect(status.exitCode).toBe(2);
      if (word !== 'TIMEOUT' && word !== 'CANCELLED') expect(status.reason).toContain('exit code 2');
    } else {
      expect(status.exitCode).toBeUndefined();
    }
  });

  it('every state in the table is covered above', () => {
    expect(Object.keys(SLURM_STATES).length).toBe(28);
  });

  it('reads sacct forms: a trailing +, "CANCELLED by <uid>", abbreviations', () => {
    expect(jobStatus(record({ jobState: 'CANCELLED by 1000', signal: 0 }))).toMatchObject({ state: 'cancelled', nativeState: 'CANCELLED', reason: 'CANCELLED by uid 1000' });
    expect(jobStatus(record({ jobState: 'CANCELLED+' }))).toMatchObject({ state: 'cancelled', recognised: true });
    expect(jobStatus(record({ jobState: 'OUT_OF_ME+', exitCode: 0, signal: 9 }))).toMatchObject({ recognised: false, state: 'running', nativeState: 'OUT_OF_ME+' });
    expect(normaliseState('CD')).toEqual({ state: 'COMPLETED', byUid: undefined });
    expect(normaliseState('oom')).toEqual({ state: 'OUT_OF_MEMORY', byUid: undefined });
  });

  it('surfaces an unknown state as running with its word, not recognised', () => {
    const status = jobStatus(record({ jobState: 'WARPED', reason: 'Cosmic' }));
    expect(status).toMatchObject({ state: 'running', recognised: false, nativeState: 'WARPED' });
    expect(status.reason).toBe("Slurm reports state WARPED, which ArcNet does not know; taken as still running until Slurm reports one it knows (Slurm: Cosmic)");
  });

  it('names the outcome of other endings', () => {
    expect(jobStatus(record({ jobState: 'OUT_OF_MEMORY', exitCode: 0, signal: 9 })).reason).toBe('OUT_OF_MEMORY: ran out of memory (exit code 0, killed by signal 9 (SIGKILL))');
    expect(jobStatus(record({ jobState: 'NODE_FAIL', exitCode: 0, signal: 0 })).reason).toBe('NODE_FAIL: its node failed (exit code 0)');
  });
});

describe('unlistedJobStatus', () => {
  it('is failed with the outcome said to be unknown, never completed', () => {
    expect(unlistedJobStatus('42')).toEqual({
      schedulerJobId: '42', jobId: undefined, state: 'failed', nativeState: 'NOT_LISTED', recognised: true,
      reason: 'Slurm no longer knows job 42 (ended more than MinJobAge ago, or lost); its outcome is unknown',
    });
  });
});

describe('describeTimeLimit', () => {
  it.each([['00:01:00', '1 min'], ['1-02:00:00', '1560 min'], ['30:00', '30 min'], ['00:00:45', '45 s'], ['UNLIMITED', 'unlimited'], ['Partition_Limit', 'partition limit']])('%s → %s', (limit, text) => {
    expect(describeTimeLimit(limit)).toBe(text);
  });
});

describe('commandFailure', () => {
  it('an unreachable controller is retryable and says so', () => {
    const error = commandFailure('scontrol', 1, 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n');
    expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(error.message).toContain('slurmctld is unreachable');
  });

  it('a munge failure is retryable', () => {
    expect(commandFailure('sbatch', 1, 'sbatch: error: Munge encode failed: Failed to access "/run/munge/munge.socket.2": No such file or directory')).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
  });

  it('sbatch refusing the job is final, with its words', () => {
    const error = commandFailure('sbatch', 1, 'sbatch: error: Invalid --time specification\n');
    expect(error).toMatchObject({ code: 'INVALID_INPUT', retryable: false });
    expect(error.message).toContain('Invalid --time specification');
  });
});

/**
 * The jobs coordinator's pure core (`planJob`), one rule at a time: which report counts and how it
 * is classified (recorded, late, duplicate, unknown), what a lost worker or a timeout at exactly its
 * boundary does, when wanted slots are abandoned, how the verdict is reached and written, and what
 * each worker is charged (seed 004 / ADR 0008: +5 and the job's credits per agreeing result, −10 per
 * disagreeing one, every ended execution counted once).
 */
import { describe, expect, it } from 'vitest';
import { planJob, type JobPlan, type JobState, type PlanInput, type PlanRules } from '../../src/jobs/job-plan.ts';
import { jobProfile, type WorkerCandidate } from '../../src/jobs/profile.ts';
import type { ExecutionStatus, Job, JobExecution } from '../../src/jobs/model.ts';
import type { Report } from '../../src/jobs/reports.ts';

const T0 = Date.parse('2026-03-01T12:00:00.000Z');
const NOW = T0 + 10 * 60_000;
const AT = new Date(NOW).toISOString();
const iso = (ms: number): string => new Date(ms).toISOString();
const RULES: PlanRules = { executionGraceMs: 5_000, schedulingTimeoutMs: 120_000, profile: jobProfile() };
const HASH = 'a'.repeat(12) + 'b'.repeat(52);
const OTHER = 'c'.repeat(64);

function jobOf(overrides: Partial<Job> = {}): Job {
  return {
    id: 'job-1', name: 'unit', description: null, docker_image: 'arcnet/busybox:test', command: ['true'], environment: {}, input_data: null,
    required_cpu: 1, required_memory: 0.5, required_gpu: false, redundancy: 3, consensus: 2, max_executions: 5, timeout_seconds: 60, network: false,
    status: 'running', submitted_by: null, submitted_at: iso(T0), started_at: iso(T0), completed_at: null, result: null, result_encoding: null,
    result_hash: null, error_message: null, credits_required: 2, ...overrides,
  };
}

function exec(id: string, node: string, status: ExecutionStatus, overrides: Partial<JobExecution> = {}): JobExecution {
  const ended = status !== 'scheduled' && status !== 'running';
  return {
    id, job_id: 'job-1', node_id: node, status, attempt: Number(id.replace(/\D/g, '')) || 1, scheduled_at: iso(NOW - 1_000), started_at: status === 'scheduled' ? null : iso(NOW - 1_000),
    completed_at: ended ? iso(NOW - 500) : null, reported_at: null, result: null, result_encoding: null, result_hash: null, claimed_hash: null, exit_code: null,
    duration_ms: null, error_message: null, logs: null, verdict: null, ...overrides,
  };
}

/** A completed execution whose own report arrived, with its result. */
const done = (id: string, node: string, hash: string, overrides: Partial<JobExecution> = {}): JobExecution =>
  exec(id, node, 'completed', { reported_at: iso(NOW - 500), result: `out-${hash.slice(0, 4)}`, result_encoding: 'utf8', result_hash: hash, exit_code: 0, ...overrides });

function report(id: string, status: Report['status'], hash: string | null = null, overrides: Partial<Report> = {}): Report {
  return {
    execution_id: id, status, result_hash: hash, result: hash === null ? null : `out-${hash.slice(0, 4)}`, result_encoding: hash === null ? null : 'utf8',
    claimed_hash: hash, exit_code: status === 'completed' ? 0 : 1, duration_ms: 10, error_message: status === 'completed' ? null : `it ${status}`, logs: 'log', ...overrides,
  };
}

function worker(id: string, overrides: Partial<WorkerCandidate> = {}): WorkerCandidate {
  return { id, online: true, reputation: 100, cpuCores: 4, memoryGb: 8, gpu: false, allocatedCpu: 0, allocatedMemoryGb: 0, cpuUsage: 0, enrolledBy: null, ...overrides };
}

const noWorkers = (): Iterable<WorkerCandidate> => {
  throw new Error('workers read although nothing is placed or explained');
};

function plan(state: Partial<JobState> & { executions: readonly JobExecution[] }, rest: Partial<Omit<PlanInput, 'state'>> = {}): JobPlan {
  let n = 0;
  const full: JobState = { job: jobOf(), unplaced: 0, abandoned: 0, waitingSince: null, ...state };
  return planJob({ state: full, workers: noWorkers, now: NOW, rules: RULES, newId: () => `new${++n}`, ...rest });
}

const change = (node: string, c: { reputation?: number; credits?: number; total?: number; failed?: number; successful?: number }, reasons: string[]) => ({
  node_id: node, reputation: 0, credits: 0, total: 0, failed: 0, successful: 0, ...c, reasons,
});

describe('reports', () => {
  it('records a running execution\'s first report with every field, and charges one ended execution', () => {
    const e1 = exec('e1', 'n1', 'running');
    const p = plan({ executions: [e1, exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')] }, { reports: [report('e1', 'completed', HASH)] });
    expect(p.reports).toEqual([{ execution_id: 'e1', kind: 'recorded' }]);
    expect(p.updates).toEqual([
      {
        before: e1,
        execution: {
          ...e1, status: 'completed', started_at: e1.started_at, completed_at: AT, reported_at: AT, result: 'out-aaaa', result_encoding: 'utf8', result_hash: HASH,
          claimed_hash: HASH, exit_code: 0, duration_ms: 10, error_message: null, logs: 'log',
        },
        reasons: ['reported completed'],
      },
    ]);
    expect(p.workers).toEqual([change('n1', { total: 1 }, ['execution e1 reported completed'])]);
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 2, reason: 'waiting for 2 outstanding executions' });
    expect(p.stop).toEqual([]);
    expect(p.place).toEqual([]);
    expect(p.jobChanged).toBe(false);
    expect(p.extra).toBe(0);
    expect(p.unplacedReason).toBeUndefined();
  });

  it('takes the receipt time as the start of an execution that was only scheduled, and counts a failure as failed', () => {
    const p = plan({ executions: [exec('e1', 'n1', 'scheduled'), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')] }, { reports: [report('e1', 'failed')] });
    expect(p.next.executions[0]).toMatchObject({ status: 'failed', started_at: AT, completed_at: AT, reported_at: AT, error_message: 'it failed', exit_code: 1 });
    expect(p.workers).toEqual([change('n1', { total: 1, failed: 1 }, ['execution e1 reported failed'])]);
    expect(p.updates[0]!.reasons).toEqual(['reported failed']);
  });

  it('reports an execution it does not know as unknown and changes nothing', () => {
    const executions = [exec('e1', 'n1', 'running'), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const p = plan({ executions }, { reports: [report('zz', 'completed', HASH)] });
    expect(p.reports).toEqual([{ execution_id: 'zz', kind: 'unknown' }]);
    expect(p.updates).toEqual([]);
    expect(p.workers).toEqual([]);
    expect(p.next.executions).toEqual(executions);
  });

  it('treats a report for an execution already reported as a duplicate', () => {
    const executions = [done('e1', 'n1', HASH), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const p = plan({ executions }, { reports: [report('e1', 'completed', OTHER)] });
    expect(p.reports).toEqual([{ execution_id: 'e1', kind: 'duplicate' }]);
    expect(p.updates).toEqual([]);
    expect(p.workers).toEqual([]);
    expect(p.next.executions[0]!.result_hash).toBe(HASH);
  });

  it('counts one of two reports for the same execution in one batch, the same one whichever order they are listed in', () => {
    const executions = [exec('e1', 'n1', 'running'), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const a = report('e1', 'completed', HASH);
    const b = report('e1', 'failed');
    for (const reports of [[a, b], [b, a]]) {
      const p = plan({ executions }, { reports });
      expect(p.reports).toEqual([{ execution_id: 'e1', kind: 'recorded' }, { execution_id: 'e1', kind: 'duplicate' }]);
      expect(p.next.executions[0]!.status).toBe('completed');
      expect(p.workers).toEqual([change('n1', { total: 1 }, ['execution e1 reported completed'])]);
    }
  });

  it('orders reports that differ only in a missing field before those that have it, whichever order they come in', () => {
    const executions = [exec('e1', 'n1', 'running'), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const variants: [keyof Report, unknown][] = [['exit_code', 5], ['duration_ms', 5], ['error_message', 'A'], ['result_hash', '0']];
    for (const [field, value] of variants) {
      const missing = report('e1', 'completed', null, { [field]: null });
      const present = report('e1', 'completed', null, { [field]: value });
      for (const reports of [[missing, present], [present, missing]]) {
        const p = plan({ executions }, { reports });
        expect(p.next.executions[0]![field as keyof JobExecution], field).toBeNull();
      }
    }
  });

  it('orders reports for different executions by execution id', () => {
    const executions = [exec('e1', 'n1', 'running'), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const p = plan({ job: jobOf({ max_executions: 3 }), executions }, { reports: [report('e2', 'failed'), report('e1', 'failed')] });
    expect(p.reports).toEqual([{ execution_id: 'e1', kind: 'recorded' }, { execution_id: 'e2', kind: 'recorded' }]);
  });

  it('takes a timed-out execution\'s own late result instead of the failure the coordinator charged', () => {
    const executions = [exec('e1', 'n1', 'timed_out', { error_message: 'no result' }), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const p = plan({ executions }, { reports: [report('e1', 'completed', HASH)] });
    expect(p.reports).toEqual([{ execution_id: 'e1', kind: 'late' }]);
    expect(p.updates[0]!.reasons).toEqual(['reported completed (late)']);
    expect(p.workers).toEqual([change('n1', { failed: -1 }, ['execution e1 reported completed after the coordinator had given up on it: its own outcome counts instead'])]);
  });

  it('charges nothing when a lost execution reports a failure late: it was already counted as failed', () => {
    const executions = [exec('e1', 'n1', 'failed', { error_message: 'lost' }), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const p = plan({ executions }, { reports: [report('e1', 'failed')] });
    expect(p.reports).toEqual([{ execution_id: 'e1', kind: 'late' }]);
    expect(p.updates[0]!.reasons).toEqual(['reported failed (late)']);
    expect(p.workers).toEqual([]);
  });

  it('counts a superseded execution\'s late report as a new ended execution', () => {
    const executions = [exec('e1', 'n1', 'cancelled'), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const p = plan({ executions }, { reports: [report('e1', 'completed', HASH)] });
    expect(p.reports).toEqual([{ execution_id: 'e1', kind: 'late' }]);
    expect(p.workers).toEqual([change('n1', { total: 1 }, ['execution e1 reported completed'])]);
  });
});

describe('a job decided before the plan', () => {
  const completed = jobOf({ status: 'completed', completed_at: iso(NOW - 100), result_hash: HASH, result: 'out-aaaa', result_encoding: 'utf8' });
  const decidedExecutions = (): JobExecution[] => [done('e1', 'n1', HASH, { verdict: 'agree' }), done('e2', 'n2', HASH, { verdict: 'agree' }), exec('e3', 'n3', 'cancelled')];

  it('judges a late agreeing result against the consensus: +5 and the credits', () => {
    const p = plan({ job: completed, executions: decidedExecutions() }, { reports: [report('e3', 'completed', HASH)] });
    expect(p.reports).toEqual([{ execution_id: 'e3', kind: 'late' }]);
    expect(p.updates).toHaveLength(1);
    expect(p.updates[0]!.reasons).toEqual(['reported completed (late)', 'judged late against the consensus: agree']);
    expect(p.updates[0]!.execution.verdict).toBe('agree');
    expect(p.workers).toEqual([change('n3', { total: 1, reputation: 5, credits: 2, successful: 1 }, ['execution e3 reported completed', '+5 and 2 credits: execution e3 of job job-1 agreed'])]);
    expect(p.verdict).toEqual({ kind: 'completed', hash: HASH, votes: 3, decidedNow: false });
    expect(p.jobChanged).toBe(false);
    expect(p.next.job).toBe(completed);
  });

  it('judges a late different result as disagreeing: −10 and a failure', () => {
    const p = plan({ job: completed, executions: decidedExecutions() }, { reports: [report('e3', 'completed', OTHER)] });
    expect(p.updates[0]!.reasons).toEqual(['reported completed (late)', 'judged late against the consensus: disagree']);
    expect(p.workers).toEqual([change('n3', { total: 1, reputation: -10, failed: 1 }, ['execution e3 reported completed', '-10: execution e3 of job job-1 disagreed with the consensus'])]);
    expect(p.verdict).toEqual({ kind: 'completed', hash: HASH, votes: 2, decidedNow: false });
  });

  it('withdraws a timeout and charges the disagreement instead: only the reputation moves', () => {
    const executions = [...decidedExecutions().slice(0, 2), exec('e3', 'n3', 'timed_out')];
    const p = plan({ job: completed, executions }, { reports: [report('e3', 'completed', OTHER)] });
    expect(p.workers).toEqual([
      change('n3', { reputation: -10 }, [
        'execution e3 reported completed after the coordinator had given up on it: its own outcome counts instead',
        '-10: execution e3 of job job-1 disagreed with the consensus',
      ]),
    ]);
  });

  it('does not judge a late failure, nor a late result of a failed job', () => {
    const failedJob = jobOf({ status: 'failed', completed_at: iso(NOW - 100), error_message: 'out of reach' });
    const a = plan({ job: completed, executions: decidedExecutions() }, { reports: [report('e3', 'failed')] });
    expect(a.updates[0]!.reasons).toEqual(['reported failed (late)']);
    expect(a.workers).toEqual([change('n3', { total: 1, failed: 1 }, ['execution e3 reported failed'])]);
    const b = plan({ job: failedJob, executions: [exec('e1', 'n1', 'cancelled')] }, { reports: [report('e1', 'completed', HASH)] });
    expect(b.updates[0]!.reasons).toEqual(['reported completed (late)']);
    expect(b.updates[0]!.execution.verdict).toBeNull();
    expect(b.verdict).toEqual({ kind: 'failed', reason: 'out of reach', decidedNow: false });
    expect(plan({ job: { ...failedJob, error_message: null }, executions: [] }).verdict).toEqual({ kind: 'failed', reason: 'failed', decidedNow: false });
  });

  it('reports a completed job without a hash with an empty hash', () => {
    expect(plan({ job: { ...completed, result_hash: null }, executions: [] }).verdict).toEqual({ kind: 'completed', hash: '', votes: 0, decidedNow: false });
  });

  it('neither times out, loses, abandons nor places anything for a decided job', () => {
    const stale = exec('e3', 'n3', 'running', { started_at: iso(T0 - 3_600_000), scheduled_at: iso(T0 - 3_600_000) });
    const p = plan({ job: completed, unplaced: 1, waitingSince: T0 - 3_600_000, executions: [...decidedExecutions().slice(0, 2), stale] }, { lost: new Map([['n3', 'went silent']]) });
    expect(p.stop).toEqual([]);
    expect(p.updates).toEqual([]);
    expect(p.workers).toEqual([]);
    expect(p.place).toEqual([]);
    expect(p.jobChanged).toBe(false);
  });
});

describe('lost workers and timeouts', () => {
  it('fails the running execution of a lost worker, and leaves its ended ones alone', () => {
    const executions = [exec('e1', 'n1', 'running'), done('e2', 'n2', HASH), exec('e3', 'n3', 'scheduled')];
    const lost = new Map([['n1', 'worker n1 went silent'], ['n2', 'worker n2 went silent']]);
    const p = plan({ executions }, { lost });
    const failed = { ...executions[0]!, status: 'failed' as const, completed_at: AT, error_message: 'worker n1 went silent' };
    expect(p.stop).toEqual([{ execution: failed, kind: 'lost', reason: 'worker n1 went silent' }]);
    expect(p.updates).toEqual([{ before: executions[0], execution: failed, reasons: ['worker n1 went silent'] }]);
    expect(p.workers).toEqual([change('n1', { total: 1, failed: 1 }, ['execution e1 failed: worker n1 went silent'])]);
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 1, reason: 'waiting for 1 outstanding execution' });
  });

  it('times out an execution started more than its timeout plus grace ago, and not one started exactly then', () => {
    const limit = NOW - 60_000 - 5_000;
    const executions = [
      exec('e1', 'n1', 'running', { started_at: iso(limit - 1), scheduled_at: iso(limit - 1) }),
      exec('e2', 'n2', 'running', { started_at: iso(limit), scheduled_at: iso(limit - 10_000) }),
      exec('e3', 'n3', 'scheduled', { started_at: null, scheduled_at: iso(limit - 1) }),
      done('e4', 'n4', HASH, { started_at: iso(limit - 50_000) }),
    ];
    const p = plan({ job: jobOf({ max_executions: 6 }), executions });
    const why = 'no result within 60 s plus 5 s grace';
    expect(p.stop.map((s) => [s.execution.id, s.kind, s.reason])).toEqual([['e1', 'timed_out', why], ['e3', 'timed_out', why]]);
    expect(p.stop[0]!.execution).toEqual({ ...executions[0]!, status: 'timed_out', completed_at: AT, error_message: why });
    expect(p.updates.map((u) => [u.execution.id, u.reasons])).toEqual([['e1', [why]], ['e3', [why]]]);
    expect(p.workers).toEqual([change('n1', { total: 1, failed: 1 }, ['execution e1 timed out']), change('n3', { total: 1, failed: 1 }, ['execution e3 timed out'])]);
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 1, reason: 'waiting for 1 outstanding execution' });
  });

  it('writes the grace in seconds', () => {
    const executions = [exec('e1', 'n1', 'running', { started_at: iso(0), scheduled_at: iso(0) }), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const p = plan({ executions }, { rules: { ...RULES, executionGraceMs: 30_000 } });
    expect(p.stop[0]!.reason).toBe('no result within 60 s plus 30 s grace');
  });
});

describe('wanted slots that find no worker', () => {
  const waiting = (): JobExecution[] => [done('e1', 'n1', HASH), exec('e2', 'n2', 'failed')];

  it('waits out exactly the scheduling timeout', () => {
    const p = plan({ unplaced: 1, waitingSince: NOW - 120_000, executions: [...waiting(), exec('e3', 'n3', 'running')] }, { workers: () => [] });
    expect(p.next.unplaced).toBe(1);
    expect(p.next.abandoned).toBe(0);
    expect(p.next.waitingSince).toBe(NOW - 120_000);
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 2, reason: 'waiting for 2 outstanding executions' });
    expect(p.jobChanged).toBe(false);
  });

  it('abandons them one millisecond later and fails the job when more would only wait again', () => {
    const p = plan({ unplaced: 1, waitingSince: NOW - 120_001, executions: waiting() }, { workers: () => [worker('n1'), worker('n9', { online: false })] });
    const reason = 'consensus 2 of 3 is out of reach: 1 wanted execution found no worker within 120 s (no candidate for an execution of job job-1 among 2 nodes: 1 node offline, 1 node already running or having run this job)';
    expect(p.verdict).toEqual({ kind: 'failed', reason, decidedNow: true });
    expect(p.next.job).toMatchObject({ status: 'failed', completed_at: AT, error_message: reason });
    expect(p.next).toMatchObject({ unplaced: 0, abandoned: 1, waitingSince: null });
    expect(p.jobChanged).toBe(true);
    expect(p.place).toEqual([]);
  });

  it('says the workers were busy when one could take the slot now, and counts slots in the plural', () => {
    const p = plan({ unplaced: 2, waitingSince: NOW - 200_000, executions: waiting() }, { workers: () => [worker('n7')], rules: { ...RULES, schedulingTimeoutMs: 150_400 } });
    expect(p.verdict).toMatchObject({ kind: 'failed', reason: 'consensus 2 of 3 is out of reach: 2 wanted executions found no worker within 150 s (workers were busy)' });
    expect(p.next).toMatchObject({ abandoned: 2, unplaced: 0 });
  });

  it('keeps a job open after abandoning a slot while its running executions can still decide it', () => {
    const executions = [done('e1', 'n1', HASH), exec('e2', 'n2', 'running')];
    const p = plan({ unplaced: 1, waitingSince: NOW - 120_001, executions }, { workers: () => [] });
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 1, reason: 'waiting for 1 outstanding execution' });
    expect(p.next).toMatchObject({ unplaced: 0, abandoned: 1, waitingSince: null });
    expect(p.next.job).toEqual(jobOf());
    expect(p.jobChanged).toBe(true);
  });

  it('does not abandon slots that have no start of waiting, or none at all', () => {
    const executions = [done('e1', 'n1', HASH), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    expect(plan({ unplaced: 0, waitingSince: 0, executions }).next.abandoned).toBe(0);
    const p = plan({ unplaced: 1, waitingSince: null, executions }, { workers: () => [] });
    expect(p.next.abandoned).toBe(0);
    expect(p.next.unplaced).toBe(1);
    expect(p.unplacedReason).toBe('no candidate for an execution of job job-1: no nodes are known');
  });
});

describe('consensus', () => {
  it('judges every completed result, supersedes the running one and completes the job with the first agreeing result', () => {
    const executions = [
      done('e1', 'n1', HASH, { result: 'hi', result_encoding: 'utf8' }),
      done('e2', 'n2', OTHER),
      exec('e3', 'n3', 'running'),
      exec('e4', 'n4', 'failed'),
    ];
    const p = plan({ unplaced: 1, waitingSince: NOW - 1_000, executions }, { reports: [report('e5', 'completed', HASH)], workers: () => [] });
    expect(p.reports).toEqual([{ execution_id: 'e5', kind: 'unknown' }]);
    const withLast = [...executions, done('e5', 'n5', HASH, { result: 'aGk=', result_encoding: 'base64' })];
    const q = plan({ unplaced: 1, waitingSince: NOW - 1_000, executions: withLast });
    const why = 'superseded: consensus was reached without it';
    const cancelled = { ...executions[2]!, status: 'cancelled' as const, completed_at: AT, error_message: why };
    expect(q.stop).toEqual([{ execution: cancelled, kind: 'superseded', reason: why }]);
    expect(q.updates.map((u) => [u.execution.id, u.execution.verdict, u.reasons])).toEqual([
      ['e1', 'agree', ['agrees with the consensus aaaaaaaaaaaa…']],
      ['e2', 'disagree', ['disagrees with the consensus aaaaaaaaaaaa…']],
      ['e3', null, [why]],
      ['e5', 'agree', ['agrees with the consensus aaaaaaaaaaaa…']],
    ]);
    expect(q.workers).toEqual([
      change('n1', { reputation: 5, credits: 2, successful: 1 }, ['+5 and 2 credits: execution e1 of job job-1 agreed']),
      change('n2', { reputation: -10, failed: 1 }, ['-10: execution e2 of job job-1 disagreed with the consensus']),
      change('n5', { reputation: 5, credits: 2, successful: 1 }, ['+5 and 2 credits: execution e5 of job job-1 agreed']),
    ]);
    expect(q.next.job).toEqual({ ...jobOf(), status: 'completed', completed_at: AT, result: 'hi', result_encoding: 'utf8', result_hash: HASH, error_message: null });
    expect(q.next).toMatchObject({ unplaced: 0, waitingSince: null });
    expect(q.verdict).toEqual({ kind: 'completed', hash: HASH, votes: 2, decidedNow: true });
    expect(q.jobChanged).toBe(true);
    expect(q.place).toEqual([]);
  });

  it('does not charge an execution again for a verdict it already has', () => {
    const executions = [done('e1', 'n1', HASH, { verdict: 'agree' }), done('e2', 'n2', HASH), exec('e3', 'n3', 'running')];
    const p = plan({ executions });
    expect(p.workers.map((w) => w.node_id)).toEqual(['n2']);
    expect(p.updates.map((u) => u.execution.id)).toEqual(['e2', 'e3']);
  });

  it('decides on the report that arrives, recording it and judging it in one update, and lists workers by node id', () => {
    // The report is charged before the verdicts, so the reporting worker (zz) is charged first: the list is still by node id.
    const executions = [done('e1', 'mm', HASH), exec('e2', 'zz', 'running'), exec('e3', 'aa', 'running')];
    const p = plan({ executions }, { reports: [report('e2', 'completed', HASH)] });
    expect(p.updates.find((u) => u.execution.id === 'e2')!.reasons).toEqual(['reported completed', 'agrees with the consensus aaaaaaaaaaaa…']);
    expect(p.workers.map((w) => w.node_id)).toEqual(['mm', 'zz']);
    expect(p.workers[1]).toEqual(change('zz', { total: 1, reputation: 5, credits: 2, successful: 1 }, ['execution e2 reported completed', '+5 and 2 credits: execution e2 of job job-1 agreed']));
    expect(p.stop.map((s) => s.execution.node_id)).toEqual(['aa']);
  });
});

describe('out of reach', () => {
  it('fails the job with the verifier\'s reason once the limit leaves no room', () => {
    const job3 = jobOf({ redundancy: 3, consensus: 2, max_executions: 3 });
    const r = plan({ job: job3, unplaced: 0, executions: [done('e1', 'n1', HASH), exec('e2', 'n2', 'failed'), exec('e3', 'n3', 'running')] }, { reports: [report('e3', 'completed', OTHER)] });
    const reason = 'consensus 2 of 3 is out of reach: results split 1–1, 1 failed or timed out, and the limit of 3 executions leaves room for 0 more (1 needed)';
    expect(r.verdict).toEqual({ kind: 'failed', reason, decidedNow: true });
    expect(r.next.job).toEqual({ ...job3, status: 'failed', completed_at: AT, error_message: reason });
    expect(r.workers).toEqual([change('n3', { total: 1 }, ['execution e3 reported completed'])]);
    // Only the job record changed (no slots were waiting): that alone is a change to persist.
    expect(r.next).toMatchObject({ unplaced: 0, abandoned: 0, waitingSince: null });
    expect(r.jobChanged).toBe(true);
  });

  it('cancels the executions still running when the job fails, and drops the wanted slots', () => {
    const job = jobOf({ redundancy: 3, consensus: 3, max_executions: 3 });
    const executions = [done('e1', 'n1', HASH), exec('e2', 'n2', 'running')];
    const p = plan({ job, unplaced: 1, waitingSince: NOW - 1_000, executions }, { reports: [report('e1', 'completed', HASH)], lost: new Map([['n2', 'gone']]) });
    expect(p.verdict.kind).toBe('failed');
    expect(p.stop.map((s) => [s.execution.id, s.kind, s.reason])).toEqual([['e2', 'lost', 'gone']]);
    expect(p.next).toMatchObject({ unplaced: 0, abandoned: 0, waitingSince: null });
    expect(p.reports).toEqual([{ execution_id: 'e1', kind: 'duplicate' }]);
    const scheduled = exec('e3', 'n3', 'scheduled');
    const q = plan({ job, executions: [done('e1', 'n1', HASH), done('e2', 'n2', OTHER), scheduled] });
    const why = 'superseded: the job failed';
    expect(q.stop).toEqual([{ execution: { ...scheduled, status: 'cancelled', completed_at: AT, error_message: why }, kind: 'superseded', reason: why }]);
    expect(q.updates.map((u) => [u.execution.id, u.reasons])).toEqual([['e3', [why]]]);
    expect(q.workers).toEqual([]);
  });
});

describe('placing', () => {
  it('places the first round on the best workers, starts the job and waits for all of them', () => {
    const job = jobOf({ status: 'pending', started_at: null });
    const workers = () => [worker('w1', { reputation: 90 }), worker('w2', { reputation: 110 }), worker('w3'), worker('w4', { online: false })];
    const p = plan({ job, unplaced: 3, waitingSince: NOW - 1_000, executions: [] }, { workers });
    expect(p.place.map((x) => [x.execution.node_id, x.execution.attempt, x.execution.id, x.score, x.reason])).toEqual([
      ['w2', 1, 'new1', 110, 'first round'],
      ['w3', 2, 'new2', 100, 'first round'],
      ['w1', 3, 'new3', 90, 'first round'],
    ]);
    expect(p.place[0]!.execution).toEqual({
      id: 'new1', job_id: 'job-1', node_id: 'w2', status: 'scheduled', attempt: 1, scheduled_at: AT, started_at: null, completed_at: null, reported_at: null, result: null,
      result_encoding: null, result_hash: null, claimed_hash: null, exit_code: null, duration_ms: null, error_message: null, logs: null, verdict: null,
    });
    expect(p.updates.map((u) => [u.before, u.execution.id, u.reasons])).toEqual([
      [undefined, 'new1', ['placed (first round) on the best worker, score 110']],
      [undefined, 'new2', ['placed (first round) on the best worker, score 100']],
      [undefined, 'new3', ['placed (first round) on the best worker, score 90']],
    ]);
    expect(p.next.job).toEqual({ ...job, status: 'running', started_at: AT });
    expect(p.next).toMatchObject({ unplaced: 0, abandoned: 0, waitingSince: null });
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 3, reason: 'waiting for 3 outstanding executions' });
    expect(p.unplacedReason).toBeUndefined();
    expect(p.jobChanged).toBe(true);
  });

  it('rounds the score in the reason to two decimals', () => {
    const job = jobOf({ status: 'pending', started_at: null, redundancy: 1, consensus: 1, max_executions: 1 });
    const p = plan({ job, unplaced: 1, waitingSince: NOW - 1_000, executions: [] }, { workers: () => [worker('w1', { reputation: 100.456 })] });
    expect(p.updates[0]!.reasons).toEqual(['placed (first round) on the best worker, score 100.46']);
  });

  it('keeps waiting for the slots no worker can take, with the reason, since when it first waited', () => {
    const job = jobOf({ status: 'pending', started_at: null });
    const p = plan({ job, unplaced: 3, waitingSince: NOW - 1_000, executions: [] }, { workers: () => [worker('w1'), worker('w2', { online: false })] });
    expect(p.place.map((x) => x.execution.node_id)).toEqual(['w1']);
    expect(p.next).toMatchObject({ unplaced: 2, waitingSince: NOW - 1_000 });
    expect(p.unplacedReason).toBe('no candidate for an execution of job job-1 among 1 node: 1 node offline (after placing 1)');
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 3, reason: 'waiting for 3 outstanding executions' });
    expect(p.next.job.status).toBe('running');
  });

  it('leaves a pending job pending when nothing could be placed', () => {
    const job = jobOf({ status: 'pending', started_at: null });
    const p = plan({ job, unplaced: 3, waitingSince: NOW - 1_000, executions: [] }, { workers: () => [] });
    expect(p.place).toEqual([]);
    expect(p.next.job).toBe(job);
    expect(p.jobChanged).toBe(false);
    expect(p.unplacedReason).toBe('no candidate for an execution of job job-1: no nodes are known');
  });

  it('calls a later wanted slot "a wanted execution", places it away from the job\'s workers and keeps the start time', () => {
    const executions = [done('e1', 'n1', HASH), exec('e2', 'n2', 'running')];
    const p = plan({ unplaced: 1, waitingSince: NOW - 5_000, executions }, { workers: () => [worker('n1', { reputation: 200 }), worker('n2', { reputation: 200 }), worker('n3')] });
    expect(p.place.map((x) => [x.execution.node_id, x.execution.attempt, x.reason])).toEqual([['n3', 3, 'a wanted execution']]);
    expect(p.next.job).toEqual(jobOf());
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 2, reason: 'waiting for 2 outstanding executions' });
  });

  it('asks for an extra when a failure leaves consensus reachable only with more, and places it', () => {
    const executions = [done('e1', 'n1', HASH), done('e2', 'n2', OTHER), exec('e3', 'n3', 'running')];
    const p = plan({ executions }, { reports: [report('e3', 'failed')], workers: () => [worker('n1'), worker('n4', { reputation: 50 }), worker('n5', { cpuCores: 0.5 })] });
    const reason = 'results split 1–1, 1 failed or timed out; 1 more execution can still reach 2 agreeing';
    expect(p.extra).toBe(1);
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 1, reason });
    expect(p.place.map((x) => [x.execution.node_id, x.execution.attempt, x.reason])).toEqual([['n4', 4, `extra: ${reason}`]]);
    expect(p.updates.at(-1)!.reasons).toEqual([`placed (extra: ${reason}) on the best worker, score 50`]);
    expect(p.next).toMatchObject({ unplaced: 0, waitingSince: null });
    expect(p.jobChanged).toBe(false);
  });

  it('waits for an extra no worker can take from now, and counts it as outstanding', () => {
    const executions = [done('e1', 'n1', HASH), done('e2', 'n2', OTHER), exec('e3', 'n3', 'failed')];
    const p = plan({ executions }, { workers: () => [worker('n1')] });
    expect(p.extra).toBe(1);
    expect(p.next).toMatchObject({ unplaced: 1, waitingSince: NOW });
    expect(p.verdict).toMatchObject({ kind: 'open', outstanding: 1 });
    expect(p.unplacedReason).toBe('no candidate for an execution of job job-1 among 1 node: 1 node already running or having run this job');
    expect(p.jobChanged).toBe(true);
  });

  it('adds an extra to slots already waiting without moving their start', () => {
    const job = jobOf({ redundancy: 3, consensus: 3, max_executions: 6 });
    const executions = [done('e1', 'n1', HASH), exec('e2', 'n2', 'failed')];
    const p = plan({ job, unplaced: 1, waitingSince: NOW - 7_000, executions }, { workers: () => [] });
    expect(p.extra).toBe(1);
    expect(p.next).toMatchObject({ unplaced: 2, waitingSince: NOW - 7_000 });
    expect(p.verdict).toEqual({ kind: 'open', outstanding: 2, reason: '1 matching result, 1 failed or timed out, 1 waiting for a worker; 1 more execution can still reach 3 agreeing' });
    expect(p.jobChanged).toBe(true);
  });
});

describe('the plan\'s bookkeeping', () => {
  it('applies to a copy: the input state is left as it was', () => {
    const executions = [exec('e1', 'n1', 'running'), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const state = { executions: [...executions] };
    const p = plan(state, { reports: [report('e1', 'completed', HASH)] });
    expect(state.executions).toEqual(executions);
    expect(p.next.executions).toHaveLength(3);
    expect(p.next.executions[1]).toBe(executions[1]);
  });

  it('keeps only the workers whose counters change', () => {
    const executions = [exec('e1', 'n1', 'timed_out'), exec('e2', 'n2', 'running'), exec('e3', 'n3', 'running')];
    const p = plan({ executions }, { reports: [report('e1', 'failed'), report('e2', 'completed', HASH)] });
    expect(p.workers.map((w) => w.node_id)).toEqual(['n2']);
  });
});

/**
 * The coordinator's pure core (`src/jobs/job-plan.ts`), driven the way the coordinator drives it:
 * a job placed on a pool of workers by the real job profile, results arriving in any order and in
 * batches of any size, silent executions timed out when nothing else can move, extras placed when
 * the plan asks, superseded executions still reporting late. Each execution slot (by attempt) has a
 * fixed outcome, so two runs that differ only in arrival order must end the same way, and every
 * worker's counters must equal what the test computes from the slots itself.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { planJob, type JobPlan, type JobState, type PlanRules } from '../../src/jobs/job-plan.ts';
import { jobProfile, type WorkerCandidate } from '../../src/jobs/profile.ts';
import { REPUTATION, type Job } from '../../src/jobs/model.ts';
import type { Report } from '../../src/jobs/reports.ts';

type Outcome = { kind: 'result'; hash: string } | { kind: 'failure'; status: 'failed' | 'timed_out' } | { kind: 'silent' };

interface Rules {
  redundancy: number;
  consensus: number;
  max_executions: number;
}

interface Totals {
  reputation: number;
  credits: number;
  total: number;
  failed: number;
  successful: number;
}

interface Run {
  final: { kind: 'completed'; hash: string } | { kind: 'failed' };
  /** attempt → node the execution of that attempt was placed on. */
  placed: Map<number, string>;
  /** Attempts the driver saw outstanding when it let their timeout pass (silent ones it timed out). */
  timedOut: Set<number>;
  totals: Map<string, Totals>;
}

const T0 = Date.parse('2026-03-01T12:00:00Z');
const TIMEOUT_S = 60;
const PLAN_RULES: PlanRules = { executionGraceMs: 5_000, schedulingTimeoutMs: 120_000, profile: jobProfile() };

function jobOf(rules: Rules, credits: number): Job {
  return {
    id: 'job-1', name: 'property', description: null, docker_image: 'arcnet/busybox:test', command: ['true'], environment: {}, input_data: null,
    required_cpu: 1, required_memory: 0.5, required_gpu: false, ...rules, timeout_seconds: TIMEOUT_S, network: false, status: 'pending',
    submitted_by: null, submitted_at: new Date(T0).toISOString(), started_at: null, completed_at: null, result: null, result_encoding: null,
    result_hash: null, error_message: null, credits_required: credits,
  };
}

const counter = () => {
  let n = 0;
  return () => `x${String(++n).padStart(4, '0')}`;
};

function reportFor(executionId: string, outcome: Outcome): Report {
  const base = { execution_id: executionId, result: null, result_encoding: null, claimed_hash: null, exit_code: null, duration_ms: 1, logs: null };
  if (outcome.kind === 'result') return { ...base, status: 'completed', result_hash: outcome.hash, result: outcome.hash, result_encoding: 'utf8', exit_code: 0, error_message: null };
  if (outcome.kind === 'failure') return { ...base, status: outcome.status, result_hash: null, exit_code: 1, error_message: `execution ${outcome.status}` };
  throw new Error('a silent execution never reports');
}

const addTotals = (totals: Map<string, Totals>, plan: JobPlan): void => {
  for (const change of plan.workers) {
    const t = totals.get(change.node_id) ?? { reputation: 0, credits: 0, total: 0, failed: 0, successful: 0 };
    totals.set(change.node_id, { reputation: t.reputation + change.reputation, credits: t.credits + change.credits, total: t.total + change.total, failed: t.failed + change.failed, successful: t.successful + change.successful });
  }
};

const ACTIVE = new Set(['scheduled', 'running']);

/** Drives one job to its end; `choose(n)` picks among n candidates, `batch()` how many reports arrive together. */
function drive(rules: Rules, slots: readonly Outcome[], workerCount: number, credits: number, choose: (n: number) => number, batch: () => number): Run {
  const pool = Array.from({ length: workerCount }, (_, i) => ({ id: `w${String(i).padStart(2, '0')}`, reputation: 100 + ((i * 7) % 5) }));
  const allocated = new Map<string, number>();
  const workers = (): WorkerCandidate[] =>
    pool.map((w) => ({ id: w.id, online: true, reputation: w.reputation, cpuCores: 4, memoryGb: 8, gpu: false, allocatedCpu: allocated.get(w.id) ?? 0, allocatedMemoryGb: (allocated.get(w.id) ?? 0) / 2, cpuUsage: 0, enrolledBy: null }));
  const newId = counter();
  let now = T0;
  let state: JobState = { job: jobOf(rules, credits), unplaced: rules.redundancy, abandoned: 0, waitingSince: now, executions: [] };
  const totals = new Map<string, Totals>();
  const timedOut = new Set<number>();
  const step = (reports: Report[]): JobPlan => {
    const plan = planJob({ state, reports, workers, now, rules: PLAN_RULES, newId });
    for (const { before, execution } of plan.updates) {
      const was = before !== undefined && ACTIVE.has(before.status);
      const is = ACTIVE.has(execution.status);
      if (was && !is) allocated.set(execution.node_id, (allocated.get(execution.node_id) ?? 0) - 1);
      if (!before && is) allocated.set(execution.node_id, (allocated.get(execution.node_id) ?? 0) + 1);
    }
    addTotals(totals, plan);
    state = plan.next;
    return plan;
  };
  let plan = step([]);
  for (let steps = 0; plan.verdict.kind === 'open'; steps++) {
    if (steps > 2_000) throw new Error('no decision after 2,000 steps');
    const active = state.executions.filter((e) => ACTIVE.has(e.status));
    // Never waits on nothing: an open job has a running execution or a wanted slot.
    expect(plan.verdict.outstanding, 'waiting with nothing outstanding').toBeGreaterThan(0);
    expect(active.length + state.unplaced).toBe(plan.verdict.outstanding);
    const responsive = active.filter((e) => slots[e.attempt - 1]!.kind !== 'silent');
    if (responsive.length > 0) {
      const arriving = [];
      const size = Math.min(responsive.length, batch());
      for (let i = 0; i < size; i++) arriving.push(responsive.splice(choose(responsive.length), 1)[0]!);
      plan = step(arriving.map((e) => reportFor(e.id, slots[e.attempt - 1]!)));
    } else if (active.length > 0) {
      for (const e of active) timedOut.add(e.attempt);
      now += TIMEOUT_S * 1000 + PLAN_RULES.executionGraceMs + 1;
      plan = step([]);
    } else {
      // Wanted slots no worker can take (every worker already ran one): they wait out the scheduling timeout.
      now += PLAN_RULES.schedulingTimeoutMs + 1;
      plan = step([]);
    }
  }
  // Superseded executions finish anyway and report late, one at a time in the chosen order.
  const late = state.executions.filter((e) => e.status === 'cancelled' && slots[e.attempt - 1]!.kind !== 'silent');
  while (late.length > 0) {
    const e = late.splice(choose(late.length), 1)[0]!;
    const after = step([reportFor(e.id, slots[e.attempt - 1]!)]);
    expect(after.reports).toEqual([{ execution_id: e.id, kind: 'late' }]);
  }
  // Every execution is on a worker of its own, and never more of them than max_executions.
  expect(new Set(state.executions.map((e) => e.node_id)).size).toBe(state.executions.length);
  expect(state.executions.length).toBeLessThanOrEqual(rules.max_executions);
  return {
    final: state.job.status === 'completed' ? { kind: 'completed', hash: state.job.result_hash! } : { kind: 'failed' },
    placed: new Map(state.executions.map((e) => [e.attempt, e.node_id])),
    timedOut,
    totals,
  };
}

const rulesArbitrary = fc
  .integer({ min: 1, max: 7 })
  .chain((n) => fc.record({ redundancy: fc.constant(n), consensus: fc.integer({ min: Math.floor(n / 2) + 1, max: n }), max_executions: fc.integer({ min: n, max: 3 * n }) }));

const outcomeArbitrary: fc.Arbitrary<Outcome> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('aaaa', 'bbbb', 'cccc').map((hash): Outcome => ({ kind: 'result', hash })) },
  { weight: 2, arbitrary: fc.constantFrom('failed' as const, 'timed_out' as const).map((status): Outcome => ({ kind: 'failure', status })) },
  { weight: 1, arbitrary: fc.constant<Outcome>({ kind: 'silent' }) },
);

const scenario = rulesArbitrary.chain((rules) =>
  fc.record({
    rules: fc.constant(rules),
    slots: fc.array(outcomeArbitrary, { minLength: rules.max_executions, maxLength: rules.max_executions }),
    // Sometimes fewer workers than the job could use: wanted executions then wait and are abandoned.
    workers: fc.integer({ min: rules.redundancy, max: rules.max_executions + 2 }),
    credits: fc.integer({ min: 0, max: 5 }),
    orderA: fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
    orderB: fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
    batches: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 10, maxLength: 10 }),
  }),
);

const cycle = (choices: readonly number[]) => {
  let step = 0;
  return (n: number): number => choices[step++ % choices.length]! % n;
};

const sizes = (choices: readonly number[]) => {
  let step = 0;
  return (): number => choices[step++ % choices.length]!;
};

/** What the test expects each worker's counters to be, from the slots alone (plus where each attempt ran). */
function expectedTotals(run: Run, slots: readonly Outcome[], credits: number): Map<string, Totals> {
  const out = new Map<string, Totals>();
  const hash = run.final.kind === 'completed' ? run.final.hash : undefined;
  for (const [attempt, node] of run.placed) {
    const slot = slots[attempt - 1]!;
    const t = { reputation: 0, credits: 0, total: 0, failed: 0, successful: 0 };
    if (slot.kind === 'failure') Object.assign(t, { total: 1, failed: 1 });
    else if (slot.kind === 'silent') {
      if (run.timedOut.has(attempt)) Object.assign(t, { total: 1, failed: 1 });
    } else if (hash === undefined) t.total = 1;
    else if (slot.hash === hash) Object.assign(t, { total: 1, successful: 1, reputation: REPUTATION.agree, credits });
    else Object.assign(t, { total: 1, failed: 1, reputation: REPUTATION.disagree });
    if (t.total > 0) out.set(node, t);
  }
  return out;
}

describe('job plan', () => {
  it('reaches the same verdict whatever order and batches results arrive in; one at a time, also the same placements and worker totals', () => {
    fc.assert(
      fc.property(scenario, ({ rules, slots, workers, credits, orderA, orderB, batches }) => {
        const batched = drive(rules, slots, workers, credits, cycle(orderA), sizes(batches));
        const b = drive(rules, slots, workers, credits, cycle(orderB), () => 1);
        const inOrder = drive(rules, slots, workers, credits, () => 0, () => 1);
        expect(batched.final).toEqual(inOrder.final);
        expect(b.final).toEqual(inOrder.final);
        expect(b.placed).toEqual(inOrder.placed);
        expect(b.totals).toEqual(inOrder.totals);
      }),
      { numRuns: 1500 },
    );
  });

  it("changes each worker's reputation, credits and counters exactly as the test computes them from the slots", () => {
    fc.assert(
      fc.property(scenario, ({ rules, slots, workers, credits, orderA, batches }) => {
        const run = drive(rules, slots, workers, credits, cycle(orderA), sizes(batches));
        expect(run.totals).toEqual(expectedTotals(run, slots, credits));
        // Consensus exactly when some hash gathered k among the executions that ran.
        const votes = new Map<string, number>();
        for (const attempt of run.placed.keys()) {
          const slot = slots[attempt - 1]!;
          if (slot.kind === 'result') votes.set(slot.hash, (votes.get(slot.hash) ?? 0) + 1);
        }
        const winners = [...votes].filter(([, count]) => count >= rules.consensus).map(([hash]) => hash);
        expect(winners.length).toBeLessThanOrEqual(1);
        expect(run.final).toEqual(winners.length === 1 ? { kind: 'completed', hash: winners[0] } : { kind: 'failed' });
      }),
      { numRuns: 1500 },
    );
  });

  it('returns the same plan for every order the reports of one batch are listed in', () => {
    fc.assert(
      fc.property(scenario, fc.array(fc.nat(), { minLength: 8, maxLength: 8 }), ({ rules, slots, workers, credits }, shuffle) => {
        const pool: WorkerCandidate[] = Array.from({ length: workers }, (_, i) => ({ id: `w${i}`, online: true, reputation: 100, cpuCores: 4, memoryGb: 8, gpu: false, allocatedCpu: 0, allocatedMemoryGb: 0, cpuUsage: 0, enrolledBy: null }));
        const first = planJob({ state: { job: jobOf(rules, credits), unplaced: rules.redundancy, abandoned: 0, waitingSince: T0, executions: [] }, workers: () => pool, now: T0, rules: PLAN_RULES, newId: counter() });
        const reports = first.next.executions.filter((e) => slots[e.attempt - 1]!.kind !== 'silent').map((e) => reportFor(e.id, slots[e.attempt - 1]!));
        // A duplicate in the batch: the first in canonical order counts, whatever order it was listed in.
        if (reports.length > 0) reports.push({ ...reports[0]!, status: 'failed', result_hash: null, error_message: 'a second report' });
        const permuted = [...reports];
        for (let i = permuted.length - 1; i > 0; i--) {
          const j = shuffle[i % shuffle.length]! % (i + 1);
          [permuted[i], permuted[j]] = [permuted[j]!, permuted[i]!];
        }
        const input = { state: first.next, workers: () => pool, now: T0 + 1_000, rules: PLAN_RULES };
        expect(planJob({ ...input, reports: permuted, newId: counter() })).toEqual(planJob({ ...input, reports, newId: counter() }));
      }),
      { numRuns: 1000 },
    );
  });

  it('with distinct_enrolments, never gives two executions of a job to one party, and says so when parties run out', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ party: fc.constantFrom('p1', 'p2', 'p3', 'p4'), reputation: fc.integer({ min: 50, max: 150 }) }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 5 }),
        (workers, redundancy) => {
          const pool: WorkerCandidate[] = workers.map((w, i) => ({ id: `w${i}`, online: true, reputation: w.reputation, cpuCores: 4, memoryGb: 8, gpu: false, allocatedCpu: 0, allocatedMemoryGb: 0, cpuUsage: 0, enrolledBy: w.party }));
          const job = { ...jobOf({ redundancy, consensus: 1, max_executions: redundancy }, 1), distinct_enrolments: true };
          const plan = planJob({ state: { job, unplaced: redundancy, abandoned: 0, waitingSince: T0, executions: [] }, workers: () => pool, now: T0, rules: PLAN_RULES, newId: counter() });
          const parties = plan.place.map((p) => pool.find((w) => w.id === p.execution.node_id)!.enrolledBy);
          expect(new Set(parties).size).toBe(parties.length);
          const available = new Set(workers.map((w) => w.party)).size;
          expect(plan.place.length).toBe(Math.min(redundancy, available));
          // The reason names the first filter that refused each worker: its own earlier execution, or its party's.
          if (available < redundancy) expect(plan.unplacedReason).toMatch(available < workers.length ? /enrolled by the same party as another execution of this job/ : /already running or having run this job/);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('decides the seed example in one plan: two agree (+5 and a credit each), the third is outvoted (−10)', () => {
    const pool: WorkerCandidate[] = ['A', 'B', 'C'].map((id) => ({ id, online: true, reputation: 100, cpuCores: 2, memoryGb: 4, gpu: false, allocatedCpu: 0, allocatedMemoryGb: 0, cpuUsage: 0, enrolledBy: null }));
    const rules = { redundancy: 3, consensus: 2, max_executions: 6 };
    const placed = planJob({ state: { job: jobOf(rules, 1), unplaced: 3, abandoned: 0, waitingSince: T0, executions: [] }, workers: () => pool, now: T0, rules: PLAN_RULES, newId: counter() });
    expect(placed.place.map((p) => p.execution.node_id)).toEqual(['A', 'B', 'C']);
    expect(placed.verdict).toMatchObject({ kind: 'open', outstanding: 3 });
    const [a, b, c] = placed.next.executions;
    const plan = planJob({
      state: placed.next,
      reports: [reportFor(c!.id, { kind: 'result', hash: 'deadbeef' }), reportFor(a!.id, { kind: 'result', hash: '5891b5b5' }), reportFor(b!.id, { kind: 'result', hash: '5891b5b5' })],
      workers: () => pool,
      now: T0 + 5_000,
      rules: PLAN_RULES,
      newId: counter(),
    });
    expect(plan.verdict).toEqual({ kind: 'completed', hash: '5891b5b5', votes: 2, decidedNow: true });
    expect(plan.workers.map(({ node_id, reputation, credits, failed, successful }) => ({ node_id, reputation, credits, failed, successful }))).toEqual([
      { node_id: 'A', reputation: 5, credits: 1, failed: 0, successful: 1 },
      { node_id: 'B', reputation: 5, credits: 1, failed: 0, successful: 1 },
      { node_id: 'C', reputation: -10, credits: 0, failed: 1, successful: 0 },
    ]);
    expect(plan.next.job).toMatchObject({ status: 'completed', result_hash: '5891b5b5', result: '5891b5b5' });
    expect(plan.stop).toEqual([]);
  });

  it('does not wait on a 1–1 split whose third worker went silent: it fails the lost execution and places one extra', () => {
    const pool: WorkerCandidate[] = ['A', 'B', 'C', 'D'].map((id) => ({ id, online: true, reputation: 100, cpuCores: 2, memoryGb: 4, gpu: false, allocatedCpu: 0, allocatedMemoryGb: 0, cpuUsage: 0, enrolledBy: null }));
    const rules = { redundancy: 3, consensus: 2, max_executions: 6 };
    const placed = planJob({ state: { job: jobOf(rules, 1), unplaced: 3, abandoned: 0, waitingSince: T0, executions: [] }, workers: () => pool, now: T0, rules: PLAN_RULES, newId: counter() });
    const [a, b] = placed.next.executions;
    const split = planJob({ state: placed.next, reports: [reportFor(a!.id, { kind: 'result', hash: 'x' }), reportFor(b!.id, { kind: 'result', hash: 'y' })], workers: () => pool, now: T0 + 1, rules: PLAN_RULES, newId: counter() });
    expect(split.verdict.kind).toBe('open');
    const lost = planJob({ state: split.next, lost: new Map([['C', 'worker C went silent for 121 s and was marked offline']]), workers: () => pool.filter((w) => w.id !== 'C'), now: T0 + 2, rules: PLAN_RULES, newId: counter() });
    expect(lost.stop).toEqual([expect.objectContaining({ kind: 'lost', reason: 'worker C went silent for 121 s and was marked offline' })]);
    expect(lost.extra).toBe(1);
    expect(lost.place.map((p) => p.execution.node_id)).toEqual(['D']);
    expect(lost.workers).toEqual([expect.objectContaining({ node_id: 'C', total: 1, failed: 1, reputation: 0 })]);
    expect(lost.verdict).toMatchObject({ kind: 'open', outstanding: 1 });
  });
});

/**
 * The verifier, driven the way a coordinator drives it: executions created in order, results
 * arriving in any order, extras created when the tally asks for them. Each execution slot has a
 * fixed outcome (a result hash or a failure), so two runs that differ only in arrival order must end
 * the same way. What the verifier's verdicts do to each worker's reputation and credits is checked
 * against what the test works out on its own from the raw outcomes and the seed's rules.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { tally, rulesProblem, judgeLate, type TallyExecution, type TallyRules } from '../../src/jobs/verification.ts';
import { REPUTATION } from '../../src/jobs/model.ts';

type Outcome = { kind: 'result'; hash: string } | { kind: 'failure'; status: 'failed' | 'timed_out' };
type Verdict = 'agree' | 'disagree';

interface Run {
  final: { kind: 'consensus'; hash: string } | { kind: 'unreachable' };
  /** The verifier's verdict per execution slot it judged, late results included (none judged: no change). */
  verdicts: Map<number, Verdict>;
  /** Executions created, extras included: slots 0..created-1 ran. */
  created: number;
  steps: number;
}

/** Drives one job to its end; `pick` chooses which outstanding execution answers next. */
function drive(rules: TallyRules, slots: readonly Outcome[], pick: (outstanding: number) => number): Run {
  const executions: { id: string; node_id: string; status: TallyExecution['status']; result_hash: string | null }[] = [];
  const create = (count: number): void => {
    for (let i = 0; i < count; i++) {
      const index = executions.length;
      executions.push({ id: `e${String(index).padStart(3, '0')}`, node_id: `n${index}`, status: 'scheduled', result_hash: null });
    }
  };
  const answer = (index: number): void => {
    const outcome = slots[index]!;
    const execution = executions[index]!;
    if (outcome.kind === 'result') {
      execution.status = 'completed';
      execution.result_hash = outcome.hash;
    } else {
      execution.status = outcome.status;
    }
  };
  /** Executions still running when the job was decided answer late, and are judged against its hash (null when it failed). */
  const judgeLateResults = (ids: readonly string[], consensusHash: string | null, verdicts: Map<number, Verdict>): void => {
    for (const id of ids) {
      const index = Number(id.slice(1));
      const outcome = slots[index]!;
      const verdict = outcome.kind === 'result' ? judgeLate(consensusHash, outcome.hash) : null;
      if (verdict !== null) verdicts.set(index, verdict);
    }
  };
  create(rules.redundancy);
  const verdicts = new Map<number, Verdict>();
  let steps = 0;
  for (;;) {
    steps++;
    if (steps > 1000) throw new Error('no decision after 1000 steps');
    const decision = tally(rules, executions);
    if (decision.kind === 'consensus') {
      for (const id of decision.agreeing) verdicts.set(Number(id.slice(1)), 'agree');
      for (const id of decision.disagreeing) verdicts.set(Number(id.slice(1)), 'disagree');
      judgeLateResults(decision.supersede, decision.hash, verdicts);
      return { final: { kind: 'consensus', hash: decision.hash }, verdicts, created: executions.length, steps };
    }
    if (decision.kind === 'unreachable') {
      judgeLateResults(executions.filter((e) => e.status === 'scheduled').map((e) => e.id), null, verdicts);
      return { final: { kind: 'unreachable' }, verdicts, created: executions.length, steps };
    }
    if (decision.kind === 'extend') {
      expect(decision.extra).toBeGreaterThan(0);
      create(decision.extra);
      continue;
    }
    const outstanding = executions.map((e, i) => [e, i] as const).filter(([e]) => e.status === 'scheduled');
    // "Waiting" with nothing outstanding would be a job that waits forever.
    expect(outstanding.length, 'waiting with no execution outstanding').toBeGreaterThan(0);
    answer(outstanding[pick(outstanding.length)]![1]);
  }
}

const rulesArbitrary = fc
  .integer({ min: 1, max: 7 })
  .chain((n) => fc.record({ redundancy: fc.constant(n), consensus: fc.integer({ min: Math.floor(n / 2) + 1, max: n }), max_executions: fc.integer({ min: n, max: 3 * n }) }));

const outcomeArbitrary: fc.Arbitrary<Outcome> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('aaaa', 'bbbb', 'cccc').map((hash): Outcome => ({ kind: 'result', hash })) },
  { weight: 2, arbitrary: fc.constantFrom('failed' as const, 'timed_out' as const).map((status): Outcome => ({ kind: 'failure', status })) },
);

const scenario = rulesArbitrary.chain((rules) =>
  fc.record({
    rules: fc.constant(rules),
    slots: fc.array(outcomeArbitrary, { minLength: rules.max_executions, maxLength: rules.max_executions }),
    orderA: fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
    orderB: fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
  }),
);

const picker = (choices: readonly number[]) => {
  let step = 0;
  return (outstanding: number): number => choices[step++ % choices.length]! % outstanding;
};

// ------------------------------------------------------------------ reputation and credits

/** Seed 004's rules, written out here rather than read from the code under test: +5 agreeing, −10 disagreeing. */
const SEED_AGREE = 5;
const SEED_DISAGREE = -10;

/** Workers shared by every job of a scenario; one job's executions run on different workers. */
const WORKERS = Array.from({ length: 24 }, (_, i) => `w${String(i).padStart(2, '0')}`);

interface Account {
  reputation: number;
  credits: number;
}

const accounts = (): Map<string, Account> => new Map(WORKERS.map((w) => [w, { reputation: 0, credits: 0 }]));

/** The workers whose account changed, so a failure shows who gained or lost what. */
const changed = (all: ReadonlyMap<string, Account>): Record<string, Account> =>
  Object.fromEntries([...all].filter(([, account]) => account.reputation !== 0 || account.credits !== 0));

/** A few jobs, each with its rules, outcomes, arrival order, credit price and the worker of each slot. */
const jobsScenario = fc.array(
  scenario.chain(({ rules, slots, orderA }) =>
    fc.record({
      rules: fc.constant(rules),
      slots: fc.constant(slots),
      order: fc.constant(orderA),
      credits: fc.integer({ min: 0, max: 5 }),
      workers: fc.shuffledSubarray(WORKERS, { minLength: rules.max_executions, maxLength: rules.max_executions }),
    }),
  ),
  { minLength: 1, maxLength: 4 },
);

describe('k-of-n verifier', () => {
  it('ends the same way whatever order results arrive in, and never waits with nothing outstanding', () => {
    fc.assert(
      fc.property(scenario, ({ rules, slots, orderA, orderB }) => {
        const a = drive(rules, slots, picker(orderA));
        const b = drive(rules, slots, picker(orderB));
        const inOrder = drive(rules, slots, () => 0);
        expect(a.final).toEqual(inOrder.final);
        expect(b.final).toEqual(inOrder.final);
        expect(a.verdicts).toEqual(inOrder.verdicts);
      }),
      { numRuns: 2000 },
    );
  });

  it('reaches consensus exactly when some result could gather k votes within max_executions, and fails only when none could', () => {
    fc.assert(
      fc.property(scenario, ({ rules, slots }) => {
        const run = drive(rules, slots, () => 0);
        const counts = new Map<string, number>();
        for (const slot of slots) if (slot.kind === 'result') counts.set(slot.hash, (counts.get(slot.hash) ?? 0) + 1);
        const reachable = [...counts.values()].some((count) => count >= rules.consensus);
        expect(run.final.kind).toBe(reachable ? 'consensus' : 'unreachable');
        if (run.final.kind === 'consensus') expect(counts.get(run.final.hash)).toBeGreaterThanOrEqual(rules.consensus);
      }),
      { numRuns: 1000 },
    );
  });

  it('changes each worker\'s reputation by +5 per result matching the one the test itself counts k times and −10 per other result, credits only the matching, and changes nothing when no result gets k', () => {
    fc.assert(
      fc.property(jobsScenario, (jobs) => {
        // What the verifier's verdicts do to each worker, applied as the coordinator applies them.
        const byVerifier = accounts();
        // What the seed's rules say, worked out from the raw outcomes without the verifier.
        const bySeed = accounts();
        for (const { rules, slots, order, credits, workers } of jobs) {
          const run = drive(rules, slots, picker(order));
          for (const [index, verdict] of run.verdicts) {
            const account = byVerifier.get(workers[index]!)!;
            account.reputation += verdict === 'agree' ? REPUTATION.agree : REPUTATION.disagree;
            account.credits += verdict === 'agree' ? credits : 0;
          }

          // Every execution created returns its outcome, in time or late: the test counts the votes.
          const ran = slots.slice(0, run.created);
          const votes = new Map<string, number>();
          for (const slot of ran) if (slot.kind === 'result') votes.set(slot.hash, (votes.get(slot.hash) ?? 0) + 1);
          const majority = [...votes].filter(([, count]) => count >= rules.consensus).map(([hash]) => hash);
          expect(majority.length, 'two results both reached k').toBeLessThanOrEqual(1);
          const consensus = majority[0];
          expect(run.final).toEqual(consensus === undefined ? { kind: 'unreachable' } : { kind: 'consensus', hash: consensus });
          if (consensus === undefined) continue;
          ran.forEach((slot, index) => {
            if (slot.kind !== 'result') return;
            const account = bySeed.get(workers[index]!)!;
            account.reputation += slot.hash === consensus ? SEED_AGREE : SEED_DISAGREE;
            account.credits += slot.hash === consensus ? credits : 0;
          });
        }
        expect(changed(byVerifier)).toEqual(changed(bySeed));
      }),
      { numRuns: 1000 },
    );
  });

  it('decides the seed example: two of three agree, the third is outvoted', () => {
    const rules = { redundancy: 3, consensus: 2, max_executions: 6 };
    const decision = tally(rules, [
      { id: 'a', node_id: 'A', status: 'completed', result_hash: '5891b5b5' },
      { id: 'c', node_id: 'C', status: 'completed', result_hash: 'deadbeef' },
      { id: 'b', node_id: 'B', status: 'completed', result_hash: '5891b5b5' },
    ]);
    expect(decision).toEqual({ kind: 'consensus', hash: '5891b5b5', votes: 2, agreeing: ['a', 'b'], disagreeing: ['c'], supersede: [] });
  });

  it('does not wait forever on a 1–1 split whose third worker died: it asks for one extra execution', () => {
    const rules = { redundancy: 3, consensus: 2, max_executions: 6 };
    const decision = tally(rules, [
      { id: 'a', node_id: 'A', status: 'completed', result_hash: 'x' },
      { id: 'b', node_id: 'B', status: 'completed', result_hash: 'y' },
      { id: 'c', node_id: 'C', status: 'failed', result_hash: null },
    ]);
    expect(decision.kind).toBe('extend');
    if (decision.kind === 'extend') expect(decision.extra).toBe(1);
    const exhausted = tally({ ...rules, max_executions: 3 }, [
      { id: 'a', node_id: 'A', status: 'completed', result_hash: 'x' },
      { id: 'b', node_id: 'B', status: 'completed', result_hash: 'y' },
      { id: 'c', node_id: 'C', status: 'failed', result_hash: null },
    ]);
    expect(exhausted.kind).toBe('unreachable');
    if (exhausted.kind === 'unreachable') expect(exhausted.reason).toMatch(/split 1–1, 1 failed or timed out.*room for 0 more/);
  });

  it('refuses rules that cannot be decided soundly, naming the problem', () => {
    expect(rulesProblem({ redundancy: 3, consensus: 4, max_executions: 6 }, 10)).toMatch(/consensus 4 is more than redundancy 3/);
    expect(rulesProblem({ redundancy: 3, consensus: 0, max_executions: 6 }, 10)).toMatch(/consensus must be an integer ≥ 1/);
    expect(rulesProblem({ redundancy: 4, consensus: 2, max_executions: 8 }, 10)).toMatch(/not a majority/);
    expect(rulesProblem({ redundancy: 20, consensus: 11, max_executions: 40 }, 10)).toMatch(/above this coordinator's maximum of 10/);
    expect(rulesProblem({ redundancy: 3, consensus: 2, max_executions: 2 }, 10)).toMatch(/max_executions/);
    expect(rulesProblem({ redundancy: 3, consensus: 2, max_executions: 6 }, 10)).toBeUndefined();
  });
});

/**
 * The k-of-n verifier's edges, one rule at a time: where `rulesProblem` draws each line, which
 * executions count as votes, as outstanding or as failures, that the decision and its lists do not
 * depend on the order executions are listed in, how slots without an execution record count, and
 * the sentence a person reads when the verifier asks for more executions or gives up.
 */
import { describe, expect, it } from 'vitest';
import { judgeLate, rulesProblem, tally, type Tally, type TallyExecution, type TallyRules } from '../../src/jobs/verification.ts';

let serial = 0;
const done = (hash: string, id = `e${serial++}`): TallyExecution => ({ id, node_id: `n-${id}`, status: 'completed', result_hash: hash });
const with_ = (status: TallyExecution['status'], id = `e${serial++}`, result_hash: string | null = null): TallyExecution => ({ id, node_id: `n-${id}`, status, result_hash });

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

const three: TallyRules = { redundancy: 3, consensus: 2, max_executions: 6 };

describe('rulesProblem', () => {
  it('accepts the tightest rules that work', () => {
    expect(rulesProblem({ redundancy: 1, consensus: 1, max_executions: 1 }, 1)).toBeUndefined();
    expect(rulesProblem({ redundancy: 5, consensus: 5, max_executions: 5 }, 5)).toBeUndefined();
    expect(rulesProblem({ redundancy: 5, consensus: 3, max_executions: 5 }, 5)).toBeUndefined();
  });

  it('refuses a redundancy below 1 or not an integer', () => {
    expect(rulesProblem({ redundancy: 0, consensus: 1, max_executions: 1 }, 10)).toBe('redundancy must be an integer ≥ 1, got 0');
    expect(rulesProblem({ redundancy: 2.5, consensus: 2, max_executions: 3 }, 10)).toMatch(/^redundancy must be an integer ≥ 1, got 2.5$/);
  });

  it('refuses a redundancy above the coordinator\'s maximum', () => {
    expect(rulesProblem({ redundancy: 6, consensus: 4, max_executions: 6 }, 5)).toBe("redundancy 6 is above this coordinator's maximum of 5");
  });

  it('refuses a consensus below 1 or not an integer', () => {
    expect(rulesProblem({ redundancy: 3, consensus: 0, max_executions: 3 }, 10)).toBe('consensus must be an integer ≥ 1, got 0');
    expect(rulesProblem({ redundancy: 3, consensus: 2.5, max_executions: 3 }, 10)).toBe('consensus must be an integer ≥ 1, got 2.5');
  });

  it('refuses a consensus above redundancy and suggests the smallest majority when it is not one', () => {
    expect(rulesProblem({ redundancy: 3, consensus: 4, max_executions: 6 }, 10)).toMatch(/^consensus 4 is more than redundancy 3/);
    expect(rulesProblem({ redundancy: 4, consensus: 2, max_executions: 8 }, 10)).toMatch(/use consensus ≥ 3$/);
    expect(rulesProblem({ redundancy: 7, consensus: 3, max_executions: 8 }, 10)).toMatch(/use consensus ≥ 4$/);
  });

  it('refuses a max_executions below redundancy or not an integer', () => {
    expect(rulesProblem({ redundancy: 3, consensus: 2, max_executions: 2 }, 10)).toBe('max_executions must be an integer ≥ redundancy 3, got 2');
    expect(rulesProblem({ redundancy: 3, consensus: 2, max_executions: 3.5 }, 10)).toMatch(/^max_executions must be an integer/);
  });
});

describe('tally', () => {
  it('counts scheduled and running executions as outstanding, and waits while they can still decide', () => {
    expect(tally(three, [done('x'), with_('running'), with_('scheduled')])).toEqual({ kind: 'waiting', outstanding: 2, leadingVotes: 1 });
  });

  it('counts a completed execution without a hash, and a failed one with a hash, as failures, not votes', () => {
    const decision = tally({ redundancy: 3, consensus: 2, max_executions: 3 }, [done('x'), with_('completed', 'c1', null), with_('failed', 'f1', 'x')]);
    expect(decision.kind).toBe('unreachable');
    expect(decision.kind === 'unreachable' && decision.reason).toMatch(/: 1 matching result, 2 failed or timed out, and the limit/);
  });

  it('lists agreeing, disagreeing and superseded executions sorted, leaving failures out, whatever the order', () => {
    const executions = [
      done('x', 'e4'), done('z', 'e9'), done('y', 'e2'), done('x', 'e3'), with_('timed_out', 'e0'), with_('running', 'e5'), with_('scheduled', 'e1'), done('x', 'e6'),
      with_('cancelled', 'e7'), with_('failed', 'e8', 'x'), with_('completed', 'e10', null),
    ];
    const expected: Tally = { kind: 'consensus', hash: 'x', votes: 3, agreeing: ['e3', 'e4', 'e6'], disagreeing: ['e2', 'e9'], supersede: ['e1', 'e5'] };
    const rules: TallyRules = { redundancy: 5, consensus: 3, max_executions: 10 };
    expect(tally(rules, executions)).toEqual(expected);
    expect(tally(rules, [...executions].reverse())).toEqual(expected);
  });

  it('picks the smaller hash between two that reach consensus with as many votes, whatever the order', () => {
    const executions = [done('bb', 'e1'), done('bb', 'e2'), done('aa', 'e3'), done('aa', 'e4')];
    for (const order of permutations(executions)) expect(tally(three, order)).toMatchObject({ kind: 'consensus', hash: 'aa', votes: 2 });
  });

  it('leads with the most-voted hash even when a smaller one arrived first', () => {
    const executions = [done('aa'), done('bb'), done('bb'), with_('running')];
    for (const order of permutations(executions)) expect(tally({ redundancy: 5, consensus: 3, max_executions: 5 }, order)).toEqual({ kind: 'waiting', outstanding: 1, leadingVotes: 2 });
    for (const order of permutations([done('aa'), done('bb'), done('bb')])) expect(tally(three, order)).toMatchObject({ kind: 'consensus', hash: 'bb', votes: 2 });
  });

  it('asks for as many extra executions as consensus still needs, in the singular or the plural', () => {
    // The one extra execution is exactly the room left under max_executions = 4.
    const one = tally({ ...three, max_executions: 4 }, [done('x'), done('y'), with_('failed')]);
    expect(one).toEqual({ kind: 'extend', extra: 1, reason: 'results split 1–1, 1 failed or timed out; 1 more execution can still reach 2 agreeing' });
    const two = tally(three, [with_('failed'), with_('failed'), with_('timed_out')]);
    expect(two).toEqual({ kind: 'extend', extra: 2, reason: 'no results yet, 3 failed or timed out; 2 more executions can still reach 2 agreeing' });
  });

  it('describes a split from the most votes down, whatever order the hashes came in', () => {
    const decision = tally({ redundancy: 7, consensus: 4, max_executions: 7 }, [done('a'), done('b'), done('b'), done('c'), done('c'), done('c'), with_('failed')]);
    expect(decision.kind === 'unreachable' && decision.reason).toMatch(/: results split 3–2–1, 1 failed or timed out, and/);
  });

  it('counts unplaced slots as outstanding and abandoned slots as used up, and says so', () => {
    const rules: TallyRules = { redundancy: 3, consensus: 2, max_executions: 4 };
    expect(tally(rules, [done('x')], { unplaced: 1, abandoned: 0 })).toEqual({ kind: 'waiting', outstanding: 1, leadingVotes: 1 });
    // One result, one abandoned slot, nothing outstanding: one more can still agree (4 − 1 record − 1 abandoned = 2 left).
    expect(tally(rules, [done('x')], { unplaced: 0, abandoned: 1 })).toEqual({
      kind: 'extend',
      extra: 1,
      reason: '1 matching result, 1 never found a worker; 1 more execution can still reach 2 agreeing',
    });
    // Two results that disagree, two abandoned slots: the limit of 4 is spent.
    const spent = tally(rules, [done('x'), done('y')], { unplaced: 0, abandoned: 2 });
    expect(spent.kind === 'unreachable' && spent.reason).toBe(
      'consensus 2 of 3 is out of reach: results split 1–1, 2 never found a worker, and the limit of 4 executions leaves room for 0 more (1 needed)',
    );
  });

  it('names running executions and slots still waiting for a worker apart when out of reach', () => {
    const rules: TallyRules = { redundancy: 5, consensus: 5, max_executions: 6 };
    const decision = tally(rules, [done('x'), done('y'), with_('failed'), with_('running')], { unplaced: 1, abandoned: 0 });
    expect(decision.kind === 'unreachable' && decision.reason).toBe(
      'consensus 5 of 5 is out of reach: results split 1–1, 1 failed or timed out, 1 still running, 1 waiting for a worker, and the limit of 6 executions leaves room for 1 more (2 needed)',
    );
    const matching = tally(rules, [done('x'), done('x'), with_('failed'), with_('failed')], { unplaced: 0, abandoned: 2 });
    expect(matching.kind === 'unreachable' && matching.reason).toMatch(/: 2 matching results, 2 failed or timed out, 2 never found a worker, and the limit of 6 executions leaves room for 0 more \(3 needed\)$/);
  });
});

describe('judgeLate', () => {
  it('judges a late result against the consensus, and not at all without one', () => {
    expect(judgeLate('x', 'x')).toBe('agree');
    expect(judgeLate('x', 'y')).toBe('disagree');
    expect(judgeLate(null, 'x')).toBeNull();
  });
});

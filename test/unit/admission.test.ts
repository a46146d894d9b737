/**
 * Admission (src/inference/admission.ts): a request past its deadline is expired whatever the load;
 * while the scheduler is backlogged, background requests may queue the least, normal ones longer and
 * critical ones only until their deadline; without a backlog, or without a known arrival, nothing is shed.
 */
import { describe, expect, it } from 'vitest';
import { AdmissionController, admit, DEFAULT_ADMISSION_POLICY } from '../../src/inference/admission.ts';
import type { Priority } from '../../src/contracts/messages.ts';

const NOW = 1_700_000_000_000;
const ask = (priority: Priority, maxLatencyMs = 1_000) => ({ priority, maxLatencyMs });

describe('admission', () => {
  it('expires a request that waited its whole maxLatencyMs, backlog or not, naming both figures', () => {
    for (const backlogged of [false, true]) {
      const verdict = admit(ask('critical', 500), NOW - 500, NOW, backlogged);
      expect(verdict).toMatchObject({ admit: false, code: 'expired' });
      if (!verdict.admit) expect(verdict.reason).toBe('expired: waited 500 ms for a scheduler, past its maxLatencyMs of 500 ms; not dispatched late');
    }
    expect(admit(ask('critical', 500), NOW - 499, NOW, true)).toEqual({ admit: true });
  });

  it('sheds by priority while backlogged: background past 2 ms, normal past 4 ms, critical never before its deadline', () => {
    const budgets = DEFAULT_ADMISSION_POLICY.queueBudgetMs;
    expect(budgets).toEqual({ background: 2, normal: 4 });
    expect(admit(ask('background'), NOW - 2, NOW, true).admit).toBe(true);
    const background = admit(ask('background'), NOW - 3, NOW, true);
    expect(background).toMatchObject({ admit: false, code: 'overloaded' });
    if (!background.admit) expect(background.reason).toMatch(/background request waited 3 ms, more than the 2 ms a background request may queue/);
    expect(admit(ask('normal'), NOW - 3, NOW, true).admit).toBe(true);
    expect(admit(ask('normal'), NOW - 5, NOW, true)).toMatchObject({ admit: false, code: 'overloaded' });
    expect(admit(ask('critical'), NOW - 999, NOW, true).admit).toBe(true);
  });

  it('sheds nothing without a backlog: a long wait with few requests in hand may be another clock', () => {
    expect(admit(ask('background'), NOW - 900, NOW, false).admit).toBe(true);
  });

  it('admits a record whose arrival is unknown (timestamp 0 or less)', () => {
    expect(admit(ask('background', 1), 0, NOW, true).admit).toBe(true);
    expect(admit(ask('background', 1), -1, NOW, true).admit).toBe(true);
  });

  it('counts a clock that went backwards as no wait', () => {
    expect(admit(ask('background', 1), NOW + 50, NOW, true).admit).toBe(true);
  });

  it('sheds every lower priority, fresh or not, once a request waited its pressure, and steps down one level per quiet hold', () => {
    const controller = new AdmissionController({ ...DEFAULT_ADMISSION_POLICY, sustainMs: 0 }, 100);
    expect(controller.admitsFrom).toBe('background');
    expect(controller.judge(ask('background'), NOW - 1, NOW, true).admit).toBe(true);
    // A critical request waited 5 ms (past its 3 ms pressure): admitted, and the floor rises to critical.
    expect(controller.judge(ask('critical'), NOW - 5, NOW, true).admit).toBe(true);
    expect(controller.admitsFrom).toBe('critical');
    const fresh = controller.judge(ask('background'), NOW - 0, NOW, true);
    expect(fresh).toMatchObject({ admit: false, code: 'overloaded' });
    if (!fresh.admit) expect(fresh.reason).toBe('overloaded: the scheduler is saturated and sheds background requests while critical requests wait; retry later');
    expect(controller.judge(ask('normal'), NOW - 0, NOW + 50, true).admit).toBe(false);
    // Not under a backlog: nothing is shed by the floor.
    expect(controller.judge(ask('background'), NOW - 0, NOW + 50, false).admit).toBe(true);
    // 100 ms without pressure: one level down (normal admitted, background not), then another.
    expect(controller.judge(ask('normal'), NOW + 101, NOW + 101, true).admit).toBe(true);
    expect(controller.admitsFrom).toBe('normal');
    expect(controller.judge(ask('background'), NOW + 150, NOW + 150, true).admit).toBe(false);
    expect(controller.judge(ask('background'), NOW + 202, NOW + 202, true).admit).toBe(true);
    expect(controller.admitsFrom).toBe('background');
  });

  it('never sheds a critical request by the floor or by a budget, only by its deadline', () => {
    const controller = new AdmissionController();
    for (let i = 0; i < 10; i++) expect(controller.judge(ask('critical', 1_000), NOW - 900, NOW + i, true).admit).toBe(true);
    expect(controller.judge(ask('critical', 1_000), NOW - 1_000, NOW, true)).toMatchObject({ admit: false, code: 'expired' });
  });

  it('applies budgets and the floor only once batches have been full for sustainMs: a backlog that drains within it is routed', () => {
    const controller = new AdmissionController({ ...DEFAULT_ADMISSION_POLICY, sustainMs: 1_000 });
    expect(controller.judge(ask('background', 10_000), NOW - 500, NOW, true).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW - 500, NOW + 999, true).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW - 500, NOW + 1_000, true)).toMatchObject({ admit: false, code: 'overloaded' });
    // A batch that is not full ends the backlog: the clock starts again.
    expect(controller.judge(ask('background', 10_000), NOW + 1_000, NOW + 1_001, false).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW - 500, NOW + 1_002, true).admit).toBe(true);
  });
});

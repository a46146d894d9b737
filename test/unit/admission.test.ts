/**
 * Admission (src/inference/admission.ts): a request past its deadline is expired whatever the load;
 * while the scheduler is backlogged, background requests may queue the least, normal ones longer and
 * critical ones only until their deadline; without a backlog, or without a known arrival, nothing is shed.
 */
import { describe, expect, it } from 'vitest';
import { AdmissionController, admit, chooseUnderBacklog, DEFAULT_ADMISSION_POLICY, KAFKA_ADMISSION_POLICY } from '../../src/inference/admission.ts';
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

  it('on Kafka, keeps what waited a few batch cycles in a full batch and sheds what a backlog held back longer', () => {
    // A produce, a fetch and a transaction or two: 20 ms on a loaded machine, with the scheduler idle.
    expect(admit(ask('normal'), NOW - 20, NOW, true, KAFKA_ADMISSION_POLICY)).toEqual({ admit: true });
    expect(admit(ask('background'), NOW - 20, NOW, true, KAFKA_ADMISSION_POLICY)).toEqual({ admit: true });
    expect(admit(ask('normal'), NOW - 20, NOW, true, DEFAULT_ADMISSION_POLICY)).toMatchObject({ admit: false, code: 'overloaded' });
    expect(admit(ask('background'), NOW - 60, NOW, true, KAFKA_ADMISSION_POLICY)).toMatchObject({ admit: false, code: 'overloaded' });
    expect(admit(ask('normal'), NOW - 150, NOW, true, KAFKA_ADMISSION_POLICY)).toMatchObject({ admit: false, code: 'overloaded' });
    expect(admit(ask('critical'), NOW - 900, NOW, true, KAFKA_ADMISSION_POLICY)).toEqual({ admit: true });
    // The floor on Kafka rises only when a request waited past a cycle's worth, not at a fetch's 3 ms.
    const controller = new AdmissionController(KAFKA_ADMISSION_POLICY, 100);
    expect(controller.judge(ask('critical'), NOW - 20, NOW, true)).toEqual({ admit: true });
    expect(controller.judge(ask('background'), NOW - 1, NOW, true)).toEqual({ admit: true });
    expect(controller.judge(ask('critical'), NOW - 80, NOW, true)).toEqual({ admit: true });
    expect(controller.judge(ask('background'), NOW - 1, NOW, true)).toMatchObject({ admit: false, code: 'overloaded' });
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
    const controller = new AdmissionController(DEFAULT_ADMISSION_POLICY, 100);
    expect(controller.admitsFrom).toBe('background');
    expect(controller.judge(ask('background'), NOW - 1, NOW, true).admit).toBe(true);
    // A critical request waited 5 ms (past its 3 ms pressure): admitted, and the floor rises to critical.
    expect(controller.judge(ask('critical'), NOW - 5, NOW, true).admit).toBe(true);
    expect(controller.admitsFrom).toBe('critical');
    const fresh = controller.judge(ask('background'), NOW - 0, NOW, true);
    expect(fresh).toMatchObject({ admit: false, code: 'overloaded' });
    if (!fresh.admit) expect(fresh.reason).toBe('overloaded: the scheduler is saturated and sheds background requests while critical requests wait; retry later');
    expect(controller.judge(ask('normal'), NOW - 0, NOW + 50, true).admit).toBe(false);
    // 100 ms without pressure: one level down (normal admitted, background not), then another.
    expect(controller.judge(ask('normal'), NOW + 101, NOW + 101, true).admit).toBe(true);
    expect(controller.admitsFrom).toBe('normal');
    expect(controller.judge(ask('background'), NOW + 150, NOW + 150, true).admit).toBe(false);
    expect(controller.judge(ask('background'), NOW + 202, NOW + 202, true).admit).toBe(true);
    expect(controller.admitsFrom).toBe('background');
  });

  it('keeps a backlog through batches that are not full for backlogHoldMs after the last full one, then ends it; by default a batch that is not full is no backlog', () => {
    expect(new AdmissionController().judge(ask('background', 10_000), NOW - 10, NOW, false).admit).toBe(true);
    const controller = new AdmissionController({ ...DEFAULT_ADMISSION_POLICY, backlogHoldMs: 100 }, 100);
    expect(controller.judge(ask('background', 10_000), NOW - 10, NOW, true)).toMatchObject({ admit: false, code: 'overloaded' });
    expect(controller.judge(ask('background', 10_000), NOW + 40, NOW + 50, false)).toMatchObject({ admit: false, code: 'overloaded' });
    expect(controller.judge(ask('background', 10_000), NOW + 90, NOW + 100, false)).toMatchObject({ admit: false, code: 'overloaded' });
    // Over 100 ms since the last full batch: not a backlog, a wait alone sheds nothing.
    expect(controller.judge(ask('background', 10_000), NOW + 91, NOW + 101, false).admit).toBe(true);
  });

  it('never sheds a critical request by the floor or by a budget, only by its deadline', () => {
    const controller = new AdmissionController();
    for (let i = 0; i < 10; i++) expect(controller.judge(ask('critical', 1_000), NOW - 900, NOW + i, true).admit).toBe(true);
    expect(controller.judge(ask('critical', 1_000), NOW - 1_000, NOW, true)).toMatchObject({ admit: false, code: 'expired' });
  });

  it('sheds by budget from the first full batch of a backlog that grows from nothing (overload)', () => {
    const controller = new AdmissionController();
    expect(controller.judge(ask('background', 10_000), NOW - 1, NOW, true).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW - 3, NOW, true)).toMatchObject({ admit: false, code: 'overloaded' });
  });

  it('routes a backlog that begins long (a takeover, a broker back) within the deadlines until it has caught up, then sheds by budget', () => {
    const controller = new AdmissionController();
    // The first full batch starts 500 ms behind: a catch-up; old requests are routed, not shed.
    expect(controller.judge(ask('background', 10_000), NOW - 500, NOW, true).admit).toBe(true);
    expect(controller.judge(ask('normal', 10_000), NOW - 300, NOW + 10, true).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW - 100, NOW + 20, true).admit).toBe(true);
    // Caught up (a request that waited no longer than the largest budget): budgets apply again.
    expect(controller.judge(ask('background', 10_000), NOW + 29, NOW + 30, true).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW + 20, NOW + 30, true)).toMatchObject({ admit: false, code: 'overloaded' });
  });

  it('ends a catch-up as soon as a request waited longer than the first one: the queue grows, so it is overload after a stall', () => {
    const controller = new AdmissionController();
    expect(controller.judge(ask('background', 10_000), NOW - 300, NOW, true).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW - 301, NOW + 1, true)).toMatchObject({ admit: false, code: 'overloaded' });
  });

  it('ends a catch-up that does not catch up after catchUpMs, and starts afresh after a batch that is not full', () => {
    const controller = new AdmissionController({ ...DEFAULT_ADMISSION_POLICY, catchUpMs: 1_000 });
    expect(controller.judge(ask('background', 10_000), NOW - 500, NOW, true).admit).toBe(true);
    // Requests as old as the first all along: not caught up, and not growing either.
    expect(controller.judge(ask('background', 10_000), NOW + 499, NOW + 999, true).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW + 500, NOW + 1_000, true)).toMatchObject({ admit: false, code: 'overloaded' });
    // Soon after a full batch, a backlog that begins long is the same overload, not a catch-up.
    expect(controller.judge(ask('background', 10_000), NOW + 1_200, NOW + 1_201, false).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW + 700, NOW + 1_202, true)).toMatchObject({ admit: false, code: 'overloaded' });
    // After a second without one, it is a catch-up again.
    expect(controller.judge(ask('background', 10_000), NOW + 2_300, NOW + 2_301, false).admit).toBe(true);
    expect(controller.judge(ask('background', 10_000), NOW + 1_800, NOW + 2_303, true).admit).toBe(true);
  });

  describe('under sustained overload', () => {
    const criticalKept = (p: Priority): boolean => p === 'critical';
    const chosenIndexes = (chosen: readonly boolean[]): number[] => chosen.flatMap((c, i) => (c ? [i] : []));

    it('routes every critical request, then fills the slots with the latest normal ones, then background', () => {
      const priorities: Priority[] = ['background', 'normal', 'critical', 'normal', 'background', 'critical', 'normal', 'background'];
      const { chosen, taken } = chooseUnderBacklog(priorities, 4, criticalKept);
      expect(taken).toBe(8);
      expect(chosenIndexes(chosen)).toEqual([2, 3, 5, 6]);
      // Every normal one before any background one, and then the latest background one, not the oldest.
      expect(chosenIndexes(chooseUnderBacklog(priorities, 5, criticalKept).chosen)).toEqual([1, 2, 3, 5, 6]);
      expect(chosenIndexes(chooseUnderBacklog(priorities, 6, criticalKept).chosen)).toEqual([1, 2, 3, 5, 6, 7]);
    });

    it('never turns a critical request away: with more than the slots, the batch ends after the last one routed', () => {
      const priorities: Priority[] = ['critical', 'normal', 'critical', 'critical', 'normal', 'critical'];
      const { chosen, taken } = chooseUnderBacklog(priorities, 2, criticalKept);
      expect(chosenIndexes(chosen)).toEqual([0, 2]);
      // The normal one before the cut is turned away; the rest (a critical one among them) open the next batch.
      expect(taken).toBe(3);
      // Critical ones that exactly fill the slots with none after: the whole batch is taken.
      expect(chooseUnderBacklog(['normal', 'critical', 'critical', 'normal'], 2, criticalKept)).toEqual({ chosen: [false, true, true, false], taken: 4 });
    });

    it('takes everything when it fits, and routes in order with no budgets at all (a drain)', () => {
      expect(chooseUnderBacklog(['normal', 'background'], 2, criticalKept)).toEqual({ chosen: [true, true], taken: 2 });
      expect(chooseUnderBacklog(['normal', 'normal', 'background', 'normal'], 2, () => true)).toEqual({ chosen: [true, true, false, false], taken: 2 });
    });

    it('is overload only once full batches keep coming for overloadAfterMs; a burst is not, and a gap as long ends it', () => {
      const controller = new AdmissionController({ ...DEFAULT_ADMISSION_POLICY, overloadAfterMs: 20 });
      const at = (t: number): boolean => controller.overloaded(NOW + t - 1, NOW + t);
      expect([0, 5, 10, 15].map(at)).toEqual([false, false, false, false]);
      expect(at(20)).toBe(true);
      expect(at(39)).toBe(true);
      // No full batch for more than 20 ms: the next one starts a new run.
      expect(at(70)).toBe(false);
      expect(at(90)).toBe(true);
      expect(controller.unbudgeted('critical')).toBe(true);
      expect(controller.unbudgeted('normal')).toBe(false);
    });
  });
});

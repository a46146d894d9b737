/**
 * The central orchestrator's anomaly detector (`src/mesh/anomalies.ts`), driven by summaries, events
 * and times given by the test: each condition raises one alert while it holds, with what, where,
 * since when and the numbers, and clears when it ends; a restart with the stored alerts raises no
 * duplicate.
 */
import { describe, expect, it } from 'vitest';
import { seededUuid } from '../../src/core/ids.ts';
import type { RegionalSummary, SystemEvent } from '../../src/contracts/messages.ts';
import { AnomalyDetector, DEFAULT_ANOMALY_CONFIG, HPC_FAILED, TRAINING_FAILED, type AlertDecision, type AnomalyConfig } from '../../src/mesh/anomalies.ts';

const T0 = Date.UTC(2026, 0, 1);
const PERIOD = 60_000;
const config: AnomalyConfig = { ...DEFAULT_ANOMALY_CONFIG, summaryIntervalMs: PERIOD };

function summary(zone: string, at: number, active = 10, gpu = 0.5, total = active): RegionalSummary {
  return { schemaVersion: 1, geozoneId: zone, totalNodes: total, activeNodes: active, avgGpuUtil: gpu, energyBreakdown: { cogen: active, grid: 0, battery: 0 }, timestamp: new Date(at).toISOString() };
}

function failure(n: number, at: number, geozone?: string, kind = TRAINING_FAILED): SystemEvent {
  return { schemaVersion: 1, id: seededUuid(`failure-${n}`), kind, severity: 'error', message: 'job failed', subjectId: `job-${n}`, timestamp: new Date(at).toISOString(), ...(geozone ? { geozone } : {}) };
}

const keys = (decisions: readonly AlertDecision[]): string[] => decisions.map((d) => `${d.type} ${d.type === 'raise' ? d.alert.key : d.alert.key}`);

/** Feeds a summary of every zone at `at` and evaluates. */
function tick(detector: AnomalyDetector, at: number, zones: Record<string, [active: number, gpu: number]>): AlertDecision[] {
  for (const [zone, [active, gpu]] of Object.entries(zones)) detector.observeSummary(summary(zone, at, active, gpu), at);
  return detector.evaluate(at);
}

describe('zone silence', () => {
  it('raises once when a zone misses two periods and clears with its next summary', () => {
    const detector = new AnomalyDetector(config, ['CAISO', 'ERCOT'], T0);
    expect(tick(detector, T0 + PERIOD, { CAISO: [10, 0.5], ERCOT: [10, 0.5] })).toEqual([]);
    expect(tick(detector, T0 + 2 * PERIOD, { CAISO: [10, 0.5] })).toEqual([]);
    // Exactly two periods after ERCOT's last summary is not yet more than two.
    expect(tick(detector, T0 + 3 * PERIOD, { CAISO: [10, 0.5] })).toEqual([]);
    const raised = detector.evaluate(T0 + 3 * PERIOD + 1);
    expect(keys(raised)).toEqual(['raise zone-silent:ERCOT']);
    const alert = raised[0]!.alert;
    expect(alert).toMatchObject({ kind: 'zone-silent', scope: 'ERCOT', severity: 'error', since: T0 + PERIOD });
    expect(alert.details).toMatchObject({ lastSummaryAt: new Date(T0 + PERIOD).toISOString(), silentMs: 2 * PERIOD + 1, summaryIntervalMs: PERIOD });
    expect(alert.message).toContain('ERCOT sent no regional summary for 120 s');
    // Still silent: no second raise, however often it is evaluated.
    for (let i = 1; i <= 5; i++) expect(tick(detector, T0 + (3 + i) * PERIOD, { CAISO: [10, 0.5] })).toEqual([]);
    expect(detector.active().map((a) => a.key)).toEqual(['zone-silent:ERCOT']);
    const cleared = tick(detector, T0 + 9 * PERIOD, { ERCOT: [10, 0.5] });
    expect(keys(cleared)).toEqual(['clear zone-silent:ERCOT']);
    expect(cleared[0]).toMatchObject({ type: 'clear', at: T0 + 9 * PERIOD, details: { durationMs: 8 * PERIOD } });
    expect(detector.active()).toEqual([]);
  });

  it('counts a configured zone that never reported from when it started watching, and a zone once seen like a configured one', () => {
    const detector = new AnomalyDetector(config, ['PJM'], T0);
    detector.observeSummary(summary('MISO', T0 + 1000), T0 + 1000);
    const raised = detector.evaluate(T0 + 2 * PERIOD + 1001);
    expect(keys(raised)).toEqual(['raise zone-silent:MISO', 'raise zone-silent:PJM']);
    expect(raised[1]!.alert).toMatchObject({ since: T0, details: { lastSummaryAt: null } });
    expect(raised[1]!.alert.message).toContain('none received yet');
  });

  it('does not blame the zones for a restart\'s downtime, but keeps a silence alerted before it', () => {
    const before = new AnomalyDetector(config, ['CAISO', 'ERCOT'], T0);
    tick(before, T0 + PERIOD, { CAISO: [10, 0.5], ERCOT: [10, 0.5] });
    const raised = tick(before, T0 + 4 * PERIOD, { CAISO: [10, 0.5] });
    expect(keys(raised)).toEqual(['raise zone-silent:ERCOT']);
    // Down for an hour; the new detector restores the stored alert and replays the stored summaries.
    const restart = T0 + 64 * PERIOD;
    const after = new AnomalyDetector(config, ['CAISO', 'ERCOT'], restart);
    after.observeSummary(summary('CAISO', T0 + 4 * PERIOD), T0 + 4 * PERIOD);
    after.observeSummary(summary('ERCOT', T0 + PERIOD), T0 + PERIOD);
    after.restore(before.active());
    expect(after.evaluate(restart)).toEqual([]);
    expect(after.evaluate(restart + PERIOD)).toEqual([]);
    // CAISO was not silent as far as this run knows until two periods after it started watching.
    expect(keys(after.evaluate(restart + 2 * PERIOD + 1))).toEqual(['raise zone-silent:CAISO']);
    expect(keys(tick(after, restart + 3 * PERIOD, { ERCOT: [10, 0.5] }))).toEqual(['clear zone-silent:ERCOT']);
  });
});

describe('node loss', () => {
  it('raises when more than the share of the window\'s most active nodes is lost, and clears when they return', () => {
    const detector = new AnomalyDetector(config, ['CAISO'], T0);
    expect(tick(detector, T0 + PERIOD, { CAISO: [20, 0.5] })).toEqual([]);
    // 6 of 20 is exactly 30 %: not more than the share.
    expect(tick(detector, T0 + 2 * PERIOD, { CAISO: [14, 0.5] })).toEqual([]);
    const raised = tick(detector, T0 + 3 * PERIOD, { CAISO: [13, 0.5] });
    expect(keys(raised)).toEqual(['raise node-loss:CAISO']);
    expect(raised[0]!.alert).toMatchObject({ severity: 'warn', since: T0 + 3 * PERIOD, details: { activeNodes: 13, peakActiveNodes: 20, lost: 7, lostShare: 0.35, lossShare: 0.3, lossWindowMs: 300_000 } });
    expect(raised[0]!.alert.message).toBe('CAISO lost 7 of 20 active nodes (35 %, over 30 %) within 300 s: 13 active now');
    expect(tick(detector, T0 + 4 * PERIOD, { CAISO: [5, 0.5] })).toEqual([]);
    expect(keys(tick(detector, T0 + 5 * PERIOD, { CAISO: [19, 0.5] }))).toEqual(['clear node-loss:CAISO']);
  });

  it('clears once the loss is older than the window, and a silent zone keeps its loss alert', () => {
    const detector = new AnomalyDetector({ ...config, silentPeriods: 100 }, ['CAISO'], T0);
    tick(detector, T0, { CAISO: [10, 0.5] });
    expect(keys(tick(detector, T0 + PERIOD, { CAISO: [5, 0.5] }))).toEqual(['raise node-loss:CAISO']);
    // Silence for ten minutes does not end the loss by itself: the window is over summaries.
    expect(detector.evaluate(T0 + 11 * PERIOD)).toEqual([]);
    expect(detector.active().map((a) => a.key)).toEqual(['node-loss:CAISO']);
    // The next summary finds the 10 active of T0 older than the window: the zone settled at 5.
    const cleared = tick(detector, T0 + 12 * PERIOD, { CAISO: [5, 0.5] });
    expect(keys(cleared)).toEqual(['clear node-loss:CAISO']);
    expect(cleared[0]).toMatchObject({ details: { activeNodes: 5, durationMs: 11 * PERIOD } });
  });
});

describe('GPU jumps', () => {
  it('raises on a change beyond the threshold between consecutive summaries and clears when steady', () => {
    const detector = new AnomalyDetector(config, ['PJM'], T0);
    tick(detector, T0, { PJM: [10, 0.2] });
    expect(tick(detector, T0 + PERIOD, { PJM: [10, 0.6] })).toEqual([]);
    const raised = tick(detector, T0 + 2 * PERIOD, { PJM: [10, 0.05] });
    expect(keys(raised)).toEqual(['raise gpu-jump:PJM']);
    expect(raised[0]!.alert.details).toMatchObject({ from: 0.6, to: 0.05, delta: -0.55, gpuJump: 0.4 });
    expect(raised[0]!.alert.message).toContain('dropped from 0.6 to 0.05');
    expect(tick(detector, T0 + 3 * PERIOD, { PJM: [10, 0.9] })).toEqual([]);
    expect(keys(tick(detector, T0 + 4 * PERIOD, { PJM: [10, 0.8] }))).toEqual(['clear gpu-jump:PJM']);
  });

  it('is no jump when a zone goes from no active nodes to some, and a redelivered summary changes nothing', () => {
    const detector = new AnomalyDetector(config, ['PJM'], T0);
    tick(detector, T0, { PJM: [0, 0] });
    expect(tick(detector, T0 + PERIOD, { PJM: [10, 0.9] })).toEqual([]);
    // The same summary again (at-least-once delivery): not a second data point.
    detector.observeSummary(summary('PJM', T0, 0, 0), T0 + PERIOD + 5);
    expect(detector.evaluate(T0 + PERIOD + 5)).toEqual([]);
  });
});

describe('training failures', () => {
  it('raises at the threshold within the window per geozone, counts a redelivery once, and clears as they age out', () => {
    const detector = new AnomalyDetector(config, [], T0);
    detector.observeEvent(failure(1, T0, 'CAISO'), T0);
    detector.observeEvent(failure(2, T0 + 1000, 'CAISO', HPC_FAILED), T0 + 1000);
    detector.observeEvent(failure(2, T0 + 1000, 'CAISO', HPC_FAILED), T0 + 1500);
    detector.observeEvent(failure(3, T0 + 2000, 'ERCOT'), T0 + 2000);
    detector.observeEvent({ ...failure(9, T0), kind: 'node.offline' }, T0 + 2000);
    expect(detector.evaluate(T0 + 2000)).toEqual([]);
    detector.observeEvent(failure(4, T0 + 3000, 'CAISO'), T0 + 3000);
    const raised = detector.evaluate(T0 + 3000);
    expect(keys(raised)).toEqual(['raise training-failures:CAISO']);
    expect(raised[0]!.alert).toMatchObject({ severity: 'error', since: T0, details: { count: 3, failureThreshold: 3, failureWindowMs: 600_000 } });
    expect(raised[0]!.alert.message).toContain('3 training/HPC job failures in CAISO within 600 s');
    // A fourth keeps the one alert.
    detector.observeEvent(failure(5, T0 + 4000, 'CAISO'), T0 + 4000);
    expect(detector.evaluate(T0 + 4000)).toEqual([]);
    // At T0 + 10 min + 1 s the first has aged out: 3 remain.
    expect(detector.evaluate(T0 + 601_000)).toEqual([]);
    expect(keys(detector.evaluate(T0 + 602_000))).toEqual(['clear training-failures:CAISO']);
  });

  it('keeps an alert across a restart from the failures it recorded', () => {
    const before = new AnomalyDetector(config, [], T0);
    for (let i = 1; i <= 3; i++) before.observeEvent(failure(i, T0 + i * 1000), T0 + i * 1000);
    expect(keys(before.evaluate(T0 + 3000))).toEqual(['raise training-failures:global']);
    const after = new AnomalyDetector(config, [], T0 + 60_000);
    after.restore(JSON.parse(JSON.stringify(before.active())) as ReturnType<typeof before.active>);
    expect(after.evaluate(T0 + 60_000)).toEqual([]);
    expect(keys(after.evaluate(T0 + 602_000))).toEqual(['clear training-failures:global']);
  });
});

it('restoring the alerts it raised, after replaying the summaries, gives no decision (a standby taking over)', () => {
  const leader = new AnomalyDetector(config, ['CAISO', 'ERCOT'], T0);
  const standby = new AnomalyDetector(config, ['CAISO', 'ERCOT'], T0);
  const feed = (at: number, zones: Record<string, [number, number]>): AlertDecision[] => {
    for (const [zone, [active, gpu]] of Object.entries(zones)) standby.observeSummary(summary(zone, at, active, gpu), at);
    return tick(leader, at, zones);
  };
  feed(T0, { CAISO: [20, 0.1], ERCOT: [20, 0.1] });
  expect(keys(feed(T0 + PERIOD, { CAISO: [10, 0.9] }))).toEqual(['raise gpu-jump:CAISO', 'raise node-loss:CAISO']);
  expect(keys(feed(T0 + 3 * PERIOD + 1, { CAISO: [10, 0.9] }))).toEqual(['clear gpu-jump:CAISO', 'raise zone-silent:ERCOT']);
  standby.restore(leader.active());
  expect(standby.evaluate(T0 + 3 * PERIOD + 2)).toEqual([]);
  expect(standby.active()).toEqual(leader.active());
});

/**
 * The central orchestrator's pure parts over random inputs: the global view's total is the sum of
 * the zones' newest summaries whatever order they arrive in; the detector's decisions for one alert
 * key alternate raise, clear, raise… (never two raises without a clear between), and what it says is
 * active is exactly what it raised and has not cleared.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { RegionalSummary } from '../../src/contracts/messages.ts';
import { GlobalView } from '../../src/mesh/global-view.ts';
import { AnomalyDetector, DEFAULT_ANOMALY_CONFIG, TRAINING_FAILED } from '../../src/mesh/anomalies.ts';
import { seededUuid } from '../../src/core/ids.ts';

const T0 = Date.UTC(2026, 0, 1);
const ZONES = ['CAISO', 'ERCOT', 'PJM', 'MISO'];

const summaryArb = fc.record({
  zone: fc.constantFrom(...ZONES),
  minute: fc.integer({ min: 0, max: 30 }),
  total: fc.integer({ min: 0, max: 200 }),
  activeShare: fc.double({ min: 0, max: 1, noNaN: true }),
  gpu: fc.integer({ min: 0, max: 10_000 }),
  cogenShare: fc.double({ min: 0, max: 1, noNaN: true }),
});

function summaryOf(s: { zone: string; minute: number; total: number; activeShare: number; gpu: number; cogenShare: number }): RegionalSummary {
  const active = Math.floor(s.total * s.activeShare);
  const cogen = Math.floor(active * s.cogenShare);
  return { schemaVersion: 1, geozoneId: s.zone, totalNodes: s.total, activeNodes: active, avgGpuUtil: active === 0 ? 0 : s.gpu / 10_000, energyBreakdown: { cogen, grid: active - cogen, battery: 0 }, timestamp: new Date(T0 + s.minute * 60_000).toISOString() };
}

describe('global view', () => {
  it('the total is the sum of every zone\'s newest summary, in any arrival order', () => {
    fc.assert(
      fc.property(fc.array(summaryArb, { maxLength: 40 }), (inputs) => {
        const summaries = inputs.map(summaryOf);
        const view = new GlobalView();
        for (const s of summaries) view.apply(s);
        const newest = new Map<string, RegionalSummary>();
        for (const s of summaries) {
          const seen = newest.get(s.geozoneId);
          if (!seen || Date.parse(s.timestamp) > Date.parse(seen.timestamp)) newest.set(s.geozoneId, s);
        }
        const zones = [...newest.values()];
        const total = view.total();
        expect(total.zones).toBe(zones.length);
        expect(total.nodes).toBe(zones.reduce((n, z) => n + z.totalNodes, 0));
        const active = zones.reduce((n, z) => n + z.activeNodes, 0);
        expect(total.active).toBe(active);
        for (const source of ['cogen', 'grid', 'battery'] as const) expect(total.energy[source]).toBe(zones.reduce((n, z) => n + z.energyBreakdown[source], 0));
        const weighted = zones.reduce((n, z) => n + z.avgGpuUtil * z.activeNodes, 0);
        // The view rounds to 4 decimals: within half a unit of the 4th of the exact mean, and a float's slack
        // (toBeCloseTo(·, 4) allows strictly less than half a unit, which a mean ending in 5 at the 5th reaches).
        expect(Math.abs(total.avgGpuUtil - (active === 0 ? 0 : weighted / active))).toBeLessThanOrEqual(0.5e-4 + 1e-9);
        expect(view.zones().map((z) => z.lastSummaryAt)).toEqual(zones.sort((a, b) => a.geozoneId.localeCompare(b.geozoneId)).map((z) => z.timestamp));
      }),
      { numRuns: 500 },
    );
  });
});

describe('anomaly detector', () => {
  const step = fc.oneof(
    summaryArb.map((s) => ({ type: 'summary' as const, s })),
    fc.record({ type: fc.constant('failure' as const), n: fc.integer({ min: 0, max: 50 }), zone: fc.constantFrom(undefined, ...ZONES) }),
    fc.record({ type: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 200_000 }) }),
  );

  it('alternates raise and clear per alert key, and its active alerts are those raised and not cleared', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80 }), (steps) => {
        const detector = new AnomalyDetector(DEFAULT_ANOMALY_CONFIG, ['CAISO', 'ERCOT'], T0);
        let now = T0;
        const open = new Set<string>();
        for (const s of steps) {
          if (s.type === 'wait') now += s.ms;
          else if (s.type === 'summary') detector.observeSummary({ ...summaryOf(s.s), timestamp: new Date(now + s.s.minute).toISOString() }, now);
          else detector.observeEvent({ schemaVersion: 1, id: seededUuid(`f-${s.n}`), kind: TRAINING_FAILED, severity: 'error', message: 'failed', timestamp: new Date(now).toISOString(), ...(s.zone ? { geozone: s.zone } : {}) }, now);
          for (const decision of detector.evaluate(now)) {
            if (decision.type === 'raise') {
              expect(open.has(decision.alert.key)).toBe(false);
              open.add(decision.alert.key);
            } else {
              expect(open.has(decision.alert.key)).toBe(true);
              open.delete(decision.alert.key);
            }
          }
          // active() lists alerts in the console's order (localeCompare), not code-point order.
          expect(detector.active().map((a) => a.key)).toEqual([...open].sort((a, b) => a.localeCompare(b)));
        }
        // Nothing changed: a second evaluation at the same time decides nothing.
        expect(detector.evaluate(now)).toEqual([]);
      }),
      { numRuns: 500 },
    );
  });
});

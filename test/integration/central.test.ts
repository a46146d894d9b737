/**
 * The central orchestrator inside `startEmbedded` (memory bus, SQLite in a temporary directory, the
 * HTTP API), with the aggregator's summary period at 300 ms: the global view equals the sum of the
 * zones' newest summaries; a zone made silent raises one alert, which stays one across a restart on
 * the same data and clears when the zone reports again; the history is read from the stored
 * documents; bad queries are 400s naming the field.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RegionalSummary, SystemEvent } from '../../src/contracts/messages.ts';
import { topics } from '../../src/contracts/topics.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { ALERT_CLEARED, ALERT_RAISED } from '../../src/mesh/anomalies.ts';
import type { GlobalSnapshot, HistorySeries } from '../../src/mesh/central.ts';
import { keyed } from '../support/api-key.ts';
import { until } from '../support/until.ts';

/**
 * The summary period. A zone is silent after two periods without a summary; at 300 ms a loaded CI
 * machine (other suites' brokers beside this one) stalled the configured zones' summaries that long
 * and raised alerts for them too.
 */
const PERIOD = 1_000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('central orchestrator in arcnet up', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'arcnet-central-'));
  const running: EmbeddedSystem[] = [];
  afterEach(async () => {
    for (const system of running.splice(0)) await system.stop();
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  const start = async (): Promise<{ system: EmbeddedSystem; events: SystemEvent[]; summaries: RegionalSummary[]; get: <T>(path: string) => Promise<{ status: number; body: T }> }> => {
    const system = await startEmbedded(withDefaults({ port: 0, dataDir, summaryIntervalMs: PERIOD, telemetryIntervalMs: 200, simulation: { nodes: 12, requestRate: 0, silencesPerHour: 0 } }));
    running.push(system);
    const events: SystemEvent[] = [];
    const summaries: RegionalSummary[] = [];
    await system.bus.subscribe('test-central-events', [topics.systemEvent], 'SystemEvent', (e) => void events.push(e));
    await system.bus.subscribe('test-central-summaries', [topics.regionalSummary], 'RegionalSummary', (s) => void summaries.push(s));
    const api = keyed(system.operatorKey);
    const get = async <T,>(path: string): Promise<{ status: number; body: T }> => {
      const response = await api(`${system.url}${path}`);
      return { status: response.status, body: (await response.json()) as T };
    };
    return { system, events, summaries, get };
  };

  const miso = (system: EmbeddedSystem, active: number): Promise<void> =>
    system.bus.publish(topics.regionalSummary, 'RegionalSummary', { schemaVersion: 1, geozoneId: 'MISO', totalNodes: active, activeNodes: active, avgGpuUtil: 0.25, energyBreakdown: { cogen: active, grid: 0, battery: 0 }, timestamp: new Date().toISOString() });
  const alerts = (events: readonly SystemEvent[], kind: string, key: string): SystemEvent[] => events.filter((e) => e.kind === kind && e.subjectId === key);

  it('answers the global view as the sum of the zones\' newest summaries, and its history from the store', async () => {
    const { summaries, get } = await start();
    // Wait until every zone's newest summary shows its simulated nodes.
    const snapshot = await until(async () => {
      const { body } = await get<GlobalSnapshot>('/api/v1/global');
      return body.zones.length === 3 && body.total.nodes === 12 && body.zones.every((z) => z.nodes > 0) ? body : undefined;
    }, 'the global view of three zones and 12 nodes');
    const newest = new Map<string, RegionalSummary>();
    for (const s of summaries) newest.set(s.geozoneId, s);
    for (const zone of snapshot.zones) {
      const s = summaries.filter((x) => x.geozoneId === zone.geozone && x.timestamp === zone.lastSummaryAt)[0];
      expect(s, `a summary of ${zone.geozone} at ${zone.lastSummaryAt}`).toBeDefined();
      expect(zone).toEqual({ geozone: s!.geozoneId, nodes: s!.totalNodes, active: s!.activeNodes, avgGpuUtil: s!.avgGpuUtil, energy: s!.energyBreakdown, lastSummaryAt: s!.timestamp });
    }
    const sum = (f: (z: GlobalSnapshot['zones'][number]) => number): number => snapshot.zones.reduce((n, z) => n + f(z), 0);
    expect(snapshot.total).toMatchObject({ zones: 3, nodes: sum((z) => z.nodes), active: sum((z) => z.active), energy: { cogen: sum((z) => z.energy.cogen), grid: sum((z) => z.energy.grid), battery: sum((z) => z.energy.battery) } });
    expect(snapshot.total.avgGpuUtil).toBeCloseTo(sum((z) => z.avgGpuUtil * z.active) / sum((z) => z.active), 3);
    expect(snapshot.leading).toBe(true);
    expect(snapshot.alerts).toEqual([]);

    const { status, body } = await get<{ series: HistorySeries[] }>(`/api/v1/global/history?from=${encodeURIComponent(new Date(Date.now() - 60_000).toISOString())}`);
    expect(status).toBe(200);
    expect(body.series.map((s) => s.id)).toEqual(['total', 'zone:CAISO', 'zone:ERCOT', 'zone:PJM']);
    const caiso = body.series[1]!;
    expect(caiso.points.length).toBeGreaterThan(0);
    // One point per summary of the zone, at the summary's time.
    const stored = caiso.points.map((p) => p.at);
    expect(stored).toEqual([...stored].sort());
    for (const at of stored) expect(summaries.some((s) => s.geozoneId === 'CAISO' && s.timestamp === at)).toBe(true);
    const one = await get<{ series: HistorySeries[] }>(`/api/v1/global/history?geozone=ERCOT&limit=1&to=${Date.now()}`);
    expect(one.body.series).toHaveLength(1);
    expect(one.body.series[0]).toMatchObject({ id: 'zone:ERCOT', geozone: 'ERCOT', points: [expect.objectContaining({ scope: 'zone', geozone: 'ERCOT' })] });

    for (const [query, field] of [['from=yesterday', 'querystring/from'], ['to=2026-02-30T00:00:00Z', 'querystring/to'], ['from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 'querystring/from'], ['limit=0', 'querystring/limit'], ['geozone=a%20b', 'querystring/geozone'], ['until=1', 'querystring']] as const) {
      const bad = await get<{ message: string }>(`/api/v1/global/history?${query}`);
      expect(bad.status, query).toBe(400);
      expect(bad.body.message, query).toContain(field);
    }
    expect((await get<{ message: string }>('/api/v1/global/history?geozone=NOWHERE')).status).toBe(404);
  });

  it('raises one alert for a zone made silent, keeps it one across a restart, and clears it when the zone reports again', async () => {
    let run = await start();
    for (let i = 0; i < 3; i++) {
      await miso(run.system, 8);
      await sleep(PERIOD);
    }
    await until(async () => (await run.get<GlobalSnapshot>('/api/v1/global')).body.zones.some((z) => z.geozone === 'MISO'), 'MISO in the global view');
    // Silent from here: one raise after two periods, and no other however long it lasts.
    const raised = await until(() => alerts(run.events, ALERT_RAISED, 'zone-silent:MISO')[0], 'the zone-silent alert', 10 * PERIOD);
    expect(raised).toMatchObject({ severity: 'error', geozone: 'MISO', details: { alert: 'zone-silent', key: 'zone-silent:MISO', summaryIntervalMs: PERIOD } });
    expect(raised.message).toMatch(/^MISO sent no regional summary for \d+ s/);
    expect(Date.parse(String(raised.details!['since']))).toBeLessThan(Date.parse(raised.timestamp));
    await sleep(4 * PERIOD);
    expect(alerts(run.events, ALERT_RAISED, 'zone-silent:MISO')).toHaveLength(1);
    const { body } = await run.get<GlobalSnapshot>('/api/v1/global');
    expect(body.alerts.map((a) => a.key)).toEqual(['zone-silent:MISO']);
    // The configured zones keep reporting: nothing else was raised.
    expect(run.events.filter((e) => e.kind === ALERT_RAISED).map((e) => e.subjectId)).toEqual(['zone-silent:MISO']);

    // A restart on the same data: the alert is loaded from the store, not raised again.
    await run.system.stop();
    running.splice(0);
    run = await start();
    expect((await run.get<GlobalSnapshot>('/api/v1/global')).body.alerts.map((a) => a.key)).toEqual(['zone-silent:MISO']);
    await sleep(4 * PERIOD);
    expect(alerts(run.events, ALERT_RAISED, 'zone-silent:MISO')).toEqual([]);

    await miso(run.system, 8);
    const cleared = await until(() => alerts(run.events, ALERT_CLEARED, 'zone-silent:MISO')[0], 'the clearing', 10 * PERIOD);
    expect(cleared).toMatchObject({ severity: 'success', geozone: 'MISO', details: { key: 'zone-silent:MISO', since: raised.details!['since'] } });
    expect(cleared.message).toMatch(/^MISO reports again after \d+ s without a summary/);
    expect((await run.get<GlobalSnapshot>('/api/v1/global')).body.alerts).toEqual([]);
    expect(alerts(run.events, ALERT_RAISED, 'zone-silent:MISO')).toEqual([]);
  });
});

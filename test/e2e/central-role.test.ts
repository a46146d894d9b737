/**
 * `arcnet central` as two processes on Kafka and PostgreSQL, fed regional summaries by the test (the
 * aggregators' role, at a 500 ms period): both replicas answer the global view (the standby is warm),
 * a zone made silent raises exactly one alert, which stays one when the leader is SIGKILLed and the
 * standby takes the `central` lease, and the new leader clears it when the zone reports again.
 * Read back from `arc.event.system` by a consumer of the test's own; `arcnet global` prints the view.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { CLI, freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, testSchemas } from '../support/postgres.ts';
import { KAFKA_BOOTSTRAP, kafkaServers } from '../support/kafka.ts';
import { until } from '../support/until.ts';
import { KafkaBus } from '../../src/bus/kafka.ts';
import { MessageBus } from '../../src/bus/typed-bus.ts';
import type { Consumer } from '../../src/bus/ports.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { SystemEvent } from '../../src/contracts/messages.ts';
import { openPostgresStores } from '../../src/store/postgres.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { ALERT_CLEARED, ALERT_RAISED } from '../../src/mesh/anomalies.ts';
import type { GlobalSnapshot, HistorySeries } from '../../src/mesh/central.ts';

const engines = needEngines('postgres', 'kafka');
const PERIOD = 500;
// Zones of this run only: other suites (and earlier runs) share the broker's topics.
const run = randomUUID().slice(0, 6);
const HOME = `MISO-${run}`;
const SILENT = `SPP-${run}`;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!engines.available)(engines.title('arcnet central replicas on Kafka and PostgreSQL'), () => {
  const schemas = testSchemas();
  const children: CliProcess[] = [];
  let stores: StateStores | undefined;
  let client: KafkaBus | undefined;
  let readback: Consumer | undefined;
  let feeding: NodeJS.Timeout | undefined;
  afterAll(async () => {
    clearInterval(feeding);
    for (const child of children) {
      // A child killed by a signal has a signalCode and no exitCode: it has exited already.
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((resolve) => child.once('exit', resolve));
      }
    }
    await readback?.close();
    await client?.close();
    await stores?.close();
    await schemas.dropAll();
  });

  it('one alert for a silent zone across a leader SIGKILL, cleared by the new leader', async () => {
    const schema = await schemas.fresh();
    stores = await openPostgresStores({ url: POSTGRES_URL, schema });
    const ports = [await freePort(), await freePort()];
    const replicas = ports.map((port) => {
      const child = startCli(['central', '--kafka', KAFKA_BOOTSTRAP, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--geozone', HOME, '--port', String(port), '--summary-interval', String(PERIOD), '--lease-ttl', '2000', '--insecure-no-auth', '--log-level', 'warn']);
      children.push(child);
      return { child, url: `http://127.0.0.1:${port}` };
    });
    const global = async (url: string): Promise<GlobalSnapshot> => (await (await fetch(`${url}/api/v1/global`)).json()) as GlobalSnapshot;
    const instances = await Promise.all(replicas.map((r) => untilUp(async () => ((await (await fetch(`${r.url}/health`)).json()) as { instanceId: string }).instanceId, 'a central replica', 60_000)));

    client = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: `e2e-central-${randomUUID().slice(0, 6)}` });
    const bus = new MessageBus(client);
    const events: SystemEvent[] = [];
    readback = await bus.subscribe(`e2e-central-readback-${randomUUID()}`, [topics.systemEvent], 'SystemEvent', (e) => {
      if (e.geozone?.endsWith(`-${run}`)) events.push(e);
    }, { startAt: 'latest' });
    const zones = new Set([HOME, SILENT]);
    const publish = (): void => {
      for (const zone of zones) {
        void bus.publish(topics.regionalSummary, 'RegionalSummary', { schemaVersion: 1, geozoneId: zone, totalNodes: 10, activeNodes: 8, avgGpuUtil: 0.3, energyBreakdown: { cogen: 4, grid: 4, battery: 0 }, timestamp: new Date().toISOString() });
      }
    };
    feeding = setInterval(publish, PERIOD);

    // Both replicas hold the view: the standby consumes every summary too.
    for (const { url } of replicas) {
      const view = await until(async () => {
        const body = await global(url);
        return body.zones.length === 2 ? body : undefined;
      }, `both zones in ${url}'s view`, 30_000);
      expect(view.total).toMatchObject({ zones: 2, nodes: 20, active: 16, avgGpuUtil: 0.3, energy: { cogen: 8, grid: 8, battery: 0 } });
    }
    // From here on every alert is the test's doing (before, the configured zone may have been silent
    // while the replicas waited for the test's first summary: a true alert, raised and cleared).
    await until(async () => (await global(replicas[0]!.url)).alerts.length === 0 && (await global(replicas[1]!.url)).alerts.length === 0, 'no alert standing', 15_000);
    events.length = 0;
    const lease = await until(() => stores!.leases.current('central'), 'a central leader');
    const leaderIndex = instances.indexOf(lease.holder);
    expect(leaderIndex).toBeGreaterThanOrEqual(0);
    const leader = replicas[leaderIndex]!;
    const standby = replicas[1 - leaderIndex]!;
    expect((await global(leader.url)).leading).toBe(true);
    expect((await global(standby.url)).leading).toBe(false);

    const raisedFor = (key: string): SystemEvent[] => events.filter((e) => e.kind === ALERT_RAISED && e.subjectId === key);
    zones.delete(SILENT);
    const raised = await until(() => raisedFor(`zone-silent:${SILENT}`)[0], 'the zone-silent alert', 15_000);
    expect(raised).toMatchObject({ severity: 'error', geozone: SILENT, details: { key: `zone-silent:${SILENT}`, summaryIntervalMs: PERIOD } });
    await until(async () => (await global(standby.url)).alerts.some((a) => a.key === `zone-silent:${SILENT}`), 'the standby to show the alert', 15_000);

    leader.child.kill('SIGKILL');
    const takeover = await until(async () => {
      const current = await stores!.leases.current('central');
      return current && current.holder === instances[1 - leaderIndex] ? current : undefined;
    }, 'the standby to take the central lease', 20_000);
    expect(takeover.token).toBeGreaterThan(lease.token);
    await until(async () => (await global(standby.url)).leading, 'the new leader to lead', 10_000);
    await sleep(4 * PERIOD);
    expect(raisedFor(`zone-silent:${SILENT}`)).toHaveLength(1);
    expect(events.filter((e) => e.kind === ALERT_RAISED).map((e) => e.subjectId)).toEqual([`zone-silent:${SILENT}`]);

    zones.add(SILENT);
    const cleared = await until(() => events.find((e) => e.kind === ALERT_CLEARED && e.subjectId === `zone-silent:${SILENT}`), 'the clearing by the new leader', 15_000);
    expect(cleared).toMatchObject({ severity: 'success', geozone: SILENT, details: { since: raised.details!['since'] } });
    await sleep(2 * PERIOD);
    expect(events.filter((e) => e.kind === ALERT_CLEARED)).toHaveLength(1);
    expect((await global(standby.url)).alerts).toEqual([]);

    const history = (await (await fetch(`${standby.url}/api/v1/global/history?geozone=${SILENT}`)).json()) as { series: HistorySeries[] };
    expect(history.series[0]!.points.length).toBeGreaterThan(2);
    const printed = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'global', '--server', standby.url], { env: { ...process.env, NO_COLOR: '1' }, timeout: 20_000 }, (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr })),
    );
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toMatch(/GEOZONE\s+NODES\s+ACTIVE\s+GPU AVG/);
    expect(printed.stdout).toMatch(new RegExp(`^${SILENT}\\s+10\\s+8\\s+30%`, 'm'));
    expect(printed.stdout).toMatch(/^TOTAL\s+20\s+16\s+30%/m);
    expect(printed.stdout).toContain('no active alerts');
  });
});

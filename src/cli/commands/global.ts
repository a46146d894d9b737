/**
 * `arcnet global`: the central orchestrator's global view of a running server (`GET /api/v1/global`):
 * per zone and total nodes, active, GPU average, energy, the last summary, and the active alerts.
 * `--history` reads the stored view instead (`GET /api/v1/global/history`), between `--from` and
 * `--to` (a duration back from now such as 15m, or an ISO-8601 instant), for one `--geozone` or the
 * total and every zone.
 */
import type { Command } from 'commander';
import type { GlobalSnapshot, HistorySeries } from '../../mesh/central.ts';
import type { GlobalFigures } from '../../mesh/global-view.ts';
import { ago, colour, oneLine, table } from '../format.ts';
import { getJson } from '../get-json.ts';
import { int, usage } from '../options.ts';
import { withClientTlsOptions } from '../tls-options.ts';
import { instantOf } from './audit.ts';

interface GlobalFlags {
  server: string;
  json: boolean;
  history: boolean;
  from?: string;
  to?: string;
  geozone?: string;
  limit?: number;
}

const gpu = (value: number): string => `${Math.round(value * 1000) / 10}%`;
const figures = (f: GlobalFigures): string[] => [String(f.nodes), String(f.active), gpu(f.avgGpuUtil), String(f.energy.cogen), String(f.energy.grid), String(f.energy.battery)];

function printNow(body: GlobalSnapshot): void {
  const rows = body.zones.map((z) => [z.geozone, ...figures(z), z.lastSummaryAt === null ? '-' : ago(z.lastSummaryAt)]);
  rows.push([colour('TOTAL', 'bold'), ...figures(body.total), body.total.lastSummaryAt === null ? '-' : ago(body.total.lastSummaryAt)]);
  const alerts =
    body.alerts.length === 0
      ? colour('no active alerts', 'green')
      : table(
          ['SEVERITY', 'ALERT', 'SINCE', 'WHAT'],
          body.alerts.map((a) => [colour(a.severity, a.severity === 'error' ? 'red' : 'yellow'), a.key, ago(a.since), oneLine(a.message, 100)]),
        );
  process.stdout.write(
    `${table(['GEOZONE', 'NODES', 'ACTIVE', 'GPU AVG', 'COGEN', 'GRID', 'BATTERY', 'LAST SUMMARY'], rows)}\n\n${alerts}\n\n` +
      `${body.zones.length} zones, summaries every ${Math.round(body.summaryIntervalMs / 1000)} s${body.leading ? '' : ' (this replica stands by: alerts as the writer recorded them)'}\n`,
  );
}

function printHistory(series: readonly HistorySeries[]): void {
  const rows = series.flatMap((s) => s.points.map((p) => [p.at, s.geozone ?? 'TOTAL', ...figures(p)]));
  const truncated = series.filter((s) => s.truncated).map((s) => s.geozone ?? 'total');
  process.stdout.write(
    `${table(['AT', 'GEOZONE', 'NODES', 'ACTIVE', 'GPU AVG', 'COGEN', 'GRID', 'BATTERY'], rows)}\n\n${rows.length} points` +
      `${truncated.length > 0 ? `; only the newest of ${truncated.join(', ')} (raise --limit)` : ''}\n`,
  );
}

export function registerGlobal(program: Command): void {
  withClientTlsOptions(program.command('global'))
    .description("the central orchestrator's global view of a running server: zones, total and active alerts (or its stored history)")
    .option('--server <url>', 'ArcNet server (arcnet up, or arcnet central)', 'http://127.0.0.1:8080')
    .option('--json', 'raw JSON', false)
    .option('--history', 'the stored history instead of now', false)
    .option('--from <when>', 'history from then: a duration back from now (90s, 15m, 1h, 7d) or an ISO-8601 instant')
    .option('--to <when>', 'history until then: a duration back from now or an ISO-8601 instant')
    .option('--geozone <zone>', 'history of this zone only (default: the total and every zone)')
    .option('--limit <n>', 'history: at most this many points per series, the newest (1 to 10000)', int('--limit', 1))
    .action(async (flags: GlobalFlags) => {
      if (!flags.history && (flags.from !== undefined || flags.to !== undefined || flags.geozone !== undefined || flags.limit !== undefined)) {
        throw usage('--from, --to, --geozone and --limit are for --history');
      }
      if (!flags.history) {
        const body = (await getJson(flags.server, '/api/v1/global')) as GlobalSnapshot;
        if (flags.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
        return printNow(body);
      }
      const query = new URLSearchParams();
      if (flags.from !== undefined) query.set('from', instantOf('--from', flags.from));
      if (flags.to !== undefined) query.set('to', instantOf('--to', flags.to));
      if (flags.geozone !== undefined) query.set('geozone', flags.geozone);
      if (flags.limit !== undefined) query.set('limit', String(flags.limit));
      const body = (await getJson(flags.server, `/api/v1/global/history?${query}`)) as { series: HistorySeries[] };
      if (flags.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      printHistory(body.series);
    });
}

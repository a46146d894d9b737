/** `arcnet stats`: per-zone node counts, routing figures, jobs and workers, and the engines a running server uses. */
import type { Command } from 'commander';
import { colour, table } from '../format.ts';
import { getJson } from '../get-json.ts';
import { withClientTlsOptions } from '../tls-options.ts';

interface StatsBody {
  /** What older servers say instead of `engines`. */
  mode: string;
  engines?: { bus: string; store?: string };
  uptimeS: number;
  agentsConnected: number;
  nodes: { total: number; byGeozone: Record<string, Record<string, number>> };
  inference: Record<string, number | null>;
  jobs?: Record<string, number>;
  workers?: Record<string, number | null>;
}

const cell = (v: number | null | undefined): string => (v === null || v === undefined ? '-' : String(v));

export function registerStats(program: Command): void {
  withClientTlsOptions(program.command('stats'))
    .description('system statistics of a running server')
    .option('--server <url>', 'ArcNet server', 'http://127.0.0.1:8080')
    .option('--json', 'raw JSON', false)
    .action(async (opts: { server: string; json: boolean }) => {
      const body = (await getJson(opts.server, '/stats')) as StatsBody;
      if (opts.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      const zoneRows = Object.entries(body.nodes.byGeozone).map(([zone, c]) => [zone, String(c['total'] ?? 0), colour(String(c['online'] ?? 0), 'green'), String(c['busy'] ?? 0), String(c['draining'] ?? 0), colour(String(c['offline'] ?? 0), (c['offline'] ?? 0) > 0 ? 'red' : 'grey')]);
      const i = body.inference;
      const engines = body.engines ? `bus ${body.engines.bus}, store ${body.engines.store ?? '-'}` : `${body.mode} mode`;
      process.stdout.write(
        `${table(['GEOZONE', 'NODES', 'ONLINE', 'BUSY', 'DRAINING', 'OFFLINE'], zoneRows)}\n\n` +
          `${table(['REQUESTS', 'REQ/S', 'DISPATCHED', 'FORWARDED', 'COMPLETED', 'FAILED', 'REJECTED', 'ROUTE P50 MS', 'ROUTE P99 MS', 'LATENCY P50 MS', 'LATENCY P99 MS'], [
            [i['requests'], i['requestsPerSecond'], i['dispatched'], i['forwarded'], i['completed'], i['failed'], i['rejected'], i['routingMsP50'], i['routingMsP99'], i['latencyMsP50'], i['latencyMsP99']].map(cell),
          ])}\n\n` +
          (body.jobs && body.workers
            ? `${table(['JOBS', 'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'WORKERS', 'ONLINE', 'BUSY', 'OFFLINE', 'CPU CORES', 'MEMORY GB', 'AVG REPUTATION'], [
                [body.jobs['total'], body.jobs['pending'], body.jobs['running'], body.jobs['completed'], body.jobs['failed'], body.workers['total'], body.workers['online'], body.workers['busy'], body.workers['offline'], body.workers['cpuCores'], body.workers['memoryGb'], body.workers['reputationAvg']].map(cell),
              ])}\n\n`
            : '') +
          `${engines}, up ${body.uptimeS} s, ${body.agentsConnected} agents connected\n`,
      );
    });
}

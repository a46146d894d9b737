/** `arcnet nodes`: the node list of a running server, telemetry nodes and workers in one table (ADR 0007). */
import type { Command } from 'commander';
import { colour, percent, statusColour, table, truncateId } from '../format.ts';
import { getJson } from '../get-json.ts';
import { withClientTlsOptions } from '../tls-options.ts';

export function registerNodes(program: Command): void {
  withClientTlsOptions(program.command('nodes'))
    .description('list the nodes of a running server')
    .option('--server <url>', 'ArcNet server', 'http://127.0.0.1:8080')
    .option('--geozone <zone>', 'only this geozone')
    .option('--as-of <time>', 'valid time: the nodes as they were then (ISO-8601)')
    .option('--known-at <time>', 'transaction time: what the server knew then (ISO-8601)')
    .option('--json', 'raw JSON', false)
    .action(async (opts: { server: string; geozone?: string; asOf?: string; knownAt?: string; json: boolean }) => {
      const query = new URLSearchParams();
      if (opts.geozone) query.set('geozone', opts.geozone);
      if (opts.asOf) query.set('asOf', opts.asOf);
      if (opts.knownAt) query.set('knownAt', opts.knownAt);
      const body = (await getJson(opts.server, `/api/v1/nodes${query.size > 0 ? `?${query}` : ''}`)) as { count: number; nodes: Record<string, unknown>[] };
      if (opts.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      // Telemetry columns for inference nodes, seed 004's columns for workers; a node can be both.
      const optional = (value: unknown, show: (v: never) => string): string => (value === undefined || value === null ? '-' : show(value as never));
      const rows = body.nodes.map((n) => [
        truncateId(String(n['id'])),
        String(n['name']),
        String(n['geozone']),
        colour(String(n['status']), statusColour(String(n['status']))),
        optional(n['energySource'], String),
        optional(n['batteryLevel'], (v: number) => percent(v)),
        optional(n['gpuUtilization'], (v: number) => percent(v)),
        n['reservation'] ? 'yes' : '',
        optional(n['modelsLoaded'], (v: string[]) => v.join(',') || '-'),
        optional(n['reputation_score'], (v: number) => colour(String(v), v >= 100 ? 'green' : v >= 50 ? 'yellow' : 'red')),
        optional(n['total_jobs_run'], (v: number) => `${v} (${String(n['successful_jobs_run'])} ok, ${String(n['failed_jobs'])} failed)`),
        optional(n['credits_earned'], String),
      ]);
      process.stdout.write(`${table(['ID', 'NAME', 'ZONE', 'STATUS', 'ENERGY', 'BATTERY', 'GPU', 'RESERVED', 'MODELS', 'REPUTATION', 'JOBS', 'CREDITS'], rows)}\n${body.count} nodes\n`);
    });
}

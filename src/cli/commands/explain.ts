/**
 * `arcnet explain <request-id>` and `arcnet explain --job <job-id>`: why the scheduler (or the
 * coordinator) chose that node, recomputed by a running server from the documents as of the
 * decision: each filter with the nodes it removed, the best candidates with their score terms, the
 * one chosen, whether the request was forwarded and whether the recomputation agrees.
 */
import type { Command } from 'commander';
import type { JobExplanation, PlacementExplanation } from '../../contracts/console.ts';
import { colour, table, truncateId } from '../format.ts';
import { getJson } from '../get-json.ts';
import { usage } from '../options.ts';
import { withClientTlsOptions } from '../tls-options.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const num = (v: number): string => String(Math.round(v * 100) / 100);

function termColumns(candidates: readonly { terms: Record<string, number> }[]): string[] {
  return [...new Set(candidates.flatMap((c) => Object.keys(c.terms)))];
}

function filtersTable(filters: readonly { name: string; removed: number }[]): string {
  return table(['FILTER', 'REMOVED'], filters.map((f) => [f.name, f.removed > 0 ? colour(String(f.removed), 'yellow') : '0']));
}

function printPlacement(why: PlacementExplanation): string {
  const terms = termColumns(why.candidates);
  const candidates = why.candidates.map((c) => [c.chosen ? colour('*', 'green') : '', truncateId(c.nodeId), c.nodeName, c.geozone, num(c.score), ...terms.map((t) => num(c.terms[t] ?? 0))]);
  const chosen = why.chosen ? `${why.chosen.nodeName} (${why.chosen.nodeId}) in ${why.chosen.geozone}, score ${num(why.chosen.score)}${why.chosen.forwarded ? `, forwarded from ${why.subject.requesterGeozone}` : ''}` : 'none: no node passed every filter';
  const recorded = why.recorded.nodeId ?? `rejected${why.recorded.reason ? `: ${why.recorded.reason}` : ''}`;
  return [
    `request ${why.subject.id}: ${why.subject.modelId} from ${why.subject.requesterGeozone} (${why.subject.priority}), decided ${why.decidedAt}, ${why.outcome}`,
    `${why.basis.nodesSeen} nodes as of ${why.basis.asOf}`,
    '',
    filtersTable(why.filters),
    '',
    candidates.length > 0 ? table(['', 'NODE', 'NAME', 'ZONE', 'SCORE', ...terms.map((t) => t.toUpperCase())], candidates) : 'no candidates',
    '',
    `chosen:    ${chosen}`,
    `forwarded: ${why.chosen ? (why.chosen.forwarded ? 'yes' : 'no') : '-'}`,
    `recorded:  ${recorded}`,
    `agrees:    ${why.agrees ? colour('yes', 'green') : colour('no', 'red')}`,
    ...(why.approximations ?? []).map((a) => colour(`note: ${a}`, 'grey')),
  ].join('\n');
}

function printJob(why: JobExplanation): string {
  const parts = [`job ${why.jobId}: ${why.executions.length} executions`];
  for (const e of why.executions) {
    const terms = termColumns(e.candidates);
    parts.push(
      '',
      `execution ${e.executionId} on ${e.workerId}, placed ${e.placedAt}${e.agrees === undefined ? '' : `, agrees: ${e.agrees ? colour('yes', 'green') : colour('no', 'red')}`}`,
      filtersTable(e.filters),
      e.candidates.length > 0 ? table(['', 'WORKER', 'NAME', 'SCORE', ...terms.map((t) => t.toUpperCase())], e.candidates.map((c) => [c.chosen ? colour('*', 'green') : '', truncateId(c.workerId), c.workerName, num(c.score), ...terms.map((t) => num(c.terms[t] ?? 0))])) : 'no candidates',
    );
  }
  parts.push(...(why.approximations ?? []).map((a) => colour(`note: ${a}`, 'grey')));
  return parts.join('\n');
}

export function registerExplain(program: Command): void {
  withClientTlsOptions(program.command('explain'))
    .description('why a request went to its node (or a job to its workers), recomputed from the documents as of the decision')
    .argument('[request-id]', 'an inference request id')
    .option('--job <job-id>', 'explain a job\'s executions instead')
    .option('--server <url>', 'ArcNet server', 'http://127.0.0.1:8080')
    .option('--json', 'raw JSON', false)
    .action(async (requestId: string | undefined, opts: { job?: string; server: string; json: boolean }) => {
      const id = opts.job ?? requestId;
      if (id === undefined || (opts.job !== undefined && requestId !== undefined)) throw usage('give one request id, or --job <job-id>');
      if (!UUID.test(id)) throw usage(`"${id}" is not a request or job id (a UUID)`);
      const path = opts.job !== undefined ? `/api/v1/jobs/${id}/explain` : `/api/v1/inference/${id}/explain`;
      const body = await getJson(opts.server, path);
      if (opts.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      process.stdout.write(`${opts.job !== undefined ? printJob(body as JobExplanation) : printPlacement(body as PlacementExplanation)}\n`);
    });
}

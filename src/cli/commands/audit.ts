/**
 * `arcnet audit`: the audit log of a running server (`GET /api/v1/audit`, operator key required),
 * newest first: who changed what, when, and from where. `--since` takes a duration back from now
 * (`90s`, `15m`, `1h`, `7d`) or an ISO-8601 instant.
 */
import type { Command } from 'commander';
import { errorMessage } from '../../core/errors.ts';
import { parseInstant } from '../../core/instants.ts';
import type { Response } from '../../core/http-client.ts';
import { colour, oneLine, table } from '../format.ts';
import { authHeaders, clientKey } from '../client-key.ts';
import { int, usage } from '../options.ts';
import { cliHttp, withClientTlsOptions } from '../tls-options.ts';

const DEFAULT_SERVER = 'http://127.0.0.1:8080';
const UNIT_MS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

interface AuditFlags {
  server: string;
  key?: string;
  since?: string;
  until?: string;
  actor?: string;
  action?: string;
  limit?: number;
  json: boolean;
}

interface AuditRecordBody {
  at: string;
  actor: string;
  actorRole: string | null;
  action: string;
  target: { kind: string; id: string };
  details: Record<string, unknown>;
  address: string | null;
}

/** A duration back from `now` (`15m`) or an ISO-8601 instant, as the ISO text the server takes. */
export function instantOf(flag: string, text: string, now = Date.now()): string {
  const relative = /^(\d{1,9})([smhd])$/.exec(text.trim());
  if (relative) return new Date(now - Number(relative[1]) * UNIT_MS[relative[2]!]!).toISOString();
  const parsed = parseInstant(text.trim());
  if (!parsed.ok) throw usage(`${flag}: ${parsed.problem}; or a duration back from now such as 90s, 15m, 1h, 7d`);
  return new Date(parsed.ms).toISOString();
}

/** The details as one short line: `name=build delta=+5 score=105`. */
function detailLine(details: Record<string, unknown>): string {
  const parts = Object.entries(details)
    .filter(([, value]) => value !== null && value !== undefined)
    .map(([name, value]) => `${name}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return oneLine(parts.join(' '), 80);
}

export function registerAudit(program: Command): void {
  withClientTlsOptions(program.command('audit'))
    .description('the audit log of a running server, newest first: who changed what, when and from where (needs an operator key)')
    .option('--server <url>', 'ArcNet server', DEFAULT_SERVER)
    .option('--key <key>', 'operator key (default $ARCNET_API_KEY, or the one arcnet up keeps in .arcnet/operator.key)')
    .option('--since <when>', 'only records since then: a duration back from now (90s, 15m, 1h, 7d) or an ISO-8601 instant')
    .option('--until <when>', 'only records until then: a duration back from now or an ISO-8601 instant')
    .option('--actor <id>', 'only this actor: a key id, worker:<node id>, or system:<component>')
    .option('--action <action>', 'only this action: job.submitted, node.enrolled, key.created, key.revoked, worker.registered, worker.reputation, worker.status')
    .option('--limit <n>', 'at most this many records (1 to 1000)', int('--limit', 1), 100)
    .option('--json', 'raw JSON', false)
    .action(async (flags: AuditFlags) => {
      const query = new URLSearchParams();
      if (flags.since !== undefined) query.set('since', instantOf('--since', flags.since));
      if (flags.until !== undefined) query.set('until', instantOf('--until', flags.until));
      if (flags.actor !== undefined) query.set('actor', flags.actor);
      if (flags.action !== undefined) query.set('action', flags.action);
      if (flags.limit !== undefined) query.set('limit', String(flags.limit));
      const path = `/api/v1/audit?${query}`;
      let response: Response;
      try {
        response = await cliHttp().fetch(new URL(path, flags.server), { headers: authHeaders(flags.key ?? clientKey()) });
      } catch (error) {
        throw usage(`cannot reach ${flags.server}: ${errorMessage((error as Error).cause ?? error)} (is "arcnet up" running?)`);
      }
      const body = (await response.json().catch(() => ({}))) as { message?: string; count?: number; more?: boolean; records?: AuditRecordBody[] };
      if (!response.ok) throw usage(`GET ${path} answered ${response.status}: ${body.message ?? 'no message'}`);
      if (flags.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      const records = body.records ?? [];
      const rows = records.map((r) => [
        r.at,
        oneLine(r.actor, 40),
        r.actorRole ?? '-',
        r.action,
        oneLine(`${r.target.kind} ${r.target.id}`, 48),
        r.address ?? '-',
        detailLine(r.details),
      ]);
      process.stdout.write(`${table(['AT', 'ACTOR', 'ROLE', 'ACTION', 'TARGET', 'FROM', 'DETAILS'], rows)}\n`);
      if (body.more === true) process.stderr.write(`${colour('more', 'yellow', process.stderr)}: only the newest ${records.length} are shown; narrow --since/--until or raise --limit\n`);
    });
}

/** `arcnet token create|list|revoke`: API keys and enrolment tokens of a running server (operator key required). */
import type { Command } from 'commander';
import { errorMessage } from '../../core/errors.ts';
import { colour, table } from '../format.ts';
import { authHeaders, clientKey } from '../client-key.ts';
import { int, usage } from '../options.ts';
import { cliHttp, withClientTlsOptions } from '../tls-options.ts';
import type { Response } from '../../core/http-client.ts';

const DEFAULT_SERVER = 'http://127.0.0.1:8080';

interface CommonFlags {
  server: string;
  key?: string;
  json: boolean;
}

async function call(flags: CommonFlags, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  let response: Response;
  try {
    response = await cliHttp().fetch(new URL(path, flags.server), {
      method,
      headers: { ...authHeaders(flags.key ?? clientKey()), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw usage(`cannot reach ${flags.server}: ${errorMessage((error as Error).cause ?? error)} (is "arcnet up" running?)`);
  }
  const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (!response.ok) throw usage(`${method} ${path} answered ${response.status}: ${String(answer['message'] ?? 'no message')}`);
  return answer;
}

const common = (command: Command): Command =>
  withClientTlsOptions(command)
    .option('--server <url>', 'ArcNet server', DEFAULT_SERVER)
    .option('--key <key>', 'operator key (default $ARCNET_API_KEY, or the one arcnet up keeps in .arcnet/operator.key)')
    .option('--json', 'raw JSON', false);

export function registerToken(program: Command): void {
  const token = program.command('token').description('API keys and enrolment tokens: create, list, revoke (needs an operator key)');

  common(token.command('create'))
    .description('create a key; its whole text is printed once and never shown again')
    .requiredOption('--role <role>', 'viewer (read), developer (submit work), operator (everything), or enrolment (enrols nodes into --geozone)')
    .option('--name <name>', 'who or what it is for', 'cli')
    .option('--geozone <zone>', 'for --role enrolment: the geozone the token enrols nodes into')
    .option('--expires-in <hours>', 'expire after this many hours', int('--expires-in', 1))
    .action(async (flags: CommonFlags & { role: string; name: string; geozone?: string; expiresIn?: number }) => {
      const answer = await call(flags, 'POST', '/api/v1/tokens', {
        name: flags.name,
        role: flags.role,
        ...(flags.geozone === undefined ? {} : { geozone: flags.geozone }),
        ...(flags.expiresIn === undefined ? {} : { expires_in_hours: flags.expiresIn }),
      });
      if (flags.json) return void process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
      const record = answer['token'] as Record<string, unknown>;
      process.stdout.write(`${String(answer['key'])}\n`);
      process.stderr.write(`${colour('created', 'green')} ${String(record['role'])} key ${String(record['id'])} "${String(record['name'])}"${record['geozone'] ? ` for ${String(record['geozone'])}` : ''}; it is shown only this once.\n`);
    });

  common(token.command('list'))
    .description('list keys (never their secrets)')
    .action(async (flags: CommonFlags) => {
      const answer = await call(flags, 'GET', '/api/v1/tokens');
      if (flags.json) return void process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
      const rows = (answer['tokens'] as Record<string, unknown>[]).map((t) => [
        String(t['id']),
        String(t['role']),
        String(t['name']),
        String(t['geozone'] ?? '-'),
        String(t['node_id'] ?? '-'),
        String(t['status']),
        String(t['created_at']),
      ]);
      process.stdout.write(`${table(['ID', 'ROLE', 'NAME', 'GEOZONE', 'NODE', 'STATUS', 'CREATED'], rows)}\n`);
    });

  common(token.command('revoke'))
    .description('revoke a key by its id (effective at once here, within 5 s on other servers)')
    .argument('<id>', 'the key id, as token list shows it')
    .action(async (id: string, flags: CommonFlags) => {
      const answer = await call(flags, 'DELETE', `/api/v1/tokens/${encodeURIComponent(id)}`);
      if (flags.json) return void process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
      process.stdout.write(`revoked ${id}\n`);
    });
}

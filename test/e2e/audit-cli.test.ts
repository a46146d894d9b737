/**
 * `arcnet audit` as a user runs it: the real CLI as a process against an embedded server, after
 * mutations made over the API. It prints the records as a table (or JSON), passes its filters on,
 * reads `--since 15m` as a time back from now, and a bad flag or a key that may not read the log ends
 * in one line on stderr and a non-zero exit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { instantOf } from '../../src/cli/commands/audit.ts';
import { CLI } from '../support/processes.ts';
import { bearer } from '../support/api-key.ts';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe('--since and --until', () => {
  it('take a duration back from now or an ISO-8601 instant, and refuse anything else naming the flag', () => {
    const now = Date.parse('2030-01-01T12:00:00.000Z');
    expect(instantOf('--since', '90s', now)).toBe('2030-01-01T11:58:30.000Z');
    expect(instantOf('--since', '15m', now)).toBe('2030-01-01T11:45:00.000Z');
    expect(instantOf('--since', '1h', now)).toBe('2030-01-01T11:00:00.000Z');
    expect(instantOf('--since', '7d', now)).toBe('2029-12-25T12:00:00.000Z');
    expect(instantOf('--until', '2030-01-01T10:00:00+02:00', now)).toBe('2030-01-01T08:00:00.000Z');
    expect(() => instantOf('--since', 'yesterday', now)).toThrow(/^--since: "yesterday" is not an ISO-8601 instant.*duration back from now such as 90s, 15m, 1h, 7d$/);
    expect(() => instantOf('--until', '1w', now)).toThrow(/^--until: /);
  });
});

describe('arcnet audit against a running server', () => {
  let system: EmbeddedSystem;
  let developer = { id: '', key: '' };
  let viewerKey = '';
  let jobId = '';

  const cli = (args: string[], key?: string): Promise<Run> =>
    new Promise((resolve, reject) => {
      const env = { ...process.env, NO_COLOR: '1', ARCNET_API_KEY: key ?? system.operatorKey! };
      execFile(process.execPath, [CLI, 'audit', '--server', system.url, ...args], { env, timeout: 20_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      });
    });

  const post = async <T>(path: string, key: string, body: unknown): Promise<T> => {
    const response = await fetch(`${system.url}${path}`, { method: 'POST', headers: { ...bearer(key), 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(response.status, path).toBe(201);
    return (await response.json()) as T;
  };

  beforeAll(async () => {
    system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 } }));
    const created = await post<{ token: { id: string }; key: string }>('/api/v1/tokens', system.operatorKey!, { name: 'cli developer', role: 'developer' });
    developer = { id: created.token.id, key: created.key };
    viewerKey = (await post<{ key: string }>('/api/v1/tokens', system.operatorKey!, { name: 'cli viewer', role: 'viewer' })).key;
    jobId = (await post<{ id: string }>('/api/v1/jobs', developer.key, { name: 'from-the-cli-test', docker_image: 'alpine:3', command: ['true'] })).id;
  });
  afterAll(async () => {
    await system.stop();
  });

  it('prints the records newest first as a table, filtered by actor, action and time, or as JSON', async () => {
    // Each CLI process costs about a second of start-up, so they run side by side.
    const [everything, byActor, asJson, recent, future] = await Promise.all([
      cli([]),
      cli(['--actor', developer.id]),
      cli(['--action', 'key.created', '--json']),
      cli(['--since', '15m']),
      cli(['--since', '2999-01-01T00:00:00Z']),
    ]);
    for (const run of [everything, byActor, asJson, recent, future]) expect(run.code, run.stderr).toBe(0);

    const lines = everything.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^AT\s+ACTOR\s+ROLE\s+ACTION\s+TARGET\s+FROM\s+DETAILS$/);
    // The bootstrap operator key, the two keys, the job: newest first.
    expect(lines.slice(1).map((l) => l.split(/\s+/)[3])).toEqual(['job.submitted', 'key.created', 'key.created', 'key.created']);
    expect(lines[1]).toContain(`${developer.id}  developer`);
    expect(lines[1]).toContain(`job ${jobId}`);
    expect(lines[1]).toMatch(/127\.0\.0\.1/);
    expect(lines[1]).toContain('name=from-the-cli-test');
    expect(lines.at(-1)).toMatch(/system:bootstrap\s+-\s+key\.created/);

    expect(byActor.stdout.trim().split('\n').slice(1)).toHaveLength(1);
    expect(byActor.stdout).toContain('job.submitted');

    const body = JSON.parse(asJson.stdout) as { count: number; records: { action: string; actor: string; details: Record<string, unknown> }[] };
    expect(body.count).toBe(3);
    expect(body.records.every((r) => r.action === 'key.created')).toBe(true);
    expect(body.records.map((r) => r.details['name'])).toContain('cli developer');

    expect(recent.stdout.trim().split('\n')).toHaveLength(lines.length);
    expect(future.stdout.trim().split('\n')).toHaveLength(1);
  });

  it('ends with one line naming what was wrong: a bad flag, an unknown action, a key that is not an operator\'s', async () => {
    const [badSince, badAction, asViewer, unreachable] = await Promise.all([
      cli(['--since', 'yesterday']),
      cli(['--action', 'job.deleted']),
      cli([], viewerKey),
      cli(['--server', 'http://127.0.0.1:9']),
    ]);
    expect(badSince.code).toBe(2);
    expect(badSince.stderr).toMatch(/^arcnet: --since: "yesterday" is not an ISO-8601 instant/);
    expect(badAction.code).not.toBe(0);
    expect(badAction.stderr).toMatch(/answered 400: querystring\/action/);
    expect(asViewer.code).not.toBe(0);
    expect(asViewer.stderr).toMatch(/answered 403: GET \/api\/v1\/audit needs an API key with role operator/);
    expect(unreachable.code).not.toBe(0);
    expect(unreachable.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9/);
    for (const run of [badSince, badAction, asViewer, unreachable]) expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });
});

/**
 * A Kafka broker restart under load: `arcnet up` on its own broker (a second instance of
 * scripts/kafka.sh, so the suites sharing the default broker are not disturbed) keeps taking
 * requests while the broker stops and starts again; producers and consumers recover, the process
 * never exits, every call gets an HTTP answer (accepted, or refused with a 503 that says why), and
 * every request the API accepted is decided, as read back through the API.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, testSchemas } from '../support/postgres.ts';
import { until } from '../support/until.ts';
import { keyedFromDir } from '../support/api-key.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const SCRIPT = join(import.meta.dirname, '../../scripts/kafka.sh');
const PORT = 19192;
const brokerEnv = { ...process.env, ARCNET_KAFKA_INSTANCE: 'restart-test', ARCNET_KAFKA_PORT: String(PORT) };
const broker = (command: 'start' | 'stop' | 'clean'): void => {
  const run = spawnSync('bash', [SCRIPT, command], { env: brokerEnv, encoding: 'utf8', timeout: 120_000 });
  if (run.status !== 0) throw new Error(`kafka.sh ${command} failed: ${run.stderr}`);
};

/** The same, without blocking the event loop: requests keep going out while the broker stops and starts. */
const brokerAsync = (command: 'start' | 'stop'): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn('bash', [SCRIPT, command], { env: brokerEnv, stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kafka.sh ${command} failed (${code}): ${stderr}`))));
  });

// The default broker answering means the jars and Java are here to start a second one.
const engines = needEngines('postgres', 'kafka');

describe.skipIf(!engines.available)(engines.title('Kafka broker restart under load'), () => {
  const schemas = testSchemas();
  let up: CliProcess | undefined;
  const keyDirs: string[] = [];
  afterAll(async () => {
    for (const dir of keyDirs) rmSync(dir, { recursive: true, force: true });
    if (up && up.exitCode === null) up.kill('SIGKILL');
    broker('stop');
    await schemas.dropAll();
  });

  it('recovers producers and consumers after the broker restarts; every accepted request is decided', async () => {
    broker('clean'); // a broker of its own, empty: no other run's requests on it
    broker('start');
    const schema = await schemas.fresh();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    // The operator key's file lives in a data directory of its own (state itself is in PostgreSQL).
    const keyDir = mkdtempSync(join(tmpdir(), 'arcnet-key-'));
    keyDirs.push(keyDir);
    const api = keyedFromDir(keyDir);
    up = startCli(['up', '--port', String(port), '--data-dir', keyDir, '--kafka', `127.0.0.1:${PORT}`, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--geozones', 'CAISO', '--nodes', '20', '--rate', '0', '--telemetry-interval', '500', '--no-status', '--log-level', 'warn']);
    await untilUp(async () => ((await (await api(`${url}/stats`)).json()) as { nodes: { total: number } }).nodes.total === 20, 'the 20 simulated nodes', 60_000);

    // Every call must get an HTTP answer. 2xx is "accepted" (201 dispatched, 202 accepted but not
    // decided within the decision timeout); a 503 with Retry-After that says why is the server's
    // explicit refusal: a scheduler rejection (body: the request, status "rejected" with the reason)
    // or load shedding (body: a "scheduler backlog" message). Anything else, or no answer, fails.
    interface Answer {
      readonly id: string;
      readonly sentAt: number;
      readonly status?: number;
      readonly body?: { status?: string; reason?: string; message?: string };
      readonly retryAfter?: string | null;
      readonly error?: string;
    }
    const answers: Answer[] = [];
    const inFlight: Promise<void>[] = [];
    const send = async (): Promise<void> => {
      const id = randomUUID();
      const sentAt = Date.now();
      try {
        const response = await api(`${url}/api/v1/inference`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ id, modelId: 'llama-3-8b', contextWindowTokens: 256, requesterGeozone: 'CAISO', maxLatencyMs: 5_000 }),
        });
        const text = await response.text();
        let body: Answer['body'];
        try {
          body = JSON.parse(text) as Answer['body'];
        } catch {
          body = { message: `(not JSON) ${text.slice(0, 200)}` };
        }
        answers.push({ id, sentAt, status: response.status, body, retryAfter: response.headers.get('retry-after') });
      } catch (error) {
        answers.push({ id, sentAt, error: `${(error as Error).message}${(error as { cause?: Error }).cause ? `: ${(error as { cause: Error }).cause.message}` : ''}` });
      }
    };
    const started = Date.now();
    // The broker is stopped and started beside the load (not in between two requests), so requests
    // keep arriving while it is away.
    let restart: Promise<{ stoppedAt: number; startedAt: number }> | undefined;
    for (let i = 0; i < 250; i++) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + i * 100 - Date.now())));
      inFlight.push(send());
      if (!restart && Date.now() - started > 6_000) {
        restart = (async () => {
          await brokerAsync('stop');
          const stoppedAt = Date.now();
          // With the broker's start-up, away for longer than the API's 5 s decision timeout (so requests
          // meet the outage's answer) and, on a machine not overloaded, shorter than the bus's 30 s
          // operation timeout.
          await new Promise((resolve) => setTimeout(resolve, 4_000));
          await brokerAsync('start');
          return { stoppedAt, startedAt: Date.now() };
        })();
      }
    }
    const outage = await restart!;
    await Promise.all(inFlight);
    expect(up.exitCode).toBeNull();

    const unanswered = answers.filter((a) => a.error !== undefined);
    const isRefusal = (a: Answer): boolean =>
      a.status === 503 && a.retryAfter !== null && ((a.body?.status === 'rejected' && typeof a.body.reason === 'string' && a.body.reason.length > 0) || (a.body?.message ?? '').length > 0);
    const accepted = answers.filter((a) => a.status !== undefined && a.status >= 200 && a.status < 300);
    const refused = answers.filter(isRefusal);
    const unexpected = answers.filter((a) => a.status !== undefined && !accepted.includes(a) && !refused.includes(a));
    const during = answers.filter((a) => a.sentAt >= outage.stoppedAt && a.sentAt < outage.startedAt);
    const count = (keys: readonly string[]): string => {
      const counts = new Map<string, number>();
      for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
      return [...counts].map(([key, n]) => `${n}× ${key}`).join(', ') || 'none';
    };
    const tally = (list: readonly Answer[]): string => count(list.map((a) => (a.error !== undefined ? 'no answer' : `${a.status}${a.body?.status ? ` ${a.body.status}` : ''}`)));
    console.log(`broker restart: outage ${outage.startedAt - outage.stoppedAt} ms; all answers: ${tally(answers)}; sent during the outage: ${tally(during)}`);
    expect(answers).toHaveLength(250);
    expect(unanswered.map((a) => `${a.id} sent at +${a.sentAt - started} ms: ${a.error}`), 'requests that got no HTTP answer').toEqual([]);
    expect(unexpected.map((a) => `${a.id} sent at +${a.sentAt - started} ms: ${a.status} ${JSON.stringify(a.body)}`), 'answers neither 2xx nor an explicit 503 refusal').toEqual([]);
    expect(accepted.length + refused.length).toBe(250);
    expect(accepted.length).toBeGreaterThan(100);
    // What the API answers while the broker is away: publishing waits and retries (up to the bus's
    // operation timeout), the decision does not come within 5 s, so the request is accepted as
    // pending with where to poll, a 202, never an error. A publish that outlasts the operation
    // timeout must still be refused explicitly (a 503 with Retry-After), which the checks above hold.
    expect(during.length).toBeGreaterThan(0);
    const pendingAnswers = answers.filter((a) => a.status === 202);
    expect(pendingAnswers.filter((a) => during.includes(a)).length, 'requests sent during the outage answered 202 pending').toBeGreaterThan(0);
    for (const a of pendingAnswers) {
      expect(a.body?.status).toBe('pending');
      expect(a.body?.message).toBe(`accepted, but no scheduler decided within 5000 ms; poll GET /api/v1/inference/${a.id}`);
    }
    // A scheduler rejection is a decision the API still knows about.
    for (const a of refused.filter((r) => r.body?.status === 'rejected')) {
      const body = (await (await api(`${url}/api/v1/inference/${a.id}`)).json()) as { status?: string };
      expect(body.status, `refused request ${a.id}`).toBe('rejected');
    }

    const pending = new Set(accepted.map((a) => a.id));
    const finalStatus = new Map<string, string>();
    const lastSeen = new Map<string, Record<string, unknown>>();
    await until(
      async () => {
        for (const id of [...pending]) {
          const body = (await (await api(`${url}/api/v1/inference/${id}`)).json()) as { status?: string };
          lastSeen.set(id, body);
          if (body.status && body.status !== 'pending' && body.status !== 'dispatched') {
            finalStatus.set(id, body.status);
            pending.delete(id);
          }
        }
        return pending.size === 0;
      },
      'every accepted request decided and finished',
      90_000,
      { intervalMs: 1_000 },
    ).catch((error: unknown) => {
      const stuck = [...pending].map((id) => {
        const answer = accepted.find((a) => a.id === id)!;
        return `${id} (answered ${answer.status} at +${answer.sentAt - started} ms, outage +${outage.stoppedAt - started}..+${outage.startedAt - started} ms): ${JSON.stringify(lastSeen.get(id))}`;
      });
      throw new Error(`${(error as Error).message}: ${pending.size} of ${accepted.length} accepted requests never finished (${count([...pending].map((id) => String(lastSeen.get(id)?.['status'])))}), e.g.\n${stuck.slice(0, 10).join('\n')}`);
    });
    expect([...new Set(finalStatus.values())].filter((status) => !['completed', 'failed', 'rejected'].includes(status))).toEqual([]);
    const stats = (await (await api(`${url}/stats`)).json()) as { inference: { completed: number; failed: number; rejected: number } };
    console.log(`broker restart: accepted requests ended ${count([...finalStatus.values()])}; stats: completed ${stats.inference.completed}, failed ${stats.inference.failed}, rejected ${stats.inference.rejected}`);
    expect(stats.inference.completed + stats.inference.failed + stats.inference.rejected).toBeGreaterThanOrEqual(accepted.length);
    // The burst queued during the outage met 20 busy nodes (rejections say so); at a pace the nodes
    // can take, routing is whole again.
    const after: string[] = [];
    for (let i = 0; i < 20; i++) {
      const id = randomUUID();
      const response = await api(`${url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id, modelId: 'llama-3-8b', contextWindowTokens: 256, requesterGeozone: 'CAISO', maxLatencyMs: 10_000 }) });
      expect(response.ok).toBe(true);
      after.push(id);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    // A deadline a busy CI host cannot miss by accident: what is checked is that routing works again, not its speed.
    let statuses: { status: string; reason?: string }[] = [];
    await until(async () => {
      statuses = await Promise.all(after.map(async (id) => (await (await api(`${url}/api/v1/inference/${id}`)).json()) as { status: string; reason?: string }));
      // Routed and answered by a node: the simulated nodes fail a small share of requests on purpose.
      return statuses.every((s) => s.status === 'completed' || (s.status === 'failed' && /simulated/.test(s.reason ?? '')));
    }, 'requests after the restart routed and answered by their nodes', 30_000, { intervalMs: 500 }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}: ${statuses.map((s) => `${s.status}${s.reason ? ` (${s.reason})` : ''}`).join('; ')}`);
    });
    up.kill('SIGINT');
    await new Promise((resolve) => up!.once('exit', resolve));
  }, 240_000);
});

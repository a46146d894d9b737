/**
 * A Kafka broker restart under load: `arcnet up` on its own broker (a second instance of
 * scripts/kafka.sh, so the suites sharing the default broker are not disturbed) keeps taking
 * requests while the broker stops and starts again; producers and consumers recover, the process
 * never exits, and every request the API accepted is decided.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, testSchemas } from '../support/postgres.ts';
import { until } from '../support/until.ts';

const SCRIPT = join(import.meta.dirname, '../../scripts/kafka.sh');
const PORT = 19192;
const brokerEnv = { ...process.env, ARCNET_KAFKA_INSTANCE: 'restart-test', ARCNET_KAFKA_PORT: String(PORT) };
const broker = (command: 'start' | 'stop' | 'clean'): void => {
  const run = spawnSync('bash', [SCRIPT, command], { env: brokerEnv, encoding: 'utf8', timeout: 120_000 });
  if (run.status !== 0) throw new Error(`kafka.sh ${command} failed: ${run.stderr}`);
};

// The default broker answering means the jars and Java are here to start a second one.
const engines = needEngines('postgres', 'kafka');

describe.skipIf(!engines.available)(engines.title('Kafka broker restart under load'), () => {
  const schemas = testSchemas();
  let up: CliProcess | undefined;
  afterAll(async () => {
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
    up = startCli(['up', '--port', String(port), '--kafka', `127.0.0.1:${PORT}`, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--geozones', 'CAISO', '--nodes', '20', '--rate', '0', '--telemetry-interval', '500', '--no-status', '--log-level', 'warn']);
    await untilUp(async () => ((await (await fetch(`${url}/stats`)).json()) as { nodes: { total: number } }).nodes.total === 20, 'the 20 simulated nodes', 60_000);

    const accepted: string[] = [];
    const refused: number[] = [];
    const inFlight: Promise<void>[] = [];
    const send = async (): Promise<void> => {
      const id = randomUUID();
      try {
        const response = await fetch(`${url}/api/v1/inference`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ id, modelId: 'llama-3-8b', contextWindowTokens: 256, requesterGeozone: 'CAISO', maxLatencyMs: 5_000 }),
        });
        await response.body?.cancel();
        if (response.ok) accepted.push(id);
        else refused.push(response.status);
      } catch {
        refused.push(0);
      }
    };
    const started = Date.now();
    let restarted = false;
    for (let i = 0; i < 250; i++) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + i * 100 - Date.now())));
      inFlight.push(send());
      if (!restarted && Date.now() - started > 6_000) {
        restarted = true;
        broker('stop');
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        broker('start');
      }
    }
    await Promise.all(inFlight);
    expect(up.exitCode).toBeNull();
    // While the broker is away, publishing waits and retries; every call got an answer (a 503 is a
    // decided rejection: no free node when the queued burst arrived).
    expect(accepted.length + refused.length).toBe(250);
    expect(accepted.length).toBeGreaterThan(100);

    const pending = new Set(accepted);
    await until(
      async () => {
        for (const id of [...pending]) {
          const body = (await (await fetch(`${url}/api/v1/inference/${id}`)).json()) as { status?: string };
          if (body.status && body.status !== 'pending' && body.status !== 'dispatched') pending.delete(id);
        }
        return pending.size === 0;
      },
      'every accepted request decided and finished',
      90_000,
      { intervalMs: 1_000 },
    );
    const stats = (await (await fetch(`${url}/stats`)).json()) as { inference: { completed: number; failed: number; rejected: number } };
    console.log(`broker restart: ${accepted.length} accepted, ${refused.length} refused (${[...new Set(refused)].join(', ') || 'none'}); completed ${stats.inference.completed}, failed ${stats.inference.failed}, rejected ${stats.inference.rejected}`);
    expect(stats.inference.completed + stats.inference.failed + stats.inference.rejected).toBeGreaterThanOrEqual(accepted.length);
    // The burst queued during the outage met 20 busy nodes (rejections say so); at a pace the nodes
    // can take, routing is whole again.
    const after: string[] = [];
    for (let i = 0; i < 20; i++) {
      const id = randomUUID();
      const response = await fetch(`${url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id, modelId: 'llama-3-8b', contextWindowTokens: 256, requesterGeozone: 'CAISO' }) });
      expect(response.ok).toBe(true);
      after.push(id);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    await until(async () => {
      const statuses = await Promise.all(after.map(async (id) => ((await (await fetch(`${url}/api/v1/inference/${id}`)).json()) as { status: string }).status));
      return statuses.every((status) => status === 'completed');
    }, 'requests after the restart completed', 30_000, { intervalMs: 500 });
    up.kill('SIGINT');
    await new Promise((resolve) => up!.once('exit', resolve));
  }, 240_000);
});

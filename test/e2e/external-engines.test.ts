/**
 * `arcnet up --kafka … --postgres …`: every role in one process on the external engines. Requests
 * are routed through Kafka, state lands in PostgreSQL, a SIGKILL loses no stored history, and the
 * verified-jobs coordinator carries on from the database after the restart.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startCli, untilUp, type CliProcess } from '../support/processes.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, testSchemas } from '../support/postgres.ts';
import { KAFKA_BOOTSTRAP } from '../support/kafka.ts';
import { keyedFromDir } from '../support/api-key.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const engines = needEngines('postgres', 'kafka');

describe.skipIf(!engines.available)(engines.title('arcnet up on Kafka and PostgreSQL'), () => {
  const schemas = testSchemas();
  const children: CliProcess[] = [];
  const keyDirs: string[] = [];
  afterAll(async () => {
    for (const dir of keyDirs) rmSync(dir, { recursive: true, force: true });
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await schemas.dropAll();
  });

  it('routes through Kafka, keeps state in PostgreSQL, and carries on after a SIGKILL', async () => {
    const schema = await schemas.fresh();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    // The operator key's file lives in a data directory of its own (state itself is in PostgreSQL).
    const keyDir = mkdtempSync(join(tmpdir(), 'arcnet-key-'));
    keyDirs.push(keyDir);
    const api = keyedFromDir(keyDir);
    const args = ['up', '--port', String(port), '--data-dir', keyDir, '--kafka', KAFKA_BOOTSTRAP, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--geozones', 'PJM', '--nodes', '6', '--rate', '10', '--telemetry-interval', '500', '--no-status', '--log-level', 'warn'];
    let server = startCli(args);
    children.push(server);
    interface Stats { mode: string; engines: { bus: string; store: string }; nodes: { total: number }; inference: { completed: number } }
    const stats = await untilUp(async () => {
      const body = (await (await api(`${url}/stats`)).json()) as Stats;
      return body.inference.completed >= 10 ? body : undefined;
    }, 'requests completed through Kafka', 60_000);
    expect(stats.engines).toEqual({ bus: 'kafka', store: 'postgres' });
    expect(stats.mode).toBe('distributed');
    expect(stats.nodes.total).toBe(6);

    // A job accepted before the kill must survive it: state is in PostgreSQL, not in the process.
    const registered = (await (await api(`${url}/api/v1/nodes/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'pg-worker', cpu_cores: 2, memory_gb: 2 }) })).json()) as { node: { id: string }; credential: string };
    const job = (await (await api(`${url}/api/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'kept', docker_image: 'arcnet/busybox:test', command: ['echo', 'kept'], redundancy: 1, consensus: 1 }) })).json()) as { id: string };
    const nodeId = ((await (await api(`${url}/api/v1/nodes`)).json()) as { nodes: { id: string; name: string }[] }).nodes.find((n) => n.name !== 'pg-worker')!.id;

    server.kill('SIGKILL');
    await new Promise((resolve) => server.once('exit', resolve));
    server = startCli(args);
    children.push(server);
    await untilUp(async () => (await fetch(`${url}/health`)).ok, 'the restarted server', 60_000);

    const history = (await (await api(`${url}/api/v1/nodes/${nodeId}?history=true`)).json()) as { history: unknown[] };
    expect(history.history.length).toBeGreaterThan(1);
    const auth = { authorization: `Bearer ${registered.credential}`, 'content-type': 'application/json' };
    const pending = (await (await api(`${url}/api/v1/nodes/${registered.node.id}/pending-jobs`, { headers: auth })).json()) as { jobs: { execution_id: string; job_id: string }[] };
    expect(pending.jobs.map((j) => j.job_id)).toEqual([job.id]);
    const result = await api(`${url}/api/v1/worker/result`, { method: 'POST', headers: auth, body: JSON.stringify({ node_id: registered.node.id, execution_id: pending.jobs[0]!.execution_id, status: 'completed', result: 'kept\n' }) });
    expect(result.status).toBe(201);
    const done = (await (await api(`${url}/api/v1/jobs/${job.id}`)).json()) as { status: string; result: string };
    expect(done).toMatchObject({ status: 'completed', result: 'kept\n' });
    // Routing resumes after the restart too.
    await untilUp(async () => ((await (await api(`${url}/stats`)).json()) as Stats).inference.completed >= 5, 'requests completed after the restart', 60_000);
    server.kill('SIGINT');
    await new Promise((resolve) => server.once('exit', resolve));
  }, 180_000);
});

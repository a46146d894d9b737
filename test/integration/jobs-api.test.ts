/**
 * Seed 004's API on the embedded server, over HTTP: bad input gets a 4xx naming the problem, worker
 * calls need the worker's own credential, and workers are nodes in the one node list and in /stats.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { seededUuid } from '../../src/core/ids.ts';
import { topics } from '../../src/contracts/topics.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { until } from '../support/until.ts';
import { bearer } from '../support/api-key.ts';

describe('jobs API', () => {
  let system: EmbeddedSystem;
  const clock = new ManualClock(Date.now());
  beforeAll(async () => {
    system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 } }), { clock });
  });
  afterAll(async () => {
    await system.stop();
  });

  const call = async (method: string, path: string, body?: unknown, credential?: string | null): Promise<{ status: number; json: Record<string, unknown> }> => {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    // Worker calls carry the worker's credential; every other call is an operator's.
    // null: no credential at all.
    if (credential !== null) headers['authorization'] = `Bearer ${credential ?? system.operatorKey}`;
    const response = await fetch(`${system.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };
  const job = { name: 'hello', docker_image: 'arcnet/busybox:test', command: ['echo', 'hello'] };

  it('answers bad submissions with a 400 naming the field or the rule', async () => {
    const cases: [unknown, RegExp][] = [
      [{ ...job, docker_image: undefined }, /docker_image/],
      [{ ...job, command: [] }, /command/],
      [{ ...job, redundancy: 3, consensus: 4 }, /consensus 4 is more than redundancy 3/],
      [{ ...job, consensus: 0 }, /consensus/],
      [{ ...job, redundancy: 40, consensus: 21 }, /redundancy 40 is above this coordinator's maximum of 15/],
      [{ ...job, required_cpu: -2 }, /required_cpu/],
      [{ ...job, required_memory: -1 }, /required_memory/],
      [{ ...job, environment: { 'NOT VALID': 'x' } }, /environment variable name "NOT VALID"/],
      [{ ...job, redundency: 5 }, /body must NOT have additional properties: "redundency"/],
      ['{"name": ', /JSON|Unexpected|body/i],
    ];
    for (const [body, message] of cases) {
      const { status, json } = await call('POST', '/api/v1/jobs', body);
      expect(status, JSON.stringify(body)).toBe(400);
      expect(String(json['message'])).toMatch(message);
    }
    expect((await call('GET', '/api/v1/jobs/7d5c2f7e-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await call('GET', '/api/v1/jobs/not-a-uuid')).status).toBe(400);
  });

  it('answers every error with one body, on the job routes and the server\'s own alike', async () => {
    const shape = { statusCode: expect.any(Number), error: expect.any(String), code: expect.any(String), message: expect.any(String), retryable: expect.any(Boolean) };
    const cases: [string, string, unknown, number, string][] = [
      ['POST', '/api/v1/jobs', { ...job, redundancy: 3, consensus: 1 }, 400, 'INVALID_INPUT'],
      ['POST', '/api/v1/jobs', { ...job, bogus: 1 }, 400, 'INVALID_INPUT'],
      ['GET', '/api/v1/jobs/7d5c2f7e-0000-4000-8000-000000000000', undefined, 404, 'NOT_FOUND'],
      ['POST', '/api/v1/nodes/7d5c2f7e-0000-4000-8000-000000000000/heartbeat', {}, 403, 'FORBIDDEN'],
      ['GET', '/api/v1/nodes?asOf=yesterday', undefined, 400, 'INVALID_INPUT'],
    ];
    for (const [method, path, body, status, code] of cases) {
      const answer = await call(method, path, body);
      expect(answer.status, `${method} ${path}`).toBe(status);
      expect(answer.json, `${method} ${path}`).toEqual({ ...shape, statusCode: status, code });
    }
    const response = await fetch(`${system.url}/api/v1/nodes/x/pending-jobs`);
    expect(response.headers.get('www-authenticate')).toBe('Bearer realm="arcnet"');
    expect((await call('GET', '/api/v1/coordinator')).json).toMatchObject({ leading: true, fencingToken: null });
  });

  it('registers workers with a credential and refuses their calls without it', async () => {
    const registered = await call('POST', '/api/v1/nodes/register', { name: 'box-1', region: 'ERCOT', cpu_cores: 4, memory_gb: 8 });
    expect(registered.status).toBe(201);
    const node = registered.json['node'] as Record<string, unknown>;
    const credential = String(registered.json['credential']);
    expect(node).toMatchObject({ name: 'box-1', region: 'ERCOT', cpu_cores: 4, memory_gb: 8, status: 'online', reputation_score: 100, credits_earned: 0, total_jobs_run: 0 });
    expect(node).not.toHaveProperty('credential_hash');
    const other = await call('POST', '/api/v1/nodes/register', { name: 'box-2', cpu_cores: 2, memory_gb: 2 });
    const otherCredential = String(other.json['credential']);
    const id = String(node['id']);

    expect((await call('POST', `/api/v1/nodes/${id}/heartbeat`, { cpu_usage: 0.5 }, null)).status).toBe(401);
    expect((await call('POST', `/api/v1/nodes/${id}/heartbeat`, { cpu_usage: 0.5 }, otherCredential)).status).toBe(403);
    expect((await call('POST', `/api/v1/nodes/${id}/heartbeat`, { cpu_usage: 2 }, credential)).status).toBe(400);
    const beat = await call('POST', `/api/v1/nodes/${id}/heartbeat`, { cpu_usage: 0.5, memory_usage: 0.25, active_jobs: [] }, credential);
    expect(beat.status).toBe(200);
    expect(beat.json['node']).toMatchObject({ cpu_usage: 0.5, memory_usage: 0.25 });
    expect((await call('GET', `/api/v1/nodes/${id}/pending-jobs`, undefined, null)).status).toBe(401);
    expect((await call('GET', `/api/v1/nodes/${id}/pending-jobs`, undefined, credential)).json).toEqual({ count: 0, jobs: [] });
    // Re-registering an id takes its credential; an impostor gets 401/403 and changes nothing.
    expect((await call('POST', '/api/v1/nodes/register', { id, name: 'impostor', cpu_cores: 64, memory_gb: 512 }, null)).status).toBe(401);
    expect((await call('POST', '/api/v1/nodes/register', { id, name: 'impostor', cpu_cores: 64, memory_gb: 512 }, otherCredential)).status).toBe(403);
    expect(system.coordinator.worker(id)!.name).toBe('box-1');

    const submitted = await call('POST', '/api/v1/jobs', { ...job, redundancy: 1, consensus: 1 });
    expect(submitted.status).toBe(201);
    const jobId = String(submitted.json['id']);
    const pending = await call('GET', `/api/v1/nodes/${id}/pending-jobs`, undefined, credential);
    const mine = (pending.json['jobs'] as { execution_id: string }[])[0];
    const holder = mine ? { id, credential } : { id: String((other.json['node'] as { id: string }).id), credential: otherCredential };
    const assignment = mine ?? ((await call('GET', `/api/v1/nodes/${holder.id}/pending-jobs`, undefined, holder.credential)).json['jobs'] as { execution_id: string }[])[0]!;
    const stranger = holder.id === id ? { id: String((other.json['node'] as { id: string }).id), credential: otherCredential } : { id, credential };
    const wrongHolder = await call('POST', '/api/v1/worker/result', { node_id: stranger.id, execution_id: assignment.execution_id, status: 'completed', result: 'hello\n' }, stranger.credential);
    expect(wrongHolder.status).toBe(403);
    expect(String(wrongHolder.json['message'])).toMatch(/is assigned to node/);
    const unknown = await call('POST', '/api/v1/worker/result', { node_id: holder.id, execution_id: '7d5c2f7e-0000-4000-8000-000000000000', status: 'completed', result: 'x' }, holder.credential);
    expect(unknown.status).toBe(404);
    const accepted = await call('POST', '/api/v1/worker/result', { node_id: holder.id, execution_id: assignment.execution_id, status: 'completed', result: 'aGVsbG8K', result_encoding: 'base64' }, holder.credential);
    expect(accepted.status).toBe(201);
    expect(accepted.json['job_status']).toBe('completed');
    const again = await call('POST', '/api/v1/worker/result', { node_id: holder.id, execution_id: assignment.execution_id, status: 'completed', result: 'aGVsbG8K', result_encoding: 'base64' }, holder.credential);
    expect(again.status).toBe(200);
    expect(again.json['duplicate']).toBe(true);
    const done = await call('GET', `/api/v1/jobs/${jobId}`);
    expect(done.json).toMatchObject({ status: 'completed', result: 'aGVsbG8K', result_encoding: 'base64', result_hash: '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03' });
    const executions = await call('GET', `/api/v1/jobs/${jobId}/executions`);
    expect(executions.json['count']).toBe(1);
    const listed = await call('GET', '/api/v1/jobs?status=completed');
    expect((listed.json['jobs'] as { id: string }[]).map((j) => j.id)).toContain(jobId);
  });

  it('shows workers as nodes: merged with telemetry when they share an id, on their own otherwise, and counted in /stats and /metrics', async () => {
    const id = seededUuid('jobs-api-both');
    await system.bus.publish(topics.telemetry, 'NodeTelemetry', {
      schemaVersion: 2, id, name: 'both-roles', geozone: 'CAISO', geohash: '9q9hvu', energySource: 'cogen', batteryLevel: 0.9, gpuUtilization: 0.2, gpuMemoryFreeGb: 20, modelsLoaded: ['llama-3-8b'], timestamp: new Date(clock.now()).toISOString(),
    });
    await until(() => system.aggregator.registry.get(id), 'the telemetry node');
    const registered = await call('POST', '/api/v1/nodes/register', { id, name: 'both-roles', region: 'CAISO', cpu_cores: 8, memory_gb: 16 });
    expect(registered.status).toBe(201);
    const { json: list } = await call('GET', '/api/v1/nodes');
    const nodes = list['nodes'] as Record<string, unknown>[];
    const both = nodes.filter((n) => n['id'] === id);
    expect(both).toHaveLength(1);
    expect(both[0]).toMatchObject({ energySource: 'cogen', gpuUtilization: 0.2, reputation_score: 100, cpu_cores: 8, worker_status: 'online' });
    expect(nodes.find((n) => n['name'] === 'box-1')).toMatchObject({ geozone: 'ERCOT', status: 'online', reputation_score: 100 });
    const single = await call('GET', `/api/v1/nodes/${id}`);
    expect(single.json).toMatchObject({ energySource: 'cogen', memory_gb: 16 });
    const stats = await call('GET', '/stats');
    expect(stats.json['workers']).toMatchObject({ total: 3, online: 3, cpuCores: 14 });
    expect(stats.json['jobs']).toMatchObject({ total: 1, completed: 1 });
    expect((stats.json['nodes'] as { total: number }).total).toBe(3);
    const metrics = await (await fetch(`${system.url}/metrics`, { headers: bearer(system.operatorKey) })).text();
    expect(metrics).toMatch(/arcnet_nodes_total\{geozone="ERCOT",status="online"\} 1/);
    expect(metrics).toMatch(/arcnet_jobs_total\{status="completed"\} 1/);
  });
});

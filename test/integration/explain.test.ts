/**
 * "Why this node" on a real embedded server over a SQLite file: after a routed request the
 * explanation picks the node the scheduler dispatched to, with filter counts and candidates that
 * agree with the node list as of the decision; a rejected request names the filter that removed
 * the nodes; unknown ids are 404s naming them; a job's executions are explained worker by worker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { JobExplanation, PlacementExplanation } from '../../src/contracts/console.ts';
import { DECISIONS_COLLECTION } from '../../src/inference/decision-log.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { keyed } from '../support/api-key.ts';
import { until } from '../support/until.ts';

interface ListedNode {
  id: string;
  name: string;
  geozone: string;
  status: string;
  modelsLoaded?: string[];
  gpuUtilization: number;
  batteryLevel: number;
  energySource: string;
}

describe('explain', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'arcnet-explain-'));
  let system: EmbeddedSystem;
  let api: typeof fetch;
  const call = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const response = await api(`${system.url}${path}`, { method, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) });
    return { status: response.status, body: (await response.json()) as T };
  };

  beforeAll(async () => {
    system = await startEmbedded(withDefaults({ port: 0, dataDir, telemetryIntervalMs: 500, simulation: { nodes: 12, requestRate: 0, silencesPerHour: 0 } }));
    api = keyed(system.operatorKey);
    await until(() => system.aggregator.registry.size >= 12, 'the simulated nodes');
    // Their first documents are stored (the aggregator writes in batches).
    await until(async () => (await call<{ count: number }>('GET', `/api/v1/nodes?asOf=${Date.now()}`)).body.count >= 12, 'the node documents');
  });
  afterAll(async () => {
    await system.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('explains a routed request with the node the scheduler chose, consistent with the node list at that moment', async () => {
    // The model most nodes carry, so several are candidates.
    const counts = new Map<string, number>();
    for (const node of system.aggregator.registry.all()) for (const model of node.modelsLoaded) counts.set(model, (counts.get(model) ?? 0) + 1);
    const model = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    const routed = await call<{ id: string; nodeId: string; forwarded: boolean }>('POST', '/api/v1/inference', { modelId: model, contextWindowTokens: 128, requesterGeozone: 'CAISO' });
    expect(routed.status).toBe(201);
    // Written to the store by the decision log's batch, so the answer below is the store's.
    await until(async () => (await system.stores.records.get(DECISIONS_COLLECTION, routed.body.id)) !== undefined, 'the decision record in the store');

    const { status, body: why } = await call<PlacementExplanation>('GET', `/api/v1/inference/${routed.body.id}/explain`);
    expect(status).toBe(200);
    expect(why).toMatchObject({ subject: { kind: 'inference', id: routed.body.id, modelId: model, requesterGeozone: 'CAISO' }, outcome: 'dispatched', recorded: { nodeId: routed.body.nodeId }, agrees: true });
    expect(why.chosen).toMatchObject({ nodeId: routed.body.nodeId, forwarded: routed.body.forwarded });
    expect(why.candidates[0]).toMatchObject({ nodeId: routed.body.nodeId, chosen: true });

    // The node list as of the decision time is what the explanation counted.
    const asOf = (await call<{ nodes: ListedNode[] }>('GET', `/api/v1/nodes?asOf=${encodeURIComponent(why.decidedAt)}`)).body.nodes;
    expect(why.basis.nodesSeen).toBe(asOf.length);
    expect(why.filters.map((f) => f.name)).toEqual(['model-loaded', 'online', 'gpu-headroom', 'battery-reserve', 'not-reserved']);
    const removed = why.filters.reduce((sum, f) => sum + f.removed, 0);
    expect(why.filters.find((f) => f.name === 'model-loaded')!.removed).toBe(asOf.filter((n) => !(n.modelsLoaded ?? []).includes(model)).length);
    const passing = asOf.length - removed;
    expect(why.candidates.length).toBe(Math.min(5, passing));
    const byId = new Map(asOf.map((n) => [n.id, n]));
    for (const [i, candidate] of why.candidates.entries()) {
      const node = byId.get(candidate.nodeId)!;
      expect(node.modelsLoaded).toContain(model);
      expect(node.gpuUtilization).toBeLessThan(0.85);
      expect(candidate.terms['same-geozone']).toBe(node.geozone === 'CAISO' ? 100 : 0);
      expect(candidate.terms['cogen']).toBe(node.energySource === 'cogen' ? 50 : 0);
      expect(candidate.terms['gpu-headroom']).toBeCloseTo(30 * (1 - node.gpuUtilization), 9);
      expect(candidate.terms['battery']).toBeCloseTo(20 * node.batteryLevel, 9);
      expect(Object.values(candidate.terms).reduce((a, b) => a + b, 0)).toBeCloseTo(candidate.score, 9);
      if (i > 0) expect(candidate.score).toBeLessThanOrEqual(why.candidates[i - 1]!.score);
    }
    expect(why.approximations?.join(' ')).toMatch(/reservations/);
    // The request appears in its node's recent work too.
    const work = await call<{ requests: { id: string }[] }>('GET', `/api/v1/inference?nodeId=${routed.body.nodeId}`);
    expect(work.body.requests.map((r) => r.id)).toContain(routed.body.id);
  });

  it('names the filter that removed every node of a rejected request', async () => {
    const rejected = await call<{ id: string; status: string }>('POST', '/api/v1/inference', { modelId: 'no-such-model', contextWindowTokens: 16, requesterGeozone: 'PJM' });
    expect(rejected.status).toBe(503);
    const { body: why } = await call<PlacementExplanation>('GET', `/api/v1/inference/${rejected.body.id}/explain`);
    expect(why).toMatchObject({ outcome: 'rejected', chosen: null, candidates: [], agrees: true, recorded: { nodeId: null } });
    expect(why.recorded.reason).toMatch(/no candidate/);
    expect(why.filters.find((f) => f.name === 'model-loaded')!.removed).toBe(why.basis.nodesSeen);
    expect(why.basis.nodesSeen).toBeGreaterThanOrEqual(12);
  });

  it('answers 404 naming an unknown request and 400 for a malformed id', async () => {
    const id = randomUUID();
    const unknown = await call<{ message: string }>('GET', `/api/v1/inference/${id}/explain`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.message).toContain(id);
    const malformed = await call<{ message: string }>('GET', '/api/v1/inference/not-an-id/explain');
    expect(malformed.status).toBe(400);
    expect(malformed.body.message).toMatch(/id/);
    expect((await call<{ message: string }>('GET', `/api/v1/jobs/${id}/explain`)).status).toBe(404);
  });

  it("explains each execution of a job: the workers then, each filter's removals, the worker chosen", async () => {
    const register = async (name: string, cpu: number): Promise<string> => {
      const { status, body } = await call<{ node: { id: string } }>('POST', '/api/v1/nodes/register', { name, region: 'ERCOT', cpu_cores: cpu, memory_gb: 8 });
      expect(status).toBe(201);
      return body.node.id;
    };
    const small = await register('explain-small', 1);
    for (const [name, cpu] of [['explain-a', 4], ['explain-b', 8], ['explain-c', 16]] as const) await register(name, cpu);
    const job = await call<{ id: string }>('POST', '/api/v1/jobs', { name: 'explained', docker_image: 'arcnet/busybox:test', command: ['true'], required_cpu: 2, redundancy: 3, consensus: 2 });
    expect(job.status).toBe(201);
    const { status, body: why } = await call<JobExplanation>('GET', `/api/v1/jobs/${job.body.id}/explain`);
    expect(status).toBe(200);
    expect(why.jobId).toBe(job.body.id);
    expect(why.executions).toHaveLength(3);
    const chosen = why.executions.map((e) => e.workerId);
    expect(new Set(chosen).size).toBe(3);
    expect(chosen).not.toContain(small);
    for (const execution of why.executions) {
      const removed = Object.fromEntries(execution.filters.map((f) => [f.name, f.removed]));
      // The other two executions' workers, and the one-core worker that cannot fit two cores.
      expect(removed['distinct-worker']).toBe(2);
      expect(removed['cpu-fit']).toBe(1);
      expect(execution.candidates[0]).toMatchObject({ workerId: execution.workerId, chosen: true });
      expect(execution.agrees).toBe(true);
      for (const candidate of execution.candidates) expect(Object.values(candidate.terms).reduce((a, b) => a + b, 0)).toBeCloseTo(candidate.score, 9);
    }
    expect(why.approximations?.join(' ')).toMatch(/allocat|held by other executions/i);
  });
});

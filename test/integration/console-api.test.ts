/**
 * The REST data the console and a seed 004 dashboard read, from a real embedded server on a SQLite
 * file: /stats' seed 004 cards agree with the node list it is computed beside, every node carries
 * seed 004's fields, zone rows add up to the node totals, events filter, a node's recent work lists.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { topics } from '../../src/contracts/topics.ts';
import type { ZoneView } from '../../src/contracts/console.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { keyed } from '../support/api-key.ts';
import { until } from '../support/until.ts';

type Node = Record<string, unknown> & { id: string; status: string; geozone: string };

describe('console REST data', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'arcnet-console-api-'));
  let system: EmbeddedSystem;
  let api: typeof fetch;
  const get = async <T>(path: string): Promise<{ status: number; body: T }> => {
    const response = await api(`${system.url}${path}`);
    return { status: response.status, body: (await response.json()) as T };
  };

  beforeAll(async () => {
    system = await startEmbedded(withDefaults({ port: 0, dataDir, telemetryIntervalMs: 500, simulation: { nodes: 9, requestRate: 0, silencesPerHour: 0 } }));
    api = keyed(system.operatorKey);
    await until(() => system.aggregator.registry.size >= 9, 'the simulated nodes');
    // A worker that sends no telemetry: a node of its own, with its region as its zone.
    const registered = await api(`${system.url}/api/v1/nodes/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'batch-box', region: 'PJM', cpu_cores: 6, memory_gb: 12 }) });
    expect(registered.status).toBe(201);
  });
  afterAll(async () => {
    await system.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("answers /stats with seed 004's cards, equal to what /api/v1/nodes lists", async () => {
    const { body: list } = await get<{ count: number; nodes: Node[] }>('/api/v1/nodes');
    const { body: stats } = await get<{ nodes: Record<string, number>; resources: Record<string, number>; jobs: Record<string, number> }>('/stats');
    const count = (status: string): number => list.nodes.filter((n) => n.status === status).length;
    expect(stats.nodes['total']).toBe(list.count);
    expect(stats.nodes['online']).toBe(count('online'));
    expect(stats.nodes['busy']).toBe(count('busy'));
    expect(stats.nodes['offline']).toBe(count('offline'));
    const live = list.nodes.filter((n) => n.status !== 'offline');
    expect(stats.resources['total_cpu_cores']).toBe(live.reduce((sum, n) => sum + (n['cpu_cores'] as number), 0));
    expect(stats.resources['total_memory_gb']).toBe(live.reduce((sum, n) => sum + (n['memory_gb'] as number), 0));
    expect(stats.resources['total_cpu_cores']).toBeGreaterThan(6);
    expect(Object.keys(stats.jobs)).toEqual(expect.arrayContaining(['total', 'completed', 'running', 'failed']));
  });

  it("gives every node, inference nodes too, seed 004's node fields with their types", async () => {
    const { body } = await get<{ nodes: Node[] }>('/api/v1/nodes');
    expect(body.nodes.length).toBe(10);
    const iso = (v: unknown): boolean => typeof v === 'string' && !Number.isNaN(Date.parse(v)) && new Date(v).toISOString() === v;
    for (const node of body.nodes) {
      expect(typeof node['region'], node.id).toBe('string');
      for (const field of ['cpu_cores', 'memory_gb', 'reputation_score', 'total_jobs_run', 'successful_jobs_run', 'failed_jobs', 'credits_earned']) expect(typeof node[field], `${node.id} ${field}`).toBe('number');
      expect(typeof node['gpu_enabled']).toBe('boolean');
      expect(iso(node['last_heartbeat']), `${node.id} last_heartbeat ${String(node['last_heartbeat'])}`).toBe(true);
      expect(iso(node['registered_at']), `${node.id} registered_at`).toBe(true);
      expect(Date.parse(node['registered_at'] as string)).toBeLessThanOrEqual(Date.parse(node['last_heartbeat'] as string));
    }
    const simulated = body.nodes.find((n) => n['name'] !== 'batch-box')!;
    const capacity = simulated['capacity'] as { cpuCores: number; memoryGb: number; gpus: number };
    expect(simulated).toMatchObject({ region: simulated.geozone, cpu_cores: capacity.cpuCores, memory_gb: capacity.memoryGb, gpu_enabled: capacity.gpus > 0, reputation_score: simulated['reputation'], total_jobs_run: 0, credits_earned: 0, last_heartbeat: simulated['lastSeen'] });
    // ArcNet's own fields stay beside them.
    expect(simulated).toHaveProperty('energySource');
    expect(body.nodes.find((n) => n['name'] === 'batch-box')).toMatchObject({ region: 'PJM', geozone: 'PJM', cpu_cores: 6, memory_gb: 12 });
  });

  it('lists one row per geozone that adds up to the node totals', async () => {
    const { body } = await get<{ zones: ZoneView[] }>('/api/v1/zones');
    const { body: stats } = await get<{ nodes: { total: number; byGeozone: Record<string, { total: number; online: number }> } }>('/stats');
    expect(body.zones.map((z) => z.geozone)).toEqual(['CAISO', 'ERCOT', 'PJM']);
    expect(body.zones.reduce((sum, z) => sum + z.nodes.total, 0)).toBe(stats.nodes.total);
    for (const zone of body.zones) {
      expect(zone.nodes.total).toBe(stats.nodes.byGeozone[zone.geozone]!.total);
      expect(zone.nodes.online).toBe(stats.nodes.byGeozone[zone.geozone]!.online);
      // Before the first regional summary the energy mix comes from the registry: the zone's live telemetry nodes.
      const telemetryNodes = [...system.aggregator.registry.all()].filter((n) => n.geozone === zone.geozone && n.status !== 'offline');
      expect(zone.energy.cogen + zone.energy.grid + zone.energy.battery).toBe(telemetryNodes.length);
      expect(zone.gpuAverage).not.toBeNull();
    }
    // A summary on the bus replaces the registry's mix.
    await system.bus.publish(topics.regionalSummary, 'RegionalSummary', { schemaVersion: 1, geozoneId: 'ERCOT', totalNodes: 3, activeNodes: 3, avgGpuUtil: 0.5, energyBreakdown: { cogen: 3, grid: 0, battery: 0 }, timestamp: new Date().toISOString() });
    const ercot = await until(async () => (await get<{ zones: ZoneView[] }>('/api/v1/zones')).body.zones.find((z) => z.geozone === 'ERCOT' && z.summaryAt !== null), 'the summary to reach the zone row');
    expect(ercot.energy).toEqual({ cogen: 3, grid: 0, battery: 0 });
  });

  it('filters system events by severity, zone and a case-insensitive search, newest first, saying since when', async () => {
    const event = (severity: 'info' | 'warn' | 'error', geozone: string, message: string): Promise<void> =>
      system.bus.publish(topics.systemEvent, 'SystemEvent', { schemaVersion: 1, id: randomUUID(), kind: 'test.console', severity, message, geozone, timestamp: new Date().toISOString() });
    await event('warn', 'CAISO', 'Console probe ALPHA');
    await event('error', 'ERCOT', 'console probe beta');
    await event('warn', 'ERCOT', 'console probe gamma');
    type Page = { since: string; count: number; events: { severity: string; geozone?: string; message: string }[] };
    await until(async () => (await get<Page>('/api/v1/events?q=console%20probe')).body.count === 3, 'the three events');
    const all = (await get<Page>('/api/v1/events?q=CONSOLE%20PROBE')).body;
    expect(all.events.map((e) => e.message)).toEqual(['console probe gamma', 'console probe beta', 'Console probe ALPHA']);
    expect(Date.parse(all.since)).toBeLessThanOrEqual(Date.now());
    expect((await get<Page>('/api/v1/events?q=console%20probe&severity=warn')).body.events.map((e) => e.message)).toEqual(['console probe gamma', 'Console probe ALPHA']);
    expect((await get<Page>('/api/v1/events?q=probe&geozone=ERCOT&severity=error')).body.events.map((e) => e.message)).toEqual(['console probe beta']);
    expect((await get<Page>('/api/v1/events?q=test.console&limit=1')).body.count).toBe(1);
    // The aggregator's own events are there too (nodes joining).
    expect((await get<Page>('/api/v1/events?q=node.joined')).body.count).toBeGreaterThan(0);
    const bad = await get<{ message: string }>('/api/v1/events?severity=loud');
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/severity/);
    expect((await get<{ message: string }>('/api/v1/events?limt=3')).body.message).toMatch(/limt/);
  });

  it("lists a node's recent requests and a worker's executions, and refuses bad filters naming the field", async () => {
    const routed = await api(`${system.url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ modelId: 'llama-3-8b', contextWindowTokens: 64, requesterGeozone: 'CAISO' }) });
    const request = (await routed.json()) as { id: string; nodeId?: string };
    expect([201, 503]).toContain(routed.status);
    if (request.nodeId !== undefined) {
      const { body } = await get<{ nodeId: string; requests: { id: string; nodeId: string }[] }>(`/api/v1/inference?nodeId=${request.nodeId}&limit=5`);
      expect(body.requests.map((r) => r.id)).toContain(request.id);
      expect(body.requests.every((r) => r.nodeId === request.nodeId)).toBe(true);
    }
    const bad = await get<{ message: string }>('/api/v1/inference?nodeId=');
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/nodeId/);

    const worker = (await get<{ nodes: Node[] }>('/api/v1/nodes')).body.nodes.find((n) => n['name'] === 'batch-box')!;
    const job = await api(`${system.url}/api/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'one', docker_image: 'arcnet/busybox:test', command: ['true'], redundancy: 1, consensus: 1 }) });
    expect(job.status).toBe(201);
    const { body: executions } = await get<{ count: number; executions: { job_id: string; node_id: string; job_name: string }[] }>(`/api/v1/nodes/${worker.id}/executions`);
    expect(executions.count).toBe(1);
    expect(executions.executions[0]).toMatchObject({ node_id: worker.id, job_name: 'one' });
    expect((await get(`/api/v1/nodes/${randomUUID()}/executions`)).status).toBe(404);
  });
});

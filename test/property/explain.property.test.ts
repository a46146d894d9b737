/**
 * The explainers against the reference placement: for random node sets, reservations and weights,
 * the node an explanation picks is `place()`'s, its removals add up to the nodes seen minus those that
 * passed, the candidates are the best in `place()`'s order; the same for a job's executions against
 * the job profile.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { explainPlacement } from '../../src/inference/explain.ts';
import type { DecisionRecord } from '../../src/inference/decision-log.ts';
import { DEFAULT_INFERENCE_PROFILE, inferenceProfile } from '../../src/inference/profile.ts';
import { firstFailure, place, placeMany } from '../../src/placement/framework.ts';
import type { NodeState } from '../../src/mesh/node.ts';
import { explainJob } from '../../src/jobs/explain.ts';
import { jobProfile, type JobAsk } from '../../src/jobs/profile.ts';
import type { Job, JobExecution, WorkerRecord } from '../../src/jobs/model.ts';

const zones = ['CAISO', 'ERCOT', 'PJM'];
const models = ['llama-3-70b', 'mistral-7b', 'sdxl'];
const NOW = 1_000_000;
const nodeId = (index: number): string => `00000000-0000-4000-a000-${String(index).padStart(12, '0')}`;

const nodeArb = (index: number): fc.Arbitrary<NodeState> =>
  fc
    .record({
      geozone: fc.constantFrom(...zones),
      energySource: fc.constantFrom('cogen' as const, 'grid' as const, 'battery' as const),
      batteryLevel: fc.constantFrom(0, 0.1, 0.2, 0.21, 0.5, 0.9, 1),
      gpuUtilization: fc.constantFrom(0, 0.3, 0.5, 0.84, 0.85, 0.9, 1),
      modelsLoaded: fc.subarray(models),
      silentFor: fc.constantFrom(0, 5_000, 30_000, 31_000, 120_000),
      status: fc.constantFrom('online' as const, 'online' as const, 'busy' as const, 'draining' as const, 'offline' as const),
    })
    .map((r) => ({
      id: nodeId(index),
      name: `node-${index}`,
      geozone: r.geozone,
      geohash: '9q9hvu',
      tags: [],
      capacity: { cpuCores: 8, memoryGb: 64, gpus: 4 },
      energySource: r.energySource,
      batteryLevel: r.batteryLevel,
      gpuUtilization: r.gpuUtilization,
      gpuMemoryFreeGb: 10,
      cpuLoad: 0,
      modelsLoaded: r.modelsLoaded,
      datasetsHot: [],
      status: r.status,
      lastSeen: NOW - r.silentFor,
      reportedAt: NOW - r.silentFor,
      reputation: 100,
    }));

const weightsArb = fc.oneof(
  fc.constant(DEFAULT_INFERENCE_PROFILE.weights),
  fc.record({ sameGeozone: fc.integer({ min: 0, max: 200 }), cogen: fc.integer({ min: 0, max: 200 }), gpuHeadroom: fc.integer({ min: 0, max: 200 }), battery: fc.integer({ min: 0, max: 200 }) }),
);

const caseArb = fc
  .integer({ min: 0, max: 40 })
  .chain((count) =>
    fc.record({
      nodes: fc.tuple(...Array.from({ length: count }, (_, i) => nodeArb(i))),
      reserved: fc.subarray(Array.from({ length: count }, (_, i) => nodeId(i))),
      weights: weightsArb,
      modelId: fc.constantFrom(...models),
      requesterGeozone: fc.constantFrom(...zones),
    }),
  );

describe('explainPlacement', () => {
  it("picks place()'s node, and its removals add up to the nodes seen minus those that passed", () => {
    fc.assert(
      fc.property(caseArb, ({ nodes, reserved, weights, modelId, requesterGeozone }) => {
        const profile = inferenceProfile({ ...DEFAULT_INFERENCE_PROFILE, weights });
        const held = new Set(reserved);
        const context = { now: NOW, isReserved: (id: string) => held.has(id) };
        const ask = { modelId, requesterGeozone };
        const reference = place(profile, nodes, ask, context);
        const decision: DecisionRecord = {
          id: 'r',
          modelId,
          requesterGeozone,
          priority: 'normal',
          decidedAt: NOW,
          outcome: reference.kind === 'placed' ? 'dispatched' : 'rejected',
          ...(reference.kind === 'placed' ? { nodeId: reference.node.id } : {}),
          reserved,
          recordedBy: 'test',
        };
        const why = explainPlacement({ decision, nodes, profile, asOf: NOW });
        expect(why.chosen?.nodeId ?? null).toBe(reference.kind === 'placed' ? reference.node.id : null);
        expect(why.agrees).toBe(true);
        // The recorded node's own reservation never counts against it: the decision held it.
        const contextAsExplained = { now: NOW, isReserved: (id: string) => id !== decision.nodeId && held.has(id) };
        const passing = nodes.filter((n) => firstFailure(profile, n, ask, contextAsExplained) === undefined).length;
        expect(why.basis.nodesSeen).toBe(nodes.length);
        expect(why.filters.reduce((sum, f) => sum + f.removed, 0)).toBe(nodes.length - passing);
        const best = placeMany(profile, nodes, ask, contextAsExplained, 5).placed;
        expect(why.candidates.map((c) => c.nodeId)).toEqual(best.map((p) => p.node.id));
        for (const [i, candidate] of why.candidates.entries()) {
          expect(candidate.terms).toEqual(best[i]!.breakdown);
          expect(candidate.score).toBe(best[i]!.score);
        }
        if (reference.kind === 'none') for (const f of why.filters) expect(f.removed).toBe(reference.rejectedBy[f.name] ?? 0);
      }),
      { numRuns: 500, seed: 12 },
    );
  });
});

const workerArb = (index: number): fc.Arbitrary<WorkerRecord> =>
  fc
    .record({ cpu: fc.constantFrom(1, 2, 4, 8), memory: fc.constantFrom(1, 4, 16), gpu: fc.boolean(), status: fc.constantFrom('online' as const, 'busy' as const, 'offline' as const), reputation: fc.integer({ min: 0, max: 150 }), usage: fc.constantFrom(0, 0.2, 0.9) })
    .map((r) => ({
      id: nodeId(index),
      name: `worker-${index}`,
      region: 'ERCOT',
      cpu_cores: r.cpu,
      memory_gb: r.memory,
      gpu_enabled: r.gpu,
      gpu_model: null,
      status: r.status,
      reputation_score: r.reputation,
      total_jobs_run: 0,
      successful_jobs_run: 0,
      failed_jobs: 0,
      credits_earned: 0,
      last_heartbeat: new Date(NOW).toISOString(),
      registered_at: new Date(NOW).toISOString(),
      current_job_id: null,
      cpu_usage: r.usage,
      memory_usage: 0,
      credential_hash: 'x',
    }));

describe('explainJob', () => {
  it("finds, for each execution placed in one round, the worker placeMany gave it", () => {
    const profile = jobProfile();
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }).chain((count) => fc.record({ workers: fc.tuple(...Array.from({ length: count }, (_, i) => workerArb(i))), redundancy: fc.integer({ min: 1, max: 4 }), cpu: fc.constantFrom(0, 1, 2), gpu: fc.boolean() })),
        ({ workers, redundancy, cpu, gpu }) => {
          const at = new Date(NOW).toISOString();
          const ask: JobAsk = { jobId: 'j', cpu, memoryGb: 1, gpu, excluded: new Set() };
          const candidates = workers.map((w) => ({ id: w.id, online: w.status !== 'offline', reputation: w.reputation_score, cpuCores: w.cpu_cores, memoryGb: w.memory_gb, gpu: w.gpu_enabled, allocatedCpu: 0, allocatedMemoryGb: 0, cpuUsage: w.cpu_usage, enrolledBy: null }));
          const placed = placeMany(profile, candidates, ask, { now: NOW, isReserved: () => false }, redundancy).placed;
          const executions = placed.map((p, i) => ({ id: `e${i}`, job_id: 'j', node_id: p.node.id, status: 'scheduled', attempt: i + 1, scheduled_at: at, completed_at: null }) as unknown as JobExecution);
          const job = { id: 'j', required_cpu: cpu, required_memory: 1, required_gpu: gpu } as unknown as Job;
          const why = explainJob({ job, executions, workersAt: new Map(executions.map((e) => [e.id, workers])), held: [], profile, recentJobs: 1 });
          for (const execution of why.executions) {
            expect(execution.agrees).toBe(true);
            expect(execution.candidates[0]?.workerId).toBe(execution.workerId);
            expect(execution.filters.find((f) => f.name === 'distinct-worker')!.removed).toBe(executions.length - 1);
          }
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });
});

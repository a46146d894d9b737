/**
 * Two schedulers with their own views race for the same nodes through one lease store (two SQLite
 * connections on one file, as two processes would have): no node is ever held by two requests.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { seededUuid } from '../../src/core/ids.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { MessageBus } from '../../src/bus/typed-bus.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import { InferenceScheduler, DEFAULT_SCHEDULER_CONFIG, type RoutingOutcome } from '../../src/inference/scheduler.ts';
import { DEFAULT_INFERENCE_PROFILE } from '../../src/inference/profile.ts';
import type { NodeTelemetry } from '../../src/contracts/messages.ts';

describe('reservations under concurrency', () => {
  it('never lets two concurrent requests hold the same node, across two schedulers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arcnet-reserve-'));
    let run = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 40 }), fc.array(fc.constantFrom('CAISO', 'ERCOT'), { minLength: 40, maxLength: 40 }), async (nodeCount, requestCount, zones) => {
          run++;
          const file = join(dir, `leases-${run}.db`);
          const storeA = openSqliteStores({ path: file });
          const storeB = openSqliteStores({ path: file });
          const bus = new MessageBus(new MemoryBus());
          const make = (store: typeof storeA, name: string): InferenceScheduler =>
            new InferenceScheduler({ bus, leases: store.leases, clock: systemClock, logger: silentLogger, instanceId: name, config: { ...DEFAULT_SCHEDULER_CONFIG, backoffBaseMs: 0, backoffCapMs: 1, placement: DEFAULT_INFERENCE_PROFILE } });
          const schedulers = [make(storeA, 'a'), make(storeB, 'b')];
          for (let i = 0; i < nodeCount; i++) {
            const telemetry: NodeTelemetry = {
              schemaVersion: 2, id: seededUuid(`r-${run}-${i}`), geohash: '9q9k6m', energySource: 'grid', batteryLevel: 0.5, gpuUtilization: (i % 7) / 10,
              gpuMemoryFreeGb: 10, modelsLoaded: ['m'], timestamp: new Date().toISOString(), geozone: i % 2 === 0 ? 'CAISO' : 'ERCOT',
            };
            for (const s of schedulers) s.observeTelemetry(telemetry);
          }
          const outcomes: RoutingOutcome[] = await Promise.all(
            Array.from({ length: requestCount }, (_, i) =>
              schedulers[i % 2]!.route({ schemaVersion: 1, id: seededUuid(`req-${run}-${i}`), modelId: 'm', contextWindowTokens: 8, priority: 'normal', maxLatencyMs: 100, requesterGeozone: zones[i]! }),
            ),
          );
          const held = outcomes.flatMap((o) => (o.status === 'dispatched' ? [o.dispatch.nodeId] : []));
          expect(new Set(held).size).toBe(held.length);
          // A request is turned away only when every node is held, or after its bounded retries all met
          // nodes the other scheduler had taken first, and then it says so.
          for (const outcome of outcomes) {
            if (outcome.status === 'rejected' && held.length < nodeCount) expect(outcome.reason).toMatch(/taken by another scheduler first/);
          }
          expect(held.length).toBeGreaterThanOrEqual(Math.min(nodeCount, requestCount) / 2);
          const tokens = outcomes.flatMap((o) => (o.status === 'dispatched' ? [o.dispatch.fencingToken!] : []));
          expect(tokens.every((t) => t >= 1)).toBe(true);
          await storeA.close();
          await storeB.close();
        }),
        { numRuns: 40 },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

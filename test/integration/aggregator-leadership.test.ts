/**
 * Single-writer aggregators: of two replicas only the lease holder writes node documents; a deposed
 * holder that still believes it leads (a paused process, a partition) has its fenced writes refused
 * by the store, and a standby takes over once the lease runs out.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { StaleFencingTokenError } from '../../src/core/errors.ts';
import { seededUuid } from '../../src/core/ids.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { MessageBus } from '../../src/bus/typed-bus.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { NodeTelemetry } from '../../src/contracts/messages.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { RegionalAggregator, DEFAULT_AGGREGATOR_CONFIG, NODES_COLLECTION } from '../../src/mesh/aggregator.ts';
import { LeaseLeadership, type Leadership } from '../../src/leases/leadership.ts';
import { until } from '../support/until.ts';

const LEASE = 'aggregator/CAISO';

function telemetry(index: number, gpu: number): NodeTelemetry {
  return {
    schemaVersion: 2,
    id: seededUuid(`lead-${index}`),
    geohash: '9q9k6m',
    energySource: 'grid',
    batteryLevel: 0.5,
    gpuUtilization: gpu,
    gpuMemoryFreeGb: 10,
    modelsLoaded: ['m'],
    timestamp: new Date().toISOString(),
    geozone: 'CAISO',
  };
}

describe('aggregator replicas behind a lease', () => {
  let stores: StateStores;
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
    await stores.close();
  });

  const aggregator = async (bus: MessageBus, name: string, leadership: Leadership): Promise<RegionalAggregator> => {
    const instance = new RegionalAggregator({
      bus,
      documents: stores.documents,
      clock: systemClock,
      logger: silentLogger,
      config: { ...DEFAULT_AGGREGATOR_CONFIG, geozones: ['CAISO'], flushIntervalMs: 60_000 },
      group: `${name}-telemetry`,
      leadership,
    });
    await instance.start();
    stops.push(() => instance.stop().catch(() => undefined));
    return instance;
  };

  it('writes only from the lease holder, refuses a deposed holder\'s writes, and hands over when the lease runs out', async () => {
    stores = openSqliteStores({ path: ':memory:' });
    const bus = new MessageBus(new MemoryBus());
    await bus.ensureTopics(['CAISO']);

    // A won the lease, then stopped renewing (paused); it still believes it leads, with its old token.
    const first = await stores.leases.acquire(LEASE, 'a', 300);
    if (!first.ok) throw new Error('lease not granted');
    const zombie: Leadership = { leading: true, fence: () => ({ lease: LEASE, token: first.grant.token }) };
    const a = await aggregator(bus, 'a', zombie);

    const leadershipB = new LeaseLeadership({ leases: stores.leases, name: LEASE, holder: 'b', clock: systemClock, logger: silentLogger, ttlMs: 300 });
    await leadershipB.start();
    stops.push(() => leadershipB.stop());
    const b = await aggregator(bus, 'b', leadershipB);
    expect(leadershipB.leading).toBe(false);

    await until(() => leadershipB.leading, 'the standby to take the expired lease', 5_000);
    expect(leadershipB.fence()!.token).toBeGreaterThan(first.grant.token);

    await bus.publish(topics.telemetry, 'NodeTelemetry', telemetry(1, 0.25));
    await until(() => a.registry.size === 1 && b.registry.size === 1, 'both replicas to see the node');

    // The deposed writer's flush is refused in the store; the holder's lands.
    await expect(a.flush()).rejects.toBeInstanceOf(StaleFencingTokenError);
    await b.flush();
    const history = await stores.documents.history(NODES_COLLECTION, seededUuid('lead-1'));
    expect(history).toHaveLength(1);

    // A replica without the lease writes nothing at all.
    const follower = new LeaseLeadership({ leases: stores.leases, name: LEASE, holder: 'c', clock: systemClock, logger: silentLogger, ttlMs: 300 });
    await follower.start();
    stops.push(() => follower.stop());
    const c = await aggregator(bus, 'c', follower);
    await bus.publish(topics.telemetry, 'NodeTelemetry', telemetry(2, 0.5));
    await until(() => c.registry.get(seededUuid('lead-2')) && b.registry.get(seededUuid('lead-2')), 'the follower to see the new node');
    await c.flush();
    expect(await stores.documents.history(NODES_COLLECTION, seededUuid('lead-2'))).toHaveLength(0);
    await b.flush();
    expect(await stores.documents.history(NODES_COLLECTION, seededUuid('lead-2'))).toHaveLength(1);
  });
});

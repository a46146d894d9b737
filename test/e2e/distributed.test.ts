/**
 * The roles as separate processes on Kafka and PostgreSQL: two aggregators and two schedulers for
 * one geozone, a simulator with 50 nodes, and a request load. The active scheduler and the leading
 * aggregator are SIGKILLed mid-run. Read back from the topics afterwards: every request has exactly
 * one dispatch, no node was reserved twice at once, the takeovers took a bounded time, and the
 * survivor reuses nodes the dead scheduler had reserved once their requests completed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { startCli, type CliProcess } from '../support/processes.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, testSchemas } from '../support/postgres.ts';
import { KAFKA_BOOTSTRAP, kafkaServers } from '../support/kafka.ts';
import { until } from '../support/until.ts';
import { KafkaBus } from '../../src/bus/kafka.ts';
import { MessageBus, decodeRecord } from '../../src/bus/typed-bus.ts';
import type { ConsumedRecord } from '../../src/bus/ports.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { InferenceDispatch, InferenceRequest, InferenceResult, SystemEvent } from '../../src/contracts/messages.ts';
import { openPostgresStores } from '../../src/store/postgres.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { KeyRing } from '../../src/access/api-keys.ts';
import { systemClock } from '../../src/core/clock.ts';
import { bearer } from '../support/api-key.ts';

const engines = needEngines('postgres', 'kafka');

const ZONE = 'CAISO';
const RATE = 3;
const BURST_BEFORE_KILL = 5;
const LOAD_SECONDS = 40;
const KILL_AFTER_S = 10;
/** Longer than the load runs after the kill: a node the survivor reuses was freed by it, not by the TTL. */
const RESERVATION_TTL_MS = 30_000;

/**
 * Everything committed to some topics from now on, read back by a consumer group of the test's own
 * (read-committed, so an aborted transaction's records never count); keyed by partition and offset so
 * a redelivery is not mistaken for a second record.
 */
async function recordFrom(bus: MessageBus, topicNames: string[]): Promise<{ records: Map<string, ConsumedRecord>; close: () => Promise<void> }> {
  const records = new Map<string, ConsumedRecord>();
  const consumer = await bus.adapter.consume({
    group: `e2e-readback-${randomUUID()}`,
    topics: topicNames,
    startAt: 'latest',
    handler: (record) => void records.set(`${record.topic}#${record.partition}@${record.offset}`, record),
  });
  return { records, close: () => consumer.close() };
}

function decodeAll<N extends 'InferenceDispatch' | 'InferenceResult' | 'SystemEvent'>(records: ConsumedRecord[], schema: N) {
  return records.flatMap((record) => {
    const decoded = decodeRecord(record, schema);
    return decoded.ok ? [decoded.message] : [];
  });
}

/** Where a role serves /health and /metrics: on port 0 the banner is the only place that says. */
const healthAddress = (child: CliProcess): string | undefined => /health and metrics at (http:\/\/\S+?);/.exec(child.output())?.[1];
const httpOf = (child: CliProcess): string => {
  const url = healthAddress(child);
  if (!url) throw new Error(`no health and metrics address in the banner:\n${child.output()}`);
  return url;
};

/** What a role's /health says of it (src/main/role-http.ts, details from src/main/roles.ts). */
interface RoleHealthBody {
  readonly instanceId: string;
  readonly nodesKnown?: number;
  readonly routing?: readonly { source: string }[];
  readonly reclaimedReservations?: number;
}
const healthOf = async (child: CliProcess, path: '/health' | '/ready' = '/health'): Promise<{ status: number; body: RoleHealthBody }> => {
  const response = await fetch(`${httpOf(child)}${path}`);
  return { status: response.status, body: (await response.json()) as RoleHealthBody };
};

describe.skipIf(!engines.available)(engines.title('distributed roles as processes'), () => {
  const schemas = testSchemas();
  const children: CliProcess[] = [];
  let stores: StateStores | undefined;
  let client: KafkaBus | undefined;
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await client?.close();
    await stores?.close();
    await schemas.dropAll();
  });

  it('survives SIGKILL of the active scheduler and the leading aggregator: every request dispatched exactly once, no node reserved twice', async () => {
    const schema = await schemas.fresh();
    stores = await openPostgresStores({ url: POSTGRES_URL, schema });
    const engines = ['--kafka', KAFKA_BOOTSTRAP, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--geozone', ZONE, '--log-level', 'warn'];
    const spawn = (args: string[]): CliProcess => {
      const child = startCli(args);
      children.push(child);
      return child;
    };
    const http = ['--http-port', '0'];
    const aggregators = [0, 1].map(() => spawn(['aggregator', ...engines, ...http, '--lease-ttl', '2000', '--offline-after', '5000', '--summary-interval', '1000']));
    const schedulers = [0, 1].map(() => spawn(['scheduler', ...engines, ...http, '--failover-after', '6000', '--reservation-timeout', String(RESERVATION_TTL_MS)]));
    await until(() => [...aggregators, ...schedulers].every((c) => healthAddress(c)), 'every role to start and serve /health', 60_000);
    const instanceIds = new Map<CliProcess, string>();
    for (const child of [...aggregators, ...schedulers]) instanceIds.set(child, (await healthOf(child)).body.instanceId);
    const instanceOf = (child: CliProcess): string => instanceIds.get(child)!;
    const simulator = spawn(['simulate', '--kafka', KAFKA_BOOTSTRAP, '--nodes', '50', '--geozone', ZONE, '--telemetry-interval', '1000', '--log-level', 'warn']);
    // The leading aggregator writes all 50 node documents; the schedulers' indexes fill from the same telemetry.
    await until(async () => (await stores!.documents.list('nodes')).length === 50, 'the 50 simulated nodes in PostgreSQL', 60_000);
    const firstLease = await stores.leases.current(`aggregator/${ZONE}`);
    expect(firstLease).toBeDefined();
    await new Promise((resolve) => setTimeout(resolve, 2_000));

    client = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: `e2e-${randomUUID().slice(0, 6)}` });
    const bus = new MessageBus(client);
    const readback = await recordFrom(bus, [topics.dispatch(ZONE), topics.systemEvent, topics.inferenceResult]);
    const of = (topic: string): ConsumedRecord[] => [...readback.records.values()].filter((r) => r.topic === topic);
    const producedAt = new Map<string, number>();
    let killedAt = 0;
    let killedScheduler = '';
    let killedAggregator = '';
    let aggregatorTakeover: Promise<{ lease: { holder: string; token: number }; atMs: number }> | undefined;
    const newRequest = (contextWindowTokens = 512): InferenceRequest => ({
      schemaVersion: 1,
      id: randomUUID(),
      modelId: 'llama-3-8b',
      contextWindowTokens,
      priority: 'normal',
      // A deadline that outlives the failover: this suite is about each request dispatched once, and a
      // request queued behind a dead scheduler for longer than its deadline is rejected as expired.
      maxLatencyMs: 30_000,
      requesterGeozone: ZONE,
    });
    const started = Date.now();
    for (let i = 0; i < RATE * LOAD_SECONDS; i++) {
      const due = started + (i * 1000) / RATE;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
      if (killedAt === 0 && Date.now() - started >= KILL_AFTER_S * 1000) {
        // What an operator's probes see: both schedulers ready, only the active one routing a partition.
        const probes = await Promise.all(schedulers.map(async (scheduler) => ({ scheduler, ...(await healthOf(scheduler, '/ready')) })));
        for (const probe of probes) {
          expect(probe.status).toBe(200);
          // At least: schedulers index every zone's telemetry (for forwarding), and another suite's
          // simulator may share this broker.
          expect(probe.body.nodesKnown).toBeGreaterThanOrEqual(50);
        }
        const routing = probes.filter((probe) => probe.body.routing!.length > 0);
        expect(routing.map((probe) => probe.body.routing!.length), 'one scheduler routes the zone, from its one request partition').toEqual([1]);
        const active = routing[0]!.scheduler;
        // A burst it dispatches just before it dies, to requests that run for about half a second
        // (a long context), so their nodes are still working at the kill and their leases outlive it.
        const burst = Array.from({ length: BURST_BEFORE_KILL }, () => newRequest(16_384));
        for (const request of burst) {
          await bus.publish(topics.inferenceRequest, 'InferenceRequest', request);
          producedAt.set(request.id, Date.now());
        }
        await until(
          () => {
            const seen = new Set(decodeAll(of(topics.dispatch(ZONE)), 'InferenceDispatch').map((d) => d.requestId));
            return burst.every((r) => seen.has(r.id));
          },
          'the burst before the kill to be dispatched',
          10_000,
          { intervalMs: 5 },
        );
        const holder = (await stores.leases.current(`aggregator/${ZONE}`))!.holder;
        const leader = aggregators.find((a) => instanceOf(a) === holder)!;
        killedAt = Date.now();
        active.kill('SIGKILL');
        leader.kill('SIGKILL');
        killedScheduler = instanceOf(active);
        killedAggregator = holder;
        aggregatorTakeover = until(async () => {
          const current = await stores!.leases.current(`aggregator/${ZONE}`);
          return current && current.holder !== holder ? { lease: current, atMs: Date.now() - killedAt } : undefined;
        }, 'the standby aggregator to take the lease', 30_000, { intervalMs: 50 });
      }
      const request = newRequest();
      await bus.publish(topics.inferenceRequest, 'InferenceRequest', request);
      producedAt.set(request.id, Date.now());
    }
    expect(killedAt).toBeGreaterThan(0);

    // The aggregator's lease passed to the survivor, with a higher token, and it writes node documents.
    const survivorAggregator = instanceOf(aggregators.find((a) => instanceOf(a) !== killedAggregator)!);
    const { lease, atMs: aggregatorTakeoverMs } = await aggregatorTakeover!;
    expect(lease.holder).toBe(survivorAggregator);
    expect(lease.token).toBeGreaterThan(firstLease!.token);
    const freshDocs = (await stores.documents.list<{ lastSeen: number }>('nodes')).filter((doc) => doc.txTime > killedAt + 2_000);
    expect(freshDocs.length).toBeGreaterThan(0);

    // Every request decided: read back from the dispatch topic and the rejection events.
    const ids = new Set(producedAt.keys());
    let dispatches: InferenceDispatch[] = [];
    let rejections: SystemEvent[] = [];
    await until(
      async () => {
        dispatches = decodeAll(of(topics.dispatch(ZONE)), 'InferenceDispatch').filter((d) => ids.has(d.requestId));
        rejections = decodeAll(of(topics.systemEvent), 'SystemEvent').filter((e) => e.kind === 'inference.rejected' && ids.has(e.subjectId ?? ''));
        return new Set([...dispatches.map((d) => d.requestId), ...rejections.map((e) => e.subjectId)]).size === ids.size;
      },
      'a decision for every request',
      60_000,
      { intervalMs: 1_000 },
    );
    const perRequest = new Map<string, number>();
    for (const d of dispatches) perRequest.set(d.requestId, (perRequest.get(d.requestId) ?? 0) + 1);
    const duplicated = [...perRequest].filter(([, count]) => count > 1);
    expect(duplicated, 'requests dispatched more than once').toEqual([]);
    expect(rejections.map((e) => e.message), 'requests turned away').toEqual([]);
    expect(perRequest.size).toBe(ids.size);

    // No node held two live reservations: per node, tokens strictly increase, and each dispatch comes
    // after the result (or the expiry) of the node's previous one.
    await readback.close();
    const results = new Map(decodeAll(of(topics.inferenceResult), 'InferenceResult').filter((r) => ids.has(r.requestId)).map((r: InferenceResult) => [r.requestId, r]));
    const byNode = new Map<string, InferenceDispatch[]>();
    for (const d of dispatches) byNode.set(d.nodeId, [...(byNode.get(d.nodeId) ?? []), d]);
    let overlaps = 0;
    for (const list of byNode.values()) {
      list.sort((a, b) => a.fencingToken! - b.fencingToken!);
      for (let i = 1; i < list.length; i++) {
        const previous = list[i - 1]!;
        const current = list[i]!;
        expect(current.fencingToken).toBeGreaterThan(previous.fencingToken!);
        const freedAt = Math.min(Date.parse(results.get(previous.requestId)?.completedAt ?? '9999-01-01'), Date.parse(previous.dispatchedAt) + RESERVATION_TTL_MS);
        if (Date.parse(current.dispatchedAt) < freedAt) overlaps++;
      }
    }
    expect(overlaps, 'dispatches to a node still reserved').toBe(0);

    // Takeover: the longest wait of a request produced after the kill.
    const waits = dispatches.filter((d) => producedAt.get(d.requestId)! >= killedAt).map((d) => Date.parse(d.dispatchedAt) - producedAt.get(d.requestId)!);
    const takeoverMs = Math.max(...waits);

    // Reservations the dead scheduler still held (their requests completed after the kill, so it never
    // released them) would idle their nodes for the whole TTL; the survivor frees each one whose request
    // completed and routes to the node again well within that TTL.
    const killedDispatches = dispatches.filter((d) => Date.parse(d.dispatchedAt) < killedAt && Date.parse(results.get(d.requestId)?.completedAt ?? '0') > killedAt);
    const reusedEarly = dispatches.filter((d) => {
      const at = Date.parse(d.dispatchedAt);
      return at >= killedAt && killedDispatches.some((k) => k.nodeId === d.nodeId && at < Date.parse(k.dispatchedAt) + RESERVATION_TTL_MS);
    });
    const survivor = schedulers.find((s) => instanceOf(s) !== killedScheduler)!;
    const survivorHealth = (await healthOf(survivor)).body;
    const freed = survivorHealth.reclaimedReservations;
    console.log(
      `takeover after SIGKILL: scheduler ${takeoverMs} ms (killed ${killedScheduler}), aggregator ${aggregatorTakeoverMs} ms (killed ${killedAggregator}); ${ids.size} requests, ${dispatches.length} dispatches, ${byNode.size} nodes used; the survivor freed ${freed} of the dead scheduler's reservations and made ${reusedEarly.length} dispatches to such nodes before their ${RESERVATION_TTL_MS / 1000} s TTL`,
    );
    expect(killedDispatches.length, 'the burst still running at the kill').toBeGreaterThan(0);
    expect(freed, 'reservations of the dead scheduler freed by the survivor').toBeGreaterThan(0);
    expect(reusedEarly.length, 'dispatches by the survivor to nodes the dead scheduler had reserved, before that TTL').toBeGreaterThan(0);

    // The survivors' health and metrics ports say who does the work now.
    expect(survivorHealth.routing!.map((r) => r.source)).toEqual([expect.stringMatching(/^arc\.request\.inference\[\d+\]$/)]);
    // A scraper's key, made in the store the roles share: their health ports check it there.
    const scrape = bearer((await new KeyRing(stores!.documents, systemClock).create({ name: 'prometheus', role: 'viewer', createdBy: 'test' })).key);
    const schedulerMetrics = await (await fetch(`${httpOf(survivor)}/metrics`, { headers: scrape })).text();
    const dispatchedMetric = /arcnet_inference_requests_total\{geozone="CAISO",status="dispatched"\} (\d+)/.exec(schedulerMetrics);
    expect(Number(dispatchedMetric?.[1])).toBeGreaterThan(0);
    const aggregatorMetrics = await (await fetch(`${httpOf(aggregators.find((a) => instanceOf(a) === survivorAggregator)!)}/metrics`, { headers: scrape })).text();
    expect(aggregatorMetrics).toContain('arcnet_aggregator_leading{geozone="CAISO"} 1');
    expect(aggregatorMetrics).toMatch(/arcnet_nodes_total\{geozone="CAISO",status="\w+"\} \d+/);
    expect(takeoverMs).toBeLessThan(30_000);
    expect(aggregatorTakeoverMs).toBeLessThan(10_000);
    expect(simulator.exitCode).toBeNull();
  }, 240_000);
});

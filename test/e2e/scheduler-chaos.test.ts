/**
 * The scheduler killed mid-transaction, again and again (issue 9). distributed.test.ts kills it once,
 * after its dispatches and offsets have committed, so a non-atomic dispatch/offset commit would pass
 * there. Here a continuous request stream (100 req/s) keeps the active scheduler inside a batch nearly
 * all the time, and it is SIGKILLed a random 2–5 s into its routing, the moment a request has reached
 * the log (so one is always in its hands), five times over (a fresh replica replaces each one, so two
 * always run).
 *
 * Judged afterwards, not from logs or timings of node activity:
 * - Exactly one decision per request, from the committed transactions of the dispatch and event
 *   topics, read raw and sorted into committed, aborted and open by their control markers
 *   (committed-log.ts; the client library's own read_committed filter leaks aborted records, so it is
 *   measured beside the verdict, not trusted for it).
 * - No node reserved twice at once, from PostgreSQL: every reservation grant, renewal and release,
 *   which a trigger installed in the test's schema records (the store keeps one row per lease and no
 *   history; lease-history.ts), checked against the dispatches' fencing tokens and times.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { startCli, type CliProcess } from '../support/processes.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, adminConnection, testSchemas } from '../support/postgres.ts';
import { KAFKA_BOOTSTRAP, kafkaServers, skipGroupToEnd } from '../support/kafka.ts';
import { until } from '../support/until.ts';
import { endOf, exclusionViolations, grantsOf, installLeaseHistory, readLeaseHistory, readLeases, type Grant } from '../support/lease-history.ts';
import { CommittedLogReader, leakedAborted, type CommittedRead } from '../support/committed-log.ts';
import { KafkaBus } from '../../src/bus/kafka.ts';
import { MessageBus, decodeRecord } from '../../src/bus/typed-bus.ts';
import type { ConsumedRecord, Consumer } from '../../src/bus/ports.ts';
import { topics } from '../../src/contracts/topics.ts';
import type { InferenceDispatch, InferenceRequest, InferenceResult, SystemEvent } from '../../src/contracts/messages.ts';
import { reservationLease, schedulerGroup, waitingGroupOf } from '../../src/inference/scheduler.ts';
import type { NodeState } from '../../src/mesh/node.ts';
import { openPostgresStores } from '../../src/store/postgres.ts';
import type { StateStores } from '../../src/store/ports.ts';

const engines = needEngines('postgres', 'kafka');

/**
 * No other Kafka suite routes this zone, so the schedulers' consumer group (named by the zone) is this
 * suite's alone. (An `arcnet up --kafka` with its default zones on the same broker would route it too.)
 */
const ZONE = 'ERCOT';
/** Enough that the backlog a takeover finds (the rate times the ~7 s failover) finds free nodes. */
const NODES = 1_000;
const TELEMETRY_MS = 5_000;
const RATE = 100;
const KILLS = 5;
/**
 * How long the schedulers may take to learn the mesh, or to route again: on a loaded 2-core CI
 * machine (another suite starting its own broker, say) a group join alone has taken most of 30 s.
 * Exactly-once is what this suite checks, not how fast a loaded machine recovers.
 */
const SETTLE_MS = 60_000;
const MIN_KILLS = 4;
/** After a scheduler starts routing, the kill comes this long later: uniformly 2–5 s. */
const KILL_AFTER_MS: readonly [number, number] = [2_000, 5_000];
/** Bounds the request stream whatever happens to the kills, and hence the request count (RATE × this). */
const MAX_STREAM_MS = 50_000;
/** Requests keep coming this long after the last kill, so its successor routes a stream too. */
const TAIL_MS = 1_500;
/** Short, so nodes reserved in a killed scheduler's aborted batch come back within the run. */
const RESERVATION_TTL_MS = 5_000;
const FAILOVER_MS = 6_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const httpOf = (child: CliProcess): string | undefined => /health and metrics at (http:\/\/\S+?);/.exec(child.output())?.[1];
const instanceOf = (child: CliProcess): string | undefined => /arcnet scheduler (scheduler-[0-9a-f]{8})/.exec(child.output())?.[1];

/** What each process is and how it ended, with the end of its output: for failures that need to say why. */
const processReport = (children: readonly CliProcess[]): string =>
  children
    .map((c) => `${c.spawnargs[2]} ${instanceOf(c) ?? ''} (${c.exitCode !== null ? `exited ${c.exitCode}` : c.signalCode ? `killed ${c.signalCode}` : 'running'}): …${c.output().slice(-600)}`)
    .join('\n');

/** Fails at once, with the report, when a process this test started has exited by itself (not by its SIGKILL). */
const assertNoneExited = (children: readonly CliProcess[]): void => {
  if (children.some((c) => c.exitCode !== null)) throw new Error(`a role process exited by itself\n${processReport(children)}`);
};

/** The scheduler that routed a batch most recently, if one did within `freshMs`: the one a kill must hit. */
async function activeScheduler(schedulers: readonly CliProcess[], freshMs: number): Promise<{ child: CliProcess; lastBatchAt: number } | undefined> {
  const probes = await Promise.all(
    schedulers
      .filter((child) => child.exitCode === null && child.signalCode === null)
      .map(async (child) => {
        const url = httpOf(child);
        if (!url) return undefined;
        try {
          const health = (await (await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) })).json()) as { routing: { source: string; lastBatchAt: string }[] };
          const last = Math.max(0, ...health.routing.map((r) => Date.parse(r.lastBatchAt)));
          return { child, lastBatchAt: last };
        } catch {
          return undefined;
        }
      }),
  );
  const best = probes.filter((p) => p !== undefined).sort((a, b) => b.lastBatchAt - a.lastBatchAt)[0];
  return best && Date.now() - best.lastBatchAt <= freshMs ? best : undefined;
}

interface Kill {
  readonly at: number;
  readonly victim: string;
  /** Requests acknowledged by Kafka before the kill. */
  readonly produced: number;
  /** How long the victim had been routing when it was killed. */
  readonly routedForMs: number;
}

describe.skipIf(!engines.available)(engines.title('scheduler SIGKILLed mid-transaction, repeatedly'), () => {
  const schemas = testSchemas();
  const children: CliProcess[] = [];
  let stores: StateStores | undefined;
  let client: KafkaBus | undefined;
  let readback: Consumer | undefined;
  let logReader: CommittedLogReader | undefined;
  const sql = adminConnection();
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await readback?.close().catch(() => undefined);
    await logReader?.close();
    await client?.close();
    await stores?.close();
    await sql.end({ timeout: 0 });
    await schemas.dropAll();
  });

  it('every request decided exactly once and no node reserved twice at once, across repeated SIGKILLs of the active scheduler', async () => {
    const testStarted = Date.now();
    const schema = await schemas.fresh();
    stores = await openPostgresStores({ url: POSTGRES_URL, schema });
    await installLeaseHistory(sql, schema);

    const engineArgs = ['--kafka', KAFKA_BOOTSTRAP, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--geozone', ZONE, '--log-level', 'warn'];
    const spawn = (args: string[]): CliProcess => {
      const child = startCli(args);
      children.push(child);
      return child;
    };
    const startScheduler = (): CliProcess =>
      spawn(['scheduler', ...engineArgs, '--http-port', '0', '--failover-after', String(FAILOVER_MS), '--reservation-timeout', String(RESERVATION_TTL_MS)]);
    client = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: `e2e-chaos-${randomUUID().slice(0, 6)}` });
    const bus = new MessageBus(client);
    // The request partitions are shared with other zones' traffic (other suites, the bench): this
    // suite's schedulers start at what it sends, not behind what an earlier run or suite left. On a
    // fresh broker the topics do not exist yet, so they are created first, as every role does.
    await bus.ensureTopics([ZONE]);
    await skipGroupToEnd(schedulerGroup([ZONE]), [topics.inferenceRequest]);
    await skipGroupToEnd(waitingGroupOf(schedulerGroup([ZONE])), [topics.inferenceWaiting]);
    spawn(['aggregator', ...engineArgs, '--http-port', '0', '--summary-interval', '5000']);
    const schedulers = [startScheduler(), startScheduler()];
    const simulator = spawn(['simulate', '--kafka', KAFKA_BOOTSTRAP, '--nodes', String(NODES), '--geozone', ZONE, '--telemetry-interval', String(TELEMETRY_MS), '--log-level', 'warn']);
    let documented = 0;
    await until(async () => (assertNoneExited(children), (documented = (await stores!.documents.list('nodes')).length) >= NODES), `the ${NODES} simulated nodes in PostgreSQL`, 60_000, { intervalMs: 500 }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message} (${documented} there)\n${processReport(children)}`);
    });
    // Both replicas know every node, so either routes the whole zone the moment it takes over.
    let known: number[] = [];
    await until(
      async () => {
        assertNoneExited(children);
        known = await Promise.all(
          schedulers.map(async (s) => {
            const url = httpOf(s);
            if (!url) return -1;
            try {
              return ((await (await fetch(`${url}/health`)).json()) as { nodesKnown: number }).nodesKnown;
            } catch {
              return -1;
            }
          }),
        );
        // At least: another simulator of this zone on the same broker would add its nodes.
        return known.every((n) => n >= NODES);
      },
      'both schedulers to know every node',
      SETTLE_MS,
      { intervalMs: 250 },
    ).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; nodes known: ${known.join(', ')}\n${processReport(children)}`);
    });
    const setupMs = Date.now() - testStarted;
    // Requests for models the nodes have, in proportion to how many nodes have each.
    const nodeModels = (await stores.documents.list<NodeState>('nodes')).map((doc) => doc.body!.modelsLoaded);

    const decisionTopics = [topics.dispatch(ZONE), topics.systemEvent];
    // The verdict's source: the decision topics' raw log from here on, committed transactions only
    // (committed-log.ts decides commit and abort from the control markers itself).
    logReader = new CommittedLogReader(kafkaServers());
    const logStart = await logReader.endOffsets([...decisionTopics, topics.inferenceRequest]);
    // What a consumer group of this client library sees, as the dispatch routers do: the results, live
    // counts during the run, and a measure of the aborted records it delivers. Keyed by partition and
    // offset, so a redelivery is not taken for a second record.
    const delivered = new Map<string, ConsumedRecord>();
    readback = await bus.adapter.consume({
      group: `e2e-chaos-readback-${randomUUID()}`,
      topics: [...decisionTopics, topics.inferenceResult],
      startAt: 'latest',
      handler: (record) => void delivered.set(`${record.topic}#${record.partition}@${record.offset}`, record),
    });
    const ids = new Set<string>();
    /** When each request was handed to the producer, and when Kafka acknowledged it. */
    const sentAt = new Map<string, number>();
    const ackedAt = new Map<string, number>();
    const decode = <N extends 'InferenceDispatch' | 'InferenceResult' | 'SystemEvent'>(records: Iterable<ConsumedRecord>, topic: string, schemaName: N) =>
      [...records].filter((r) => r.topic === topic).flatMap((r) => {
        const d = decodeRecord(r, schemaName);
        return d.ok ? [d.message] : [];
      });
    const dispatchesIn = (records: Iterable<ConsumedRecord>): InferenceDispatch[] => decode(records, topics.dispatch(ZONE), 'InferenceDispatch').filter((d) => ids.has(d.requestId));
    const rejectionsIn = (records: Iterable<ConsumedRecord>): SystemEvent[] =>
      decode(records, topics.systemEvent, 'SystemEvent').filter((e) => e.kind === 'inference.rejected' && ids.has(e.subjectId ?? ''));
    const decidedIds = (records: Iterable<ConsumedRecord>): Set<string> => {
      const list = [...records];
      return new Set([...dispatchesIn(list).map((d) => d.requestId), ...rejectionsIn(list).map((e) => e.subjectId!)]);
    };

    // The stream: RATE requests a second, published in 20 ms ticks, until the kills are done.
    const streamStarted = Date.now();
    let stopStream = false;
    // Called once a request is in the log: a kill right then finds it not yet decided, since the
    // scheduler has still to fetch it and commit its batch; a kill at a random moment can find none.
    let onAck: (() => void) | undefined;
    const nextAck = (): Promise<void> =>
      new Promise((resolve) => {
        onAck = () => {
          onAck = undefined;
          resolve();
        };
      });
    const stream = (async () => {
      while (!stopStream && Date.now() - streamStarted < MAX_STREAM_MS) {
        const due = Math.floor(((Date.now() - streamStarted) * RATE) / 1000) - ids.size;
        const batch = Array.from({ length: Math.max(0, due) }, (): InferenceRequest => {
          const models = nodeModels[Math.floor(Math.random() * nodeModels.length)]!;
          return {
            schemaVersion: 1,
            id: randomUUID(),
            modelId: models[Math.floor(Math.random() * models.length)]!,
            contextWindowTokens: 512,
            priority: 'normal',
            // Outlives a takeover: the suite is about exactly-once, and one past its deadline is rejected as expired.
            maxLatencyMs: 30_000,
            requesterGeozone: ZONE,
          };
        });
        for (const request of batch) {
          ids.add(request.id);
          sentAt.set(request.id, Date.now());
        }
        await Promise.all(
          batch.map(async (request) => {
            await bus.publish(topics.inferenceRequest, 'InferenceRequest', request);
            ackedAt.set(request.id, Date.now());
            onAck?.();
          }),
        );
        await sleep(20);
      }
    })();

    // The kills: each lands a random 2–5 s after a scheduler started routing, on whichever routes then.
    const kills: Kill[] = [];
    const takeoverSeen: number[] = [];
    while (kills.length < KILLS && Date.now() - streamStarted < MAX_STREAM_MS - KILL_AFTER_MS[1] - TAIL_MS) {
      const routing = await until(() => (assertNoneExited(children), activeScheduler(schedulers, 500)), 'a scheduler routing the stream', SETTLE_MS, { intervalMs: 50 }).catch((error: unknown) => {
        throw new Error(`${(error as Error).message} after ${kills.length} kills\n${processReport(children)}`);
      });
      const routingSince = Date.now();
      if (kills.length > 0) takeoverSeen.push(routingSince - kills.at(-1)!.at);
      await sleep(KILL_AFTER_MS[0] + Math.random() * (KILL_AFTER_MS[1] - KILL_AFTER_MS[0]));
      const victim = (await activeScheduler(schedulers, 500)) ?? routing;
      await nextAck();
      victim.child.kill('SIGKILL');
      const at = Date.now();
      kills.push({ at, victim: instanceOf(victim.child) ?? '?', produced: ackedAt.size, routedForMs: at - routingSince });
      schedulers.splice(schedulers.indexOf(victim.child), 1, startScheduler());
    }
    // The last victim's successor routes for a while too, then the stream ends.
    if (kills.length > 0) {
      await until(() => activeScheduler(schedulers, 500), 'a scheduler routing after the last kill', SETTLE_MS, { intervalMs: 50 }).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}\n${processReport(children)}`);
      });
      takeoverSeen.push(Date.now() - kills.at(-1)!.at);
      await sleep(TAIL_MS);
    }
    stopStream = true;
    await stream;
    const streamMs = Date.now() - streamStarted;
    expect(kills.length, 'kills within the stream').toBeGreaterThanOrEqual(MIN_KILLS);

    // Every request decided: read the committed log until each has a decision (or the wait runs out).
    const readCommitted = async (): Promise<{ dispatchLog: CommittedRead; eventLog: CommittedRead }> => ({
      dispatchLog: await logReader!.read(topics.dispatch(ZONE), logStart.get(topics.dispatch(ZONE))!),
      eventLog: await logReader!.read(topics.systemEvent, logStart.get(topics.systemEvent)!),
    });
    let logs = await readCommitted();
    const waitUntil = Date.now() + 30_000;
    while (decidedIds([...logs.dispatchLog.committed, ...logs.eventLog.committed]).size < ids.size && Date.now() < waitUntil) {
      await sleep(1_000);
      logs = await readCommitted();
    }
    // Settle, then read once more: a straggling transaction would show as a late duplicate.
    await sleep(1_500);
    logs = await readCommitted();
    const committed = [...logs.dispatchLog.committed, ...logs.eventLog.committed];
    const aborted = [...logs.dispatchLog.aborted, ...logs.eventLog.aborted];
    const dispatches = dispatchesIn(committed);
    const rejections = rejectionsIn(committed);
    const abortedDecisions = [...dispatchesIn(aborted).map((d) => Date.parse(d.dispatchedAt)), ...rejectionsIn(aborted).map((e) => Date.parse(e.timestamp))];
    const openDecisions = dispatchesIn([...logs.dispatchLog.open]).length + rejectionsIn([...logs.eventLog.open]).length;

    const decisions = new Map<string, { dispatches: InferenceDispatch[]; rejections: SystemEvent[] }>();
    for (const id of ids) decisions.set(id, { dispatches: [], rejections: [] });
    for (const d of dispatches) decisions.get(d.requestId)!.dispatches.push(d);
    for (const e of rejections) decisions.get(e.subjectId!)!.rejections.push(e);
    const duplicated = [...decisions].filter(([, d]) => d.dispatches.length + d.rejections.length > 1);
    const lost = [...decisions].filter(([, d]) => d.dispatches.length + d.rejections.length === 0);
    const decidedAt = new Map<string, number>();
    for (const d of dispatches) decidedAt.set(d.requestId, Math.min(decidedAt.get(d.requestId) ?? Infinity, Date.parse(d.dispatchedAt)));
    for (const e of rejections) decidedAt.set(e.subjectId!, Math.min(decidedAt.get(e.subjectId!) ?? Infinity, Date.parse(e.timestamp)));

    // What the library's consumer group delivered of the same topics (dispatch routers read this way).
    const dispatchedIds = new Set(dispatches.map((d) => d.requestId));
    const resultsNow = (): InferenceResult[] => decode(delivered.values(), topics.inferenceResult, 'InferenceResult').filter((r) => dispatchedIds.has(r.requestId));
    await until(() => new Set(resultsNow().map((r) => r.requestId)).size === dispatchedIds.size, 'the results of the dispatches', 5_000, { intervalMs: 250 }).catch(() => undefined);
    const results = resultsNow();
    const leaked = [...leakedAborted(delivered.values(), logs.dispatchLog), ...leakedAborted(delivered.values(), logs.eventLog)];
    const leakedDecisions = dispatchesIn(leaked).length + rejectionsIn(leaked).length;

    // The lease store's record: every reservation grant, renewal and release, and the rows as they are now.
    const prefix = reservationLease('');
    const history = await readLeaseHistory(sql, schema, prefix);
    const grants = grantsOf(history, RESERVATION_TTL_MS);
    const leaseRows = await readLeases(sql, schema, prefix);
    const grantOf = new Map<string, Grant>();
    for (const list of grants.values()) for (const g of list) grantOf.set(`${g.name}#${g.token}`, g);

    // Per kill: requests pending at it (sent before, decided after), decisions of transactions
    // it aborted, and requests the victim had reserved a node for in a batch that never committed.
    const grantedFor = new Map<string, number>();
    for (const list of grants.values()) for (const g of list) if (ids.has(g.holder)) grantedFor.set(g.holder, Math.min(grantedFor.get(g.holder) ?? Infinity, g.grantedAt));
    const perKill = kills.map((kill, k) => {
      const since = k === 0 ? streamStarted : kills[k - 1]!.at;
      const decidedAfter = (id: string): boolean => (decidedAt.get(id) ?? Infinity) > kill.at;
      const pending = [...sentAt].filter(([id, at]) => at < kill.at && decidedAfter(id)).length;
      const reservedUncommitted = [...grantedFor].filter(([id, at]) => at > since && at < kill.at && decidedAfter(id)).length;
      const abortedByKill = abortedDecisions.filter((at) => at > since && at < kill.at).length;
      const takeoverMs = Math.min(...[...decidedAt.values()].filter((at) => at > kill.at)) - kill.at;
      return { ...kill, pending, reservedUncommitted, abortedByKill, takeoverMs };
    });

    // Double booking, judged from PostgreSQL's grants and the dispatch times:
    // (1) the store's own exclusion: a reservation is granted again only after the previous grant was
    //     released (in commit order) or had expired, with tokens rising by one;
    const storeViolations = exclusionViolations(grants);
    // (2) every dispatch carries a token the store granted for that node to that very request, and was
    //     stamped while that grant held the node;
    const unGranted: string[] = [];
    const outsideGrant: string[] = [];
    // (3) per node, dispatch order is token order, tokens never repeat, and a dispatch never comes while
    //     any earlier grant on the node (dispatched or not) still holds it;
    const tokenOrder: string[] = [];
    const whileHeld: string[] = [];
    // (4) the lease rows' tokens are at least every token dispatched.
    const aheadOfRow: string[] = [];
    const byNode = new Map<string, InferenceDispatch[]>();
    for (const d of dispatches) byNode.set(d.nodeId, [...(byNode.get(d.nodeId) ?? []), d]);
    for (const [nodeId, list] of byNode) {
      const name = reservationLease(nodeId);
      const nodeGrants = grants.get(name) ?? [];
      list.sort((a, b) => Date.parse(a.dispatchedAt) - Date.parse(b.dispatchedAt) || a.fencingToken! - b.fencingToken!);
      list.forEach((d, i) => {
        const at = Date.parse(d.dispatchedAt);
        const grant = grantOf.get(`${name}#${d.fencingToken}`);
        if (!grant || grant.holder !== d.requestId) unGranted.push(`${d.requestId} on ${nodeId} with token ${d.fencingToken} (granted to ${grant?.holder ?? 'nobody'})`);
        else if (at < grant.grantedAt || at > endOf(grant)) outsideGrant.push(`${d.requestId} on ${nodeId} stamped ${at}, grant ${grant.grantedAt}–${endOf(grant)}`);
        if (i > 0 && !(d.fencingToken! > list[i - 1]!.fencingToken!)) tokenOrder.push(`${nodeId}: token ${d.fencingToken} at ${at} after ${list[i - 1]!.fencingToken}`);
        for (const earlier of nodeGrants) {
          if (earlier.token < d.fencingToken! && endOf(earlier) > at) whileHeld.push(`${d.requestId} on ${nodeId} at ${at} while token ${earlier.token} (${earlier.holder}) held it until ${endOf(earlier)}`);
        }
        const row = leaseRows.get(name);
        if (!row || row.token < d.fencingToken!) aheadOfRow.push(`${nodeId}: dispatched token ${d.fencingToken}, lease row at ${row?.token}`);
      });
    }
    // (5) a dispatched request's reservation is released only once its result is in (no node freed while it works).
    const completedAt = new Map<string, number>();
    for (const r of results) completedAt.set(r.requestId, Math.min(completedAt.get(r.requestId) ?? Infinity, Date.parse(r.completedAt)));
    const earlyRelease: string[] = [];
    let releasedDispatched = 0;
    for (const d of dispatches) {
      const grant = grantOf.get(`${reservationLease(d.nodeId)}#${d.fencingToken}`);
      if (grant?.releasedAt === undefined) continue;
      releasedDispatched++;
      const done = completedAt.get(d.requestId);
      if (done === undefined || grant.releasedAt < done) earlyRelease.push(`${d.requestId} on ${d.nodeId}: released at ${grant.releasedAt}, completed ${done ?? 'never (no result read)'}`);
    }
    const allGrants = [...grants.values()].flat();
    const ourGrants = allGrants.filter((g) => ids.has(g.holder));
    const dispatchedGrants = new Set(dispatches.map((d) => `${reservationLease(d.nodeId)}#${d.fencingToken}`));

    console.log(
      [
        `scheduler chaos: ${kills.length} SIGKILLs of the active scheduler in a ${(streamMs / 1000).toFixed(1)} s stream at ${RATE} req/s over ${NODES} nodes (test ${((Date.now() - testStarted) / 1000).toFixed(1)} s, of which setup ${(setupMs / 1000).toFixed(1)} s)`,
        ...perKill.map(
          (k, i) =>
            `  kill ${i + 1} at +${((k.at - streamStarted) / 1000).toFixed(1)} s of ${k.victim} after ${(k.routedForMs / 1000).toFixed(1)} s routing: ${k.produced} requests produced, ${k.pending} undecided at the kill; it aborted a transaction carrying ${k.abortedByKill} decisions and left ${k.reservedUncommitted} reservations of a batch that never committed; first decision after it ${k.takeoverMs} ms later`,
        ),
        `  takeovers seen by /health after each kill: ${takeoverSeen.map((ms) => `${ms} ms`).join(', ')}`,
        `  ${ids.size} requests: ${dispatches.length} dispatches, ${rejections.length} rejections committed (${abortedDecisions.length} decisions in aborted transactions, ${openDecisions} in open ones); ${duplicated.length} decided more than once, ${lost.length} never decided`,
        `  PostgreSQL: ${history.length} lease changes, ${allGrants.length} reservation grants (${ourGrants.length} for these requests, ${ourGrants.length - dispatchedGrants.size} never dispatched: reserved in a batch a kill aborted), ${ourGrants.reduce((n, g) => n + g.renewals, 0)} same-request renewals, ${releasedDispatched} dispatched grants released; ${byNode.size} nodes used`,
        `  double-booking checks: ${storeViolations.length} store exclusion violations, ${unGranted.length} dispatches with an ungranted token, ${outsideGrant.length} stamped outside their grant, ${tokenOrder.length} out of token order, ${whileHeld.length} while an earlier grant held the node, ${aheadOfRow.length} ahead of the lease row, ${earlyRelease.length} released before their result`,
        `  the client library's read_committed consumer delivered ${leaked.length} records of aborted transactions (${leakedDecisions} decisions)${leaked.length > 0 ? ': KNOWN BUG in @platformatic/kafka aborted-range filtering, see test/support/committed-log.ts' : ''}`,
        ...(rejections.length > 0 ? [`  rejections, e.g.: ${rejections[0]!.message}`] : []),
      ].join('\n'),
    );
    if (lost.length > 0) {
      const lostIds = new Set(lost.map(([id]) => id));
      const inAborted = [...decidedIds(aborted)].filter((id) => lostIds.has(id)).length;
      const inOpen = [...decidedIds([...logs.dispatchLog.open, ...logs.eventLog.open])].filter((id) => lostIds.has(id)).length;
      const seenByLibrary = [...decidedIds(delivered.values())].filter((id) => lostIds.has(id)).length;
      const byWindow = new Map<number, number>();
      for (const id of lostIds) {
        const w = kills.filter((k) => k.at < (ackedAt.get(id) ?? 0)).length;
        byWindow.set(w, (byWindow.get(w) ?? 0) + 1);
      }
      const acked = [...lostIds].map((id) => ackedAt.get(id) ?? 0).sort((a, b) => a - b);
      // Skipped (the group's committed offset is past them: lost) or still waiting (the routing is behind)?
      const requestLog = await logReader.read(topics.inferenceRequest, logStart.get(topics.inferenceRequest)!);
      const where = new Map<string, ConsumedRecord>();
      for (const r of requestLog.committed) {
        const request = decodeRecord(r, 'InferenceRequest');
        if (request.ok && lostIds.has(request.message.id)) where.set(request.message.id, r);
      }
      const partitions = [...new Set([...where.values()].map((r) => r.partition))];
      const committedAt = new Map(await Promise.all(partitions.map(async (p) => [p, await client!.committed(schedulerGroup([ZONE]), topics.inferenceRequest, p)] as const)));
      const skipped = [...where.values()].filter((r) => r.offset < committedAt.get(r.partition)!);
      console.log(
        `  never decided, by the group's committed offsets (${[...committedAt].map(([p, o]) => `[${p}] ${o}`).join(', ')}): ${skipped.length} of ${where.size} found are behind it (skipped: lost), e.g. ${[...where].slice(0, 3).map(([id, r]) => `${id.slice(0, 8)} at [${r.partition}] ${r.offset}`).join(', ')}`,
      );
      console.log(
        `  never decided: ${lost.length} (${inAborted} only in aborted transactions, ${inOpen} in open ones, ${seenByLibrary} decided as the library consumer saw it); by kill window of their ack: ${[...byWindow].map(([w, n]) => `${w}:${n}`).join(' ')}; acked +${((acked[0]! - streamStarted) / 1000).toFixed(1)}…+${((acked.at(-1)! - streamStarted) / 1000).toFixed(1)} s; ${acked.filter((a) => a === 0).length} never acked`,
      );
      for (const child of children) {
        const name = instanceOf(child);
        if (!name) continue;
        const lines = child.output().split('\n').filter((line) => /not committed|skipping|could not|fenced|CONFLICT|error/i.test(line));
        console.log(`  ${name} (${child.signalCode ?? 'running'}): ${lines.length} notable log lines\n    ${lines.slice(0, 6).map((l) => l.slice(0, 400)).join('\n    ')}`);
      }
    }
    if (duplicated.length > 0) {
      // Where the second decision came from: which kill windows the decisions fall in, and what the schedulers logged.
      const window = (at: number): string => `after kill ${kills.filter((k) => k.at < at).length}`;
      // The writer of each decision: the producer id of its transactional id (one per scheduler group and request partition).
      const writer = new Map<string, string>();
      for (const r of committed) {
        const key = `${r.topic}#${r.partition}@${r.offset}`;
        const pid = logs.dispatchLog.producers.get(key) ?? logs.eventLog.producers.get(key);
        if (pid !== undefined) writer.set(r.value.toString(), String(pid));
      }
      const writerOf = (message: object): string => writer.get(JSON.stringify(message)) ?? '?';
      console.log(`  producers of committed decisions: ${[...new Set(writer.values())].join(', ')}`);
      for (const [id, d] of duplicated.slice(0, 8)) {
        console.log(
          `  duplicate ${id}: ` +
            [
              ...d.dispatches.map((x) => `dispatch ${x.nodeId.slice(0, 8)}#${x.fencingToken} stamped ${x.dispatchedAt} (${window(Date.parse(x.dispatchedAt))}, producer ${writerOf(x)})`),
              ...d.rejections.map((x) => `rejection ${x.id.slice(0, 8)} at ${x.timestamp} (${window(Date.parse(x.timestamp))}, producer ${writerOf(x)})`),
            ].join('; '),
        );
      }
      for (const child of children) {
        const name = instanceOf(child);
        if (!name) continue;
        const lines = child.output().split('\n').filter((line) => /not committed|skipping|could not|fenced|CONFLICT/i.test(line));
        console.log(`  ${name} (${child.signalCode ?? 'running'}): ${lines.length} notable log lines\n    ${lines.slice(0, 8).join('\n    ')}`);
      }
    }

    expect(duplicated.map(([id, d]) => `${id}: ${d.dispatches.length} dispatches (${d.dispatches.map((x) => `${x.nodeId.slice(0, 8)}#${x.fencingToken}`).join(', ')}), ${d.rejections.length} rejections`), 'requests decided more than once').toEqual([]);
    expect(lost.map(([id]) => id), 'requests never decided').toEqual([]);
    // Most requests must actually have been routed (a stream that only ever met rejections would prove
    // little). Rejections are decisions too: a kill that cuts off a 500-decision batch leaves those
    // reservations held until they expire, and the requests meeting them are turned away, so the floor
    // is half, not most.
    expect(dispatches.length, 'dispatched share').toBeGreaterThanOrEqual(ids.size * 0.5);
    expect(storeViolations, 'grants while an earlier grant held the reservation').toEqual([]);
    expect(unGranted, 'dispatches whose token the store never granted to that request on that node').toEqual([]);
    expect(outsideGrant, 'dispatches stamped outside their grant').toEqual([]);
    expect(tokenOrder, 'dispatches to a node out of token order').toEqual([]);
    expect(whileHeld, 'dispatches to a node while an earlier grant held it').toEqual([]);
    expect(aheadOfRow, 'dispatched tokens ahead of the lease row').toEqual([]);
    expect(earlyRelease, 'reservations released before their request completed').toEqual([]);
    // The kills hit a scheduler at work: requests were waiting at (nearly) every one, and at least one
    // landed inside a transaction (it aborted one carrying decisions, or left reservations of a batch
    // that never committed).
    expect(perKill.filter((k) => k.pending > 0).length, 'kills that left requests undecided').toBeGreaterThanOrEqual(MIN_KILLS);
    expect(perKill.reduce((n, k) => n + k.abortedByKill + k.reservedUncommitted, 0), 'decisions and reservations cut off mid-transaction by the kills').toBeGreaterThan(0);
    expect(simulator.exitCode).toBeNull();
  }, 240_000);
});

/**
 * Section 5 of `npm run bench`: the distributed mode's roles as their own processes on the Kafka
 * broker and PostgreSQL of this machine, over loopback. Everything shares the machine's cores: the
 * broker, PostgreSQL, the role process under test and this process, which plays the clients and
 * the nodes. Skipped, with the reason, when either engine does not answer.
 *
 * (a) Routing, against its floor measured in the same run. First the floor: a bare produce -> consume
 *     hop through the same adapter (KafkaBus.produce, and KafkaBus.consume's group member with its
 *     per-record handler and offset commits: the two hops routing is made of use exactly these), on
 *     the same broker, with the same request records (same bytes, one partition, as all requests of
 *     one zone), open loop at the same rates; latency = consumed here - scheduled send time. Then
 *     the same with routing's transaction between the hops and nothing routed (a consumeTransactional
 *     member copying each batch): what Kafka's transaction itself costs here. Then
 *     routing: one `arcnet scheduler` process. This process publishes telemetry for its nodes (with
 *     the endpoint header, so dispatches carry it), answers every dispatch at once with a completed
 *     result (so the node's reservation is released), and produces requests open-loop at a fixed
 *     rate. Added latency is dispatch consumed here minus the request's scheduled send time, both on
 *     this process's clock: a request that waited in this client's queue counts as late, so a slow
 *     client can only make the figure worse, never hide a slow scheduler.
 * (b) Telemetry lag: one `arcnet server` process; 10,000 nodes reporting every 10 s, each telemetry
 *     stamped with its publish time. Its console WebSocket `/telemetry` relays each telemetry right
 *     after the node view applied it (the same registry GET /api/v1/nodes/:id reads), so arrival
 *     minus stamp is the lag of every message; polling the API for sampled nodes cross-checks it.
 *
 *     Routing is two hops plus a transaction, so its goals are a ratio to the floor (issue 15): at each
 *     rate it keeps up (>= 95 % of offered dispatched), p99 <= 3x the floor's p99 at that rate, and at
 *     10,000 req/s p99 <= 250 ms outright; no request dispatched twice, none lost.
 *
 * (c) Catch-up (bench/kafka-catch-up.ts): one group member draining a backlog, with the adapter's
 *     fetch bounds and with the library's defaults, in the same run.
 *
 * `ARCNET_BENCH_CPU_PROF=<dir>` runs the role processes with --cpu-prof, profiles written there on exit.
 * `ARCNET_BENCH_KAFKA_PARTS=a` runs part (a) alone (while iterating on routing), `=c` part (c).
 */
import { percentileOfSorted } from '../src/core/stats.ts';
import { sleep } from '../src/core/clock.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { seededUuid } from '../src/core/ids.ts';
import type { InferenceRequest, NodeTelemetry } from '../src/contracts/messages.ts';
import { topicSpecFor, topics } from '../src/contracts/topics.ts';
import { HEADER_REQUEST_ID } from '../src/contracts/screen-headers.ts';
import { KafkaBus } from '../src/bus/kafka.ts';
import { catchUp } from './kafka-catch-up.ts';
import { MessageBus } from '../src/bus/typed-bus.ts';
import type { ConsumedRecord, Consumer, OutgoingRecord } from '../src/bus/ports.ts';
import { HEADER_ENDPOINT } from '../src/inference/dispatch-router.ts';
import { nodeFromTelemetry, type NodeState } from '../src/mesh/node.ts';
import { NODES_COLLECTION } from '../src/mesh/aggregator.ts';
import { openPostgresStores } from '../src/store/postgres.ts';
import { seededRandom } from '../src/sim/random.ts';
import { KAFKA_BOOTSTRAP, kafkaServers, probeKafka, ScratchTopics } from '../test/support/kafka.ts';
import { POSTGRES_URL, postgresEndpoint, probePostgres, testSchemas } from '../test/support/postgres.ts';

const CLI = join(import.meta.dirname, '../src/cli/main.ts');
const ZONE = 'CAISO';
const MODEL = 'llama-3-8b';
/** The offered rates of part (a), floor and routing alike. */
const ROUTING_RATES = [2_000, 10_000] as const;
/** Issue 15's goals for routing: dispatched / offered, p99 over the floor's p99 at the same rate, and p99 outright at ROUTING_ABSOLUTE_RATE. */
const GOAL_KEPT_UP = 0.95;
const GOAL_RATIO_TO_FLOOR = 3;
const ROUTING_ABSOLUTE_RATE = 10_000;
const GOAL_ABSOLUTE_P99_MS = 250;
const LAG_GOAL_P99_MS = 1_000;


function spread(values: readonly number[]): { p50: number; p99: number } {
  const sorted = Float64Array.from(values).sort();
  return { p50: percentileOfSorted(sorted, 50), p99: percentileOfSorted(sorted, 99) };
}

/** CPU time so far, ms: of a process (Linux /proc, in clock ticks of 10 ms), and of the whole machine (busy, idle). */
interface CpuMark {
  readonly at: number;
  readonly role: number | undefined;
  readonly self: number;
  readonly machineBusy: number | undefined;
  readonly machineTotal: number | undefined;
}

function procTicks(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    // Fields after the parenthesised command: utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

function cpuMark(rolePid: number | undefined): CpuMark {
  let machineBusy: number | undefined;
  let machineTotal: number | undefined;
  try {
    const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number);
    machineTotal = ticks.slice(0, 8).reduce((sum, t) => sum + t, 0) * 10;
    machineBusy = machineTotal - (ticks[3]! + ticks[4]!) * 10;
  } catch {
    // Not Linux: the line leaves the machine's share out.
  }
  const own = process.cpuUsage();
  return { at: performance.now(), role: procTicks(rolePid), self: (own.user + own.system) / 1000, machineBusy, machineTotal };
}

/** "machine 93 % of 2 cores, scheduler 95 % of a core (98 µs/request), this process 45 %". */
function cpuLine(from: CpuMark, to: CpuMark, role: string, perUnit: { count: number; unit: string } | undefined): string {
  const wall = to.at - from.at;
  const parts: string[] = [];
  if (from.machineBusy !== undefined && to.machineBusy !== undefined && to.machineTotal! > from.machineTotal!) {
    parts.push(`machine ${(((to.machineBusy - from.machineBusy) / (to.machineTotal! - from.machineTotal!)) * 100).toFixed(0)} % busy`);
  }
  if (from.role !== undefined && to.role !== undefined) {
    const used = to.role - from.role;
    const unit = perUnit && perUnit.count > 0 ? ` = ${((used * 1000) / perUnit.count).toFixed(0)} µs/${perUnit.unit}` : '';
    parts.push(`${role} process ${((used / wall) * 100).toFixed(0)} % of a core${unit}`);
  }
  parts.push(`this process ${(((to.self - from.self) / wall) * 100).toFixed(0)} %`);
  return parts.join(', ');
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en');

/** A role as its own process, on this Node with the launcher's flags (bin/arcnet). */
interface RoleChild {
  readonly child: ChildProcess;
  output(): string;
  /** Resolves with the first stdout match, rejects when the process exits or the time runs out. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** SIGTERM (a clean stop, which also writes a CPU profile), SIGKILL if it lingers. */
  stop(): Promise<void>;
}

function startRole(args: readonly string[]): RoleChild {
  return startProcess(args[0] ?? 'arcnet', [CLI, ...args]);
}

/** A Node script as its own process, with the launcher's flags: `args` are the script and its arguments; `label` names it in errors. */
function startProcess(label: string, args: readonly string[]): RoleChild {
  const profileDir = process.env['ARCNET_BENCH_CPU_PROF'];
  const nodeFlags = ['--max-semi-space-size=2', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])];
  const child = spawn(process.execPath, [...nodeFlags, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => {
    // Only the tail matters when something fails; a chatty child must not grow this without bound.
    stderr = (stderr + chunk.toString()).slice(-20_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    output: () => `${stdout}${stderr}`,
    waitFor: (pattern, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const match = stdout.match(pattern);
          if (!match) return false;
          finish();
          resolve(match);
          return true;
        };
        const onExit = (): void => {
          if (check()) return;
          finish();
          reject(new Error(`${label} exited (${child.exitCode ?? child.signalCode}) before it was up:\n${stdout}${stderr}`));
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`${label} not up after ${timeoutMs} ms:\n${stdout}${stderr}`));
        }, timeoutMs);
        const finish = (): void => {
          clearTimeout(timer);
          child.stdout!.off('data', check);
          child.off('exit', onExit);
        };
        child.stdout!.on('data', check);
        child.once('exit', onExit);
        check();
      }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function nodeTelemetry(runTag: string, index: number, timestamp: string): NodeTelemetry {
  // Seeded per node: a refresh changes only the timestamp, so a node's score stays what it was.
  const random = seededRandom(index + 1);
  return {
    schemaVersion: 2,
    id: seededUuid(`bench-kafka-${runTag}-${index}`),
    geohash: '9q9k6m',
    energySource: (['cogen', 'grid', 'battery'] as const)[Math.floor(random() * 3)]!,
    batteryLevel: Math.round((0.3 + random() * 0.7) * 1000) / 1000,
    gpuUtilization: Math.round(random() * 800) / 1000,
    gpuMemoryFreeGb: 40,
    modelsLoaded: [MODEL],
    timestamp,
    geozone: ZONE,
    name: `${ZONE}-bench-${index}`,
  };
}

/** Request ids carry the run's tag and a sequence number, so timings live in arrays indexed by it. */
function requestId(runTag: string, sequence: number): string {
  return `${runTag}-0000-4000-a000-${sequence.toString(16).padStart(12, '0')}`;
}

function sequenceOf(runTag: string, id: string): number | undefined {
  return id.startsWith(runTag) ? Number.parseInt(id.slice(24), 16) : undefined;
}

/**
 * Hands records to the adapter with one produce in flight at a time: what came due meanwhile goes
 * in the next call. The idempotent producer allows one request in flight anyway; queueing here
 * instead of in the library keeps the batches large when the broker is slow.
 */
class BatchingProducer {
  private pending: OutgoingRecord[] = [];
  private inFlight: Promise<void> | undefined;
  readonly ackMs: number[] = [];
  errors = 0;
  firstError: string | undefined;
  private readonly bus: KafkaBus;
  private readonly topic: string;

  constructor(bus: KafkaBus, topic: string) {
    this.bus = bus;
    this.topic = topic;
  }

  get idle(): boolean {
    return this.inFlight === undefined && this.pending.length === 0;
  }

  push(records: readonly OutgoingRecord[]): void {
    for (const record of records) this.pending.push(record);
    this.kick();
  }

  private kick(): void {
    if (this.inFlight || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const started = performance.now();
    this.inFlight = this.bus
      .produce(this.topic, batch)
      .then(
        () => void this.ackMs.push(performance.now() - started),
        (error: unknown) => {
          this.errors += batch.length;
          this.firstError ??= error instanceof Error ? error.message : String(error);
        },
      )
      .finally(() => {
        this.inFlight = undefined;
        this.kick();
      });
  }

  async drained(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.idle && Date.now() < deadline) await sleep(2);
  }
}

/**
 * Open loop: item k is due at start + k/rate whatever the backlog; `due(from, to, started)` is called
 * each millisecond with what came due since. Resolves with the start time once all `total` are due.
 */
async function openLoop(rate: number, total: number, due: (from: number, to: number, started: number) => void): Promise<number> {
  const started = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = Math.min(total, Math.floor(((performance.now() - started) * rate) / 1000) + 1);
      if (now <= sent) return;
      due(sent, now, started);
      sent = now;
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  return started;
}

interface FloorResult {
  readonly rate: number;
  readonly offered: number;
  readonly delivered: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly duplicates: number;
  readonly cpu: string;
}

/**
 * The floor of part (a): a bare produce -> consume hop with the adapter routing uses for each of its
 * two hops (KafkaBus.produce through the same one-in-flight BatchingProducer, KafkaBus.consume's group
 * member), on the same broker, with request records encoded as the routing runs encode them (same
 * bytes; their arc-request-id header says which one arrived), all on one partition as one zone's
 * requests are. Open loop at each rate; latency = consumed here - scheduled send time.
 *
 * `through: 'transaction'` puts routing's transaction between the hops with no routing in it: a
 * KafkaBus.consumeTransactional member (the scheduler's pipeline) copies each batch to a second topic
 * in one transaction with its offsets, and that topic is consumed here. What routing adds on top of
 * this is the scheduler's own work.
 */
async function floorHop(
  kafka: KafkaBus,
  encode: (count: number) => { first: number; records: OutgoingRecord[] },
  sequenceOfId: (id: string) => number | undefined,
  capacity: number,
  runTag: string,
  options: { readonly rates: readonly number[]; readonly seconds: number; readonly warmupSeconds: number; readonly drainCapMs: number; readonly through?: 'transaction' },
): Promise<FloorResult[]> {
  const through = options.through === 'transaction';
  const kind = through ? 'tx' : 'bare';
  // The floor's topics are this run's alone: dropped at its end, unlike the role topics later runs share.
  const scratch = new ScratchTopics(`bench.floor.${kind}`);
  const topic = scratch.name('in');
  const copied = through ? scratch.name('out') : undefined;
  const partitions = topicSpecFor(topics.inferenceRequest)?.partitions ?? 12;
  await kafka.ensureTopics([topic, ...(copied ? [copied] : [])].map((name) => ({ topic: name, partitions, retentionMs: 3_600_000 })));
  const sentAt = new Float64Array(capacity).fill(Number.NaN);
  const consumedAt = new Float64Array(capacity).fill(Number.NaN);
  let duplicates = 0;
  // Its own process, as the scheduler is: in this one it would share a core with the client's 10,000/s.
  const copier = copied ? startProcess('floor copier', [join(import.meta.dirname, 'floor-copier.ts'), topic, copied, `bench-floor-copy-${runTag}`]) : undefined;
  await copier?.waitFor(/copying/, 60_000);
  const consumer = await kafka.consume({
    group: `bench-floor-${kind}-${runTag}`,
    topics: [copied ?? topic],
    startAt: 'latest',
    handler: (record: ConsumedRecord) => {
      const now = performance.now();
      const id = record.headers[HEADER_REQUEST_ID];
      const sequence = id === undefined ? undefined : sequenceOfId(id);
      if (sequence === undefined || sequence >= capacity) return;
      if (Number.isNaN(consumedAt[sequence]!)) consumedAt[sequence] = now;
      else duplicates++;
    },
  });
  const producer = new BatchingProducer(kafka, topic);
  try {
    const offer = async (rate: number, seconds: number): Promise<FloorResult> => {
      const total = Math.round(rate * seconds);
      const { first, records } = encode(total);
      const duplicatesBefore = duplicates;
      const cpuBefore = cpuMark(undefined);
      await openLoop(rate, total, (from, to, started) => {
        for (let k = from; k < to; k++) sentAt[first + k] = started + (k * 1000) / rate;
        producer.push(records.slice(from, to));
      });
      const offeredEnd = performance.now();
      let delivered = 0;
      for (;;) {
        delivered = 0;
        for (let k = 0; k < total; k++) if (!Number.isNaN(consumedAt[first + k]!)) delivered++;
        if (delivered === total || performance.now() - offeredEnd > options.drainCapMs) break;
        await sleep(20);
      }
      const cpuAfter = cpuMark(undefined);
      const latencies: number[] = [];
      for (let k = 0; k < total; k++) {
        const at = consumedAt[first + k]!;
        if (!Number.isNaN(at)) latencies.push(at - sentAt[first + k]!);
      }
      const sorted = Float64Array.from(latencies).sort();
      return {
        rate,
        offered: total,
        delivered,
        p50: percentileOfSorted(sorted, 50),
        p99: percentileOfSorted(sorted, 99),
        max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
        duplicates: duplicates - duplicatesBefore,
        cpu: cpuLine(cpuBefore, cpuAfter, 'floor', undefined),
      };
    };
    // The member joins and positions at the latest offset before the first record is sent (consume() resolves then).
    await offer(2_000, options.warmupSeconds);
    const out: FloorResult[] = [];
    for (const rate of options.rates) out.push(await offer(rate, options.seconds));
    if (producer.errors > 0) throw new Error(`floor: ${producer.errors} records not produced (first: ${producer.firstError})`);
    return out;
  } finally {
    await producer.drained();
    await copier?.stop();
    await consumer.close();
    await scratch.deleteAll().catch(() => undefined);
  }
}

interface RateResult {
  readonly rate: number;
  readonly offered: number;
  readonly dispatched: number;
  readonly rejected: number;
  readonly missing: number;
  readonly achieved: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly produceAckP99: number;
  readonly drainMs: number;
  /** Request due -> lease held (fetch, queue, decide, PostgreSQL), and lease held -> dispatch consumed here (transaction commit, fetch). */
  readonly toReserved: { readonly p50: number; readonly p99: number };
  readonly toConsumed: { readonly p50: number; readonly p99: number };
  /** Routing rounds, told apart by their dispatches' dispatchedAt (one clock reading per lease round trip). */
  readonly rounds: number;
  readonly roundGapP50: number;
  readonly cpu: string;
}

async function routingThroughKafka(quick: boolean, schema: string, bootstrap: string): Promise<void> {
  const runTag = randomBytes(4).toString('hex');
  const nodeCount = 2_000;
  const endpoint = `bench-nodes-${runTag}`;
  const rates = ROUTING_RATES;
  const seconds = quick ? 3 : 10;
  const warmupSeconds = quick ? 2 : 3;
  const drainCapMs = quick ? 5_000 : 8_000;
  // Sequence numbers run on from the floors' records to the routing runs' (all encoded by encodeRequests).
  const perPass = Math.ceil(warmupSeconds * 2_000) + rates.reduce((sum, rate) => sum + rate * seconds, 0);
  // Three passes: the bare floor, the transactional one, and routing.
  const capacity = 20_000 + 3 * perPass;
  const sentAt = new Float64Array(capacity).fill(Number.NaN);
  const dispatchedAt = new Float64Array(capacity).fill(Number.NaN);
  const rejectedSeq = new Uint8Array(capacity);
  /** When the scheduler held the node's lease (the dispatch's dispatchedAt), as performance.now() of this process. */
  const reservedAt = new Float64Array(capacity).fill(Number.NaN);
  const toPerformance = (epochMs: number): number => epochMs - performance.timeOrigin;
  let duplicates = 0;
  let withoutEndpoint = 0;
  let foreignDispatches = 0;
  let rejections = 0;
  let firstRejection: string | undefined;

  // The scheduler starts from the node documents, as after an aggregator wrote them: written just
  // before it starts (after the floors), so none has gone offline for want of telemetry meanwhile.
  const writeNodeDocuments = async (): Promise<void> => {
    const built = Date.now();
    const stores = await openPostgresStores({ url: POSTGRES_URL, schema });
    try {
      const iso = new Date(built).toISOString();
      for (let i = 0; i < nodeCount; i += 500) {
        const puts = [];
        for (let k = i; k < Math.min(nodeCount, i + 500); k++) {
          const node: NodeState = nodeFromTelemetry(nodeTelemetry(runTag, k, iso), built, undefined);
          puts.push({ collection: NODES_COLLECTION, id: node.id, body: node });
        }
        await stores.documents.putMany(puts);
      }
    } finally {
      await stores.close();
    }
  };

  const kafka = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: `arcnet-bench-${runTag}` });
  const bus = new MessageBus(kafka);
  const consumers: Consumer[] = [];
  let scheduler: RoleChild | undefined;
  let refresher: NodeJS.Timeout | undefined;
  let nextSequence = 0;
  const encodeRequests = (count: number): { first: number; records: OutgoingRecord[] } => {
    const first = nextSequence;
    const records: OutgoingRecord[] = [];
    for (let k = 0; k < count; k++) {
      const request: InferenceRequest = {
        schemaVersion: 1,
        id: requestId(runTag, nextSequence++),
        modelId: MODEL,
        contextWindowTokens: 1024,
        priority: 'normal',
        maxLatencyMs: 1000,
        requesterGeozone: ZONE,
      };
      records.push(bus.encode(topics.inferenceRequest, 'InferenceRequest', request));
    }
    return { first, records };
  };
  try {
    await bus.ensureTopics([ZONE]);
    // The floor first, before the scheduler process exists: the same machine, broker and records, nothing routing.
    const floor = await floorHop(kafka, encodeRequests, (id) => sequenceOf(runTag, id), capacity, runTag, { rates, seconds, warmupSeconds, drainCapMs });
    const printFloor = (what: string, rows: readonly FloorResult[]): void => {
      for (const f of rows) {
        console.log(
          `   ${what}, ${fmt(f.rate)} msg/s for ${seconds} s: ${fmt(f.delivered)}/${fmt(f.offered)} consumed${f.duplicates > 0 ? `, ${fmt(f.duplicates)} TWICE` : ''}, latency p50 ${f.p50.toFixed(1)} ms p99 ${f.p99.toFixed(1)} ms max ${f.max.toFixed(1)} ms; CPU: ${f.cpu}`,
        );
      }
    };
    printFloor('floor, bare produce -> consume hop (KafkaBus.produce -> KafkaBus.consume, same records, one partition)', floor);
    // Routing's two hops and transaction with nothing routed: what Kafka's transaction costs here.
    const transactional = await floorHop(kafka, encodeRequests, (id) => sequenceOf(runTag, id), capacity, runTag, { rates, seconds, warmupSeconds, drainCapMs, through: 'transaction' });
    printFloor('two hops and a transaction, no routing (produce -> KafkaBus.consumeTransactional copies each batch in a transaction -> consume)', transactional);
    await writeNodeDocuments();
    const results = new BatchingProducer(kafka, topics.inferenceResult);
    // The nodes: every dispatch answered at once, completed, with its fencing token.
    consumers.push(
      await kafka.consume({
        group: `bench-nodes-${runTag}`,
        topics: [topics.dispatch(ZONE)],
        startAt: 'latest',
        handler: (record: ConsumedRecord) => {
          const now = performance.now();
          const dispatch = JSON.parse(Buffer.from(record.value).toString('utf8')) as { requestId: string; nodeId: string; fencingToken?: number; dispatchedAt: string };
          const sequence = sequenceOf(runTag, dispatch.requestId);
          if (sequence === undefined || sequence >= capacity) foreignDispatches++;
          else if (Number.isNaN(dispatchedAt[sequence]!)) {
            dispatchedAt[sequence] = now;
            reservedAt[sequence] = toPerformance(Date.parse(dispatch.dispatchedAt));
            if (record.headers[HEADER_ENDPOINT] !== endpoint) withoutEndpoint++;
          } else duplicates++;
          // Whoever's dispatch it is, a result frees the node: leftovers of an earlier run must not hold ours.
          results.push([
            bus.encode(topics.inferenceResult, 'InferenceResult', {
              schemaVersion: 1,
              requestId: dispatch.requestId,
              nodeId: dispatch.nodeId,
              latencyMs: 0,
              status: 'completed',
              completedAt: new Date().toISOString(),
              ...(dispatch.fencingToken === undefined ? {} : { fencingToken: dispatch.fencingToken }),
            }),
          ]);
        },
      }),
    );
    consumers.push(
      await bus.subscribe(
        `bench-events-${runTag}`,
        [topics.systemEvent],
        'SystemEvent',
        (event) => {
          // One inference.rejected per request decided, one inference.shed per code and zone for those turned away from their headers.
          const ids = event.kind === 'inference.rejected' ? [event.subjectId] : event.kind === 'inference.shed' ? (event.details?.['requestIds'] as readonly string[] | undefined) ?? [] : [];
          for (const id of ids) {
            const sequence = id === undefined ? undefined : sequenceOf(runTag, id);
            if (sequence === undefined || sequence >= capacity || rejectedSeq[sequence] === 1) continue;
            rejections++;
            rejectedSeq[sequence] = 1;
            firstRejection ??= event.message;
          }
        },
        { startAt: 'latest' },
      ),
    );

    // The nodes answer at once, so 5 s is ample. It also bounds how long a node stays out of the
    // candidates after the scheduler found its lease still held by the node's previous request: the
    // index frees a node on its result, before the batched PostgreSQL release has committed.
    scheduler = startRole(['scheduler', '--geozone', ZONE, '--kafka', bootstrap, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--reservation-timeout', '5000', '--log-level', 'warn']);
    const startedAt = performance.now();
    await scheduler.waitFor(/arcnet scheduler \S+:/, 60_000);
    const upMs = performance.now() - startedAt;

    // Telemetry as the nodes' session endpoint would publish it: every node every 10 s, a tenth each second.
    const telemetry = new BatchingProducer(kafka, topics.telemetry);
    const publishTelemetry = (filter: (index: number) => boolean): void => {
      const iso = new Date().toISOString();
      const batch: OutgoingRecord[] = [];
      for (let i = 0; i < nodeCount; i++) {
        if (filter(i)) batch.push(bus.encode(topics.telemetry, 'NodeTelemetry', nodeTelemetry(runTag, i, iso), undefined, { [HEADER_ENDPOINT]: endpoint }));
      }
      telemetry.push(batch);
    };
    publishTelemetry(() => true);
    let tick = 0;
    refresher = setInterval(() => {
      const slot = tick++ % 10;
      publishTelemetry((i) => i % 10 === slot);
    }, 1_000);
    await telemetry.drained();

    const requests = new BatchingProducer(kafka, topics.inferenceRequest);
    const settled = (sequence: number): boolean => !Number.isNaN(dispatchedAt[sequence]!) || rejectedSeq[sequence] === 1;

    // Until the scheduler has joined its group and fenced the partition, requests wait: one at a time until one comes back.
    const firstUntil = Date.now() + 60_000;
    let firstMs = Number.NaN;
    for (;;) {
      const { first, records } = encodeRequests(1);
      sentAt[first] = performance.now();
      requests.push(records);
      const deadline = Date.now() + 250;
      while (!settled(first) && Date.now() < deadline) await sleep(2);
      if (settled(first)) {
        firstMs = performance.now() - startedAt;
        break;
      }
      if (Date.now() > firstUntil) throw new Error(`no request routed within 60 s of the scheduler starting:\n${scheduler.output()}`);
    }

    const reservedRounds = (first: number, total: number): number[] => {
      const out: number[] = [];
      for (let k = 0; k < total; k++) if (!Number.isNaN(reservedAt[first + k]!)) out.push(reservedAt[first + k]!);
      return out;
    };

    /** Open loop: request k is due at start + k/rate whatever the backlog, and its latency counts from then. */
    const offer = async (rate: number, offerSeconds: number): Promise<RateResult> => {
      const total = Math.round(rate * offerSeconds);
      // Encoded before the clock starts, so this process's CPU (it shares two cores) is spent on the nodes' side, not on encoding.
      const { first, records } = encodeRequests(total);
      const acksBefore = requests.ackMs.length;
      const cpuBefore = cpuMark(scheduler?.child.pid);
      const started = await openLoop(rate, total, (from, to, start) => {
        for (let k = from; k < to; k++) sentAt[first + k] = start + (k * 1000) / rate;
        requests.push(records.slice(from, to));
      });
      const offeredEnd = performance.now();
      let settledCount = 0;
      for (;;) {
        settledCount = 0;
        for (let k = 0; k < total; k++) if (settled(first + k)) settledCount++;
        if (settledCount === total || performance.now() - offeredEnd > drainCapMs) break;
        await sleep(20);
      }
      const drainMs = performance.now() - offeredEnd;
      const cpuAfter = cpuMark(scheduler?.child.pid);
      const latencies: number[] = [];
      const toReserved: number[] = [];
      const toConsumed: number[] = [];
      let last = started;
      let rejected = 0;
      for (let k = 0; k < total; k++) {
        const at = dispatchedAt[first + k]!;
        if (!Number.isNaN(at)) {
          latencies.push(at - sentAt[first + k]!);
          toReserved.push(reservedAt[first + k]! - sentAt[first + k]!);
          toConsumed.push(at - reservedAt[first + k]!);
          if (at > last) last = at;
        } else if (rejectedSeq[first + k] === 1) rejected++;
      }
      const sorted = Float64Array.from(latencies).sort();
      const roundTimes = Float64Array.from(new Set(reservedRounds(first, total))).sort();
      const gaps: number[] = [];
      for (let i = 1; i < roundTimes.length; i++) gaps.push(roundTimes[i]! - roundTimes[i - 1]!);
      const acks = Float64Array.from(requests.ackMs.slice(acksBefore)).sort();
      return {
        rate,
        offered: total,
        dispatched: latencies.length,
        rejected,
        missing: total - latencies.length - rejected,
        achieved: latencies.length / ((last - started) / 1000),
        p50: percentileOfSorted(sorted, 50),
        p99: percentileOfSorted(sorted, 99),
        max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
        produceAckP99: percentileOfSorted(acks, 99),
        drainMs,
        toReserved: spread(toReserved),
        toConsumed: spread(toConsumed),
        rounds: roundTimes.length,
        roundGapP50: spread(gaps).p50,
        cpu: cpuLine(cpuBefore, cpuAfter, 'scheduler', { count: latencies.length, unit: 'request' }),
      };
    };

    const warm = await offer(2_000, warmupSeconds);
    console.log(
      `   scheduler process up in ${(upMs / 1000).toFixed(1)} s (index from ${nodeCount.toLocaleString('en')} node documents in PostgreSQL), first request routed ${((firstMs - upMs) / 1000).toFixed(1)} s later (group join, partition fenced); warm-up ${warmupSeconds} s at 2,000 req/s: p99 ${warm.p99.toFixed(1)} ms`,
    );
    const rows: RateResult[] = [];
    for (const rate of rates) {
      const r = await offer(rate, seconds);
      rows.push(r);
      console.log(
        `   routing, offered ${fmt(rate)} req/s for ${seconds} s: ${fmt(r.dispatched)}/${fmt(r.offered)} dispatched${r.rejected > 0 ? `, ${fmt(r.rejected)} rejected` : ''}${r.missing > 0 ? `, ${fmt(r.missing)} not routed ${(r.drainMs / 1000).toFixed(1)} s after the last was sent` : ''}, ${fmt(r.achieved)} req/s, added latency p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms max ${r.max.toFixed(1)} ms`,
      );
      console.log(
        `      of which due -> lease held (request fetched, queued, decided, leases in PostgreSQL) p50 ${r.toReserved.p50.toFixed(1)} ms p99 ${r.toReserved.p99.toFixed(1)} ms; lease held -> dispatch consumed here (transaction committed, fetched) p50 ${r.toConsumed.p50.toFixed(1)} ms p99 ${r.toConsumed.p99.toFixed(1)} ms; client produce ack p99 ${r.produceAckP99.toFixed(1)} ms`,
      );
      console.log(`      ${fmt(r.rounds)} routing rounds of ${(r.dispatched / Math.max(1, r.rounds)).toFixed(0)} requests on average, one every ${r.roundGapP50.toFixed(1)} ms (p50); CPU: ${r.cpu}`);
    }
    let allMet = true;
    for (const r of rows) {
      const f = floor.find((x) => x.rate === r.rate)!;
      const t = transactional.find((x) => x.rate === r.rate)!;
      const keptUp = r.dispatched / r.offered;
      const ratio = r.p99 / f.p99;
      const keptUpMet = keptUp >= GOAL_KEPT_UP;
      const ratioMet = ratio <= GOAL_RATIO_TO_FLOOR;
      const absolute = r.rate === ROUTING_ABSOLUTE_RATE ? { met: r.p99 <= GOAL_ABSOLUTE_P99_MS } : undefined;
      allMet &&= keptUpMet && ratioMet && (absolute?.met ?? true);
      const verdict = (met: boolean): string => (met ? 'met' : 'NOT MET');
      console.log(
        `   at ${fmt(r.rate)}/s: floor p50 ${f.p50.toFixed(1)} ms p99 ${f.p99.toFixed(1)} ms | routing p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms | kept up ${(keptUp * 100).toFixed(1)} % (goal >= ${GOAL_KEPT_UP * 100} %: ${verdict(keptUpMet)}) | routing p99 / floor p99 = ${ratio.toFixed(1)}x (goal <= ${GOAL_RATIO_TO_FLOOR}x: ${verdict(ratioMet)}; the transaction alone ${(t.p99 / f.p99).toFixed(1)}x, p99 ${t.p99.toFixed(1)} ms)${absolute ? ` | p99 ${r.p99.toFixed(1)} ms (goal <= ${GOAL_ABSOLUTE_P99_MS} ms: ${verdict(absolute.met)})` : ''}`,
      );
    }
    const lost = rows.reduce((sum, r) => sum + r.missing, 0);
    allMet &&= lost === 0 && duplicates === 0;
    console.log(`   goals (issue 15): ${allMet ? 'MET' : 'NOT MET'}${lost > 0 ? ` (${fmt(lost)} requests neither dispatched nor rejected)` : ''}`);
    const errors = requests.errors + results.errors + telemetry.errors;
    console.log(
      `   checks: ${rejections === 0 ? 'no requests rejected' : `${fmt(rejections)} requests rejected (inference.rejected or .shed; first: ${firstRejection})`}, ${duplicates === 0 ? 'no request dispatched twice' : `${fmt(duplicates)} DUPLICATE dispatches`}, ${lost === 0 ? 'none lost (every request offered dispatched or rejected)' : `${fmt(lost)} LOST (neither dispatched nor rejected)`}, ${withoutEndpoint === 0 ? 'every dispatch carried the nodes\' endpoint header' : `${fmt(withoutEndpoint)} dispatches WITHOUT the endpoint header`}${foreignDispatches > 0 ? `, ${fmt(foreignDispatches)} dispatches of requests other runs left on the topic answered too (the scheduler group resumes from its committed offset)` : ''}${errors > 0 ? `, ${fmt(errors)} records not produced (first: ${requests.firstError ?? results.firstError ?? telemetry.firstError})` : ''}`,
    );
  } finally {
    clearInterval(refresher);
    await scheduler?.stop();
    await Promise.all(consumers.map((c) => c.close().catch(() => undefined)));
    await kafka.close();
  }
}

async function telemetryLag(quick: boolean, schema: string, bootstrap: string): Promise<void> {
  const runTag = randomBytes(4).toString('hex');
  const nodeCount = 10_000;
  const periodMs = 10_000;
  const seconds = quick ? 10 : 30;
  const samples = quick ? 50 : 200;
  const kafka = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: `arcnet-bench-lag-${runTag}` });
  const bus = new MessageBus(kafka);
  let server: RoleChild | undefined;
  let socket: WebSocket | undefined;
  let publisher: NodeJS.Timeout | undefined;
  try {
    await bus.ensureTopics([ZONE]);
    const keyDir = mkdtempSync(join(tmpdir(), 'arcnet-bench-key-'));
    const keyFile = join(keyDir, 'operator.key');
    server = startRole(['server', '--geozone', ZONE, '--kafka', bootstrap, '--postgres', POSTGRES_URL, '--postgres-schema', schema, '--port', '0', '--operator-key-file', keyFile, '--log-level', 'warn']);
    const [, url] = await server.waitFor(/server at (http:\/\/\S+)/, 60_000);
    const ids = Array.from({ length: nodeCount }, (_, i) => nodeTelemetry(runTag, i, new Date(0).toISOString()).id);
    const known = new Set(ids);

    let measureFrom = Number.POSITIVE_INFINITY;
    let seen = 0;
    const lags: number[] = [];
    const key = readFileSync(keyFile, 'utf8').trim();
    rmSync(keyDir, { recursive: true, force: true });
    const auth = { authorization: `Bearer ${key}` };
    const ws = new WebSocket(`${url!.replace(/^http/, 'ws')}/telemetry`, { headers: auth });
    socket = ws;
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.on('message', (data: Buffer) => {
      const arrived = Date.now();
      const message = JSON.parse(data.toString('utf8')) as { type: string; node?: { id: string; timestamp: string } };
      if (message.type !== 'telemetry' || !message.node || !known.has(message.node.id)) return;
      seen++;
      const stamped = Date.parse(message.node.timestamp);
      if (stamped >= measureFrom) lags.push(arrived - stamped);
    });

    const producer = new BatchingProducer(kafka, topics.telemetry);
    const record = (index: number, stamp: number): OutgoingRecord => bus.encode(topics.telemetry, 'NodeTelemetry', nodeTelemetry(runTag, index, new Date(stamp).toISOString()));
    // Every node once, as fast as it goes: the view learns them before the measured period.
    const registered = Date.now();
    for (let i = 0; i < nodeCount; i += 1_000) producer.push(Array.from({ length: Math.min(1_000, nodeCount - i) }, (_, k) => record(i + k, registered)));
    await producer.drained();
    const registerDeadline = Date.now() + 20_000;
    while (seen < nodeCount && Date.now() < registerDeadline) await sleep(20);
    const registeredIn = Date.now() - registered;

    // Steady reporting: node i reports at i·(period/N) into every period, stamped when handed to the producer.
    const pollLags: number[] = [];
    let pollFailures = 0;
    const polls: Promise<void>[] = [];
    const poll = async (id: string, stampIso: string, stamp: number): Promise<void> => {
      const deadline = stamp + 5_000;
      while (Date.now() < deadline) {
        try {
          const response = await fetch(`${url}/api/v1/nodes/${id}`, { headers: auth });
          const body = (await response.json()) as { reportedAt?: string };
          if (body.reportedAt === stampIso) {
            pollLags.push(Date.now() - stamp);
            return;
          }
        } catch {
          // A refused connection under load is a miss of this poll, not of the telemetry.
        }
        await sleep(5);
      }
      pollFailures++;
    };
    const total = Math.round((seconds * 1000 * nodeCount) / periodMs);
    const sampleEvery = Math.floor(total / samples);
    let published = 0;
    const started = Date.now();
    measureFrom = started;
    const cpuBefore = cpuMark(server.child.pid);
    await new Promise<void>((resolve) => {
      publisher = setInterval(() => {
        const due = Math.min(total, Math.floor(((Date.now() - started) * nodeCount) / periodMs) + 1);
        if (due <= published) return;
        const stamp = Date.now();
        const stampIso = new Date(stamp).toISOString();
        const batch: OutgoingRecord[] = [];
        for (; published < due; published++) {
          const index = published % nodeCount;
          batch.push(record(index, stamp));
          if (published % sampleEvery === 0) polls.push(poll(ids[index]!, stampIso, stamp));
        }
        producer.push(batch);
        if (published >= total) {
          clearInterval(publisher);
          resolve();
        }
      }, 10);
    });
    await producer.drained();
    const cpuAfter = cpuMark(server.child.pid);
    await Promise.all(polls);
    const settleDeadline = Date.now() + 5_000;
    while (lags.length < total && Date.now() < settleDeadline) await sleep(20);
    const sorted = Float64Array.from(lags).sort();
    const polled = Float64Array.from(pollLags).sort();
    const p99 = percentileOfSorted(sorted, 99);
    const met = lags.length >= total * 0.99 && p99 <= LAG_GOAL_P99_MS;
    console.log(`   server process up, ${nodeCount.toLocaleString('en')} nodes registered in ${(registeredIn / 1000).toFixed(1)} s; then each node every ${periodMs / 1000} s (${fmt((nodeCount * 1000) / periodMs)} telemetry/s, spread evenly) for ${seconds} s`);
    console.log(
      `   console WebSocket /telemetry: ${fmt(lags.length)}/${fmt(total)} telemetry relayed, publish -> visible lag p50 ${percentileOfSorted(sorted, 50).toFixed(1)} ms p99 ${p99.toFixed(1)} ms max ${(sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN).toFixed(1)} ms (goal p99 <= ${LAG_GOAL_P99_MS / 1000} s: ${met ? 'MET' : 'NOT MET'})`,
    );
    console.log(
      `   cross-check, GET /api/v1/nodes/<id> polled every 5 ms for ${samples} sampled reports: ${polled.length} seen, lag p50 ${percentileOfSorted(polled, 50).toFixed(1)} ms p99 ${percentileOfSorted(polled, 99).toFixed(1)} ms${pollFailures > 0 ? `, ${pollFailures} not visible within 5 s` : ''}; client produce ack p99 ${percentileOfSorted(Float64Array.from(producer.ackMs).sort(), 99).toFixed(1)} ms${producer.errors > 0 ? `; ${producer.errors} records not produced (${producer.firstError})` : ''}`,
    );
    console.log(`      CPU: ${cpuLine(cpuBefore, cpuAfter, 'server', { count: total, unit: 'telemetry' })}`);
  } finally {
    clearInterval(publisher);
    socket?.terminate();
    await server?.stop();
    await kafka.close();
  }
}

/** Section 5 of `npm run bench`. */
export async function kafkaSection(quick: boolean): Promise<void> {
  console.log(`5. Distributed mode on Kafka on loopback: role processes on the broker at ${KAFKA_BOOTSTRAP} and PostgreSQL at ${postgresEndpoint()}, all sharing this machine's ${navigator.hardwareConcurrency} cores with this process (clients and nodes)`);
  const [kafkaProbe, postgresProbe] = await Promise.all([probeKafka(), probePostgres()]);
  if (!kafkaProbe.available || !postgresProbe.available) {
    const reasons = [...(kafkaProbe.available ? [] : [kafkaProbe.reason]), ...(postgresProbe.available ? [] : [`PostgreSQL ${postgresProbe.reason} (bash scripts/postgres.sh ensure)`])];
    console.log(`   skipped: ${reasons.join('; ')}`);
    return;
  }
  const schemas = testSchemas();
  try {
    if (process.env['ARCNET_BENCH_KAFKA_PARTS'] === 'c') {
      console.log('   (a) routing and (b) telemetry lag: skipped (ARCNET_BENCH_KAFKA_PARTS=c)');
      console.log('   (c) catch-up: a group member draining a backlog, with the adapter\'s fetch bounds and with the library\'s');
      await catchUp(quick);
      return;
    }
    console.log(`   (a) routing against its floor: first a bare produce -> consume hop, then the same two hops with a transaction between and no routing, then one \`arcnet scheduler\` process, 2,000 ${ZONE} nodes with ${MODEL} answering each dispatch at once; all open-loop at ${ROUTING_RATES.map(fmt).join(' and ')}/s; latency = consumed - due`);
    await routingThroughKafka(quick, await schemas.fresh(), KAFKA_BOOTSTRAP);
    if (process.env['ARCNET_BENCH_KAFKA_PARTS'] === 'a') {
      console.log('   (b) telemetry lag and (c) catch-up: skipped (ARCNET_BENCH_KAFKA_PARTS=a)');
      return;
    }
    console.log(`   (b) telemetry lag: one \`arcnet server\` process, 10,000 nodes reporting every 10 s; lag = seen on the server's console feed - telemetry timestamp (set at publish)`);
    await telemetryLag(quick, await schemas.fresh(), KAFKA_BOOTSTRAP);
    console.log('   (c) catch-up: a group member draining a backlog, with the adapter\'s fetch bounds and with the library\'s');
    await catchUp(quick);
  } finally {
    await schemas.dropAll();
  }
}

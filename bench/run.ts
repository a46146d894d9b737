/**
 * `npm run bench`: ArcNet's speed targets (DESIGN §5), each reported as a ratio or rate measured in
 * this same run, so the figures mean the same thing on any machine.
 *
 *  1. Routing decision (filter, score, lease) against an empty async call, at 1,000 / 10,000 /
 *     100,000 nodes per geozone: goal p99 within 50x at 1,000, growth to 100,000 at most 3x.
 *  2. End to end through the embedded bus in one process (bench/embedded-bus.ts: request ->
 *     scheduler -> dispatch -> node -> result -> release): goal >= 10,000 req/s with p99 added
 *     latency <= 2 ms; then the scheduler's capacity, and 2x and 5x of it offered: goodput >= 90 %
 *     of capacity with p99 <= 10 ms for what is dispatched, the excess rejected, critical shed last.
 *  3. API latency while `arcnet up` routes at load: goal p99 <= 10 ms.
 *  4. Verified jobs through scheduling and the k-of-n tally (bench/jobs.ts), 1,000 simulated
 *     workers, n=3, k=2, on the durable SQLite store: goal >= 500 jobs/s, every job the honest result.
 *  5. Distributed mode on Kafka and PostgreSQL over loopback (bench/kafka.ts): one scheduler process
 *     routing >= 10,000 req/s with p99 added latency <= 25 ms, and telemetry of 10,000 nodes visible
 *     through a server process within p99 1 s; skipped when either engine does not answer.
 *  6. The console in headless Chromium (bench/console.ts) against `arcnet up` with 5,000 nodes and
 *     about 500 inference events/s: time to first map <= 2 s, initial load <= 2 MB gzipped, >= 30 fps,
 *     event-to-screen p99 <= 1 s; skipped when Chromium or the built console (web/dist) is missing.
 *  7. Decision record writes on the SQLite store (bench/records.ts): as bitemporal documents vs
 *     write-once records, per record on the event loop: goal records >= 5x cheaper.
 *  8. Training jobs classified and routed through the real bridge (bench/training.ts): goal >= 5,000/s.
 *  9. The POSIX data mover against a plain `cp` of the same file (bench/data-mover.ts): goal >= 80 %.
 * 10. Slurm status queries per poll cycle with 1,000 held jobs in flight (bench/slurm.ts): goal 1;
 *     skipped when the project's Slurm (scripts/slurm.sh) does not answer.
 * 11. The services planner (bench/services.ts): a blueprint change on 1,000 nodes x 10,000 instances
 *     planned within p99 50 ms, and >= 2,000 placements/s from no keys at 5,000 nodes.
 * 12. Services failover (bench/services-failover.ts): `arcnet up` and three `arcnet agent --services`
 *     processes, an agent of an ACTIVE instance SIGKILLed 10 times (4 with --quick): two instances
 *     ACTIVE on live agents again within p99 15 s of the kill; skipped when the CLI, the echo fixture
 *     or /proc is missing.
 * 13. The message codec on the routing path (bench/codec.ts): JSON against MessagePack per message
 *     routed (encode+validate, decode+validate, bytes), both in the same run (ADR 0018).
 *
 * `--quick` shortens every section; `--only 2,5` runs just those sections.
 */
import { percentileOfSorted } from '../src/core/stats.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../src/bus/memory.ts';
import { MessageBus } from '../src/bus/typed-bus.ts';
import { reservationLease } from '../src/inference/scheduler.ts';
import { seededRandom } from '../src/sim/random.ts';
import { Worker } from 'node:worker_threads';
import { startEmbedded } from '../src/main/embedded.ts';
import { withDefaults } from '../src/main/config.ts';
import { jobsSection } from './jobs.ts';
import { kafkaSection } from './kafka.ts';
import { consoleSection } from './console.ts';
import { recordsSection } from './records.ts';
import { trainingSection } from './training.ts';
import { dataMoverSection } from './data-mover.ts';
import { slurmSection } from './slurm.ts';
import { servicesSection } from './services.ts';
import { servicesFailoverSection } from './services-failover.ts';
import { embeddedBusSection } from './embedded-bus.ts';
import { codecSection } from './codec.ts';
import { ZONES, request, reservationStore, scheduler, telemetry, type LeaseKind } from './mesh-fixtures.ts';

const quick = process.argv.includes('--quick');
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt >= 0 ? new Set((process.argv[onlyAt + 1] ?? '').split(',').map(Number)) : undefined;
const runs = (section: number): boolean => only === undefined || only.has(section);

async function emptyCallP99(iterations: number): Promise<{ p50: number; p99: number }> {
  const noop = async (): Promise<number> => 0;
  const samples = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const start = performance.now();
    await noop();
    samples[i] = (performance.now() - start) * 1e6;
  }
  samples.sort();
  return { p50: percentileOfSorted(samples, 50), p99: percentileOfSorted(samples, 99) };
}

async function decisionCost(nodesPerZone: number, iterations: number, dir: string, kind: LeaseKind): Promise<{ p50: number; p99: number; buildMs: number }> {
  const stores = reservationStore(kind, join(dir, `decision-${kind}-${nodesPerZone}.db`));
  const bus = new MessageBus(new MemoryBus());
  const sched = scheduler(bus, stores.leases);
  const random = seededRandom(nodesPerZone);
  const built = performance.now();
  for (const zone of ZONES) for (let i = 0; i < nodesPerZone; i++) sched.observeTelemetry(telemetry(zone, i, random));
  const buildMs = performance.now() - built;
  const index = sched.index;
  const samples = new Float64Array(iterations);
  for (let i = 0; i < iterations + 1000; i++) {
    const ask = request(random, i);
    // The decision: the best candidate, its lease taken atomically, the index told.
    const start = performance.now();
    const candidate = index.best(ask, Date.now());
    if (!candidate) throw new Error('bench mesh has no candidate');
    const lease = await stores.leases.acquire(reservationLease(candidate.node.id), ask.id, 30_000);
    if (!lease.ok) throw new Error('lease unexpectedly held');
    index.reserve({ nodeId: candidate.node.id, holder: ask.id, token: lease.grant.token, expiresAt: lease.grant.expiresAt });
    const elapsed = (performance.now() - start) * 1e6;
    if (i >= 1000) samples[i - 1000] = elapsed;
    // Not timed: the result comes back and frees the node, so the mesh stays the same size.
    index.release(candidate.node.id, lease.grant.token);
    await stores.leases.release(lease.grant);
  }
  await stores.close();
  samples.sort();
  return { p50: percentileOfSorted(samples, 50), p99: percentileOfSorted(samples, 99), buildMs };
}

/** Sequential keep-alive GETs from a worker thread, so the client does not share the server's event loop. */
function apiLatency(url: string, paths: readonly string[], seconds: number, key: string | undefined): Promise<{ count: number; p50: number; p99: number; errors: number }> {
  const worker = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     const http = require('node:http');
     const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
     const get = (path) => new Promise((resolve) => {
       const started = performance.now();
       http.get(workerData.url + path, { agent, headers: workerData.key ? { authorization: 'Bearer ' + workerData.key } : {} }, (res) => { res.resume(); res.on('end', () => resolve([performance.now() - started, res.statusCode])); })
         .on('error', () => resolve([performance.now() - started, 0]));
     });
     (async () => {
       const samples = []; let errors = 0; const deadline = Date.now() + workerData.seconds * 1000; let i = 0;
       while (Date.now() < deadline) {
         const [ms, status] = await get(workerData.paths[i++ % workerData.paths.length]);
         if (status !== 200) errors++; else samples.push(ms);
       }
       samples.sort((a, b) => a - b);
       const at = (p) => samples[Math.min(samples.length - 1, Math.ceil(p / 100 * samples.length) - 1)];
       parentPort.postMessage({ count: samples.length, p50: at(50), p99: at(99), errors });
     })();`,
    { eval: true, workerData: { url, paths, seconds, key } },
  );
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

async function apiUnderLoad(rate: number, seconds: number, dir: string): Promise<{ routed: number; dropped: number; api: { count: number; p50: number; p99: number; errors: number } }> {
  const system = await startEmbedded(
    withDefaults({ port: 0, dataDir: join(dir, 'api'), telemetryIntervalMs: 10_000, simulation: { nodes: 3_000, requestRate: rate, seed: 3, speed: 0.02 } }),
  );
  try {
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const someNode = [...system.aggregator.registry.all()][0]!.id;
    const before = system.metrics.totals.dispatched + system.metrics.totals.rejected;
    const started = performance.now();
    // With the operator key, as a console or CLI would call: the access hook and the rate limiter are in the measured path.
    const api = await apiLatency(system.url, ['/stats', `/api/v1/nodes/${someNode}`, '/api/v1/inference?limit=20', '/health'], seconds, system.operatorKey);
    const routed = (system.metrics.totals.dispatched + system.metrics.totals.rejected - before) / ((performance.now() - started) / 1000);
    // Decision records the log could not write within its budget (src/inference/decision-log.ts), since boot.
    const dropped = (await system.metrics.registry.getSingleMetric('arcnet_decision_records_dropped_total')?.get())?.values[0]?.value ?? 0;
    return { routed, dropped, api };
  } finally {
    await system.stop();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-bench-'));
  try {
    const iterations = quick ? 5_000 : 20_000;
    const seconds = quick ? 2 : 5;
    console.log(`ArcNet bench (${quick ? 'quick' : 'full'}), Node ${process.version}, ${new Date().toISOString()}\n`);
    if (runs(1)) {
      console.log('1. Routing decision: filter + score + reservation lease + index update');
      const empty = await emptyCallP99(iterations * 5);
      console.log(`   empty async call: p50 ${empty.p50.toFixed(0)} ns, p99 ${empty.p99.toFixed(0)} ns`);
      const sizes = quick ? [1_000, 10_000] : [1_000, 10_000, 100_000];
      for (const kind of ['memory', 'sqlite'] as const) {
        console.log(kind === 'memory' ? '   reservations in memory (embedded mode, ADR 0005):' : '   reservations as durable SQLite leases (for comparison; one commit per decision):');
        const rows: { size: number; p50: number; p99: number }[] = [];
        for (const size of kind === 'sqlite' ? sizes.slice(0, 1) : sizes) {
          const cost = await decisionCost(size, iterations, dir, kind);
          rows.push({ size, ...cost });
          console.log(`   ${String(size).padStart(7)} nodes/zone (x3 zones): p50 ${(cost.p50 / 1000).toFixed(2)} µs (${(cost.p50 / empty.p50).toFixed(1)}x empty p50), p99 ${(cost.p99 / 1000).toFixed(2)} µs = ${(cost.p99 / empty.p99).toFixed(1)}x the empty call's p99 (index built in ${cost.buildMs.toFixed(0)} ms)`);
        }
        if (kind === 'sqlite') continue;
        const first = rows[0]!;
        const last = rows[rows.length - 1]!;
        const ratio = first.p99 / empty.p99;
        const growth = last.p99 / first.p99;
        console.log(`   goal p99 <= 50x empty at 1,000: ${ratio.toFixed(1)}x ${ratio <= 50 ? 'MET' : 'NOT MET'}`);
        console.log(`   goal growth 1,000 -> ${last.size.toLocaleString('en')} <= 3x: ${growth.toFixed(2)}x ${growth <= 3 ? 'MET' : 'NOT MET'}`);
      }
      console.log('');
    }
    if (runs(2)) {
      await embeddedBusSection(seconds, dir);
      console.log('');
    }
    if (runs(3)) {
      console.log('3. API latency while routing runs: `arcnet up` with 3,000 simulated nodes and its own request load; a client thread GETs /stats, a node, recent requests, /health');
      for (const rate of [0, 2_000, 5_000]) {
        const { routed, dropped, api } = await apiUnderLoad(rate, seconds, dir);
        const goal = rate > 0 ? ` (goal p99 <= 10 ms: ${api.p99 <= 10 ? 'MET' : 'NOT MET'})` : '';
        console.log(`   routing ${Math.round(routed).toLocaleString('en')} req/s: ${api.count.toLocaleString('en')} API calls, p50 ${api.p50.toFixed(3)} ms, p99 ${api.p99.toFixed(3)} ms, ${api.errors} errors${goal}; ${dropped.toLocaleString('en')} decision records dropped`);
      }
      console.log('');
    }
    if (runs(4)) {
      await jobsSection(dir, quick);
      console.log('');
    }
    if (runs(5)) await kafkaSection(quick);
    if (runs(6)) {
      console.log('');
      await consoleSection(quick);
    }
    if (runs(7)) {
      console.log('');
      await recordsSection(dir, quick);
    }
    if (runs(8)) {
      console.log('');
      await trainingSection(dir, quick);
    }
    if (runs(9)) {
      console.log('');
      await dataMoverSection(dir, quick);
    }
    if (runs(10)) {
      console.log('');
      await slurmSection(quick, 10);
    }
    if (runs(11)) {
      console.log('');
      await servicesSection(quick);
    }
    if (runs(12)) {
      console.log('');
      await servicesFailoverSection(quick);
    }
    if (runs(13)) {
      console.log('');
      await codecSection(quick);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

/**
 * Training jobs classified and routed per second (issue 13: goal >= 5,000/s on one process).
 *
 * The real TrainingBridge on a real SQLite file (WAL, the embedded default) and the memory bus, as in
 * `arcnet up`: TrainingJob messages are published on `arc.job.submission` as another producer would
 * (so the bridge also stores each submission it had not seen), and a job counts once the bridge has
 * classified it, stored its classification (compare-and-set) and published where it goes: half the
 * jobs are federated (a FederatedTask on `arc.scheduler.training`, stored `waiting`), half HPC by the
 * dataset rule (stored `pending`, an HpcJob on `arc.bridge.pending`). No HPC scheduler runs here, so
 * no lease is taken and no data moves: this is the classify-and-route step, not the HPC path (whose
 * cost is the transfer and Slurm's). The pure classifier alone is timed beside it for scale.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { systemClock } from '../src/core/clock.ts';
import { silentLogger } from '../src/core/logging.ts';
import { MemoryBus } from '../src/bus/memory.ts';
import { MessageBus } from '../src/bus/typed-bus.ts';
import type { TrainingJob } from '../src/contracts/messages.ts';
import { topics } from '../src/contracts/topics.ts';
import { openSqliteStores } from '../src/store/sqlite.ts';
import { classify, DEFAULT_THRESHOLDS } from '../src/training/classifier.ts';
import { DEFAULT_BRIDGE_CONFIG, TrainingBridge } from '../src/training/bridge.ts';
import type { DataMover } from '../src/training/ports.ts';

export const TRAINING_GOAL_PER_SECOND = 5_000;

/** Never called: without a scheduler the bridge moves no data. Present because the bridge always has a mover. */
const IDLE_MOVER: DataMover = {
  name: 'none',
  transfer: () => Promise.reject(new Error('the bench moves no data')),
  cancel: () => Promise.resolve(),
};

export interface TrainingBenchResult {
  readonly jobs: number;
  readonly elapsedS: number;
  readonly perSecond: number;
  readonly hpc: number;
  readonly federated: number;
  readonly classifyPerSecond: number;
}

function jobOf(i: number): TrainingJob {
  return { schemaVersion: 1, id: randomUUID(), datasetUri: `file:///data/set-${i}.bin`, datasetSizeGb: i % 2 === 0 ? 250 : 20, estimatedFlops: 1e15 + i, urgency: 'normal' };
}

export async function trainingThroughput(dir: string, jobs: number): Promise<TrainingBenchResult> {
  mkdirSync(dir, { recursive: true });
  const stores = openSqliteStores({ path: join(dir, 'training-bench.db'), clock: systemClock });
  const bus = new MessageBus(new MemoryBus());
  await bus.ensureTopics(['CAISO']);
  const bridge = new TrainingBridge({
    bus,
    documents: stores.documents,
    kv: stores.kv,
    leases: stores.leases,
    clock: systemClock,
    logger: silentLogger,
    instanceId: 'bench',
    mover: IDLE_MOVER,
    scheduler: undefined,
    // Long intervals: the scan and the poll are not what is measured.
    config: { ...DEFAULT_BRIDGE_CONFIG, stagingDir: join(dir, 'staging'), pollIntervalMs: 60_000, scanIntervalMs: 600_000 },
  });
  await bridge.start();
  try {
    const messages = Array.from({ length: jobs }, (_, i) => jobOf(i));
    const started = performance.now();
    for (const message of messages) await bus.publish(topics.jobSubmission, 'TrainingJob', message);
    for (;;) {
      const { hpc, federated } = bridge.stats().classified;
      if (hpc + federated >= jobs) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const elapsedS = (performance.now() - started) / 1000;
    const { hpc, federated } = bridge.stats().classified;
    // The pure step, for scale.
    const t0 = performance.now();
    let routedHpc = 0;
    for (let round = 0; round < 20; round++) for (const m of messages) if (classify(m, DEFAULT_THRESHOLDS).target === 'hpc') routedHpc++;
    const classifyPerSecond = (20 * jobs) / ((performance.now() - t0) / 1000);
    if (routedHpc !== 20 * hpc) throw new Error(`the classifier and the bridge disagree: ${routedHpc / 20} vs ${hpc} HPC jobs`);
    return { jobs, elapsedS, perSecond: jobs / elapsedS, hpc, federated, classifyPerSecond };
  } finally {
    await bridge.stop();
    await stores.close();
  }
}

export async function trainingSection(dir: string, quick: boolean): Promise<void> {
  const jobs = quick ? 5_000 : 20_000;
  console.log(`8. Training jobs: ${jobs.toLocaleString('en')} TrainingJobs on arc.job.submission through the real bridge (SQLite file, memory bus): store, classify, store the classification (CAS), publish on arc.scheduler.training / arc.bridge.pending; no HPC scheduler (no lease, no transfer)`);
  const workDir = join(dir, 'training');
  try {
    const r = await trainingThroughput(workDir, jobs);
    const met = r.perSecond >= TRAINING_GOAL_PER_SECOND;
    console.log(`   ${r.jobs.toLocaleString('en')} jobs (${r.hpc.toLocaleString('en')} HPC, ${r.federated.toLocaleString('en')} federated) in ${r.elapsedS.toFixed(2)} s: ${Math.round(r.perSecond).toLocaleString('en')} jobs/s classified and routed = ${(r.perSecond / TRAINING_GOAL_PER_SECOND).toFixed(2)}x the ${TRAINING_GOAL_PER_SECOND.toLocaleString('en')}/s goal (${met ? 'MET' : 'NOT MET'}); the pure classifier alone: ${Math.round(r.classifyPerSecond).toLocaleString('en')}/s`);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

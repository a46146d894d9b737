/**
 * Verified-jobs throughput (DESIGN §5): ">= 500 jobs/s through scheduling and the k-of-n tally with
 * 1,000 simulated workers and n=3, k=2 on one process".
 *
 * A real Coordinator on a real SQLite store (a WAL file, the embedded default, or `:memory:` for
 * comparison) with 1,000 registered workers played in-process through the WorkerChannel port: when
 * offered an execution, a worker answers on the next turn of the event loop (setImmediate) with a
 * deterministic result computed from what it was sent. About 2 % of the workers are Byzantine and
 * answer with a forgery of their own (liars do not collude, so k=2 of n=3 still always finds the
 * honest result; colluding liars on one job would be the model's known limit, not a bug). A liar
 * loses 10 reputation per forgery while honest workers gain 5 per job, and placement ranks by
 * reputation first, so each liar is offered work about once before it is ranked out: the forged
 * results come early in the run, and the line reports how many there were.
 *
 * The submitter keeps a fixed number of jobs in flight, awaiting each `submit`. A job counts as done
 * when consensus is reached and every execution placed for it has reported (the third, late result
 * included). Every decided job's result is checked against the honest one.
 */
import { percentileOfSorted } from '../src/core/stats.ts';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../src/core/clock.ts';
import { silentLogger } from '../src/core/logging.ts';
import { openSqliteStores } from '../src/store/sqlite.ts';
import { Coordinator } from '../src/jobs/coordinator.ts';
import { authenticateWorker } from '../src/jobs/credentials.ts';
import type { ExecutionAssignment, Job } from '../src/jobs/model.ts';
import type { CoordinatorObserver, WorkerChannel } from '../src/jobs/ports.ts';

export const JOBS_GOAL_PER_SECOND = 500;

export interface JobsBenchOptions {
  /** Directory for the store file; ignored for `:memory:`. */
  readonly dir: string;
  readonly store: 'file' | 'memory';
  readonly workers: number;
  /** Share of workers that forge results, 0..1. */
  readonly byzantineShare: number;
  /** Jobs submitted but not yet done, kept constant while submitting. */
  readonly inFlight: number;
  /** How long to keep submitting; the jobs in flight then drain. */
  readonly seconds: number;
  /** Upper bound on jobs submitted (sizes the sample arrays). */
  readonly maxJobs: number;
}

export interface JobsBenchResult {
  readonly store: 'file' | 'memory';
  readonly workers: number;
  readonly byzantine: number;
  readonly submitted: number;
  /** Consensus reached and every placed execution reported. */
  readonly done: number;
  readonly elapsedS: number;
  readonly jobsPerSecond: number;
  /** Submit called -> consensus durable (observer), ms. */
  readonly consensusP50Ms: number;
  readonly consensusP99Ms: number;
  /** Submit called -> last result of the job recorded, ms. */
  readonly allInP99Ms: number;
  /** Decided with a result other than the honest one. */
  readonly wrong: number;
  /** Decided as unreachable (failed). */
  readonly failed: number;
  /** Jobs never decided by the end of the drain. */
  readonly undecided: number;
  /** submitResult / submit calls that threw. */
  readonly errors: number;
  readonly firstError: string | undefined;
  /** Jobs offered to at least one Byzantine worker, so a forged result came in and had to be outvoted. */
  readonly forgedJobs: number;
  /** Forged results submitted. */
  readonly forgeries: number;
  /** Executions beyond the first n (extras scheduled after a split). */
  readonly extraExecutions: number;
  /** Executions a decision superseded (cancel sent to the worker). */
  readonly cancels: number;
  readonly registerMs: number;
  /** Process CPU (user + system, all threads: the store's checkpointer included) per job done, ms. */
  readonly cpuMsPerJob: number;
  readonly memory: { readonly before: NodeJS.MemoryUsage; readonly after: NodeJS.MemoryUsage };
  /** What the coordinator itself counts at the end. */
  readonly counts: { readonly completed: number; readonly failed: number; readonly running: number; readonly pending: number };
  /** Finished jobs the coordinator keeps in memory (config.recentJobs). */
  readonly recentJobs: number;
}

const REDUNDANCY = 3;
const CONSENSUS = 2;


/** Job names and inputs carry their sequence number, so samples live in typed arrays, not maps. */
const jobName = (sequence: number): string => `bench-job-${sequence}`;
const sequenceOfName = (name: string | null): number => (name === null ? -1 : Number.parseInt(name.slice(10), 10));
const honestResult = (input: string | null): string => `hash-of-${input}`;

/** The simulated workers: each answers an offer on the next turn of the event loop. */
class SimulatedWorkers implements WorkerChannel {
  readonly credentials = new Map<string, string>();
  readonly liars = new Set<string>();
  /** Executions offered per job sequence. */
  readonly offered: Uint8Array;
  /** 1 where a Byzantine worker was offered an execution of the job. */
  readonly forged: Uint8Array;
  forgeries = 0;
  cancels = 0;
  errors = 0;
  firstError: string | undefined;
  private coordinator: Coordinator | undefined;
  private readonly reported: (sequence: number) => void;

  constructor(maxJobs: number, reported: (sequence: number) => void) {
    this.offered = new Uint8Array(maxJobs);
    this.forged = new Uint8Array(maxJobs);
    this.reported = reported;
  }

  attach(coordinator: Coordinator): void {
    this.coordinator = coordinator;
  }

  offer(nodeId: string, assignment: ExecutionAssignment): boolean {
    const sequence = sequenceOfName(assignment.input_data);
    if (sequence >= 0) this.offered[sequence] = this.offered[sequence]! + 1;
    if (sequence >= 0 && this.liars.has(nodeId)) this.forged[sequence] = 1;
    setImmediate(() => this.answer(nodeId, assignment, sequence));
    return true;
  }

  cancel(): void {
    // The simulated worker answers at once, so it has nothing to stop: a real one would stop its container.
    this.cancels++;
  }

  private answer(nodeId: string, assignment: ExecutionAssignment, sequence: number): void {
    const liar = this.liars.has(nodeId);
    if (liar) this.forgeries++;
    const result = liar ? `forged-by-${nodeId}-for-${assignment.input_data}` : honestResult(assignment.input_data);
    // The credential is checked as the API edge checks it, once per call.
    const coordinator = this.coordinator!;
    Promise.resolve()
      .then(() => coordinator.submitResult(authenticateWorker(coordinator.worker(nodeId), nodeId, this.credentials.get(nodeId)), { execution_id: assignment.execution_id, status: 'completed', result, duration_ms: 1 }))
      .then(
        () => this.reported(sequence),
        (error: unknown) => {
          this.errors++;
          this.firstError ??= String(error);
          this.reported(sequence);
        },
      );
  }
}

export async function jobsThroughput(options: JobsBenchOptions): Promise<JobsBenchResult> {
  const { maxJobs } = options;
  const submittedAt = new Float64Array(maxJobs);
  const consensusMs = new Float64Array(maxJobs).fill(Number.NaN);
  const allInMs = new Float64Array(maxJobs).fill(Number.NaN);
  const reports = new Uint8Array(maxJobs);
  const decided = new Uint8Array(maxJobs);
  let done = 0;
  let inFlight = 0;
  let wrong = 0;
  let failed = 0;
  let lastDoneAt = 0;
  let wake: (() => void) | undefined;

  const maybeDone = (sequence: number): void => {
    if (decided[sequence] === 0 || reports[sequence]! < workers.offered[sequence]!) return;
    if (!Number.isNaN(allInMs[sequence]!)) return;
    lastDoneAt = performance.now();
    allInMs[sequence] = lastDoneAt - submittedAt[sequence]!;
    done++;
    inFlight--;
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  const workers = new SimulatedWorkers(maxJobs, (sequence) => {
    if (sequence < 0) return;
    reports[sequence] = reports[sequence]! + 1;
    maybeDone(sequence);
  });
  const observer: CoordinatorObserver = {
    consensus(outcome: 'reached' | 'unreachable', job: Job): void {
      const sequence = sequenceOfName(job.input_data);
      if (sequence < 0 || decided[sequence] !== 0) return;
      consensusMs[sequence] = performance.now() - submittedAt[sequence]!;
      decided[sequence] = 1;
      if (outcome === 'unreachable') failed++;
      else if (job.result !== honestResult(job.input_data)) wrong++;
      // maybeDone runs when the result that triggered this decision resolves.
    },
  };

  const stores = openSqliteStores({ path: options.store === 'memory' ? ':memory:' : join(options.dir, 'jobs-bench.db'), clock: systemClock });
  const coordinator = new Coordinator({ documents: stores.documents, clock: systemClock, logger: silentLogger, channel: workers, observer });
  workers.attach(coordinator);
  await coordinator.start();
  const registered = performance.now();
  const byzantine = Math.round(options.workers * options.byzantineShare);
  const liarEvery = byzantine > 0 ? options.workers / byzantine : Infinity;
  for (let i = 0; i < options.workers; i++) {
    const { worker, credential } = await coordinator.register({ name: `bench-worker-${i}`, cpu_cores: 4, memory_gb: 8, region: 'CAISO' }, undefined);
    workers.credentials.set(worker.id, credential);
    // Spread evenly over the registration order rather than clustered at the start.
    if (workers.liars.size < byzantine && i >= workers.liars.size * liarEvery) workers.liars.add(worker.id);
  }
  const registerMs = performance.now() - registered;

  const before = process.memoryUsage();
  const cpuBefore = process.cpuUsage();
  let submitted = 0;
  const started = performance.now();
  const stopSubmitting = started + options.seconds * 1000;
  while (submitted < maxJobs && performance.now() < stopSubmitting) {
    if (inFlight >= options.inFlight) {
      await new Promise<void>((resolve) => (wake = resolve));
      continue;
    }
    const sequence = submitted++;
    inFlight++;
    submittedAt[sequence] = performance.now();
    try {
      await coordinator.submit({
        name: jobName(sequence),
        docker_image: 'arcnet/busybox:bench',
        command: ['sh', '-c', 'cat /input | sha256sum'],
        input_data: jobName(sequence),
        redundancy: REDUNDANCY,
        consensus: CONSENSUS,
      });
    } catch (error) {
      workers.errors++;
      workers.firstError ??= String(error);
      inFlight--;
    }
  }
  // Drain: the jobs in flight finish (bounded, so a stuck job cannot hang the bench).
  const drainDeadline = performance.now() + 10_000;
  while (inFlight > 0 && performance.now() < drainDeadline) await new Promise((resolve) => setTimeout(resolve, 2));
  const elapsedS = ((done > 0 ? lastDoneAt : performance.now()) - started) / 1000;
  const after = process.memoryUsage();
  const cpu = process.cpuUsage(cpuBefore);
  const counts = coordinator.jobCounts().byStatus;
  await coordinator.stop();
  await stores.close();

  let undecided = 0;
  let forgedJobs = 0;
  let extraExecutions = 0;
  for (let i = 0; i < submitted; i++) {
    if (decided[i] === 0) undecided++;
    forgedJobs += workers.forged[i]!;
    extraExecutions += Math.max(0, workers.offered[i]! - REDUNDANCY);
  }
  const consensus = consensusMs.slice(0, submitted).filter((v) => !Number.isNaN(v)).sort();
  const allIn = allInMs.slice(0, submitted).filter((v) => !Number.isNaN(v)).sort();
  return {
    store: options.store,
    workers: options.workers,
    byzantine,
    submitted,
    done,
    elapsedS,
    jobsPerSecond: done / elapsedS,
    consensusP50Ms: percentileOfSorted(consensus, 50),
    consensusP99Ms: percentileOfSorted(consensus, 99),
    allInP99Ms: percentileOfSorted(allIn, 99),
    wrong,
    failed,
    undecided,
    errors: workers.errors,
    firstError: workers.firstError,
    forgedJobs,
    forgeries: workers.forgeries,
    extraExecutions,
    cancels: workers.cancels,
    registerMs,
    cpuMsPerJob: (cpu.user + cpu.system) / 1000 / Math.max(1, done),
    memory: { before, after },
    counts,
    recentJobs: coordinator.config.recentJobs,
  };
}

const mb = (bytes: number): string => (bytes / 1048576).toFixed(0);

/** Section 4 of `npm run bench`: the durable store (the goal) and `:memory:` for comparison. */
export async function jobsSection(dir: string, quick: boolean): Promise<void> {
  const workers = 1_000;
  const inFlight = 200;
  const seconds = quick ? 2 : 5;
  console.log(`4. Verified jobs: ${workers.toLocaleString('en')} simulated workers (2 % Byzantine), n=${REDUNDANCY} k=${CONSENSUS}, ${inFlight} jobs in flight, submitting for ${seconds} s: submit -> place ${REDUNDANCY} -> results -> k-of-n tally -> consensus`);
  for (const store of ['file', 'memory'] as const) {
    const r = await jobsThroughput({ dir: join(dir, `jobs-${store}`), store, workers, byzantineShare: 0.02, inFlight, seconds, maxJobs: 200_000 });
    rmSync(join(dir, `jobs-${store}`), { recursive: true, force: true });
    const ratio = r.jobsPerSecond / JOBS_GOAL_PER_SECOND;
    const label = store === 'file' ? 'SQLite file, WAL (embedded default, durable):' : 'SQLite :memory: (for comparison):';
    const goal = store === 'file' ? ` (goal >= ${JOBS_GOAL_PER_SECOND} jobs/s: ${r.jobsPerSecond >= JOBS_GOAL_PER_SECOND ? 'MET' : 'NOT MET'})` : '';
    console.log(`   ${label} ${r.done.toLocaleString('en')}/${r.submitted.toLocaleString('en')} jobs done in ${r.elapsedS.toFixed(2)} s: ${Math.round(r.jobsPerSecond).toLocaleString('en')} jobs/s = ${ratio.toFixed(2)}x the ${JOBS_GOAL_PER_SECOND} jobs/s goal, submit -> consensus p50 ${r.consensusP50Ms.toFixed(1)} ms p99 ${r.consensusP99Ms.toFixed(1)} ms (all results in: p99 ${r.allInP99Ms.toFixed(1)} ms), process CPU ${r.cpuMsPerJob.toFixed(2)} ms/job${goal}`);
    const honest = r.wrong === 0 && r.failed === 0 && r.undecided === 0 && r.errors === 0;
    const { completed, failed, running, pending } = r.counts;
    const countsRight = completed === r.done && failed === 0 && running === 0 && pending === 0;
    console.log(`      results: ${r.wrong} wrong, ${r.failed} failed, ${r.undecided} undecided, ${r.errors} errors${r.firstError === undefined ? '' : ` (first: ${r.firstError})`}: ${honest ? 'every job decided with the honest result' : 'BUG'}; ${r.byzantine} Byzantine workers sent ${r.forgeries} forged results to ${r.forgedJobs} jobs, ${r.wrong === 0 ? 'all outvoted' : 'NOT all outvoted'}, ${r.extraExecutions} extra executions, ${r.cancels} cancels sent for executions consensus superseded`);
    console.log(`      coordinator jobCounts: ${completed} completed, ${failed} failed, ${running} running, ${pending} pending: ${countsRight ? 'as expected' : 'WRONG'}`);
    console.log(`      memory: RSS ${mb(r.memory.before.rss)} -> ${mb(r.memory.after.rss)} MB, heap used ${mb(r.memory.before.heapUsed)} -> ${mb(r.memory.after.heapUsed)} MB (no forced GC; the coordinator keeps up to ${r.recentJobs.toLocaleString('en')} finished jobs in memory; ${workers.toLocaleString('en')} workers registered in ${r.registerMs.toFixed(0)} ms before)`);
  }
  // The same path with one job at a time: what a lone submitter waits, without the queue of 200 ahead of it.
  const lone = await jobsThroughput({ dir: join(dir, 'jobs-lone'), store: 'file', workers, byzantineShare: 0.02, inFlight: 1, seconds: 1, maxJobs: 200_000 });
  rmSync(join(dir, 'jobs-lone'), { recursive: true, force: true });
  console.log(`   one job in flight (SQLite file, ${lone.done.toLocaleString('en')} jobs in ${lone.elapsedS.toFixed(2)} s): submit -> consensus p50 ${lone.consensusP50Ms.toFixed(2)} ms p99 ${lone.consensusP99Ms.toFixed(2)} ms, ${lone.wrong + lone.failed + lone.undecided + lone.errors === 0 ? 'every job honest' : 'BUG: wrong/failed/undecided/errors ' + [lone.wrong, lone.failed, lone.undecided, lone.errors].join('/')}`);
}

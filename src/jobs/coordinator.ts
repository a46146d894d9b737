/**
 * The verified-jobs coordinator (seed 004's control plane, made sound): accepts jobs, places n
 * executions on n different workers the moment a job arrives, pushes them to connected workers,
 * recomputes every result's SHA-256 itself, asks the pure verifier what to do after each change, and
 * keeps reputation and credits. Every change is durable (one store transaction) before anyone is
 * told about it; on start the coordinator reloads what was open and carries on.
 *
 * Mutations run one at a time through `serial`, so the verifier always sees a consistent job and
 * two results for one job can never both decide it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import { ArcError, errorMessage } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logging.ts';
import type { DocumentPut, DocumentStore } from '../store/ports.ts';
import { place, placeMany } from '../placement/framework.ts';
import {
  ACTIVE_EXECUTION_STATUSES,
  FINAL_JOB_STATUSES,
  REPUTATION,
  assignmentOf,
  type ExecutionAssignment,
  type ExecutionStatus,
  type Job,
  type JobExecution,
  type JobStatus,
  type ResultEncoding,
  type WorkerRecord,
  type WorkerResult,
} from './model.ts';
import { jobProfile, DEFAULT_JOB_PROFILE, type JobAsk, type JobProfileConfig, type WorkerCandidate } from './profile.ts';
import { judgeLate, rulesProblem, tally } from './verification.ts';
import type { CoordinatorObserver, JobCounts, WorkerChannel } from './ports.ts';

export const JOBS_COLLECTION = 'jobs';
export const EXECUTIONS_COLLECTION = 'job_executions';
export const WORKERS_COLLECTION = 'workers';

export interface CoordinatorConfig {
  /** Silence after which a worker is offline, loses reputation and its running executions fail (seed: 2 min). */
  readonly staleAfterMs: number;
  readonly sweepIntervalMs: number;
  /** Allowance beyond an execution's own timeout for delivery and upload before the coordinator gives up on it. */
  readonly executionGraceMs: number;
  /** How long a wanted execution may wait for an eligible worker before it counts as failed. */
  readonly schedulingTimeoutMs: number;
  /**
   * Delay before a superseded execution is cancelled on its worker: one about to finish still
   * reports and is scored; a long one stops wasting its worker.
   */
  readonly cancelGraceMs: number;
  readonly maxRedundancy: number;
  /** Upper bound on a job's max_executions (extras included). */
  readonly maxExecutionsCap: number;
  readonly defaultTimeoutSeconds: number;
  readonly maxTimeoutSeconds: number;
  /** Finished jobs kept in memory for listing; older ones are read from the store. */
  readonly recentJobs: number;
  readonly maxResultBytes: number;
  readonly profile: JobProfileConfig;
}

export const DEFAULT_COORDINATOR_CONFIG: CoordinatorConfig = {
  staleAfterMs: 120_000,
  sweepIntervalMs: 1_000,
  executionGraceMs: 30_000,
  schedulingTimeoutMs: 600_000,
  cancelGraceMs: 2_000,
  maxRedundancy: 15,
  maxExecutionsCap: 45,
  defaultTimeoutSeconds: 300,
  maxTimeoutSeconds: 86_400,
  recentJobs: 10_000,
  maxResultBytes: 4 << 20,
  profile: DEFAULT_JOB_PROFILE,
};

export interface JobSubmission {
  readonly id?: string;
  readonly name: string;
  readonly description?: string;
  readonly docker_image: string;
  readonly command: readonly string[];
  readonly environment?: Readonly<Record<string, string>>;
  readonly input_data?: string;
  readonly required_cpu?: number;
  readonly required_memory?: number;
  readonly required_gpu?: boolean;
  readonly redundancy?: number;
  readonly consensus?: number;
  readonly max_executions?: number;
  readonly timeout_seconds?: number;
  readonly network?: boolean;
  readonly submitted_by?: string;
  readonly credits_required?: number;
}

export interface WorkerRegistration {
  readonly id?: string;
  readonly name: string;
  readonly region?: string;
  readonly cpu_cores: number;
  readonly memory_gb: number;
  readonly gpu_enabled?: boolean;
  readonly gpu_model?: string;
}

export interface Heartbeat {
  readonly cpu_usage?: number;
  readonly memory_usage?: number;
  readonly active_jobs?: readonly string[];
}

export type ResultOutcome =
  | { readonly kind: 'recorded'; readonly execution: JobExecution; readonly job: Job; readonly late: boolean }
  | { readonly kind: 'duplicate'; readonly execution: JobExecution; readonly job: Job };

/** An expected refusal, mapped by the API to its status code. */
export class JobsError extends ArcError {
  readonly status: 400 | 401 | 403 | 404 | 409 | 413;
  constructor(status: 400 | 401 | 403 | 404 | 409 | 413, message: string) {
    super(status === 404 ? 'NOT_FOUND' : status === 409 ? 'CONFLICT' : 'INVALID_INPUT', message, { retryable: false });
    this.name = 'JobsError';
    this.status = status;
  }
}

/** What is kept per job: the API's job plus the slots the verifier needs. */
interface StoredJob {
  readonly job: Job;
  /** Executions wanted but not yet placed on a worker. */
  readonly unplaced: number;
  /** Wanted executions that found no worker in time; they count as failures. */
  readonly abandoned: number;
  /** Since when `unplaced` slots have waited (ms), or null. */
  readonly waitingSince: number | null;
}

interface JobEntry {
  stored: StoredJob;
  executions: JobExecution[];
}

interface Allocation {
  cpu: number;
  memoryGb: number;
  readonly executions: Set<string>;
}

const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

function decodeResult(result: string | undefined, encoding: ResultEncoding | undefined): Buffer {
  if (result === undefined) return Buffer.alloc(0);
  return encoding === 'base64' ? Buffer.from(result, 'base64') : Buffer.from(result, 'utf8');
}

export class Coordinator {
  private readonly documents: DocumentStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly channel: WorkerChannel;
  private readonly observer: CoordinatorObserver;
  readonly config: CoordinatorConfig;
  private readonly profile;
  private readonly jobs = new Map<string, JobEntry>();
  /** Finished job ids, oldest first, for trimming memory. */
  private readonly finished: string[] = [];
  private readonly executionJob = new Map<string, string>();
  private readonly workers = new Map<string, WorkerRecord>();
  private readonly allocations = new Map<string, Allocation>();
  /** Jobs with unplaced executions, in arrival order: retried when capacity appears. */
  private readonly waiting = new Set<string>();
  private readonly counts: Record<JobStatus, number> = { pending: 0, running: 0, completed: 0, failed: 0 };
  private chain: Promise<unknown> = Promise.resolve();
  private sweepTimer: NodeJS.Timeout | undefined;
  private started = false;
  /** Silence is counted from here at the earliest: workers must not pay for the coordinator's own downtime. */
  private startedAt = 0;

  constructor(options: { documents: DocumentStore; clock: Clock; logger: Logger; channel: WorkerChannel; config?: Partial<CoordinatorConfig>; observer?: CoordinatorObserver }) {
    this.documents = options.documents;
    this.clock = options.clock;
    this.logger = options.logger;
    this.channel = options.channel;
    this.observer = options.observer ?? {};
    this.config = { ...DEFAULT_COORDINATOR_CONFIG, ...options.config };
    this.profile = jobProfile(this.config.profile);
  }

  /** Reloads workers, open jobs and their executions, then starts the sweep. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.startedAt = this.clock.now();
    for (const version of await this.documents.list<WorkerRecord>(WORKERS_COLLECTION)) {
      if (version.body) this.workers.set(version.body.id, version.body);
    }
    const executionsByJob = new Map<string, JobExecution[]>();
    for (const version of await this.documents.list<JobExecution>(EXECUTIONS_COLLECTION)) {
      const execution = version.body;
      if (!execution) continue;
      const list = executionsByJob.get(execution.job_id) ?? [];
      list.push(execution);
      executionsByJob.set(execution.job_id, list);
    }
    const finishedJobs: JobEntry[] = [];
    for (const version of await this.documents.list<StoredJob>(JOBS_COLLECTION)) {
      const stored = version.body;
      if (!stored) continue;
      this.counts[stored.job.status]++;
      const entry = { stored, executions: (executionsByJob.get(stored.job.id) ?? []).sort((a, b) => a.attempt - b.attempt) };
      if (FINAL_JOB_STATUSES.has(stored.job.status)) {
        finishedJobs.push(entry);
        continue;
      }
      this.remember(entry);
      if (stored.unplaced > 0) this.waiting.add(stored.job.id);
      for (const execution of entry.executions) if (ACTIVE_EXECUTION_STATUSES.has(execution.status)) this.allocate(execution, stored.job);
    }
    finishedJobs.sort((a, b) => (a.stored.job.completed_at ?? '').localeCompare(b.stored.job.completed_at ?? ''));
    for (const entry of finishedJobs.slice(-this.config.recentJobs)) {
      this.remember(entry);
      this.finished.push(entry.stored.job.id);
    }
    for (const worker of this.workers.values()) this.refreshWorkerStatus(worker.id);
    this.sweepTimer = setInterval(() => {
      this.serial(() => this.sweep()).catch((error: unknown) => this.logger.error({ err: errorMessage(error) }, 'job sweep failed; retrying next tick'));
    }, this.config.sweepIntervalMs);
    this.sweepTimer.unref();
    await this.serial(() => this.placeWaiting());
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    await this.chain.catch(() => undefined);
  }

  /** Runs mutations one at a time; a failed one does not stop the next. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }

  // ---------------------------------------------------------------- reads

  job(id: string): Job | undefined {
    return this.jobs.get(id)?.stored.job;
  }

  executionsOf(jobId: string): readonly JobExecution[] {
    return this.jobs.get(jobId)?.executions ?? [];
  }

  async findJob(id: string): Promise<{ job: Job; executions: readonly JobExecution[] } | undefined> {
    const entry = this.jobs.get(id);
    if (entry) return { job: entry.stored.job, executions: entry.executions };
    const stored = await this.documents.get<StoredJob>(JOBS_COLLECTION, id);
    if (!stored?.body) return undefined;
    const executions = (await this.documents.list<JobExecution>(EXECUTIONS_COLLECTION)).flatMap((v) => (v.body && v.body.job_id === id ? [v.body] : []));
    return { job: stored.body.job, executions: executions.sort((a, b) => a.attempt - b.attempt) };
  }

  /** Jobs in memory (open ones and the most recent finished), newest first, with their executions. */
  listJobs(filter: { status?: JobStatus; limit: number }): { job: Job; executions: readonly JobExecution[] }[] {
    const out: { job: Job; executions: readonly JobExecution[] }[] = [];
    const all = [...this.jobs.values()];
    all.sort((a, b) => {
      const [x, y] = [a.stored.job, b.stored.job];
      return x.submitted_at < y.submitted_at ? 1 : x.submitted_at > y.submitted_at ? -1 : x.id < y.id ? 1 : -1;
    });
    for (const entry of all) {
      if (filter.status !== undefined && entry.stored.job.status !== filter.status) continue;
      out.push({ job: entry.stored.job, executions: entry.executions });
      if (out.length >= filter.limit) break;
    }
    return out;
  }

  jobCounts(): JobCounts {
    const total = this.counts.pending + this.counts.running + this.counts.completed + this.counts.failed;
    return { total, byStatus: { ...this.counts } };
  }

  worker(id: string): WorkerRecord | undefined {
    return this.workers.get(id);
  }

  allWorkers(): IterableIterator<WorkerRecord> {
    return this.workers.values();
  }

  /** Executions the worker should be running now, for polling workers and for reconnects. */
  async pendingFor(nodeId: string, credential: string | undefined): Promise<ExecutionAssignment[]> {
    return this.serial(async () => {
      this.authenticate(nodeId, credential);
      const allocation = this.allocations.get(nodeId);
      if (!allocation) return [];
      const assignments: ExecutionAssignment[] = [];
      const puts: DocumentPut<unknown>[] = [];
      const now = new Date(this.clock.now()).toISOString();
      for (const executionId of [...allocation.executions].sort()) {
        const entry = this.entryOfExecution(executionId);
        if (!entry) continue;
        const index = entry.executions.findIndex((e) => e.id === executionId);
        let execution = entry.executions[index]!;
        if (execution.status === 'scheduled') {
          execution = { ...execution, status: 'running', started_at: now };
          entry.executions[index] = execution;
          puts.push({ collection: EXECUTIONS_COLLECTION, id: execution.id, body: execution });
        }
        assignments.push(assignmentOf(entry.stored.job, execution));
      }
      if (puts.length > 0) await this.documents.putMany(puts);
      return assignments;
    });
  }

  // ---------------------------------------------------------------- jobs

  /** Validates, stores and places a job; resolves once it is durable. Re-submitting an id returns the stored job. */
  async submit(submission: JobSubmission): Promise<{ job: Job; created: boolean }> {
    const problem = this.submissionProblem(submission);
    if (problem) throw new JobsError(400, problem);
    return this.serial(async () => {
      const id = submission.id ?? newId();
      const existing = this.jobs.get(id) ?? (submission.id ? await this.findJob(id).then((found) => (found ? { stored: { job: found.job } } : undefined)) : undefined);
      if (existing) {
        if (existing.stored.job.docker_image !== submission.docker_image || JSON.stringify(existing.stored.job.command) !== JSON.stringify(submission.command)) {
          throw new JobsError(409, `job ${id} already exists with a different image or command`);
        }
        return { job: existing.stored.job, created: false };
      }
      const redundancy = submission.redundancy ?? 3;
      const job: Job = {
        id,
        name: submission.name,
        description: submission.description ?? null,
        docker_image: submission.docker_image,
        command: [...submission.command],
        environment: { ...submission.environment },
        input_data: submission.input_data ?? null,
        required_cpu: submission.required_cpu ?? 1,
        required_memory: submission.required_memory ?? 0.5,
        required_gpu: submission.required_gpu ?? false,
        redundancy,
        consensus: submission.consensus ?? Math.floor(redundancy / 2) + 1,
        max_executions: submission.max_executions ?? Math.min(2 * redundancy, this.config.maxExecutionsCap),
        timeout_seconds: submission.timeout_seconds ?? this.config.defaultTimeoutSeconds,
        network: submission.network ?? false,
        status: 'pending',
        submitted_by: submission.submitted_by ?? null,
        submitted_at: new Date(this.clock.now()).toISOString(),
        started_at: null,
        completed_at: null,
        result: null,
        result_encoding: null,
        result_hash: null,
        error_message: null,
        credits_required: submission.credits_required ?? 1,
      };
      const entry: JobEntry = { stored: { job, unplaced: job.redundancy, abandoned: 0, waitingSince: this.clock.now() }, executions: [] };
      this.counts.pending++;
      const placed = this.placeSlots(entry);
      await this.persist(entry, placed, []);
      this.remember(entry);
      if (entry.stored.unplaced > 0) this.waiting.add(id);
      this.observer.jobSubmitted?.(entry.stored.job);
      this.deliver(entry, placed);
      return { job: entry.stored.job, created: true };
    });
  }

  private submissionProblem(s: JobSubmission): string | undefined {
    if (!s.docker_image.trim()) return 'docker_image must name an image';
    if (s.command.length === 0) return 'command must have at least one element';
    for (const key of Object.keys(s.environment ?? {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return `environment variable name "${key}" is not valid: use letters, digits and _, not starting with a digit`;
    }
    const redundancy = s.redundancy ?? 3;
    const consensus = s.consensus ?? Math.floor(redundancy / 2) + 1;
    const max = s.max_executions ?? Math.min(2 * redundancy, this.config.maxExecutionsCap);
    if (max > this.config.maxExecutionsCap) return `max_executions ${max} is above this coordinator's cap of ${this.config.maxExecutionsCap}`;
    const rules = rulesProblem({ redundancy, consensus, max_executions: max }, this.config.maxRedundancy);
    if (rules) return rules;
    for (const [field, value] of [['required_cpu', s.required_cpu], ['required_memory', s.required_memory], ['credits_required', s.credits_required]] as const) {
      if (value !== undefined && !(value >= 0)) return `${field} must not be negative, got ${value}`;
    }
    if (s.required_cpu === 0) return 'required_cpu must be more than 0';
    if (s.required_memory === 0) return 'required_memory must be more than 0 GB';
    const timeout = s.timeout_seconds;
    if (timeout !== undefined && (!(timeout > 0) || timeout > this.config.maxTimeoutSeconds)) return `timeout_seconds must be between 1 and ${this.config.maxTimeoutSeconds}, got ${timeout}`;
    return undefined;
  }

  // ---------------------------------------------------------------- workers

  async register(registration: WorkerRegistration, presented: string | undefined): Promise<{ worker: WorkerRecord; credential: string; created: boolean }> {
    if (!(registration.cpu_cores > 0)) throw new JobsError(400, `cpu_cores must be more than 0, got ${registration.cpu_cores}`);
    if (!(registration.memory_gb > 0)) throw new JobsError(400, `memory_gb must be more than 0, got ${registration.memory_gb}`);
    return this.serial(async () => {
      const now = new Date(this.clock.now()).toISOString();
      const existing = registration.id ? this.workers.get(registration.id) : undefined;
      const credential = `arcw_${randomBytes(24).toString('base64url')}`;
      let worker: WorkerRecord;
      if (existing) {
        // Re-registration keeps reputation and credits, so it must prove it is the same worker.
        if (presented === undefined) throw new JobsError(401, `node ${existing.id} is already registered; present its credential (Authorization: Bearer …) to register again`);
        if (!this.credentialMatches(existing, presented)) throw new JobsError(403, `the credential presented does not belong to node ${existing.id}`);
        worker = {
          ...existing,
          name: registration.name,
          region: registration.region ?? existing.region,
          cpu_cores: registration.cpu_cores,
          memory_gb: registration.memory_gb,
          gpu_enabled: registration.gpu_enabled ?? false,
          gpu_model: registration.gpu_model ?? null,
          last_heartbeat: now,
          credential_hash: sha256(credential),
        };
      } else {
        worker = {
          id: registration.id ?? newId(),
          name: registration.name,
          region: registration.region ?? null,
          cpu_cores: registration.cpu_cores,
          memory_gb: registration.memory_gb,
          gpu_enabled: registration.gpu_enabled ?? false,
          gpu_model: registration.gpu_model ?? null,
          status: 'online',
          reputation_score: REPUTATION.start,
          total_jobs_run: 0,
          successful_jobs_run: 0,
          failed_jobs: 0,
          credits_earned: 0,
          last_heartbeat: now,
          registered_at: now,
          current_job_id: null,
          cpu_usage: 0,
          memory_usage: 0,
          credential_hash: sha256(credential),
        };
      }
      if (worker.status === 'offline') worker = { ...worker, status: 'online' };
      await this.documents.put(WORKERS_COLLECTION, worker.id, worker);
      this.workers.set(worker.id, worker);
      this.refreshWorkerStatus(worker.id);
      this.observer.workerChanged?.(worker);
      // A restarted worker lost what it was running: offer its executions again (it dedupes by id).
      this.offerAllTo(worker.id);
      await this.placeWaiting();
      return { worker: this.workers.get(worker.id)!, credential, created: !existing };
    });
  }

  async heartbeat(nodeId: string, credential: string | undefined, beat: Heartbeat): Promise<WorkerRecord> {
    return this.serial(async () => {
      const worker = this.authenticate(nodeId, credential);
      const wasOffline = worker.status === 'offline';
      const updated: WorkerRecord = {
        ...worker,
        status: wasOffline ? 'online' : worker.status,
        last_heartbeat: new Date(this.clock.now()).toISOString(),
        cpu_usage: clamp01(beat.cpu_usage ?? worker.cpu_usage),
        memory_usage: clamp01(beat.memory_usage ?? worker.memory_usage),
      };
      await this.documents.put(WORKERS_COLLECTION, updated.id, updated);
      this.workers.set(updated.id, updated);
      this.refreshWorkerStatus(updated.id);
      if (wasOffline) {
        this.logger.info({ node: nodeId }, 'worker is back online');
        await this.placeWaiting();
      }
      return this.workers.get(updated.id)!;
    });
  }

  /** A worker's push session opened: send it everything it should be running. */
  workerConnected(nodeId: string): void {
    void this.serial(async () => {
      this.offerAllTo(nodeId);
      await this.placeWaiting();
    }).catch((error: unknown) => this.logger.error({ err: errorMessage(error), node: nodeId }, 'could not offer work to a connected worker'));
  }

  /** Checks a worker's credential; throws the 401/403/404 the API answers with. */
  authenticate(nodeId: string, credential: string | undefined): WorkerRecord {
    const worker = this.workers.get(nodeId);
    if (credential === undefined) throw new JobsError(401, 'missing worker credential: send "Authorization: Bearer <credential>" as returned by POST /api/v1/nodes/register');
    if (!worker) throw new JobsError(404, `node ${nodeId} is not registered as a worker`);
    if (!this.credentialMatches(worker, credential)) throw new JobsError(403, `the credential presented does not belong to node ${nodeId}`);
    return worker;
  }

  private credentialMatches(worker: WorkerRecord, credential: string): boolean {
    const expected = Buffer.from(worker.credential_hash, 'hex');
    const actual = Buffer.from(sha256(credential), 'hex');
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }

  // ---------------------------------------------------------------- results

  async submitResult(nodeId: string, credential: string | undefined, result: WorkerResult): Promise<ResultOutcome> {
    return this.serial(async () => {
      this.authenticate(nodeId, credential);
      let entry = this.entryOfExecution(result.execution_id);
      if (!entry) {
        // Possibly a job trimmed from memory: load it so a late result is still scored.
        const stored = await this.documents.get<JobExecution>(EXECUTIONS_COLLECTION, result.execution_id);
        if (stored?.body) {
          const found = await this.findJob(stored.body.job_id);
          if (found) {
            entry = { stored: { job: found.job, unplaced: 0, abandoned: 0, waitingSince: null }, executions: [...found.executions] };
          }
        }
      }
      if (!entry) throw new JobsError(404, `execution ${result.execution_id} is not known`);
      const index = entry.executions.findIndex((e) => e.id === result.execution_id);
      const execution = entry.executions[index]!;
      if (execution.node_id !== nodeId) throw new JobsError(403, `execution ${execution.id} is assigned to node ${execution.node_id}, not to node ${nodeId}`);
      const bytes = decodeResult(result.result, result.result_encoding);
      if (bytes.length > this.config.maxResultBytes) throw new JobsError(413, `result of ${bytes.length} bytes is over the limit of ${this.config.maxResultBytes}`);
      if (execution.reported_at !== null) {
        return { kind: 'duplicate', execution, job: entry.stored.job };
      }
      const late = !ACTIVE_EXECUTION_STATUSES.has(execution.status) || FINAL_JOB_STATUSES.has(entry.stored.job.status);
      const hash = result.status === 'completed' ? sha256(bytes) : null;
      const encoding: ResultEncoding = result.result_encoding ?? 'utf8';
      const status: ExecutionStatus = result.status === 'completed' ? 'completed' : result.status;
      const updated: JobExecution = {
        ...execution,
        status,
        started_at: execution.started_at ?? new Date(this.clock.now()).toISOString(),
        completed_at: new Date(this.clock.now()).toISOString(),
        reported_at: new Date(this.clock.now()).toISOString(),
        result: result.result ?? null,
        result_encoding: result.result === undefined ? null : encoding,
        result_hash: hash,
        claimed_hash: result.result_hash ?? null,
        exit_code: result.exit_code ?? null,
        duration_ms: result.duration_ms ?? null,
        error_message: result.error_message ?? (status === 'completed' ? null : `execution ${status.replace('_', ' ')}`),
        logs: result.logs ?? null,
      };
      entry.executions[index] = updated;
      const wasActive = ACTIVE_EXECUTION_STATUSES.has(execution.status);
      const workerDelta: WorkerDelta = { total: wasActive ? 1 : 0, failed: wasActive && status !== 'completed' ? 1 : 0 };
      const changedWorkers = new Map<string, WorkerRecord>();
      this.release(updated);
      if (FINAL_JOB_STATUSES.has(entry.stored.job.status)) {
        // A late result for a decided job: judged against the consensus, so a slow honest worker still earns and a slow liar still pays.
        const verdict = hash === null ? null : judgeLate(entry.stored.job.result_hash, hash);
        entry.executions[index] = { ...updated, verdict };
        if (!wasActive) workerDelta.total = 1;
        this.applyWorker(changedWorkers, nodeId, workerDelta, verdict, entry.stored.job.credits_required);
        await this.persist(entry, [entry.executions[index]], [...changedWorkers.values()], false);
        this.executionDone(entry.executions[index], entry.stored.job, changedWorkers);
        return { kind: 'recorded', execution: entry.executions[index], job: entry.stored.job, late: true };
      }
      this.applyWorker(changedWorkers, nodeId, workerDelta, null, 0);
      const changed = [updated];
      const decided = this.decide(entry, changed, changedWorkers);
      await this.persist(entry, changed, [...changedWorkers.values()]);
      this.executionDone(entry.executions[index]!, entry.stored.job, changedWorkers);
      this.afterDecision(entry, decided);
      return { kind: 'recorded', execution: entry.executions[index]!, job: entry.stored.job, late };
    });
  }

  // ---------------------------------------------------------------- deciding

  /**
   * Applies the verifier's decision to the entry (in memory); returns what happened so the caller
   * can persist first and notify after. `changed` collects executions to write.
   */
  private decide(
    entry: JobEntry,
    changed: JobExecution[],
    workers: Map<string, WorkerRecord>,
    starvedReason?: string,
  ): { placed: JobExecution[]; superseded: JobExecution[]; outcome?: 'reached' | 'unreachable' } {
    const { job } = entry.stored;
    let decision = tally(job, entry.executions, entry.stored);
    // Wanted executions just found no worker in time: asking for more would only wait again.
    if (decision.kind === 'extend' && starvedReason !== undefined) decision = { kind: 'unreachable', reason: `consensus ${job.consensus} of ${job.redundancy} is out of reach: ${starvedReason}` };
    const now = new Date(this.clock.now()).toISOString();
    if (decision.kind === 'consensus') {
      const agreeing = new Set(decision.agreeing);
      const disagreeing = new Set(decision.disagreeing);
      const superseded: JobExecution[] = [];
      let winner: JobExecution | undefined;
      entry.executions = entry.executions.map((execution) => {
        if (agreeing.has(execution.id)) {
          winner ??= execution;
          if (execution.verdict !== 'agree') {
            this.applyWorker(workers, execution.node_id, { total: 0, failed: 0 }, 'agree', job.credits_required);
            return this.track(changed, { ...execution, verdict: 'agree' });
          }
        } else if (disagreeing.has(execution.id) && execution.verdict !== 'disagree') {
          this.applyWorker(workers, execution.node_id, { total: 0, failed: 1 }, 'disagree', 0);
          return this.track(changed, { ...execution, verdict: 'disagree' });
        } else if (ACTIVE_EXECUTION_STATUSES.has(execution.status)) {
          const cancelled = this.track(changed, { ...execution, status: 'cancelled' as const, completed_at: now, error_message: 'superseded: consensus was reached without it' });
          this.release(cancelled);
          superseded.push(cancelled);
          return cancelled;
        }
        return execution;
      });
      this.finish(entry, { status: 'completed', completed_at: now, result: winner?.result ?? null, result_encoding: winner?.result_encoding ?? null, result_hash: decision.hash, error_message: null });
      return { placed: [], superseded, outcome: 'reached' };
    }
    if (decision.kind === 'unreachable') {
      const superseded: JobExecution[] = [];
      entry.executions = entry.executions.map((execution) => {
        if (!ACTIVE_EXECUTION_STATUSES.has(execution.status)) return execution;
        const cancelled = this.track(changed, { ...execution, status: 'cancelled' as const, completed_at: now, error_message: 'superseded: the job failed' });
        this.release(cancelled);
        superseded.push(cancelled);
        return cancelled;
      });
      this.finish(entry, { status: 'failed', completed_at: now, error_message: decision.reason });
      return { placed: [], superseded, outcome: 'unreachable' };
    }
    if (decision.kind === 'extend') {
      this.logger.info({ job: job.id, extra: decision.extra, reason: decision.reason }, 'scheduling extra executions');
      entry.stored = { ...entry.stored, unplaced: entry.stored.unplaced + decision.extra, waitingSince: entry.stored.waitingSince ?? this.clock.now() };
    }
    const placed = this.placeSlots(entry);
    for (const execution of placed) changed.push(execution);
    return { placed, superseded: [] };
  }

  private afterDecision(entry: JobEntry, decided: { placed: JobExecution[]; superseded: JobExecution[]; outcome?: 'reached' | 'unreachable' }): void {
    for (const execution of decided.superseded) this.cancelLater(execution);
    if (entry.stored.unplaced > 0) this.waiting.add(entry.stored.job.id);
    else this.waiting.delete(entry.stored.job.id);
    this.deliver(entry, decided.placed);
    if (decided.outcome) {
      this.observer.consensus?.(decided.outcome, entry.stored.job);
      this.observer.jobFinished?.(entry.stored.job);
      void this.placeWaitingSoon();
    }
  }

  private cancelLater(execution: JobExecution): void {
    const cancel = (): void => {
      const current = this.entryOfExecution(execution.id)?.executions.find((e) => e.id === execution.id);
      if (current && current.reported_at === null) this.channel.cancel(execution.node_id, execution.id, execution.error_message ?? 'superseded');
    };
    if (this.config.cancelGraceMs <= 0) return cancel();
    setTimeout(cancel, this.config.cancelGraceMs).unref();
  }

  private track(changed: JobExecution[], execution: JobExecution): JobExecution {
    const at = changed.findIndex((e) => e.id === execution.id);
    if (at >= 0) changed[at] = execution;
    else changed.push(execution);
    return execution;
  }

  private finish(entry: JobEntry, fields: Partial<Job> & { status: 'completed' | 'failed' }): void {
    const before = entry.stored.job.status;
    entry.stored = { ...entry.stored, job: { ...entry.stored.job, ...fields }, unplaced: 0, waitingSince: null };
    this.counts[before]--;
    this.counts[fields.status]++;
    this.finished.push(entry.stored.job.id);
    this.waiting.delete(entry.stored.job.id);
    while (this.finished.length > this.config.recentJobs) {
      const old = this.finished.shift()!;
      const oldEntry = this.jobs.get(old);
      if (oldEntry) for (const execution of oldEntry.executions) this.executionJob.delete(execution.id);
      this.jobs.delete(old);
    }
  }

  /** Places as many of the entry's unplaced slots as there are eligible workers (in memory only). */
  private placeSlots(entry: JobEntry): JobExecution[] {
    const { job } = entry.stored;
    const executions: JobExecution[] = [];
    if (entry.stored.unplaced === 0) return executions;
    const excluded = new Set(entry.executions.map((e) => e.node_id));
    const ask: JobAsk = { jobId: job.id, cpu: job.required_cpu, memoryGb: job.required_memory, gpu: job.required_gpu, excluded };
    const now = this.clock.now();
    const context = { now, isReserved: () => false };
    // One pass for every slot: each chosen worker is excluded from the job's later slots, so choosing it changes no other candidate.
    const { placed, shortfall } = placeMany(this.profile, this.candidates(), ask, context, entry.stored.unplaced, `an execution of job ${job.id}`);
    for (const { node } of placed) {
      const execution: JobExecution = {
        id: newId(),
        job_id: job.id,
        node_id: node.id,
        status: 'scheduled',
        attempt: entry.executions.length + 1,
        scheduled_at: new Date(now).toISOString(),
        started_at: null,
        completed_at: null,
        reported_at: null,
        result: null,
        result_encoding: null,
        result_hash: null,
        claimed_hash: null,
        exit_code: null,
        duration_ms: null,
        error_message: null,
        logs: null,
        verdict: null,
      };
      entry.executions.push(execution);
      this.executionJob.set(execution.id, job.id);
      this.allocate(execution, job);
      executions.push(execution);
      entry.stored = { ...entry.stored, unplaced: entry.stored.unplaced - 1 };
      this.refreshWorkerStatus(node.id);
    }
    const lastReason = shortfall?.reason;
    if (entry.stored.unplaced === 0) entry.stored = { ...entry.stored, waitingSince: null };
    else if (lastReason) this.logger.debug({ job: job.id, unplaced: entry.stored.unplaced, reason: lastReason }, 'executions wait for a worker');
    if (executions.length > 0 && job.status === 'pending') {
      this.counts.pending--;
      this.counts.running++;
      entry.stored = { ...entry.stored, job: { ...job, status: 'running', started_at: new Date(now).toISOString() } };
    }
    // Worker status and current job follow from the executions (rebuilt on start), so placing writes no worker rows.
    return executions;
  }

  private *candidates(): Generator<WorkerCandidate> {
    for (const worker of this.workers.values()) {
      const allocation = this.allocations.get(worker.id);
      yield {
        id: worker.id,
        online: worker.status !== 'offline',
        reputation: worker.reputation_score,
        cpuCores: worker.cpu_cores,
        memoryGb: worker.memory_gb,
        gpu: worker.gpu_enabled,
        allocatedCpu: allocation?.cpu ?? 0,
        allocatedMemoryGb: allocation?.memoryGb ?? 0,
        cpuUsage: worker.cpu_usage,
      };
    }
  }

  /** Retries placement for waiting jobs, oldest first; persists what it placed. */
  private async placeWaiting(): Promise<void> {
    for (const jobId of [...this.waiting]) {
      const entry = this.jobs.get(jobId);
      if (!entry || entry.stored.unplaced === 0 || FINAL_JOB_STATUSES.has(entry.stored.job.status)) {
        this.waiting.delete(jobId);
        continue;
      }
      const before = entry.stored.job.status;
      const placed = this.placeSlots(entry);
      if (placed.length === 0) continue;
      await this.persist(entry, placed, []);
      if (before !== entry.stored.job.status) this.logger.debug({ job: jobId }, 'job started');
      if (entry.stored.unplaced === 0) this.waiting.delete(jobId);
      this.deliver(entry, placed);
    }
  }

  private placeWaitingSoon(): Promise<void> {
    if (this.waiting.size === 0) return Promise.resolve();
    return this.serial(() => this.placeWaiting()).catch((error: unknown) => this.logger.error({ err: errorMessage(error) }, 'placing waiting jobs failed'));
  }

  // ---------------------------------------------------------------- sweep

  /** Stale workers go offline (−20, their executions fail); overdue executions time out; starved slots are abandoned. */
  private async sweep(): Promise<void> {
    const now = this.clock.now();
    const dirty = new Map<string, { entry: JobEntry; changed: JobExecution[] }>();
    const workers = new Map<string, WorkerRecord>();
    const starved = new Map<string, string>();
    const fail = (entry: JobEntry, index: number, status: 'failed' | 'timed_out', reason: string): void => {
      const execution = entry.executions[index]!;
      const updated: JobExecution = { ...execution, status, completed_at: new Date(now).toISOString(), error_message: reason };
      entry.executions[index] = updated;
      this.release(updated);
      this.applyWorker(workers, execution.node_id, { total: 1, failed: 1 }, null, 0);
      const item = dirty.get(entry.stored.job.id) ?? { entry, changed: [] };
      this.track(item.changed, updated);
      dirty.set(entry.stored.job.id, item);
    };
    for (const worker of [...this.workers.values()]) {
      const heardFrom = Math.max(Date.parse(worker.last_heartbeat), this.startedAt);
      if (worker.status === 'offline' || now - heardFrom <= this.config.staleAfterMs) continue;
      const silentS = Math.round((now - heardFrom) / 1000);
      this.logger.warn({ node: worker.id, silentS }, 'worker went silent: offline, reputation −20');
      const offline: WorkerRecord = { ...(workers.get(worker.id) ?? worker), status: 'offline', reputation_score: Math.max(REPUTATION.floor, worker.reputation_score + REPUTATION.offline) };
      this.workers.set(worker.id, offline);
      workers.set(worker.id, offline);
      for (const executionId of [...(this.allocations.get(worker.id)?.executions ?? [])]) {
        const entry = this.entryOfExecution(executionId);
        if (!entry) continue;
        fail(entry, entry.executions.findIndex((e) => e.id === executionId), 'failed', `worker ${worker.name} went silent for ${silentS} s and was marked offline`);
      }
    }
    for (const jobId of this.activeJobIds()) {
      const entry = this.jobs.get(jobId)!;
      const limitMs = entry.stored.job.timeout_seconds * 1000 + this.config.executionGraceMs;
      entry.executions.forEach((execution, index) => {
        if (!ACTIVE_EXECUTION_STATUSES.has(execution.status)) return;
        const since = Date.parse(execution.started_at ?? execution.scheduled_at);
        if (now - since > limitMs) fail(entry, index, 'timed_out', `no result within ${entry.stored.job.timeout_seconds} s plus ${this.config.executionGraceMs / 1000} s grace`);
      });
      if (entry.stored.unplaced > 0 && entry.stored.waitingSince !== null && now - entry.stored.waitingSince > this.config.schedulingTimeoutMs) {
        const reason = place(this.profile, this.candidates(), { jobId, cpu: entry.stored.job.required_cpu, memoryGb: entry.stored.job.required_memory, gpu: entry.stored.job.required_gpu, excluded: new Set(entry.executions.map((e) => e.node_id)) }, { now, isReserved: () => false }, `an execution of job ${jobId}`);
        const why = `${entry.stored.unplaced} wanted ${entry.stored.unplaced === 1 ? 'execution' : 'executions'} found no worker within ${Math.round(this.config.schedulingTimeoutMs / 1000)} s (${reason.kind === 'none' ? reason.reason : 'workers were busy'})`;
        this.logger.warn({ job: jobId, unplaced: entry.stored.unplaced }, why);
        entry.stored = { ...entry.stored, abandoned: entry.stored.abandoned + entry.stored.unplaced, unplaced: 0, waitingSince: null };
        this.waiting.delete(jobId);
        starved.set(jobId, why);
        if (!dirty.has(jobId)) dirty.set(jobId, { entry, changed: [] });
      }
    }
    for (const { entry, changed } of dirty.values()) {
      const decided = this.decide(entry, changed, workers, starved.get(entry.stored.job.id));
      await this.persist(entry, changed, [...workers.values()]);
      workers.clear();
      for (const execution of changed) if (!ACTIVE_EXECUTION_STATUSES.has(execution.status)) this.observer.executionFinished?.(execution, entry.stored.job);
      this.afterDecision(entry, decided);
    }
    if (workers.size > 0) {
      await this.documents.putMany([...workers.values()].map((w) => ({ collection: WORKERS_COLLECTION, id: w.id, body: w })));
      for (const worker of workers.values()) this.observer.workerChanged?.(worker);
    }
  }

  private *activeJobIds(): Generator<string> {
    for (const [id, entry] of this.jobs) if (!FINAL_JOB_STATUSES.has(entry.stored.job.status)) yield id;
  }

  // ---------------------------------------------------------------- bookkeeping

  private remember(entry: JobEntry): void {
    this.jobs.set(entry.stored.job.id, entry);
    for (const execution of entry.executions) this.executionJob.set(execution.id, entry.stored.job.id);
  }

  private entryOfExecution(executionId: string): JobEntry | undefined {
    const jobId = this.executionJob.get(executionId);
    return jobId === undefined ? undefined : this.jobs.get(jobId);
  }

  private allocate(execution: JobExecution, job: Job): void {
    const allocation = this.allocations.get(execution.node_id) ?? { cpu: 0, memoryGb: 0, executions: new Set<string>() };
    if (allocation.executions.has(execution.id)) return;
    allocation.cpu += job.required_cpu;
    allocation.memoryGb += job.required_memory;
    allocation.executions.add(execution.id);
    this.allocations.set(execution.node_id, allocation);
  }

  private release(execution: JobExecution): void {
    const allocation = this.allocations.get(execution.node_id);
    if (!allocation?.executions.delete(execution.id)) return;
    const job = this.jobs.get(execution.job_id)?.stored.job;
    if (job) {
      allocation.cpu = Math.max(0, allocation.cpu - job.required_cpu);
      allocation.memoryGb = Math.max(0, allocation.memoryGb - job.required_memory);
    }
    if (allocation.executions.size === 0) {
      allocation.cpu = 0;
      allocation.memoryGb = 0;
    }
    this.refreshWorkerStatus(execution.node_id);
  }

  /** Busy while it holds executions; offline stays offline until it reports. */
  private refreshWorkerStatus(nodeId: string): WorkerRecord | undefined {
    const worker = this.workers.get(nodeId);
    if (!worker) return undefined;
    const allocation = this.allocations.get(nodeId);
    const busy = (allocation?.executions.size ?? 0) > 0;
    let current: string | null = null;
    if (allocation) for (const id of allocation.executions) current = this.executionJob.get(id) ?? current;
    const status = worker.status === 'offline' ? 'offline' : busy ? 'busy' : 'online';
    if (status === worker.status && current === worker.current_job_id) return worker;
    const updated = { ...worker, status, current_job_id: current } satisfies WorkerRecord;
    this.workers.set(nodeId, updated);
    return updated;
  }

  /** Reputation, counts and credits; the result lands in `workers` for persisting. */
  private applyWorker(workers: Map<string, WorkerRecord>, nodeId: string, delta: WorkerDelta, verdict: 'agree' | 'disagree' | null, credits: number): void {
    const worker = workers.get(nodeId) ?? this.workers.get(nodeId);
    if (!worker) return;
    const reputation = verdict === 'agree' ? REPUTATION.agree : verdict === 'disagree' ? REPUTATION.disagree : 0;
    const updated: WorkerRecord = {
      ...worker,
      reputation_score: Math.max(REPUTATION.floor, worker.reputation_score + reputation),
      total_jobs_run: worker.total_jobs_run + delta.total,
      failed_jobs: worker.failed_jobs + delta.failed,
      successful_jobs_run: worker.successful_jobs_run + (verdict === 'agree' ? 1 : 0),
      credits_earned: worker.credits_earned + (verdict === 'agree' ? credits : 0),
    };
    workers.set(nodeId, updated);
    this.workers.set(nodeId, updated);
  }

  private async persist(entry: JobEntry, executions: readonly JobExecution[], workers: readonly WorkerRecord[], jobChanged = true): Promise<void> {
    const puts: DocumentPut<unknown>[] = jobChanged ? [{ collection: JOBS_COLLECTION, id: entry.stored.job.id, body: entry.stored }] : [];
    for (const execution of executions) puts.push({ collection: EXECUTIONS_COLLECTION, id: execution.id, body: execution });
    for (const worker of workers) puts.push({ collection: WORKERS_COLLECTION, id: worker.id, body: this.workers.get(worker.id) ?? worker });
    await this.documents.putMany(puts);
  }

  private executionDone(execution: JobExecution, job: Job, workers: Map<string, WorkerRecord>): void {
    this.observer.executionFinished?.(execution, job);
    for (const worker of workers.values()) this.observer.workerChanged?.(worker);
  }

  private deliver(entry: JobEntry, executions: readonly JobExecution[]): void {
    for (const execution of executions) this.channel.offer(execution.node_id, assignmentOf(entry.stored.job, execution));
  }

  private offerAllTo(nodeId: string): void {
    const allocation = this.allocations.get(nodeId);
    if (!allocation) return;
    for (const executionId of [...allocation.executions].sort()) {
      const entry = this.entryOfExecution(executionId);
      const execution = entry?.executions.find((e) => e.id === executionId);
      if (entry && execution) this.channel.offer(nodeId, assignmentOf(entry.stored.job, execution));
    }
  }

  /** Marks an execution as received by its worker (push sessions acknowledge). */
  async acknowledge(nodeId: string, executionId: string): Promise<void> {
    await this.serial(async () => {
      const entry = this.entryOfExecution(executionId);
      const index = entry?.executions.findIndex((e) => e.id === executionId) ?? -1;
      if (!entry || index < 0) return;
      const execution = entry.executions[index]!;
      if (execution.node_id !== nodeId || execution.status !== 'scheduled') return;
      const updated: JobExecution = { ...execution, status: 'running', started_at: new Date(this.clock.now()).toISOString() };
      entry.executions[index] = updated;
      await this.documents.put(EXECUTIONS_COLLECTION, updated.id, updated);
    });
  }
}

interface WorkerDelta {
  total: number;
  failed: number;
}

const clamp01 = (value: number): number => (Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0);

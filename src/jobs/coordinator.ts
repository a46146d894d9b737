/**
 * The verified-jobs coordinator (seed 004's control plane, made sound), as a shell around the pure
 * planner: it takes calls in one at a time, asks `planJob` (`job-plan.ts`) what a job's state and
 * the new facts imply, persists the plan (one store transaction, fenced), then applies it to its
 * in-memory view and only then tells workers and observers. The rules live elsewhere: submission
 * (`submission.ts`), worker records (`workers.ts`), credentials (`credentials.ts`, checked at the
 * API edge), verdicts (`verification.ts`), placement (`profile.ts`).
 *
 * Replicas: where several compete (PostgreSQL), one holds the `coordinator` lease and every write
 * carries its fencing token, so a deposed leader's writes are refused by the store; standbys answer
 * NOT_LEADER to writes, keep a warm view for reads, and on taking the lease reload the view and
 * carry on (ADR 0011). Embedded mode is the only writer (its data-directory lock guarantees it).
 */
import type { Clock } from '../core/clock.ts';
import { errorMessage, StaleFencingTokenError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logging.ts';
import { LeaseLeadership, SOLE_WRITER, type Leadership } from '../leases/leadership.ts';
import type { DocumentPut, DocumentStore, LeaseStore } from '../store/ports.ts';
import { ACTIVE_EXECUTION_STATUSES, FINAL_JOB_STATUSES, REPUTATION, assignmentOf, type ExecutionAssignment, type Job, type JobExecution, type JobSignature, type JobStatus, type WorkerRecord, type WorkerResult } from './model.ts';
import { jobProfile, DEFAULT_JOB_PROFILE, type JobProfileConfig } from './profile.ts';
import type { Caller, CoordinatorObserver, JobCounts, JobsAudit, JobsAuditEntry, WorkerChannel } from './ports.ts';
import { JobsError } from './errors.ts';
import { defaultedSignedFields, newJob, resubmissionConflict, submissionProblem, type JobSubmission, type SubmissionLimits } from './submission.ts';
import { checkSignature, NO_SIGNING, signedSpecOf, type SigningPolicy } from './signing.ts';
import { applyWorkerChange, heartbeatOf, registeredWorker, registrationProblem, silentWorkers, wentOffline, WorkerRegistry, type Heartbeat, type WorkerRegistration } from './workers.ts';
import { hashCredential, issueCredential, type AuthenticatedWorker } from './credentials.ts';
import { planJob, type JobPlan, type JobState, type PlanRules, type StoredJob } from './job-plan.ts';
import { reportFrom, type Report } from './reports.ts';
import { JobBook } from './job-book.ts';

export type { JobSubmission } from './submission.ts';
export type { Heartbeat, WorkerRegistration } from './workers.ts';

export const JOBS_COLLECTION = 'jobs';
export const EXECUTIONS_COLLECTION = 'job_executions';
export const WORKERS_COLLECTION = 'workers';
/** The lease whose holder is the one coordinator that writes. */
export const COORDINATOR_LEASE = 'coordinator';

export interface CoordinatorConfig extends SubmissionLimits {
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
  /** Finished jobs kept in memory for listing; older ones are read from the store. */
  readonly recentJobs: number;
  readonly maxResultBytes: number;
  readonly profile: JobProfileConfig;
  /** Where replicas compete: the lease's time to live; a dead leader's duties move within about this long plus a third. */
  readonly leaseTtlMs: number;
  /** Where replicas compete: how often a standby reloads its view from the store. */
  readonly standbyRefreshMs: number;
  /** Trusted submitter keys and whether unsigned jobs are refused (settings `jobs.signers`, `jobs.require-signatures`). */
  readonly signing: SigningPolicy;
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
  leaseTtlMs: 3_000,
  standbyRefreshMs: 5_000,
  signing: NO_SIGNING,
};

export type ResultOutcome =
  | { readonly kind: 'recorded'; readonly execution: JobExecution; readonly job: Job; readonly late: boolean }
  | { readonly kind: 'duplicate'; readonly execution: JobExecution; readonly job: Job };

export interface CoordinatorRole {
  readonly instance: string;
  readonly leading: boolean;
  /** The fencing token this replica's writes carry; null where nothing competes or while standing by. */
  readonly fencingToken: number | null;
  /** Since when this replica leads (ISO-8601), or null. */
  readonly since: string | null;
}

export interface CoordinatorOptions {
  readonly documents: DocumentStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly channel: WorkerChannel;
  readonly config?: Partial<CoordinatorConfig>;
  readonly observer?: CoordinatorObserver;
  /** Where mutations are recorded: each record goes in the same write as its change. None: nothing is recorded. */
  readonly audit?: JobsAudit;
  /** Where replicas compete for the `coordinator` lease (PostgreSQL). Without it this is the only writer. */
  readonly leases?: LeaseStore;
  /** This replica's name as lease holder. */
  readonly instanceId?: string;
  readonly newId?: () => string;
}

const stored = (state: JobState): StoredJob => ({ job: state.job, unplaced: state.unplaced, abandoned: state.abandoned, waitingSince: state.waitingSince });
/** A call made in process (a test, the bench), not through the API: there is no key to name. */
const IN_PROCESS: Caller = { actor: 'system:in-process' };
/** The coordinator's own decisions (reputation, credits, the sweep) are the system's. */
const COORDINATOR: Caller = { actor: 'system:coordinator' };

const withExecution = (state: JobState, execution: JobExecution): JobState => ({ ...state, executions: state.executions.map((e) => (e.id === execution.id ? execution : e)) });

export class Coordinator {
  private readonly documents: DocumentStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly channel: WorkerChannel;
  private readonly observer: CoordinatorObserver;
  private readonly audit: JobsAudit | undefined;
  readonly config: CoordinatorConfig;
  private readonly rules: PlanRules;
  private readonly newId: () => string;
  readonly instanceId: string;
  private readonly lease: LeaseLeadership | undefined;
  private readonly leadership: Leadership;
  private book: JobBook;
  private readonly registry = new WorkerRegistry();
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private stopping = false;
  /** Leads and has loaded the view since taking the lease: only then does it write. */
  private acting = false;
  /** Silence is counted from here at the earliest: workers must not pay for the coordinator's own downtime or a failover. */
  private leadingSince = 0;
  private lastRefresh = 0;
  private readonly listeners: ((leading: boolean) => void)[] = [];

  constructor(options: CoordinatorOptions) {
    this.documents = options.documents;
    this.clock = options.clock;
    this.logger = options.logger;
    this.channel = options.channel;
    this.observer = options.observer ?? {};
    this.audit = options.audit;
    this.config = { ...DEFAULT_COORDINATOR_CONFIG, ...options.config };
    this.rules = { executionGraceMs: this.config.executionGraceMs, schedulingTimeoutMs: this.config.schedulingTimeoutMs, profile: jobProfile(this.config.profile) };
    this.newId = options.newId ?? newId;
    this.instanceId = options.instanceId ?? `coordinator-${newId().slice(0, 8)}`;
    this.book = new JobBook(this.config.recentJobs);
    this.lease = options.leases
      ? new LeaseLeadership({
          leases: options.leases,
          name: COORDINATOR_LEASE,
          holder: this.instanceId,
          clock: this.clock,
          logger: this.logger,
          ttlMs: this.config.leaseTtlMs,
          onChange: (leading) => {
            this.serial(() => (leading ? this.takeOver() : this.stepDown('lost the coordinator lease'))).catch((error: unknown) => this.logger.error({ err: errorMessage(error) }, 'could not follow a leadership change'));
          },
        })
      : undefined;
    this.leadership = this.lease ?? SOLE_WRITER;
  }

  /** Loads the view from the store; leads at once where nothing competes, else campaigns for the lease. Resolves leading or standing by. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.serial(() => this.reload());
    if (this.lease) await this.lease.start();
    else await this.serial(() => this.takeOver());
    await this.chain;
    this.timer = setInterval(() => {
      this.serial(() => (this.acting ? this.sweep() : this.refreshIfDue())).catch((error: unknown) => this.logger.error({ err: errorMessage(error) }, 'job sweep failed; retrying next tick'));
    }, this.config.sweepIntervalMs);
    this.timer.unref();
  }

  /** Stops the sweep and, where replicas compete, hands the lease back so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.chain.catch(() => undefined);
    this.acting = false;
    await this.lease?.stop();
  }

  /** Runs mutations one at a time; a failed one does not stop the next. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }

  // ---------------------------------------------------------------- leadership

  get leading(): boolean {
    return this.acting && this.leadership.leading;
  }

  role(): CoordinatorRole {
    return {
      instance: this.instanceId,
      leading: this.leading,
      fencingToken: this.acting ? (this.leadership.fence()?.token ?? null) : null,
      since: this.acting ? new Date(this.leadingSince).toISOString() : null,
    };
  }

  /** Called with true when this replica starts leading and false when it stops (worker sessions must then move). */
  onLeadershipChange(listener: (leading: boolean) => void): void {
    this.listeners.push(listener);
  }

  /** Throws NOT_LEADER (retryable: another replica takes the call) unless this replica writes. */
  assertLeading(): void {
    if (this.leading) return;
    throw new JobsError('NOT_LEADER', `coordinator ${this.instanceId} is standing by: another replica holds the ${COORDINATOR_LEASE} lease; retry against it`, { retryable: true });
  }

  private async takeOver(): Promise<void> {
    if (this.acting || this.stopping) return;
    // After the grant nothing the previous leader sends can land, so this view is the last word.
    await this.reload();
    this.acting = true;
    this.leadingSince = this.clock.now();
    const token = this.leadership.fence()?.token;
    if (this.lease) this.logger.info({ instance: this.instanceId, token, jobs: this.book.jobCounts().total, workers: [...this.registry.all()].length }, 'coordinator leading');
    for (const listener of this.listeners) listener(true);
    await this.placeWaiting();
  }

  private async stepDown(why: string): Promise<void> {
    if (!this.acting) return;
    this.acting = false;
    this.logger.warn({ instance: this.instanceId }, `coordinator standing by: ${why}`);
    for (const listener of this.listeners) listener(false);
    if (!this.stopping) await this.reload();
  }

  /** The whole view from the store: workers, open and recent jobs, allocations. */
  private async reload(): Promise<void> {
    const workers = await this.documents.list<WorkerRecord>(WORKERS_COLLECTION);
    const executions = await this.documents.list<JobExecution>(EXECUTIONS_COLLECTION);
    const jobs = await this.documents.list<StoredJob>(JOBS_COLLECTION);
    this.registry.clear();
    for (const version of workers) if (version.body) this.registry.set(version.body);
    this.book = JobBook.from(this.config.recentJobs, jobs.flatMap((v) => (v.body ? [v.body] : [])), executions.flatMap((v) => (v.body ? [v.body] : [])));
    for (const state of this.book.open()) {
      for (const execution of state.executions) {
        if (ACTIVE_EXECUTION_STATUSES.has(execution.status)) this.registry.allocate(execution.node_id, execution.id, { jobId: state.job.id, cpu: state.job.required_cpu, memoryGb: state.job.required_memory });
      }
    }
    this.lastRefresh = this.clock.now();
  }

  private async refreshIfDue(): Promise<void> {
    if (this.clock.now() - this.lastRefresh >= this.config.standbyRefreshMs) await this.reload();
  }

  /** Every write carries the fence; a refused one means another replica leads: step down and say so. */
  private async write(puts: readonly DocumentPut<unknown>[]): Promise<void> {
    this.assertLeading();
    if (puts.length === 0) return;
    const fence = this.leadership.fence();
    try {
      await this.documents.putMany(fence ? puts.map((put) => ({ ...put, options: { ...put.options, fence } })) : puts);
    } catch (error) {
      if (!(error instanceof StaleFencingTokenError)) throw error;
      this.logger.warn({ instance: this.instanceId, token: fence?.token, err: error.message }, 'write refused by the store: another replica holds the coordinator lease; stepping down');
      this.acting = false;
      for (const listener of this.listeners) listener(false);
      this.serial(() => this.reload()).catch((reloadError: unknown) => this.logger.error({ err: errorMessage(reloadError) }, 'could not reload the view after stepping down'));
      throw new JobsError('NOT_LEADER', `coordinator ${this.instanceId} was deposed: the store refused its write (${error.message}); retry against the leader`, { retryable: true, cause: error });
    }
  }

  // ---------------------------------------------------------------- reads

  job(id: string): Job | undefined {
    return this.book.get(id)?.job;
  }

  executionsOf(jobId: string): readonly JobExecution[] {
    return this.book.get(jobId)?.executions ?? [];
  }

  async findJob(id: string): Promise<{ job: Job; executions: readonly JobExecution[] } | undefined> {
    const state = this.book.get(id);
    if (state) return { job: state.job, executions: state.executions };
    const found = await this.documents.get<StoredJob>(JOBS_COLLECTION, id);
    if (!found?.body) return undefined;
    const executions = (await this.documents.list<JobExecution>(EXECUTIONS_COLLECTION)).flatMap((v) => (v.body && v.body.job_id === id ? [v.body] : []));
    return { job: found.body.job, executions: executions.sort((a, b) => a.attempt - b.attempt) };
  }

  /** Jobs in memory (open ones and the most recent finished), newest first, with their executions. */
  listJobs(filter: { status?: JobStatus; limit: number }): { job: Job; executions: readonly JobExecution[] }[] {
    return this.book.list(filter);
  }

  jobCounts(): JobCounts {
    return this.book.jobCounts();
  }

  worker(id: string): WorkerRecord | undefined {
    return this.registry.get(id);
  }

  /** The registered worker a credential belongs to (checked again against the node a call names). */
  workerByCredential(credential: string): string | undefined {
    return this.registry.idOfCredentialHash(hashCredential(credential));
  }

  allWorkers(): IterableIterator<WorkerRecord> {
    return this.registry.all();
  }

  // ---------------------------------------------------------------- calls

  /** Validates, stores and places a job; resolves once it is durable. Re-submitting an id returns the stored job. `caller` is named in its audit record. */
  async submit(submission: JobSubmission, caller: Caller = IN_PROCESS): Promise<{ job: Job; created: boolean }> {
    const problem = submissionProblem(submission, this.config);
    if (problem) throw new JobsError('INVALID_INPUT', problem);
    const signature = this.verifiedSignature(submission);
    return this.serial(async () => {
      this.assertLeading();
      const id = submission.id ?? this.newId();
      const existing = this.book.get(id)?.job ?? (submission.id ? (await this.findJob(id))?.job : undefined);
      if (existing) {
        const conflict = resubmissionConflict(existing, submission);
        if (conflict) throw new JobsError('CONFLICT', conflict);
        return { job: existing, created: false };
      }
      const now = this.clock.now();
      const job = newJob(submission, id, now, this.config, signature);
      const plan = this.plan({ job, unplaced: job.redundancy, abandoned: 0, waitingSince: now, executions: [] });
      const record = this.audited({
        ...caller,
        action: 'job.submitted',
        target: { kind: 'job', id: job.id },
        details: { name: job.name, docker_image: job.docker_image, redundancy: job.redundancy, consensus: job.consensus, credits_required: job.credits_required, submitted_by: job.submitted_by, signed_by: job.signed_by ?? null },
      });
      await this.apply(plan, { created: true, records: record });
      this.observer.jobSubmitted?.(plan.next.job);
      return { job: plan.next.job, created: true };
    });
  }
  /**
   * The submission's signature once it verifies over the job as it would be stored (defaults filled
   * in), or null for an unsigned job where signatures are not required; else the refusal: 400 for
   * something that is not a signature, 403 for a signer not trusted or a job that is not what it signed.
   */
  private verifiedSignature(submission: JobSubmission): JobSignature | null {
    const { signing } = this.config;
    if (!submission.signature) {
      if (!signing.required) return null;
      throw new JobsError('FORBIDDEN', 'the job is not signed, and this coordinator requires signed jobs: sign it with its submitter\'s key (arcnet submit --sign-key <private.pem> --key-id <id>)');
    }
    // submissionProblem has made sure a signed submission carries its id.
    const check = checkSignature(signedSpecOf(newJob(submission, submission.id!, 0, this.config)), submission.signature, signing);
    if (check.ok) return check.signature;
    if (check.kind === 'malformed') throw new JobsError('INVALID_INPUT', check.reason);
    const defaulted = check.kind === 'does-not-verify' ? defaultedSignedFields(submission) : [];
    const hint = defaulted.length > 0 ? `; this coordinator filled in its defaults for ${defaulted.join(', ')}: a signed job should state every signed field` : '';
    throw new JobsError('FORBIDDEN', `${check.reason}: refused${hint}`);
  }

  /**
   * Registers a new worker, or re-registers a known one: that takes its authenticated id
   * (`authenticateReregistration` at the API edge), since it keeps the node's reputation and credits.
   */
  /** `enrolledBy`: the enrolment token or operator key that let a new worker in (kept on its record; re-registration keeps the first). */
  async register(registration: WorkerRegistration, as?: AuthenticatedWorker, enrolledBy: string | null = null, caller: Caller = IN_PROCESS): Promise<{ worker: WorkerRecord; credential: string; created: boolean }> {
    const problem = registrationProblem(registration);
    if (problem) throw new JobsError('INVALID_INPUT', problem);
    return this.serial(async () => {
      this.assertLeading();
      const existing = registration.id ? this.registry.get(registration.id) : undefined;
      if (existing && as !== existing.id) throw new JobsError('UNAUTHENTICATED', `node ${existing.id} is already registered; present its credential (Authorization: Bearer …) to register again`);
      const credential = issueCredential();
      const worker = registeredWorker(existing, registration, registration.id ?? this.newId(), hashCredential(credential), this.clock.now(), enrolledBy);
      const record = this.audited({
        ...caller,
        action: 'worker.registered',
        target: { kind: 'worker', id: worker.id },
        details: { created: !existing, name: worker.name, region: worker.region, cpu_cores: worker.cpu_cores, memory_gb: worker.memory_gb, gpu_enabled: worker.gpu_enabled, enrolled_by: worker.enrolled_by ?? null },
      });
      await this.write([{ collection: WORKERS_COLLECTION, id: worker.id, body: worker }, ...record]);
      const registered = this.registry.set(worker);
      this.observer.workerChanged?.(registered);
      // A restarted worker lost what it was running: offer its executions again (it dedupes by id).
      this.offerAllTo(worker.id);
      await this.placeWaiting();
      return { worker: this.registry.get(worker.id)!, credential, created: !existing };
    });
  }

  async heartbeat(nodeId: AuthenticatedWorker, beat: Heartbeat): Promise<WorkerRecord> {
    return this.serial(async () => {
      this.assertLeading();
      const worker = this.known(nodeId);
      const updated = heartbeatOf(worker, beat, this.clock.now());
      // Only a status change is a mutation worth a record; a routine heartbeat writes none.
      const record =
        worker.status !== updated.status
          ? this.audited({ actor: `worker:${nodeId}`, actorRole: 'node', action: 'worker.status', target: { kind: 'worker', id: nodeId }, details: { from: worker.status, to: updated.status, reason: 'heartbeat' } })
          : [];
      await this.write([{ collection: WORKERS_COLLECTION, id: updated.id, body: updated }, ...record]);
      this.registry.set(updated);
      if (worker.status === 'offline') {
        this.logger.info({ node: nodeId }, 'worker is back online');
        await this.placeWaiting();
      }
      return this.registry.get(nodeId)!;
    });
  }

  /** Executions the worker should be running now, for polling workers and for reconnects; scheduled ones become running. */
  async pendingFor(nodeId: AuthenticatedWorker): Promise<ExecutionAssignment[]> {
    return this.serial(async () => {
      this.assertLeading();
      this.known(nodeId);
      const now = new Date(this.clock.now()).toISOString();
      const states = new Map<string, JobState>();
      const assignments: ExecutionAssignment[] = [];
      const puts: DocumentPut<unknown>[] = [];
      for (const executionId of this.registry.executionsOn(nodeId)) {
        const state = this.book.ofExecution(executionId);
        if (!state) continue;
        let current = states.get(state.job.id) ?? state;
        let execution = current.executions.find((e) => e.id === executionId)!;
        if (execution.status === 'scheduled') {
          execution = { ...execution, status: 'running', started_at: now };
          current = withExecution(current, execution);
          states.set(state.job.id, current);
          puts.push({ collection: EXECUTIONS_COLLECTION, id: execution.id, body: execution });
        }
        assignments.push(assignmentOf(current.job, execution));
      }
      await this.write(puts);
      for (const state of states.values()) this.book.put(state);
      return assignments;
    });
  }

  /** A worker's push session opened: send it everything it should be running. */
  workerConnected(nodeId: string): void {
    void this.serial(async () => {
      if (!this.leading) return;
      this.offerAllTo(nodeId);
      await this.placeWaiting();
    }).catch((error: unknown) => this.logger.error({ err: errorMessage(error), node: nodeId }, 'could not offer work to a connected worker'));
  }

  /** Marks an execution as received by its worker (push sessions acknowledge). */
  async acknowledge(nodeId: string, executionId: string): Promise<void> {
    await this.serial(async () => {
      if (!this.leading) return;
      const state = this.book.ofExecution(executionId);
      const execution = state?.executions.find((e) => e.id === executionId);
      if (!state || !execution || execution.node_id !== nodeId || execution.status !== 'scheduled') return;
      const updated: JobExecution = { ...execution, status: 'running', started_at: new Date(this.clock.now()).toISOString() };
      await this.write([{ collection: EXECUTIONS_COLLECTION, id: updated.id, body: updated }]);
      this.book.put(withExecution(this.book.get(state.job.id) ?? state, updated));
    });
  }

  async submitResult(nodeId: AuthenticatedWorker, result: WorkerResult): Promise<ResultOutcome> {
    return this.serial(async () => {
      this.assertLeading();
      let state = this.book.ofExecution(result.execution_id);
      let detached = false;
      if (!state) {
        // Possibly a job trimmed from memory: load it so a late result is still scored.
        const execution = await this.documents.get<JobExecution>(EXECUTIONS_COLLECTION, result.execution_id);
        const found = execution?.body ? await this.findJob(execution.body.job_id) : undefined;
        if (found) {
          state = { job: found.job, unplaced: 0, abandoned: 0, waitingSince: null, executions: found.executions };
          detached = true;
        }
      }
      const execution = state?.executions.find((e) => e.id === result.execution_id);
      if (!state || !execution) throw new JobsError('NOT_FOUND', `execution ${result.execution_id} is not known`);
      if (execution.node_id !== nodeId) throw new JobsError('FORBIDDEN', `execution ${execution.id} is assigned to node ${execution.node_id}, not to node ${nodeId}`);
      const report = reportFrom(result, this.config.maxResultBytes);
      if (execution.reported_at !== null) return { kind: 'duplicate', execution, job: state.job };
      const plan = this.plan(state, { reports: [report] });
      await this.apply(plan, { detached });
      const recorded = plan.next.executions.find((e) => e.id === execution.id)!;
      return { kind: 'recorded', execution: recorded, job: plan.next.job, late: plan.reports[0]?.kind === 'late' };
    });
  }

  // ---------------------------------------------------------------- planning and applying

  private plan(state: JobState, facts: { reports?: readonly Report[]; lost?: ReadonlyMap<string, string>; overrides?: ReadonlyMap<string, WorkerRecord> } = {}): JobPlan {
    return planJob({
      state,
      ...(facts.reports ? { reports: facts.reports } : {}),
      ...(facts.lost ? { lost: facts.lost } : {}),
      workers: () => this.registry.candidates(facts.overrides),
      now: this.clock.now(),
      rules: this.rules,
      newId: this.newId,
    });
  }

  /**
   * Persists a plan in one fenced write, then applies it to memory, then tells workers and
   * observers. `pending` holds worker records changed but not yet written (a sweep's offline
   * workers); those this plan writes are taken out of it.
   */
  private async apply(
    plan: JobPlan,
    options: { created?: boolean; detached?: boolean; pending?: Map<string, WorkerRecord>; pendingRecords?: Map<string, DocumentPut<unknown>>; records?: readonly DocumentPut<unknown>[] } = {},
  ): Promise<void> {
    const records = new Map<string, WorkerRecord>();
    // Audit records travel in the plan's own write: a reputation change never lands without its record.
    const audit: DocumentPut<unknown>[] = [...(options.records ?? [])];
    const { job: decided } = plan.next;
    for (const change of plan.workers) {
      const base = options.pending?.get(change.node_id) ?? this.registry.get(change.node_id);
      if (!base) continue;
      const next = applyWorkerChange(base, change);
      records.set(change.node_id, next);
      if (change.reputation !== 0 || change.credits !== 0) {
        audit.push(
          ...this.audited({
            ...COORDINATOR,
            action: 'worker.reputation',
            target: { kind: 'worker', id: change.node_id },
            details: { job_id: decided.id, job_name: decided.name, reputation_delta: change.reputation, reputation_before: base.reputation_score, reputation_score: next.reputation_score, credits_delta: change.credits, credits_earned: next.credits_earned },
          }),
        );
      }
    }
    // A worker the sweep took offline is written here first when this plan changes it too: its status record with it.
    for (const id of records.keys()) {
      const status = options.pendingRecords?.get(id);
      if (status) audit.push(status);
    }
    const puts: DocumentPut<unknown>[] = [];
    if (plan.jobChanged || options.created) puts.push({ collection: JOBS_COLLECTION, id: plan.next.job.id, body: stored(plan.next) });
    for (const { execution } of plan.updates) puts.push({ collection: EXECUTIONS_COLLECTION, id: execution.id, body: execution });
    for (const record of records.values()) puts.push({ collection: WORKERS_COLLECTION, id: record.id, body: record });
    puts.push(...audit);
    await this.write(puts);

    if (!options.detached) this.book.put(plan.next);
    for (const record of records.values()) {
      this.registry.set(record);
      options.pending?.delete(record.id);
      options.pendingRecords?.delete(record.id);
    }
    const { job } = plan.next;
    for (const { before, execution } of plan.updates) {
      if (before && ACTIVE_EXECUTION_STATUSES.has(before.status) && !ACTIVE_EXECUTION_STATUSES.has(execution.status)) this.registry.release(execution.node_id, execution.id);
    }
    for (const { execution } of plan.place) this.registry.allocate(execution.node_id, execution.id, { jobId: job.id, cpu: job.required_cpu, memoryGb: job.required_memory });

    for (const { execution } of plan.place) this.channel.offer(execution.node_id, assignmentOf(job, execution));
    for (const stop of plan.stop) if (stop.kind === 'superseded') this.cancelLater(stop.execution);
    if (plan.extra > 0 && plan.verdict.kind === 'open') this.logger.info({ job: job.id, extra: plan.extra, reason: plan.verdict.reason }, 'scheduling extra executions');
    if (plan.unplacedReason) this.logger.debug({ job: job.id, unplaced: plan.next.unplaced, reason: plan.unplacedReason }, 'executions wait for a worker');
    for (const { before, execution } of plan.updates) {
      const ended = before !== undefined && !ACTIVE_EXECUTION_STATUSES.has(execution.status) && (before.status !== execution.status || before.reported_at !== execution.reported_at);
      if (ended) this.observer.executionFinished?.(execution, job);
    }
    for (const record of records.values()) this.observer.workerChanged?.(this.registry.get(record.id) ?? record);
    if (plan.verdict.kind !== 'open' && plan.verdict.decidedNow) {
      if (plan.verdict.kind === 'failed') this.logger.warn({ job: job.id }, plan.verdict.reason);
      this.observer.consensus?.(plan.verdict.kind === 'completed' ? 'reached' : 'unreachable', job);
      this.observer.jobFinished?.(job);
      void this.placeWaitingSoon();
    }
  }

  /** The put of one audit record, or none where nothing is audited. */
  private audited(entry: JobsAuditEntry): DocumentPut<unknown>[] {
    return this.audit ? [this.audit.prepare(entry)] : [];
  }

  /** Retries placement for waiting jobs, oldest first. */
  private async placeWaiting(): Promise<void> {
    for (const jobId of this.book.waiting()) {
      const state = this.book.get(jobId);
      if (!state || state.unplaced === 0 || FINAL_JOB_STATUSES.has(state.job.status)) continue;
      const plan = this.plan(state);
      if (plan.place.length === 0 && !plan.jobChanged && plan.updates.length === 0) continue;
      await this.apply(plan);
    }
  }

  private placeWaitingSoon(): Promise<void> {
    if (this.book.waiting().length === 0) return Promise.resolve();
    return this.serial(() => (this.leading ? this.placeWaiting() : Promise.resolve())).catch((error: unknown) => this.logger.error({ err: errorMessage(error) }, 'placing waiting jobs failed'));
  }

  /** Stale workers go offline (−20) and their executions fail; every open job is planned against the time. */
  private async sweep(): Promise<void> {
    const now = this.clock.now();
    const pending = new Map<string, WorkerRecord>();
    /** The status record of each offline worker, written with the first write of its offline record. */
    const pendingRecords = new Map<string, DocumentPut<unknown>>();
    const lost = new Map<string, string>();
    for (const { worker, silentS } of silentWorkers(this.registry.all(), now, this.config.staleAfterMs, this.leadingSince)) {
      this.logger.warn({ node: worker.id, silentS }, 'worker went silent: offline, reputation −20');
      const offline = wentOffline(worker);
      pending.set(worker.id, offline);
      const why = `worker ${worker.name} went silent for ${silentS} s and was marked offline`;
      lost.set(worker.id, why);
      const [record] = this.audited({
        ...COORDINATOR,
        action: 'worker.status',
        target: { kind: 'worker', id: worker.id },
        details: { from: worker.status, to: offline.status, reason: why, reputation_delta: REPUTATION.offline, reputation_before: worker.reputation_score, reputation_score: offline.reputation_score },
      });
      if (record) pendingRecords.set(worker.id, record);
    }
    for (const state of [...this.book.open()]) {
      const plan = this.plan(state, { lost, overrides: pending });
      if (!plan.jobChanged && plan.updates.length === 0 && plan.workers.length === 0) continue;
      await this.apply(plan, { pending, pendingRecords });
    }
    if (pending.size > 0) {
      await this.write([...[...pending.values()].map((w) => ({ collection: WORKERS_COLLECTION, id: w.id, body: w })), ...pendingRecords.values()]);
      for (const worker of pending.values()) {
        const offline = this.registry.set(worker);
        this.observer.workerChanged?.(offline);
      }
    }
  }

  // ---------------------------------------------------------------- delivery

  private known(nodeId: string): WorkerRecord {
    const worker = this.registry.get(nodeId);
    if (!worker) throw new JobsError('NOT_FOUND', `node ${nodeId} is not registered as a worker`);
    return worker;
  }

  private offerAllTo(nodeId: string): void {
    for (const executionId of this.registry.executionsOn(nodeId)) {
      const state = this.book.ofExecution(executionId);
      const execution = state?.executions.find((e) => e.id === executionId);
      if (state && execution) this.channel.offer(nodeId, assignmentOf(state.job, execution));
    }
  }

  private cancelLater(execution: JobExecution): void {
    const cancel = (): void => {
      const current = this.book.ofExecution(execution.id)?.executions.find((e) => e.id === execution.id);
      if (current && current.reported_at === null) this.channel.cancel(execution.node_id, execution.id, execution.error_message ?? 'superseded');
    };
    if (this.config.cancelGraceMs <= 0) return cancel();
    setTimeout(cancel, this.config.cancelGraceMs).unref();
  }
}

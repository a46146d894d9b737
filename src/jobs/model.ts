/**
 * Verified batch jobs (seed 004, DistributeAI) as ArcNet sees them. Field names follow the seed's
 * tables (snake_case) so DistributeAI's clients read our API unchanged (ADR 0007).
 */

export type JobStatus = 'pending' | 'running' | 'completed' | 'failed';
export type ExecutionStatus = 'scheduled' | 'running' | 'completed' | 'failed' | 'timed_out' | 'cancelled';
export type WorkerStatus = 'online' | 'busy' | 'offline';
/** How an execution's result was judged against the job's consensus; null until judged. */
export type Verdict = 'agree' | 'disagree' | null;

export const FINAL_JOB_STATUSES: ReadonlySet<JobStatus> = new Set(['completed', 'failed']);
export const ACTIVE_EXECUTION_STATUSES: ReadonlySet<ExecutionStatus> = new Set(['scheduled', 'running']);

export interface Job {
  readonly id: string;
  readonly name: string;
  readonly description: string | null;
  readonly docker_image: string;
  readonly command: readonly string[];
  readonly environment: Readonly<Record<string, string>>;
  readonly input_data: string | null;
  /** CPU cores; fractions allowed. */
  readonly required_cpu: number;
  /** Memory in GB; fractions allowed (0.5 = 512 MB, the container default). */
  readonly required_memory: number;
  readonly required_gpu: boolean;
  /** n: executions scheduled at first. */
  readonly redundancy: number;
  /** k: agreeing results needed. */
  readonly consensus: number;
  /** Executions ever created for this job, extras included (BOINC's max_total_results). */
  readonly max_executions: number;
  readonly timeout_seconds: number;
  readonly network: boolean;
  /** Executions go to workers of different enrolments, so no one party fills the quorum (absent on older jobs: false). */
  readonly distinct_enrolments?: boolean;
  readonly status: JobStatus;
  readonly submitted_by: string | null;
  readonly submitted_at: string;
  readonly started_at: string | null;
  readonly completed_at: string | null;
  /** The agreed stdout (UTF-8, or base64 when result_encoding says so). */
  readonly result: string | null;
  readonly result_encoding: ResultEncoding | null;
  /** SHA-256 of the agreed bytes, computed by the coordinator. */
  readonly result_hash: string | null;
  readonly error_message: string | null;
  readonly credits_required: number;
  /** The submitter's verified signature (`signing.ts`), kept so every worker can verify it again; absent on jobs stored before signing existed. */
  readonly signature?: JobSignature | null;
  /** The key id whose signature verified on submission; null for an unsigned job. */
  readonly signed_by?: string | null;
}

/** A submitter's signature over a job's signed fields (`signing.ts`): the signer's key id and the Ed25519 signature, base64. */
export interface JobSignature {
  readonly key_id: string;
  readonly value: string;
}

export type ResultEncoding = 'utf8' | 'base64';

export interface JobExecution {
  readonly id: string;
  readonly job_id: string;
  readonly node_id: string;
  readonly status: ExecutionStatus;
  /** 1-based: 1..redundancy are the first round, the rest are extras. */
  readonly attempt: number;
  readonly scheduled_at: string;
  /** When the worker received it (push or poll); null while only scheduled. */
  readonly started_at: string | null;
  readonly completed_at: string | null;
  /** When the worker's own report arrived; a second report for the same execution is a duplicate. */
  readonly reported_at: string | null;
  readonly result: string | null;
  readonly result_encoding: ResultEncoding | null;
  /** SHA-256 of the returned bytes, computed by the coordinator. */
  readonly result_hash: string | null;
  /** The hash the worker claimed, kept for audit only; never trusted. */
  readonly claimed_hash: string | null;
  readonly exit_code: number | null;
  readonly duration_ms: number | null;
  readonly error_message: string | null;
  readonly logs: string | null;
  readonly verdict: Verdict;
}

export interface WorkerRecord {
  readonly id: string;
  readonly name: string;
  readonly region: string | null;
  readonly cpu_cores: number;
  readonly memory_gb: number;
  readonly gpu_enabled: boolean;
  readonly gpu_model: string | null;
  readonly status: WorkerStatus;
  readonly reputation_score: number;
  readonly total_jobs_run: number;
  readonly successful_jobs_run: number;
  readonly failed_jobs: number;
  readonly credits_earned: number;
  readonly last_heartbeat: string;
  readonly registered_at: string;
  readonly current_job_id: string | null;
  /** From the last heartbeat, 0..1. */
  readonly cpu_usage: number;
  readonly memory_usage: number;
  /** SHA-256 of the credential handed out at registration; the credential itself is never stored. */
  readonly credential_hash: string;
  /**
   * The enrolment token (or operator key) that let this worker register: one party. A job asking for
   * `distinct_enrolments` takes its executions from workers of different enrolments (absent on records
   * written before enrolment existed: they count as one unknown party).
   */
  readonly enrolled_by?: string | null;
}

/**
 * What a worker receives for one execution, pushed or polled. A signed job's assignment also carries
 * the signature and the signed fields an execution does not otherwise need, so the worker can verify
 * it before it runs anything (`signing.ts`); an unsigned job's has neither.
 */
export type ExecutionAssignment = { readonly execution_id: string; readonly job_id: string } & Pick<
  Job,
  'docker_image' | 'command' | 'environment' | 'input_data' | 'required_cpu' | 'required_memory' | 'required_gpu' | 'network' | 'timeout_seconds'
> &
  Partial<Pick<Job, 'name' | 'redundancy' | 'consensus' | 'max_executions'>> & { readonly signature?: JobSignature };

/** What a worker reports for one execution (`POST /api/v1/worker/result`, less the node id). */
export interface WorkerResult {
  readonly execution_id: string;
  readonly status: 'completed' | 'failed' | 'timed_out';
  readonly result?: string;
  readonly result_encoding?: ResultEncoding;
  /** The worker's own SHA-256 of the result: recorded for audit, never trusted. */
  readonly result_hash?: string;
  readonly exit_code?: number;
  readonly duration_ms?: number;
  readonly error_message?: string;
  readonly logs?: string;
}

export const REPUTATION = { start: 100, floor: 0, agree: 5, disagree: -10, offline: -20 } as const;

export function assignmentOf(job: Job, execution: JobExecution): ExecutionAssignment {
  return {
    execution_id: execution.id,
    job_id: job.id,
    docker_image: job.docker_image,
    command: job.command,
    environment: job.environment,
    input_data: job.input_data,
    required_cpu: job.required_cpu,
    required_memory: job.required_memory,
    required_gpu: job.required_gpu,
    network: job.network,
    timeout_seconds: job.timeout_seconds,
    ...(job.signature ? { name: job.name, redundancy: job.redundancy, consensus: job.consensus, max_executions: job.max_executions, signature: job.signature } : {}),
  };
}

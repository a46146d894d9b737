/**
 * Submission rules for verified jobs (seed 004's `POST /api/v1/jobs`): what a submission must
 * satisfy, the defaults it gets, and when re-submitting an id is the same job or a conflict. Pure:
 * the coordinator calls these before it touches any state, and refuses with the sentence returned.
 */
import type { Job, JobSignature } from './model.ts';
import { rulesProblem } from './verification.ts';
import { MAX_CPU_CORES, MAX_MEMORY_GB } from '../contracts/messages.ts';

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
  readonly distinct_enrolments?: boolean;
  readonly submitted_by?: string;
  readonly credits_required?: number;
  /** The submitter's signature over the signed fields (`signing.ts`), checked before anything is stored. */
  readonly signature?: JobSignature;
}

/** The coordinator's limits that a submission is checked against. */
export interface SubmissionLimits {
  readonly maxRedundancy: number;
  /** Upper bound on a job's max_executions (extras included). */
  readonly maxExecutionsCap: number;
  readonly defaultTimeoutSeconds: number;
  readonly maxTimeoutSeconds: number;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** n, k and the execution bound a submission asks for, defaults filled in (k: a majority of n; bound: 2n within the cap). */
export function rulesOf(s: Pick<JobSubmission, 'redundancy' | 'consensus' | 'max_executions'>, limits: SubmissionLimits): { redundancy: number; consensus: number; max_executions: number } {
  const redundancy = s.redundancy ?? 3;
  return {
    redundancy,
    consensus: s.consensus ?? Math.floor(redundancy / 2) + 1,
    max_executions: s.max_executions ?? Math.min(2 * redundancy, limits.maxExecutionsCap),
  };
}

/** Why a submission cannot be accepted, as a sentence naming the field, or undefined when it can. */
export function submissionProblem(s: JobSubmission, limits: SubmissionLimits): string | undefined {
  if (!s.docker_image.trim()) return 'docker_image must name an image';
  if (s.command.length === 0) return 'command must have at least one element';
  if (s.signature && s.id === undefined) return 'id is required on a signed job: the signature covers the id, so it cannot be moved onto another job';
  for (const key of Object.keys(s.environment ?? {})) {
    if (!ENV_NAME.test(key)) return `environment variable name "${key}" is not valid: use letters, digits and _, not starting with a digit`;
  }
  const rules = rulesOf(s, limits);
  if (rules.max_executions > limits.maxExecutionsCap) return `max_executions ${rules.max_executions} is above this coordinator's cap of ${limits.maxExecutionsCap}`;
  const problem = rulesProblem(rules, limits.maxRedundancy);
  if (problem) return problem;
  for (const [field, value] of [['required_cpu', s.required_cpu], ['required_memory', s.required_memory], ['credits_required', s.credits_required]] as const) {
    if (value !== undefined && !(value >= 0)) return `${field} must not be negative, got ${value}`;
    if (value !== undefined && !Number.isFinite(value)) return `${field} must be a finite number, got ${value}`;
  }
  if (s.required_cpu !== undefined && s.required_cpu > MAX_CPU_CORES) return `required_cpu must be at most ${MAX_CPU_CORES}, got ${s.required_cpu}`;
  if (s.required_memory !== undefined && s.required_memory > MAX_MEMORY_GB) return `required_memory must be at most ${MAX_MEMORY_GB} GB, got ${s.required_memory}`;
  if (s.required_cpu === 0) return 'required_cpu must be more than 0';
  if (s.required_memory === 0) return 'required_memory must be more than 0 GB';
  const timeout = s.timeout_seconds;
  if (timeout !== undefined && (!(timeout > 0) || timeout > limits.maxTimeoutSeconds)) return `timeout_seconds must be between 1 and ${limits.maxTimeoutSeconds}, got ${timeout}`;
  return undefined;
}

/**
 * The job record for an accepted submission: seed 004's defaults (1 CPU, 512 MB, n = 3), pending.
 * `signature` is the submission's, once verified: the record is signed only by what was checked.
 */
export function newJob(s: JobSubmission, id: string, now: number, limits: SubmissionLimits, signature: JobSignature | null = null): Job {
  return {
    id,
    name: s.name,
    description: s.description ?? null,
    docker_image: s.docker_image,
    command: [...s.command],
    environment: { ...s.environment },
    input_data: s.input_data ?? null,
    required_cpu: s.required_cpu ?? 1,
    required_memory: s.required_memory ?? 0.5,
    required_gpu: s.required_gpu ?? false,
    ...rulesOf(s, limits),
    timeout_seconds: s.timeout_seconds ?? limits.defaultTimeoutSeconds,
    network: s.network ?? false,
    distinct_enrolments: s.distinct_enrolments ?? false,
    status: 'pending',
    submitted_by: s.submitted_by ?? null,
    submitted_at: new Date(now).toISOString(),
    started_at: null,
    completed_at: null,
    result: null,
    result_encoding: null,
    result_hash: null,
    error_message: null,
    credits_required: s.credits_required ?? 1,
    signature,
    signed_by: signature?.key_id ?? null,
  };
}

/** The signed fields a submission left to this coordinator's defaults: named when its signature does not verify, the likely reason. */
export function defaultedSignedFields(s: JobSubmission): string[] {
  // input_data is left out: a body cannot say "none" other than by leaving it out.
  const fields = ['environment', 'required_cpu', 'required_memory', 'required_gpu', 'redundancy', 'consensus', 'max_executions', 'timeout_seconds', 'network'] as const;
  return fields.filter((field) => s[field] === undefined);
}

/**
 * Re-submitting a known id is idempotent (a client retrying after a lost answer, or after a
 * coordinator failover, gets the job it created) unless it names a different image or command.
 */
export function resubmissionConflict(existing: Job, s: JobSubmission): string | undefined {
  if (existing.docker_image !== s.docker_image || JSON.stringify(existing.command) !== JSON.stringify(s.command)) {
    return `job ${existing.id} already exists with a different image or command`;
  }
  return undefined;
}

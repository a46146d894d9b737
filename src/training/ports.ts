/**
 * The training bridge's ports (seed 000 §4, seed 001 Pattern 3): a data mover that brings a dataset
 * to where the HPC system reads it, and an HPC scheduler that runs the job there. The bridge
 * (./bridge.ts) drives both from a pure workflow; adapters sit beside this file (POSIX and Globus
 * movers, Slurm) and are chosen by the composition root (src/main/), never imported by domain code.
 */

/** Why a transfer ended without its data: each is final for this attempt, none is helped by retrying the same call. */
export type TransferFailureCode = 'SOURCE_MISSING' | 'PERMISSION' | 'CHECKSUM_MISMATCH' | 'TIMEOUT' | 'CANCELLED' | 'REMOTE_FAULT' | 'INVALID_REQUEST';

export interface TransferSpec {
  /** ArcNet's id for this transfer (the HPC job's): the key a retry or a resume is recognised by. */
  readonly transferId: string;
  /** `file:///…` for the POSIX mover; `globus://<endpoint>/<path>` for Globus. */
  readonly source: string;
  readonly destination: string;
  /** When the submitter said how big it is; the mover measures it regardless. */
  readonly expectedBytes?: number;
  /**
   * The source's SHA-256 (hex) when the submitter knows it: the transfer fails CHECKSUM_MISMATCH if the
   * bytes differ. The Globus mover hands it to the service (`external_checksum`, SHA256) to verify against.
   */
  readonly sha256?: string;
}

export interface TransferProgress {
  readonly bytesTransferred: number;
  /** Null until the mover knows the size. */
  readonly totalBytes: number | null;
  /** 0..1. */
  readonly progress: number;
}

export type TransferOutcome =
  | {
      readonly status: 'completed';
      readonly bytesTransferred: number;
      /**
       * SHA-256 (hex) of the whole file as it arrived, verified against the source's. Empty when the
       * mover does not see the bytes and the spec named none: Globus verifies its own checksum
       * (verify_checksum) and reports no value.
       */
      readonly sha256: string;
      /** Bytes sent again after a resume (at most one chunk for the POSIX mover). */
      readonly bytesResent: number;
    }
  | { readonly status: 'failed'; readonly code: TransferFailureCode; readonly reason: string };

export interface TransferOptions {
  /** Called at least once a second while bytes move, and once at the end. */
  readonly onProgress?: (progress: TransferProgress) => void;
  readonly signal?: AbortSignal;
}

/**
 * Moves one dataset. `transfer` starts the transfer named `transferId` or, when an earlier process
 * started it (and was killed), resumes it; it resolves when the transfer ends. Transient errors are
 * retried inside with backoff; what resolves as `failed` is final, with the reason.
 */
export interface DataMover {
  readonly name: string;
  transfer(spec: TransferSpec, options?: TransferOptions): Promise<TransferOutcome>;
  /** Stops the transfer named `transferId`, if running; a later `transfer` of it resolves `CANCELLED`. */
  cancel(transferId: string): Promise<void>;
}

/** Durable notes a mover keeps per transfer (a Globus submission id, a task id) so a restarted bridge resumes, never resubmits. */
export interface TransferJournal {
  load(transferId: string): Promise<Readonly<Record<string, unknown>> | undefined>;
  save(transferId: string, notes: Readonly<Record<string, unknown>>): Promise<void>;
}

export interface HpcSubmission {
  /** ArcNet's HPC job id; the scheduler's job name carries it (`arcnet-<id>`), so it can be found again. */
  readonly jobId: string;
  /** The batch script's text (it starts with `#!`). */
  readonly script: string;
  /** Environment of the job: ARCNET_DATASET_PATH, ARCNET_CHECKPOINT_URI, ARCNET_JOB_ID at least. */
  readonly environment: Readonly<Record<string, string>>;
  /** Where the job runs and writes its output. */
  readonly workdir: string;
  readonly timeLimitMinutes?: number;
  readonly cpus?: number;
}

/** ArcNet's view of a scheduler job; `nativeState` keeps the scheduler's own word. */
export type HpcRunState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface HpcJobStatus {
  readonly schedulerJobId: string;
  /** ArcNet's id, read back from the job name; undefined for a job ArcNet did not submit. */
  readonly jobId: string | undefined;
  readonly state: HpcRunState;
  /** e.g. PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED. */
  readonly nativeState: string;
  /** False when `nativeState` is not one the adapter knows: surfaced as `failed`/`running` with the word, never dropped. */
  readonly recognised: boolean;
  readonly exitCode?: number;
  readonly signal?: number;
  /** A sentence: "FAILED with exit code 3", "TIMEOUT: over its 1 min limit". */
  readonly reason: string;
}

export interface HpcScheduler {
  readonly name: string;
  /**
   * Submits unless a job named for `jobId` already exists (a bridge killed between submitting and
   * recording the id): then answers that job's id with `existing: true`.
   */
  submit(submission: HpcSubmission): Promise<{ readonly schedulerJobId: string; readonly existing: boolean }>;
  /** The scheduler's id of the job named for `jobId`, if the scheduler knows one. */
  findByName(jobId: string): Promise<string | undefined>;
  /**
   * The status of every job asked for, from one query to the scheduler per call, whatever the count.
   * A job the scheduler no longer lists is resolved from its records (a final state with the
   * reason), never assumed completed; one it has no record of is `failed` with that said.
   */
  status(schedulerJobIds: readonly string[]): Promise<ReadonlyMap<string, HpcJobStatus>>;
  /** Cancels a job; cancelling one that has ended is not an error. */
  cancel(schedulerJobId: string): Promise<void>;
}

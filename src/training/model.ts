/**
 * The training bridge's records as stored: one bitemporal document per training job in
 * `training_jobs` (valid time = when its current state began), written first by the API at
 * submission (`submitted`, version 1) and from then on only by the bridge: the classification and,
 * for an HPC job, every state of seed 001's Pattern 3 with its reason, the transfer's progress, the
 * Slurm id and the checkpoint. The bridge's writes carry the fencing token of the job's lease
 * (`bridge/job/<id>`), so a deposed bridge's late write is refused where it lands.
 *
 * An HPC job's id is its training job's id: the Slurm job name (`arcnet-<id>`), the lease, the
 * transfer id and the staging directory all carry the one id, so a redelivered submission or a
 * restarted bridge finds the same job everywhere.
 */
import type { HpcJob, TrainingJob } from '../contracts/messages.ts';
import type { TrainingTarget } from './classifier.ts';

export const TRAINING_COLLECTION = 'training_jobs';
/** KV prefix of cancel requests: the API writes `training/cancel/<id>`, the job's owner acts on it. */
export const CANCEL_PREFIX = 'training/cancel/';
/** The per-job ownership lease. */
export const jobLeaseName = (id: string): string => `bridge/job/${id}`;

export type HpcStatus = HpcJob['status'];
export const HPC_FINAL: ReadonlySet<HpcStatus> = new Set(['completed', 'failed', 'cancelled']);

/**
 * `submitted`: stored, not classified yet. `waiting`: classified federated and published on
 * `arc.scheduler.training`, where it waits for the federated rounds (the next issue). The rest are
 * the HPC job's states.
 */
export type TrainingStatus = 'submitted' | 'waiting' | HpcStatus;
export const TRAINING_FINAL: ReadonlySet<TrainingStatus> = HPC_FINAL;

/** A recorded checkpoint: where the job wrote it and, when the bridge could look (file://), its size. */
export interface CheckpointRecord {
  readonly uri: string;
  /** Null when the URI's scheme is not one the bridge can read (recorded as the job said, unverified). */
  readonly bytes: number | null;
  readonly recordedAt: string;
}

/** The HPC job's state: what the pure workflow (./hpc-workflow.ts) reads and returns. */
export interface HpcState {
  readonly status: HpcStatus;
  /** Why it is in this state: a failure's, a cancel's or the waiting's sentence; null when nothing needs saying. */
  readonly reason: string | null;
  /** The dataset as given (`file:///…`, `globus://…`). */
  readonly datasetUri: string;
  /** Where the mover puts it: `<staging>/<id>/<basename>`; the job reads it as ARCNET_DATASET_PATH. */
  readonly datasetPath: string;
  readonly checkpointUri: string;
  /** 0..1: the transfer's share done (1 from the transfer's end on). */
  readonly progress: number;
  readonly bytesTransferred: number;
  readonly totalBytes: number | null;
  /** SHA-256 of the dataset as it arrived, verified against the source's by the mover. */
  readonly sha256: string | null;
  /** Bytes the mover sent again after resuming a killed transfer. */
  readonly bytesResent: number;
  readonly schedulerJobId: string | null;
  /** The scheduler's own word for the job's state (PENDING, RUNNING, TIMEOUT, …). */
  readonly nativeState: string | null;
  readonly exitCode: number | null;
  readonly checkpoint: CheckpointRecord | null;
  /** Set when a cancel was asked while the scheduler held the job: the state waits for the scheduler to confirm. */
  readonly cancelRequested: string | null;
  /** When each state began (ISO). */
  readonly timestamps: Readonly<Partial<Record<HpcStatus, string>>>;
}

/** What the submitter gave beyond the TrainingJob message: the batch script and its limits. */
export interface TrainingSubmission {
  /** The batch script (`--script FILE`); undefined runs the bridge's default script. */
  readonly script?: string;
  readonly timeLimitMinutes?: number;
  /** The dataset's SHA-256 (lowercase hex) when the submitter knows it: the transfer fails CHECKSUM_MISMATCH unless the bytes match. */
  readonly datasetSha256?: string;
  readonly submittedBy?: string;
}

export interface TrainingRecord extends TrainingSubmission {
  readonly id: string;
  readonly datasetUri: string;
  readonly datasetSizeGb: number;
  readonly estimatedFlops: number;
  readonly checkpointUri?: string;
  readonly urgency?: TrainingJob['urgency'];
  /** The submitter's explicit target, honoured as given. */
  readonly requestedTarget?: TrainingTarget;
  readonly sourceNodeId?: string;
  readonly geozone?: string;
  readonly submittedAt: string;
  readonly status: TrainingStatus;
  /** Null until classified. */
  readonly target: TrainingTarget | null;
  readonly routingReason: string | null;
  readonly classifiedAt: string | null;
  /** Why a job that is not on the HPC path is where it is (waiting for federated rounds, cancelled before anything ran); HPC jobs say it in `hpc.reason`. */
  readonly reason?: string;
  /** The HPC path's state; null for a federated or unclassified job. */
  readonly hpc: HpcState | null;
  readonly updatedAt: string;
}

/** The submission as `arc.job.submission` carries it. */
export function submissionMessage(record: TrainingRecord): TrainingJob {
  return {
    schemaVersion: 1,
    id: record.id,
    datasetUri: record.datasetUri,
    datasetSizeGb: record.datasetSizeGb,
    estimatedFlops: record.estimatedFlops,
    ...(record.checkpointUri === undefined ? {} : { checkpointUri: record.checkpointUri }),
    ...(record.requestedTarget === undefined ? {} : { target: record.requestedTarget }),
    ...(record.urgency === undefined ? {} : { urgency: record.urgency }),
    ...(record.sourceNodeId === undefined ? {} : { sourceNodeId: record.sourceNodeId }),
    ...(record.geozone === undefined ? {} : { geozone: record.geozone }),
  };
}

/** A record for a submission that reached the bus without the API (another producer): stored as it came. */
export function recordOfMessage(job: TrainingJob, at: string): TrainingRecord {
  return {
    id: job.id,
    datasetUri: job.datasetUri,
    datasetSizeGb: job.datasetSizeGb,
    estimatedFlops: job.estimatedFlops,
    ...(job.checkpointUri === undefined ? {} : { checkpointUri: job.checkpointUri }),
    ...(job.urgency === undefined ? {} : { urgency: job.urgency }),
    ...(job.target === undefined ? {} : { requestedTarget: job.target }),
    ...(job.sourceNodeId === undefined ? {} : { sourceNodeId: job.sourceNodeId }),
    ...(job.geozone === undefined ? {} : { geozone: job.geozone }),
    submittedAt: at,
    status: 'submitted',
    target: null,
    routingReason: null,
    classifiedAt: null,
    hpc: null,
    updatedAt: at,
  };
}

/** The HpcJob message of a state, for `arc.bridge.pending` / `ornl.bridge.ingress`. */
export function hpcMessage(record: TrainingRecord, hpc: HpcState): HpcJob {
  return {
    schemaVersion: 1,
    id: record.id,
    trainingJobId: record.id,
    datasetUri: hpc.datasetUri,
    datasetSizeGb: record.datasetSizeGb,
    destination: hpc.datasetPath,
    status: hpc.status,
    bytesTransferred: hpc.bytesTransferred,
    submittedAt: record.submittedAt,
    ...(record.sourceNodeId === undefined ? {} : { sourceNodeId: record.sourceNodeId }),
    ...(hpc.schedulerJobId === null ? {} : { schedulerJobId: hpc.schedulerJobId }),
    ...(hpc.reason === null ? {} : { reason: hpc.reason }),
    progress: hpc.progress,
    ...(hpc.checkpoint === null ? {} : { checkpointUri: hpc.checkpoint.uri }),
    updatedAt: hpc.timestamps[hpc.status] ?? record.updatedAt,
    ...(record.geozone === undefined ? {} : { geozone: record.geozone }),
  };
}

/**
 * One training job as the view shows it: the stored record (`GET /api/v1/training`, polled) and,
 * for an HPC job, the feed's latest `hpc` message, which is fresher between polls. An HPC job's
 * states only move forward (pending → transferring → queued → running → an end), and a transfer's
 * progress only grows, so whichever source is further along is the current one.
 */
import type { TrainingJobRecord } from '../../api/types.ts';
import type { HpcMessage } from '../../feed/state.ts';

export const FINAL_STATUSES: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);

const RANK: Readonly<Record<string, number>> = { submitted: 0, waiting: 1, pending: 1, transferring: 2, queued: 3, running: 4, completed: 5, failed: 5, cancelled: 5 };

export interface TrainingRow {
  id: string;
  status: string;
  /** `hpc`, `federated`, or null before the bridge classified it. */
  target: string | null;
  routingReason: string | null;
  /** Why it is in this state (a failure's, a cancel's or the waiting's sentence). */
  reason: string | null;
  datasetUri: string | null;
  datasetSizeGb: number;
  estimatedFlops: number | null;
  urgency: string | null;
  /** 0..1 for an HPC job; null for a federated or unclassified one. */
  progress: number | null;
  bytesTransferred: number | null;
  totalBytes: number | null;
  schedulerJobId: string | null;
  checkpoint: string | null;
  submittedAt: string | null;
  submittedBy: string | null;
  /** Known only from the feed (the list did not have it, or is not on this server). */
  feedOnly: boolean;
}

export function rowOf(record: TrainingJobRecord, live: HpcMessage | undefined): TrainingRow {
  const hpc = record.hpc;
  const liveAhead = live !== undefined && (RANK[live.status] ?? 0) >= (RANK[record.status] ?? 0);
  const status = liveAhead ? live.status : record.status;
  const progress = hpc === null && live === undefined ? null : Math.max(hpc?.progress ?? 0, live?.progress ?? 0);
  return {
    id: record.id,
    status,
    target: record.target ?? (live !== undefined ? 'hpc' : null),
    routingReason: record.routingReason,
    reason: (liveAhead ? live.reason : undefined) ?? hpc?.reason ?? record.reason ?? null,
    datasetUri: record.datasetUri,
    datasetSizeGb: record.datasetSizeGb,
    estimatedFlops: record.estimatedFlops,
    urgency: record.urgency ?? null,
    progress,
    bytesTransferred: progress === null ? null : Math.max(hpc?.bytesTransferred ?? 0, live?.bytesTransferred ?? 0),
    totalBytes: hpc?.totalBytes ?? null,
    schedulerJobId: hpc?.schedulerJobId ?? live?.schedulerJobId ?? null,
    checkpoint: hpc?.checkpoint?.uri ?? live?.checkpointUri ?? null,
    submittedAt: record.submittedAt,
    submittedBy: record.submittedBy ?? null,
    feedOnly: false,
  };
}

export function rowOfFeed(live: HpcMessage): TrainingRow {
  return {
    id: live.jobId,
    status: live.status,
    target: 'hpc',
    routingReason: null,
    reason: live.reason ?? null,
    datasetUri: null,
    datasetSizeGb: live.datasetSizeGb,
    estimatedFlops: null,
    urgency: null,
    progress: live.progress,
    bytesTransferred: live.bytesTransferred,
    totalBytes: null,
    schedulerJobId: live.schedulerJobId ?? null,
    checkpoint: live.checkpointUri ?? null,
    submittedAt: null,
    submittedBy: null,
    feedOnly: true,
  };
}

/** The list's jobs (newest first) with the feed's state, then HPC jobs only the feed knows, most recently updated first. */
export function trainingRows(records: readonly TrainingJobRecord[] | null, hpc: ReadonlyMap<string, HpcMessage>): TrainingRow[] {
  const listed = new Set<string>();
  const rows: TrainingRow[] = [];
  for (const record of records ?? []) {
    listed.add(record.id);
    rows.push(rowOf(record, hpc.get(record.id)));
  }
  const extra = [...hpc.values()].filter((m) => !listed.has(m.jobId)).reverse();
  return [...rows, ...extra.map(rowOfFeed)];
}

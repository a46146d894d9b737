/**
 * Ports of the verified-jobs context. The coordinator pushes work through a WorkerChannel (the
 * API's worker sessions, or simulated workers in a bench); state goes through the store ports.
 */
import type { DocumentPut } from '../store/ports.ts';
import type { ExecutionAssignment, Job, JobExecution, JobStatus, WorkerRecord } from './model.ts';

export interface WorkerChannel {
  /** Pushes an execution to the worker's live session; false when it has none (it will poll pending-jobs). */
  offer(nodeId: string, assignment: ExecutionAssignment): boolean;
  /** Tells the worker to stop an execution a decision superseded; a no-op without a session. */
  cancel(nodeId: string, executionId: string, reason: string): void;
}

/** Hooks for metrics and the console; called after the change is durable. */
export interface CoordinatorObserver {
  jobSubmitted?(job: Job): void;
  jobFinished?(job: Job): void;
  executionFinished?(execution: JobExecution, job: Job): void;
  consensus?(outcome: 'reached' | 'unreachable', job: Job): void;
  workerChanged?(worker: WorkerRecord): void;
}

export interface JobCounts {
  readonly total: number;
  readonly byStatus: Readonly<Record<JobStatus, number>>;
}

/** Who made a call, for the audit record of what it changed: the API edge knows, the coordinator records. */
export interface Caller {
  /** A key id, `worker:<node id>`, or `system:<component>`. */
  readonly actor: string;
  readonly actorRole?: string;
  /** The caller's source address. */
  readonly address?: string;
}

/** One audit record as the coordinator describes it (the audit log's entry, `src/access/audit.ts`). */
export interface JobsAuditEntry extends Caller {
  readonly action: 'job.submitted' | 'worker.registered' | 'worker.reputation' | 'worker.status';
  readonly target: { readonly kind: 'job' | 'worker'; readonly id: string };
  readonly details: Readonly<Record<string, unknown>>;
}

/**
 * The audit log as the coordinator uses it: the put of a record, which the coordinator adds to the
 * one fenced write of the change it describes, so no change lands without its record (or a record
 * without its change).
 */
export interface JobsAudit {
  prepare(entry: JobsAuditEntry): DocumentPut<unknown>;
}

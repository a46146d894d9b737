/**
 * Ports of the verified-jobs context. The coordinator pushes work through a WorkerChannel (the
 * API's worker sessions, or simulated workers in a bench); state goes through the store ports.
 */
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

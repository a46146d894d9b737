/**
 * The coordinator's in-memory view of jobs: every open job and the most recent finished ones, with
 * their executions, counts by status and the jobs still waiting for a worker. Replaced whole when
 * the view is reloaded from the store (start, a standby's refresh, a takeover). No I/O.
 */
import { FINAL_JOB_STATUSES, type Job, type JobExecution, type JobStatus } from './model.ts';
import type { JobState } from './job-plan.ts';
import type { JobCounts } from './ports.ts';

export class JobBook {
  private readonly jobs = new Map<string, JobState>();
  /** Finished job ids, oldest first, for trimming memory. */
  private readonly finished: string[] = [];
  private readonly executionJob = new Map<string, string>();
  /** Jobs with unplaced executions, in arrival order: retried when capacity appears. */
  private readonly waitingIds = new Set<string>();
  private readonly counts: Record<JobStatus, number> = { pending: 0, running: 0, completed: 0, failed: 0 };
  private readonly recentJobs: number;

  constructor(recentJobs: number) {
    this.recentJobs = recentJobs;
  }

  /**
   * A view built from stored jobs and executions: counts cover every job; open jobs and the
   * `recentJobs` most recently finished are kept.
   */
  static from(recentJobs: number, stored: Iterable<Omit<JobState, 'executions'>>, executions: Iterable<JobExecution>): JobBook {
    const book = new JobBook(recentJobs);
    const byJob = new Map<string, JobExecution[]>();
    for (const execution of executions) {
      const list = byJob.get(execution.job_id) ?? [];
      list.push(execution);
      byJob.set(execution.job_id, list);
    }
    const finished: JobState[] = [];
    for (const entry of stored) {
      book.counts[entry.job.status]++;
      const state: JobState = { ...entry, executions: (byJob.get(entry.job.id) ?? []).sort((a, b) => a.attempt - b.attempt) };
      if (FINAL_JOB_STATUSES.has(entry.job.status)) finished.push(state);
      else book.remember(state);
    }
    finished.sort((a, b) => (a.job.completed_at ?? '').localeCompare(b.job.completed_at ?? ''));
    for (const state of finished.slice(-recentJobs)) {
      book.remember(state);
      book.finished.push(state.job.id);
    }
    return book;
  }

  get(id: string): JobState | undefined {
    return this.jobs.get(id);
  }

  ofExecution(executionId: string): JobState | undefined {
    const jobId = this.executionJob.get(executionId);
    return jobId === undefined ? undefined : this.jobs.get(jobId);
  }

  /** Stores a job's new state (a plan's `next`), keeping counts, the waiting list and the finished window. */
  put(state: JobState): void {
    const id = state.job.id;
    const before = this.jobs.get(id);
    if (before) this.counts[before.job.status]--;
    this.counts[state.job.status]++;
    this.remember(state);
    if (FINAL_JOB_STATUSES.has(state.job.status)) {
      if (!before || !FINAL_JOB_STATUSES.has(before.job.status)) this.finished.push(id);
      this.trim();
    }
  }

  *open(): Generator<JobState> {
    for (const state of this.jobs.values()) if (!FINAL_JOB_STATUSES.has(state.job.status)) yield state;
  }

  /** Open jobs with unplaced executions, oldest first. */
  waiting(): string[] {
    return [...this.waitingIds];
  }

  all(): IterableIterator<JobState> {
    return this.jobs.values();
  }

  /** Jobs in memory, newest first. */
  list(filter: { status?: JobStatus; limit: number }): { job: Job; executions: readonly JobExecution[] }[] {
    const out: { job: Job; executions: readonly JobExecution[] }[] = [];
    const all = [...this.jobs.values()];
    all.sort((a, b) => {
      const [x, y] = [a.job, b.job];
      return x.submitted_at < y.submitted_at ? 1 : x.submitted_at > y.submitted_at ? -1 : x.id < y.id ? 1 : -1;
    });
    for (const state of all) {
      if (filter.status !== undefined && state.job.status !== filter.status) continue;
      out.push({ job: state.job, executions: state.executions });
      if (out.length >= filter.limit) break;
    }
    return out;
  }

  jobCounts(): JobCounts {
    const total = this.counts.pending + this.counts.running + this.counts.completed + this.counts.failed;
    return { total, byStatus: { ...this.counts } };
  }

  private remember(state: JobState): void {
    const id = state.job.id;
    this.jobs.set(id, state);
    for (const execution of state.executions) this.executionJob.set(execution.id, id);
    if (state.unplaced > 0 && !FINAL_JOB_STATUSES.has(state.job.status)) this.waitingIds.add(id);
    else this.waitingIds.delete(id);
  }

  private trim(): void {
    while (this.finished.length > this.recentJobs) {
      const old = this.finished.shift()!;
      const state = this.jobs.get(old);
      if (state) for (const execution of state.executions) this.executionJob.delete(execution.id);
      this.jobs.delete(old);
      this.waitingIds.delete(old);
    }
  }
}

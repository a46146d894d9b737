/**
 * Seed 001 Pattern 3's state machine for one HPC job: pending → transferring → queued → running →
 * completed | failed | cancelled. `step(state, event, now)` returns the next state and what the
 * bridge (./bridge.ts) must do for it, with no I/O and nothing read but its arguments, so replaying
 * the same events gives the same states (the unit tests walk every path).
 *
 * Why the states are cut where they are:
 * - `own` is what a bridge feeds when it takes the job's lease, fresh or after a crash or a takeover:
 *   every state says what to resume (a transfer resumes through the mover's journal, a `queued` job
 *   without a Slurm id is submitted again, which the scheduler answers with the existing job found
 *   by name), so "resume on start" is the same event as "start".
 * - The transfer's end moves the job to `queued` before `sbatch` runs, and the Slurm id is stored as
 *   its own step: a bridge killed in between resumes at "queued, no id" and never submits twice.
 * - A cancel while Slurm holds the job is a request (`cancelRequested`) until Slurm says the job is
 *   cancelled: the state never claims what the scheduler has not confirmed (the job may have
 *   completed first).
 * - A completed Slurm job whose `file://` checkpoint is missing is `failed`: the checkpoint is the
 *   job's product, and "completed" with nothing to show would be believed. A checkpoint URI the
 *   bridge cannot read (another scheme) is recorded unverified.
 */
import type { HpcJobStatus, TransferFailureCode } from './ports.ts';
import { HPC_FINAL, type HpcState, type HpcStatus } from './model.ts';

export type HpcEvent =
  /** This bridge holds the job's lease now (first time, after a restart, or taking over a dead replica's). */
  | { readonly type: 'own' }
  | { readonly type: 'transfer.progress'; readonly bytesTransferred: number; readonly totalBytes: number | null; readonly progress: number }
  | { readonly type: 'transfer.completed'; readonly bytesTransferred: number; readonly sha256: string; readonly bytesResent: number }
  | { readonly type: 'transfer.failed'; readonly code: TransferFailureCode; readonly reason: string }
  | { readonly type: 'submitted'; readonly schedulerJobId: string; readonly existing: boolean }
  | { readonly type: 'submit.failed'; readonly reason: string }
  /** One job's line of the poll cycle's status answer; `checkpoint` is looked at by the bridge once the job completed. */
  | { readonly type: 'scheduler.status'; readonly status: HpcJobStatus; readonly checkpoint?: { readonly found: boolean; readonly checkable: boolean; readonly bytes: number | null } }
  | { readonly type: 'cancel'; readonly reason: string };

export type HpcAction =
  /** Start or resume the data mover for this job (the mover's journal decides which). */
  | { readonly type: 'transfer' }
  | { readonly type: 'cancelTransfer' }
  /** Submit to the scheduler (found by name first, so a repeat finds the existing job). */
  | { readonly type: 'submit' }
  /** scancel by id, or, with no id recorded, whatever job carries this one's name. */
  | { readonly type: 'cancelScheduler'; readonly schedulerJobId: string | null }
  /** Publish the state as an HpcJob on its topic. */
  | { readonly type: 'publish'; readonly topic: HpcTopic }
  /** A SystemEvent for a final state (`hpc.failed` is what the central orchestrator counts). */
  | { readonly type: 'event'; readonly kind: 'hpc.completed' | 'hpc.failed' | 'hpc.cancelled'; readonly severity: 'success' | 'error' | 'warn'; readonly message: string }
  /** The job has ended: give its lease back. */
  | { readonly type: 'release' };

/** `pending` until the data is there (seed 001 step 3a), `ingress` from then on (step 3d). */
export type HpcTopic = 'pending' | 'ingress';

export interface HpcStep {
  readonly state: HpcState;
  /** True when something worth storing changed (a state, the Slurm id, a cancel request); progress alone is false. */
  readonly store: boolean;
  readonly actions: readonly HpcAction[];
}

export interface NewHpcJob {
  readonly datasetUri: string;
  readonly datasetPath: string;
  readonly checkpointUri: string;
  readonly expectedBytes: number | null;
}

/** The state a job classified HPC starts in. */
export function initialHpcState(job: NewHpcJob, now: string, reason: string | null = null): HpcState {
  return {
    status: 'pending',
    reason,
    datasetUri: job.datasetUri,
    datasetPath: job.datasetPath,
    checkpointUri: job.checkpointUri,
    progress: 0,
    bytesTransferred: 0,
    totalBytes: job.expectedBytes,
    sha256: null,
    bytesResent: 0,
    schedulerJobId: null,
    nativeState: null,
    exitCode: null,
    checkpoint: null,
    cancelRequested: null,
    timestamps: { pending: now },
  };
}

/** The topic a state is published on: before the data has arrived, `arc.bridge.pending`; after, `ornl.bridge.ingress`. */
export function topicOf(state: HpcState): HpcTopic {
  return state.sha256 === null ? 'pending' : 'ingress';
}

const NOTHING = (state: HpcState): HpcStep => ({ state, store: false, actions: [] });

function enter(state: HpcState, status: HpcStatus, now: string, changes: Partial<HpcState> = {}): HpcState {
  return { ...state, ...changes, status, timestamps: { ...state.timestamps, [status]: now } };
}

/** A final state and what ending takes: publish it, say so as a SystemEvent, give the lease back. */
function end(state: HpcState, status: 'completed' | 'failed' | 'cancelled', reason: string | null, now: string, changes: Partial<HpcState> = {}, extra: readonly HpcAction[] = []): HpcStep {
  const next = enter(state, status, now, { ...changes, reason });
  const said = reason === null ? '' : `: ${reason}`;
  const event: HpcAction =
    status === 'completed'
      ? { type: 'event', kind: 'hpc.completed', severity: 'success', message: `HPC job completed${said}` }
      : status === 'failed'
        ? { type: 'event', kind: 'hpc.failed', severity: 'error', message: `HPC job failed${said}` }
        : { type: 'event', kind: 'hpc.cancelled', severity: 'warn', message: `HPC job cancelled${said}` };
  return { state: next, store: true, actions: [...extra, { type: 'publish', topic: topicOf(next) }, event, { type: 'release' }] };
}

export function step(state: HpcState, event: HpcEvent, now: string): HpcStep {
  if (HPC_FINAL.has(state.status)) {
    // Ended: a late event changes nothing; an owner that finds it so only gives the lease back.
    return event.type === 'own' ? { state, store: false, actions: [{ type: 'release' }] } : NOTHING(state);
  }
  switch (event.type) {
    case 'own':
      return resume(state, now);
    case 'transfer.progress': {
      if (state.status !== 'transferring') return NOTHING(state);
      // Progress never goes backwards on the record: a resumed mover may first report what it kept.
      const bytes = Math.max(state.bytesTransferred, event.bytesTransferred);
      const progress = Math.min(1, Math.max(state.progress, event.progress));
      return { state: { ...state, bytesTransferred: bytes, totalBytes: event.totalBytes ?? state.totalBytes, progress }, store: false, actions: [] };
    }
    case 'transfer.completed': {
      if (state.status !== 'transferring') return NOTHING(state);
      const next = enter(state, 'queued', now, { bytesTransferred: event.bytesTransferred, totalBytes: event.bytesTransferred, progress: 1, sha256: event.sha256, bytesResent: event.bytesResent, reason: null });
      return { state: next, store: true, actions: [{ type: 'publish', topic: 'ingress' }, { type: 'submit' }] };
    }
    case 'transfer.failed':
      if (state.status !== 'transferring') return NOTHING(state);
      return end(state, 'failed', `transfer failed (${event.code}): ${event.reason}`, now);
    case 'submitted': {
      if (state.status !== 'queued' || state.schedulerJobId !== null) return NOTHING(state);
      const next = { ...state, schedulerJobId: event.schedulerJobId, reason: event.existing ? `found Slurm job ${event.schedulerJobId} already submitted under this job's name (a restart between sbatch and recording its id)` : null };
      // A cancel asked while sbatch ran: the job now exists, so cancel it there.
      const actions: HpcAction[] = [{ type: 'publish', topic: 'ingress' }];
      if (state.cancelRequested !== null) actions.push({ type: 'cancelScheduler', schedulerJobId: event.schedulerJobId });
      return { state: next, store: true, actions };
    }
    case 'submit.failed':
      if (state.status !== 'queued' || state.schedulerJobId !== null) return NOTHING(state);
      if (state.cancelRequested !== null) return end(state, 'cancelled', state.cancelRequested, now);
      return end(state, 'failed', `submitting to the HPC scheduler failed: ${event.reason}`, now);
    case 'scheduler.status':
      return observed(state, event, now);
    case 'cancel':
      return cancel(state, event.reason, now);
  }
}

function resume(state: HpcState, now: string): HpcStep {
  switch (state.status) {
    case 'pending': {
      const next = enter(state, 'transferring', now, { reason: null });
      return { state: next, store: true, actions: [{ type: 'publish', topic: 'pending' }, { type: 'transfer' }] };
    }
    case 'transferring':
      // A killed bridge's transfer: the mover resumes it from its journal (at most one chunk again).
      return { state, store: false, actions: [{ type: 'transfer' }] };
    case 'queued':
      if (state.schedulerJobId === null) return { state, store: false, actions: [{ type: 'submit' }] };
      return { state, store: false, actions: state.cancelRequested === null ? [] : [{ type: 'cancelScheduler', schedulerJobId: state.schedulerJobId }] };
    default:
      // running: the poll cycle reads its state; a pending cancel is asked again (scancel of an ended job is no error).
      return { state, store: false, actions: state.cancelRequested === null ? [] : [{ type: 'cancelScheduler', schedulerJobId: state.schedulerJobId }] };
  }
}

function cancel(state: HpcState, reason: string, now: string): HpcStep {
  if (state.cancelRequested !== null) return NOTHING(state);
  switch (state.status) {
    case 'pending':
      return end(state, 'cancelled', reason, now);
    case 'transferring':
      // The mover is stopped and the record says cancelled now: nothing of the job reached the scheduler.
      return end(state, 'cancelled', reason, now, {}, [{ type: 'cancelTransfer' }]);
    default:
      // queued or running: Slurm may hold it (or sbatch is in flight). Ask, and wait for it to say so.
      return { state: { ...state, cancelRequested: reason }, store: true, actions: state.schedulerJobId === null && state.status === 'queued' ? [] : [{ type: 'cancelScheduler', schedulerJobId: state.schedulerJobId }] };
  }
}

function observed(state: HpcState, event: Extract<HpcEvent, { type: 'scheduler.status' }>, now: string): HpcStep {
  const { status } = event;
  if ((state.status !== 'queued' && state.status !== 'running') || state.schedulerJobId !== status.schedulerJobId) return NOTHING(state);
  const seen = { nativeState: status.nativeState, exitCode: status.exitCode ?? null };
  switch (status.state) {
    case 'queued':
      return NOTHING(state);
    case 'running':
      if (state.status === 'running') return NOTHING(state);
      return { state: enter(state, 'running', now, { ...seen, reason: null }), store: true, actions: [{ type: 'publish', topic: 'ingress' }] };
    case 'completed': {
      const checkpoint = event.checkpoint;
      if (checkpoint && checkpoint.checkable && !checkpoint.found) {
        return end(state, 'failed', `Slurm job ${status.schedulerJobId} completed but wrote no checkpoint at ${state.checkpointUri}`, now, seen);
      }
      const unverified = checkpoint !== undefined && !checkpoint.checkable;
      return end(state, 'completed', unverified ? `checkpoint ${state.checkpointUri} recorded as the job gave it (the bridge cannot read that scheme)` : null, now, {
        ...seen,
        checkpoint: { uri: state.checkpointUri, bytes: checkpoint?.bytes ?? null, recordedAt: now },
      });
    }
    case 'failed':
      return end(state, 'failed', `Slurm job ${status.schedulerJobId}: ${status.reason}`, now, seen);
    case 'cancelled':
      return end(state, 'cancelled', state.cancelRequested ?? `Slurm job ${status.schedulerJobId}: ${status.reason}`, now, seen);
  }
}

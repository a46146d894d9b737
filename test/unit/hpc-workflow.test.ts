/**
 * The HPC job's state machine (`src/training/hpc-workflow.ts`) walked through every path the bridge
 * drives: the happy path, each failure, cancels in every state, and the resumes a killed bridge
 * makes (mid-transfer, between sbatch and storing the id), plus late and duplicate events.
 */
import { describe, expect, it } from 'vitest';
import { initialHpcState, step, topicOf, type HpcAction, type HpcEvent } from '../../src/training/hpc-workflow.ts';
import type { HpcState } from '../../src/training/model.ts';
import type { HpcJobStatus } from '../../src/training/ports.ts';

const T0 = '2026-01-01T00:00:00.000Z';
const fresh = (): HpcState => initialHpcState({ datasetUri: 'file:///data/set.bin', datasetPath: '/staging/j/set.bin', checkpointUri: 'file:///staging/j/checkpoint', expectedBytes: null }, T0);

function run(state: HpcState, events: readonly HpcEvent[]): { state: HpcState; actions: HpcAction[] } {
  const actions: HpcAction[] = [];
  for (const [i, event] of events.entries()) {
    const next = step(state, event, `2026-01-01T00:00:0${i + 1}.000Z`);
    actions.push(...next.actions);
    state = next.state;
  }
  return { state, actions };
}

const slurm = (state: HpcJobStatus['state'], extra: Partial<HpcJobStatus> = {}): HpcEvent => ({
  type: 'scheduler.status',
  status: { schedulerJobId: '42', jobId: 'j', state, nativeState: state.toUpperCase(), recognised: true, reason: `${state.toUpperCase()}`, ...extra },
});
const checkpointFound: HpcEvent = { ...(slurm('completed', { exitCode: 0 }) as Extract<HpcEvent, { type: 'scheduler.status' }>), checkpoint: { found: true, checkable: true, bytes: 64 } };
const done: HpcEvent = { type: 'transfer.completed', bytesTransferred: 1000, sha256: 'ab'.repeat(32), bytesResent: 0 };
const types = (actions: readonly HpcAction[]): string[] => actions.map((a) => (a.type === 'publish' ? `publish:${a.topic}` : a.type === 'event' ? `event:${a.kind}` : a.type));

describe('HPC workflow', () => {
  it('walks pending → transferring → queued → running → completed, recording the id and the checkpoint', () => {
    const s0 = fresh();
    const s1 = step(s0, { type: 'own' }, 'a');
    expect(s1.state.status).toBe('transferring');
    expect(types(s1.actions)).toEqual(['publish:pending', 'transfer']);
    const s2 = step(s1.state, { type: 'transfer.progress', bytesTransferred: 400, totalBytes: 1000, progress: 0.4 }, 'b');
    expect(s2).toMatchObject({ store: false, actions: [] });
    expect(s2.state.progress).toBe(0.4);
    const s3 = step(s2.state, done, 'c');
    expect(s3.state).toMatchObject({ status: 'queued', progress: 1, sha256: 'ab'.repeat(32), schedulerJobId: null });
    expect(types(s3.actions)).toEqual(['publish:ingress', 'submit']);
    const s4 = step(s3.state, { type: 'submitted', schedulerJobId: '42', existing: false }, 'd');
    expect(s4).toMatchObject({ store: true, state: { status: 'queued', schedulerJobId: '42' } });
    expect(step(s4.state, slurm('queued'), 'e').store).toBe(false);
    const s5 = step(s4.state, slurm('running'), 'f');
    expect(s5.state.status).toBe('running');
    const s6 = step(s5.state, checkpointFound, 'g');
    expect(s6.state).toMatchObject({ status: 'completed', reason: null, exitCode: 0, checkpoint: { uri: 'file:///staging/j/checkpoint', bytes: 64, recordedAt: 'g' } });
    expect(types(s6.actions)).toEqual(['publish:ingress', 'event:hpc.completed', 'release']);
    expect(Object.keys(s6.state.timestamps)).toEqual(['pending', 'transferring', 'queued', 'running', 'completed']);
  });

  it('never lets progress go backwards, and ignores progress outside a transfer', () => {
    const { state } = run(fresh(), [{ type: 'own' }, { type: 'transfer.progress', bytesTransferred: 600, totalBytes: 1000, progress: 0.6 }, { type: 'transfer.progress', bytesTransferred: 500, totalBytes: 1000, progress: 0.5 }]);
    expect(state).toMatchObject({ progress: 0.6, bytesTransferred: 600 });
    expect(step(fresh(), { type: 'transfer.progress', bytesTransferred: 1, totalBytes: 1, progress: 1 }, 'x').state).toEqual(fresh());
  });

  it('resumes each state as a restarted bridge must', () => {
    const transferring = run(fresh(), [{ type: 'own' }]).state;
    expect(types(step(transferring, { type: 'own' }, 'r').actions)).toEqual(['transfer']);
    // Killed between sbatch and storing the id: submit again, which finds the job by name.
    const queued = run(fresh(), [{ type: 'own' }, done]).state;
    expect(types(step(queued, { type: 'own' }, 'r').actions)).toEqual(['submit']);
    const found = step(queued, { type: 'submitted', schedulerJobId: '42', existing: true }, 'r');
    expect(found.state.reason).toMatch(/already submitted under this job's name/);
    const withId = found.state;
    expect(step(withId, { type: 'own' }, 'r').actions).toEqual([]);
    const ended = run(withId, [slurm('failed', { reason: 'FAILED with exit code 3', exitCode: 3 })]).state;
    expect(types(step(ended, { type: 'own' }, 'r').actions)).toEqual(['release']);
  });

  it('fails with the reason: a transfer failure, an sbatch refusal, a failing script, a time limit, a missing checkpoint', () => {
    const transfer = run(fresh(), [{ type: 'own' }, { type: 'transfer.failed', code: 'SOURCE_MISSING', reason: 'no such file /data/set.bin' }]);
    expect(transfer.state).toMatchObject({ status: 'failed', reason: 'transfer failed (SOURCE_MISSING): no such file /data/set.bin' });
    expect(topicOf(transfer.state)).toBe('pending');
    expect(types(transfer.actions)).toEqual(['publish:pending', 'transfer', 'publish:pending', 'event:hpc.failed', 'release']);

    const refused = run(fresh(), [{ type: 'own' }, done, { type: 'submit.failed', reason: 'sbatch: error: invalid partition' }]).state;
    expect(refused).toMatchObject({ status: 'failed', reason: 'submitting to the HPC scheduler failed: sbatch: error: invalid partition' });

    const queued = run(fresh(), [{ type: 'own' }, done, { type: 'submitted', schedulerJobId: '42', existing: false }]).state;
    expect(run(queued, [slurm('running'), slurm('failed', { reason: 'FAILED with exit code 3', exitCode: 3 })]).state).toMatchObject({ status: 'failed', reason: 'Slurm job 42: FAILED with exit code 3', exitCode: 3 });
    expect(run(queued, [slurm('failed', { nativeState: 'TIMEOUT', reason: 'TIMEOUT: over its 1 min limit' })]).state).toMatchObject({ status: 'failed', nativeState: 'TIMEOUT', reason: 'Slurm job 42: TIMEOUT: over its 1 min limit' });
    const missing: HpcEvent = { ...(slurm('completed') as Extract<HpcEvent, { type: 'scheduler.status' }>), checkpoint: { found: false, checkable: true, bytes: null } };
    expect(run(queued, [missing]).state).toMatchObject({ status: 'failed', reason: 'Slurm job 42 completed but wrote no checkpoint at file:///staging/j/checkpoint', checkpoint: null });
    const unreadable: HpcEvent = { ...(slurm('completed') as Extract<HpcEvent, { type: 'scheduler.status' }>), checkpoint: { found: false, checkable: false, bytes: null } };
    expect(run(queued, [unreadable]).state).toMatchObject({ status: 'completed', checkpoint: { bytes: null } });
  });

  it('cancels: at once before Slurm has it, on Slurm\'s word after', () => {
    expect(run(fresh(), [{ type: 'cancel', reason: 'cancelled by op' }]).state).toMatchObject({ status: 'cancelled', reason: 'cancelled by op' });
    const midTransfer = run(fresh(), [{ type: 'own' }, { type: 'cancel', reason: 'cancelled by op' }]);
    expect(midTransfer.state.status).toBe('cancelled');
    expect(types(midTransfer.actions)).toContain('cancelTransfer');

    const queued = run(fresh(), [{ type: 'own' }, done, { type: 'submitted', schedulerJobId: '42', existing: false }]).state;
    const asked = step(queued, { type: 'cancel', reason: 'cancelled by op' }, 'c');
    expect(asked).toMatchObject({ store: true, state: { status: 'queued', cancelRequested: 'cancelled by op' }, actions: [{ type: 'cancelScheduler', schedulerJobId: '42' }] });
    expect(step(asked.state, { type: 'cancel', reason: 'again' }, 'd').actions).toEqual([]);
    expect(step(asked.state, slurm('cancelled', { reason: 'CANCELLED by 0' }), 'e').state).toMatchObject({ status: 'cancelled', reason: 'cancelled by op' });
    // The job completed before the scancel landed: it is completed, as Slurm says.
    expect(step(asked.state, checkpointFound, 'e').state.status).toBe('completed');

    // Asked while sbatch is in flight: the id, once known, is cancelled there.
    const submitting = run(fresh(), [{ type: 'own' }, done, { type: 'cancel', reason: 'cancelled by op' }]).state;
    expect(step(submitting, { type: 'submitted', schedulerJobId: '43', existing: false }, 'f').actions).toContainEqual({ type: 'cancelScheduler', schedulerJobId: '43' });
    expect(step(submitting, { type: 'submit.failed', reason: 'x' }, 'f').state).toMatchObject({ status: 'cancelled', reason: 'cancelled by op' });
  });

  it('ignores what comes after the end, and statuses of another Slurm job', () => {
    const ended = run(fresh(), [{ type: 'cancel', reason: 'r' }]).state;
    for (const event of [{ type: 'own' } as const, done, slurm('running'), { type: 'cancel', reason: 'x' } as const]) {
      expect(step(ended, event, 'z').state).toBe(ended);
    }
    const queued = run(fresh(), [{ type: 'own' }, done, { type: 'submitted', schedulerJobId: '42', existing: false }]).state;
    const other: HpcEvent = { type: 'scheduler.status', status: { ...(slurm('running') as Extract<HpcEvent, { type: 'scheduler.status' }>).status, schedulerJobId: '7' } };
    expect(step(queued, other, 'z').state).toBe(queued);
    expect(step(queued, { type: 'submitted', schedulerJobId: '99', existing: false }, 'z').state).toBe(queued);
  });

  it('is deterministic: the same events from the same state give the same states', () => {
    const events: HpcEvent[] = [{ type: 'own' }, { type: 'transfer.progress', bytesTransferred: 10, totalBytes: 1000, progress: 0.01 }, done, { type: 'submitted', schedulerJobId: '42', existing: false }, slurm('running'), checkpointFound];
    expect(run(fresh(), events)).toEqual(run(fresh(), events));
  });
});

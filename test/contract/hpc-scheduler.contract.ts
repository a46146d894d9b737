/**
 * HpcScheduler contract: what the training bridge relies on, for every scheduler adapter, run
 * against a real scheduler. Jobs finish, fail (exit code, signal) and are cancelled for real; a
 * jobId submitted twice is one job (the bridge killed between submitting and recording the id);
 * status of many jobs is one query; a job the scheduler does not know is `failed`, said so.
 *
 * Every job the suite submits is cancelled at the end and every workdir removed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HpcJobStatus, HpcRunState, HpcScheduler, HpcSubmission } from '../../src/training/ports.ts';
import { until } from '../support/until.ts';

export interface HpcSchedulerContractOptions {
  /** A scheduler; called more than once, to stand for a restarted bridge that remembers nothing. */
  readonly open: () => HpcScheduler;
  /** Queries the scheduler has answered for status() so far, from the adapter's own counter. */
  readonly statusQueries: (scheduler: HpcScheduler) => number;
  /** A job id the scheduler has never had. */
  readonly unknownJobId: string;
}

const FINAL: ReadonlySet<HpcRunState> = new Set(['completed', 'failed', 'cancelled']);

export function hpcSchedulerContract(name: string, options: HpcSchedulerContractOptions): void {
  describe(`HpcScheduler contract: ${name}`, () => {
    let scheduler: HpcScheduler;
    let root: string;
    const submitted = new Set<string>();

    beforeAll(() => {
      scheduler = options.open();
      root = mkdtempSync(join(tmpdir(), 'arcnet-hpc-contract-'));
    });

    afterAll(async () => {
      for (const id of submitted) await scheduler.cancel(id).catch(() => undefined);
      rmSync(root, { recursive: true, force: true });
    });

    /** A submission with its own workdir and a jobId no other run uses. */
    function submission(script: string, over: Partial<HpcSubmission> = {}): HpcSubmission {
      const jobId = `contract-${randomUUID()}`;
      const workdir = mkdtempSync(join(root, 'job-'));
      return {
        jobId,
        script,
        workdir,
        environment: { ARCNET_JOB_ID: jobId, ARCNET_DATASET_PATH: join(workdir, 'data'), ARCNET_CHECKPOINT_URI: 'file:///ckpt/a b,c=1' },
        timeLimitMinutes: 5,
        cpus: 1,
        ...over,
      };
    }

    async function submit(spec: HpcSubmission): Promise<string> {
      const { schedulerJobId } = await scheduler.submit(spec);
      submitted.add(schedulerJobId);
      return schedulerJobId;
    }

    async function statusOf(id: string): Promise<HpcJobStatus> {
      const status = (await scheduler.status([id])).get(id);
      if (status === undefined) throw new Error(`status() left out job ${id}`);
      return status;
    }

    function final(id: string, timeoutMs = 20_000): Promise<HpcJobStatus> {
      return until(async () => {
        const status = await statusOf(id);
        return FINAL.has(status.state) ? status : undefined;
      }, `job ${id} to end`, timeoutMs, { intervalMs: 200 });
    }

    it('runs a script to completion, with its environment', async () => {
      const spec = submission([
        '#!/bin/sh',
        'echo "dataset=$ARCNET_DATASET_PATH"',
        'echo "checkpoint=$ARCNET_CHECKPOINT_URI"',
        'echo "job=$ARCNET_JOB_ID"',
        'echo done > result.txt',
        'exit 0',
      ].join('\n') + '\n');
      const result = await scheduler.submit(spec);
      submitted.add(result.schedulerJobId);
      expect(result.existing).toBe(false);
      const status = await final(result.schedulerJobId);
      expect(status).toMatchObject({ schedulerJobId: result.schedulerJobId, jobId: spec.jobId, state: 'completed', exitCode: 0, recognised: true });
      expect(readFileSync(join(spec.workdir, 'result.txt'), 'utf8')).toBe('done\n');
      const output = readFileSync(join(spec.workdir, `slurm-${result.schedulerJobId}.out`), 'utf8');
      expect(output).toContain(`dataset=${spec.environment['ARCNET_DATASET_PATH']}`);
      expect(output).toContain('checkpoint=file:///ckpt/a b,c=1');
      expect(output).toContain(`job=${spec.jobId}`);
      // A job that ended is still the job for that name: the bridge must not submit it again.
      expect(await scheduler.submit(spec)).toEqual({ schedulerJobId: result.schedulerJobId, existing: true });
    });

    it('reports a non-zero exit as failed, with the exit code in the reason', async () => {
      const id = await submit(submission('#!/bin/sh\nexit 3\n'));
      const status = await final(id);
      expect(status).toMatchObject({ state: 'failed', exitCode: 3 });
      expect(status.reason).toContain('exit code 3');
    });

    it('reports a job killed by a signal as failed, naming the signal', async () => {
      const id = await submit(submission('#!/bin/sh\nkill -9 $$\n'));
      const status = await final(id);
      expect(status).toMatchObject({ state: 'failed', signal: 9 });
      expect(status.reason).toContain('signal 9');
    });

    it('cancels a running job; cancelling it again is not an error', async () => {
      const id = await submit(submission('#!/bin/sh\nsleep 120\n'));
      await until(async () => (await statusOf(id)).state === 'running', `job ${id} to start`, 20_000, { intervalMs: 200 });
      await scheduler.cancel(id);
      const status = await final(id);
      expect(status.state).toBe('cancelled');
      await expect(scheduler.cancel(id)).resolves.toBeUndefined();
    });

    it('submits a jobId once: a second submit, even from a scheduler that remembers nothing, finds the first job', async () => {
      const spec = submission('#!/bin/sh\nsleep 60\n');
      const first = await scheduler.submit(spec);
      submitted.add(first.schedulerJobId);
      // The bridge restarted after sbatch, before it stored the id: a new adapter, same jobId.
      const again = await options.open().submit(spec);
      expect(again).toEqual({ schedulerJobId: first.schedulerJobId, existing: true });
      expect(await scheduler.findByName(spec.jobId)).toBe(first.schedulerJobId);
      await scheduler.cancel(first.schedulerJobId);
    });

    it('finds nothing for a jobId never submitted', async () => {
      expect(await scheduler.findByName(`contract-${randomUUID()}`)).toBeUndefined();
    });

    it('answers the status of 20 jobs from one query', async () => {
      const specs = Array.from({ length: 20 }, () => submission('#!/bin/sh\nexit 0\n'));
      const ids = await Promise.all(specs.map(submit));
      const before = options.statusQueries(scheduler);
      const statuses = await scheduler.status(ids);
      expect(options.statusQueries(scheduler) - before).toBe(1);
      expect([...statuses.keys()].sort()).toEqual([...ids].sort());
      ids.forEach((id, i) => expect(statuses.get(id)).toMatchObject({ schedulerJobId: id, jobId: specs[i]!.jobId, recognised: true }));
      for (const status of statuses.values()) expect(['queued', 'running', 'completed']).toContain(status.state);
    });

    it('reports a job it does not know as failed, saying so, never completed', async () => {
      const status = await statusOf(options.unknownJobId);
      expect(status).toMatchObject({ schedulerJobId: options.unknownJobId, state: 'failed', recognised: true });
      expect(status.reason).toMatch(/no longer knows|no record/);
      // Cancelling it is not an error either.
      await expect(scheduler.cancel(options.unknownJobId)).resolves.toBeUndefined();
    });
  });
}

/**
 * The Slurm adapter against the real one-node Slurm (bash scripts/slurm.sh start): the HpcScheduler
 * contract, then what only Slurm has — an unreachable controller, a missing command and a missing
 * conf are errors that say so (and whether a retry helps), and bad input is refused before sbatch.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArcError } from '../../src/core/errors.ts';
import { SlurmScheduler } from '../../src/training/slurm-scheduler.ts';
import { needEngines } from '../support/engines.ts';
import { SLURM_CONF } from '../support/slurm.ts';
import { hpcSchedulerContract } from './hpc-scheduler.contract.ts';

const slurm = needEngines('slurm');

describe.skipIf(!slurm.available)(slurm.title('Slurm scheduler'), () => {
  hpcSchedulerContract('Slurm', {
    open: () => new SlurmScheduler({ slurmConf: SLURM_CONF }),
    statusQueries: (scheduler) => (scheduler as SlurmScheduler).statusQueries,
    // Far above any id this cluster will reach (ids count up from 1).
    unknownJobId: '67000000',
  });

  describe('failures that say what and whether a retry helps', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'arcnet-slurm-'));
    });
    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    const submission = (over: object = {}) => ({
      jobId: 'never-submitted', script: '#!/bin/sh\nexit 0\n', workdir: dir, environment: {}, ...over,
    });

    async function failure(promise: Promise<unknown>): Promise<ArcError> {
      const error = await promise.then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(ArcError);
      return error as ArcError;
    }

    it('an unreachable slurmctld is UNAVAILABLE and retryable', async () => {
      // The same cluster's conf with a port nothing listens on, and a 1 s timeout so it says so quickly.
      const conf = join(dir, 'unreachable.conf');
      const text = readFileSync(SLURM_CONF, 'utf8').replace(/^MessageTimeout=.*$/m, 'MessageTimeout=1');
      writeFileSync(conf, `SlurmctldPort=1\n${text}`);
      const scheduler = new SlurmScheduler({ slurmConf: conf });
      const error = await failure(scheduler.status(['1']));
      expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
      expect(error.message).toContain('slurmctld is unreachable');
      expect((await failure(scheduler.submit(submission()))).retryable).toBe(true);
    });

    it('a missing command is UNAVAILABLE, retryable, and names the command', async () => {
      const error = await failure(new SlurmScheduler({ slurmConf: SLURM_CONF, binDir: dir }).findByName('x'));
      expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
      expect(error.message).toContain(`squeue is not installed here (not found in ${dir})`);
    });

    it('a conf that does not exist is said at once (Slurm itself retries it for 60 s)', async () => {
      const error = await failure(new SlurmScheduler({ slurmConf: join(dir, 'none.conf') }).status(['1']));
      expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: false });
      expect(error.message).toContain('does not exist');
    });

    it('refuses what cannot become a Slurm job before running sbatch', async () => {
      const scheduler = new SlurmScheduler({ slurmConf: SLURM_CONF });
      for (const bad of [
        submission({ jobId: 'has space' }),
        submission({ jobId: 'a,b' }),
        submission({ workdir: 'relative/dir' }),
        submission({ script: 'echo no interpreter' }),
        submission({ environment: { 'BAD-NAME': '1' } }),
        submission({ timeLimitMinutes: 0.5 }),
        submission({ cpus: 0 }),
      ]) {
        expect(await failure(scheduler.submit(bad))).toMatchObject({ code: 'INVALID_INPUT', retryable: false });
      }
      await expect(scheduler.cancel('12; rm -rf /')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      expect(scheduler.statusQueries).toBe(0);
    });
  });
});

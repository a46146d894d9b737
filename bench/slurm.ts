/**
 * A section of `npm run bench`: Slurm status queries per poll cycle with 1,000 jobs in flight (goal:
 * 1). 1,000 tiny jobs are submitted held (`sbatch --hold`, so none runs and the one-node cluster
 * stays free), SlurmScheduler.status() is asked for all of them, and the section reports the queries
 * each call sent and its time. All 1,000 are cancelled at the end by one `scancel --name`.
 *
 * The held jobs go in through sbatch directly: the port has no "hold", and what is measured is
 * status(), not submit. Skipped, with the reason, when Slurm does not answer (bash scripts/slurm.sh start).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { percentileOfSorted } from '../src/core/stats.ts';
import { SlurmScheduler } from '../src/training/slurm-scheduler.ts';
import { probeSlurm, SLURM_CONF } from '../test/support/slurm.ts';

const run = promisify(execFile);
const JOBS = 1_000;
const SUBMITTERS = 8;
const GOAL_QUERIES = 1;

async function submitHeld(name: string, count: number): Promise<string[]> {
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SLURM_CONF };
  const ids: string[] = [];
  let next = 0;
  // A few sbatch processes at a time: slurmctld takes submissions one by one anyway.
  await Promise.all(Array.from({ length: SUBMITTERS }, async () => {
    while (next < count) {
      next++;
      const { stdout } = await run('sbatch', ['--parsable', '--hold', `--job-name=${name}`, '--output=/dev/null', '--wrap=true'], { env });
      ids.push(stdout.trim().split(';')[0] ?? '');
    }
  }));
  return ids;
}

export async function slurmSection(quick: boolean, number = 8): Promise<void> {
  console.log(`${number}. Slurm status queries per poll cycle with ${JOBS.toLocaleString('en')} jobs in flight (held, so none runs), SLURM_CONF=${SLURM_CONF}`);
  const probe = await probeSlurm();
  if (!probe.available) {
    console.log(`   skipped: ${probe.reason}`);
    return;
  }
  const name = `arcnet-bench-${randomUUID().slice(0, 8)}`;
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SLURM_CONF };
  const submitStarted = performance.now();
  try {
    const ids = await submitHeld(name, JOBS);
    const submitS = (performance.now() - submitStarted) / 1000;
    const scheduler = new SlurmScheduler({ slurmConf: SLURM_CONF });
    const calls = quick ? 5 : 20;
    const samples: number[] = [];
    let queued = 0;
    for (let i = 0; i < calls; i++) {
      const started = performance.now();
      const statuses = await scheduler.status(ids);
      samples.push(performance.now() - started);
      queued = [...statuses.values()].filter((s) => s.state === 'queued').length;
    }
    const perCall = scheduler.statusQueries / calls;
    samples.sort((a, b) => a - b);
    const { stdout } = await run('squeue', ['--noheader', '--states=all', '--format=%i'], { env, maxBuffer: 64 * 1024 * 1024 });
    const known = stdout.split('\n').filter((line) => line.trim() !== '').length;
    console.log(`   ${JOBS.toLocaleString('en')} held jobs submitted in ${submitS.toFixed(1)} s (${SUBMITTERS} sbatch at a time); the controller lists ${known.toLocaleString('en')} jobs in all (ended ones stay an hour)`);
    console.log(`   status() of all ${JOBS.toLocaleString('en')}, ${calls} calls: ${perCall} queries per call (goal ${GOAL_QUERIES}: ${perCall <= GOAL_QUERIES ? 'MET' : 'NOT MET'}), p50 ${percentileOfSorted(samples, 50).toFixed(1)} ms, max ${samples[samples.length - 1]!.toFixed(1)} ms per call; ${queued.toLocaleString('en')} reported queued`);
  } finally {
    // One call for all of them, whether or not every submission went through.
    await run('scancel', [`--name=${name}`], { env }).catch((error: unknown) => console.log(`   could not cancel the held jobs named ${name}: ${String(error)}`));
  }
}

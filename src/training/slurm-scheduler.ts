/**
 * The HpcScheduler for Slurm: runs the real client commands (./slurm-commands.ts) against the
 * cluster SLURM_CONF names and reads their answers (./slurm-states.ts).
 *
 * Finding a job again: ArcNet names every job `arcnet-<jobId>`, and a submit first asks for that name
 * (`squeue --states=all`, which lists ended jobs too while the controller remembers them), so a
 * bridge killed between sbatch and recording the id gets the same job back instead of a second one.
 * A retry of a failed job therefore needs a new jobId.
 *
 * Status: one `scontrol show job --oneliner` per call lists every job the controller knows, running
 * or ended within MinJobAge (scripts/slurm.sh sets 3600 s); there is no slurmdbd here, so a job it
 * no longer lists has no record anywhere and is reported `failed` with that said.
 */
import { isAbsolute } from 'node:path';
import { existsSync } from 'node:fs';
import { ArcError } from '../core/errors.ts';
import type { HpcJobStatus, HpcScheduler, HpcSubmission } from './ports.ts';
import { runSlurmCommand, type SlurmCommand } from './slurm-commands.ts';
import { JOB_NAME_PREFIX, SLURM_STATES, jobStatus, normaliseState, parseJobRecords, unlistedJobStatus } from './slurm-states.ts';

export interface SlurmSchedulerOptions {
  /** The cluster's slurm.conf; default: SLURM_CONF of this process. */
  readonly slurmConf?: string;
  /** Where sbatch, squeue, scontrol and scancel are; default: found on PATH. */
  readonly binDir?: string;
  /** Per command; default 30 s (slurmctld answers in milliseconds, or says it is unreachable in ~10 s). */
  readonly commandTimeoutMs?: number;
  /**
   * Variables of this process a job also gets besides its submission's environment. Only these: the
   * control plane's environment holds its secrets. Default: PATH, HOME, LANG, LC_ALL, TZ.
   */
  readonly passEnvironment?: readonly string[];
}

const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SCHEDULER_JOB_ID = /^\d+(?:_\d+)?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DEFAULT_PASSED = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ'] as const;

function invalid(message: string): ArcError {
  return new ArcError('INVALID_INPUT', message, { retryable: false });
}

function checkJobId(jobId: string): string {
  if (!JOB_ID.test(jobId)) throw invalid(`HPC job id ${JSON.stringify(jobId)} cannot name a Slurm job: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  return `${JOB_NAME_PREFIX}${jobId}`;
}

export class SlurmScheduler implements HpcScheduler {
  readonly name = 'slurm';
  readonly #conf: string | undefined;
  readonly #binDir: string | undefined;
  readonly #timeoutMs: number;
  readonly #passed: readonly string[];
  #statusQueries = 0;

  constructor(options: SlurmSchedulerOptions = {}) {
    this.#conf = options.slurmConf ?? process.env['SLURM_CONF'];
    this.#binDir = options.binDir;
    this.#timeoutMs = options.commandTimeoutMs ?? 30_000;
    this.#passed = options.passEnvironment ?? DEFAULT_PASSED;
  }

  /** Queries sent to Slurm by status() so far: one per call that asked for any job. */
  get statusQueries(): number {
    return this.#statusQueries;
  }

  async submit(submission: HpcSubmission): Promise<{ readonly schedulerJobId: string; readonly existing: boolean }> {
    const jobName = checkJobId(submission.jobId);
    const args = this.#sbatchArgs(submission, jobName);
    const found = await this.findByName(submission.jobId);
    if (found !== undefined) return { schedulerJobId: found, existing: true };
    // SLURM_CONF last: a job's environment may set PATH, never which cluster it is submitted to.
    const base = this.#baseEnv();
    const env = { ...base, ...this.#passedEnv(), ...submission.environment, SLURM_CONF: base['SLURM_CONF'] ?? '' };
    const out = await this.#run('sbatch', args, { env, input: submission.script });
    // --parsable prints `<id>` or `<id>;<cluster>`.
    const id = out.trim().split(';')[0] ?? '';
    if (!SCHEDULER_JOB_ID.test(id)) throw new ArcError('INTERNAL', `sbatch printed ${JSON.stringify(out.trim())} where a job id was expected; the job may have been submitted, and findByName(${JSON.stringify(submission.jobId)}) finds it`, { retryable: false });
    return { schedulerJobId: id, existing: false };
  }

  async findByName(jobId: string): Promise<string | undefined> {
    const jobName = checkJobId(jobId);
    const out = await this.#run('squeue', ['--noheader', '--states=all', `--name=${jobName}`, '--format=%i|%T']);
    const jobs = out.split('\n').map((line) => line.trim().split('|')).filter((parts): parts is [string, string] => parts.length === 2 && parts[0] !== '');
    if (jobs.length === 0) return undefined;
    // More than one (submitted by hand, or by two bridges racing): the one still going, else the newest.
    const ended = (state: string) => SLURM_STATES[normaliseState(state).state]?.ended === true;
    const byNewest = [...jobs].sort((a, b) => Number.parseInt(b[0], 10) - Number.parseInt(a[0], 10));
    return (byNewest.find(([, state]) => !ended(state)) ?? byNewest[0])?.[0];
  }

  async status(schedulerJobIds: readonly string[]): Promise<ReadonlyMap<string, HpcJobStatus>> {
    const result = new Map<string, HpcJobStatus>();
    if (schedulerJobIds.length === 0) return result;
    this.#statusQueries++;
    const out = await this.#run('scontrol', ['show', 'job', '--oneliner']);
    const wanted = new Set(schedulerJobIds);
    for (const record of parseJobRecords(out)) {
      if (wanted.has(record.jobId)) result.set(record.jobId, jobStatus(record));
    }
    for (const id of schedulerJobIds) {
      if (!result.has(id)) result.set(id, unlistedJobStatus(id));
    }
    return result;
  }

  async cancel(schedulerJobId: string): Promise<void> {
    if (!SCHEDULER_JOB_ID.test(schedulerJobId)) throw invalid(`${JSON.stringify(schedulerJobId)} is not a Slurm job id (digits, or <array>_<task>)`);
    // scancel exits 0 for a job that has ended or that the controller has forgotten.
    await this.#run('scancel', [schedulerJobId]);
  }

  #sbatchArgs(submission: HpcSubmission, jobName: string): string[] {
    if (!isAbsolute(submission.workdir)) throw invalid(`workdir ${JSON.stringify(submission.workdir)} must be an absolute path`);
    if (!submission.script.startsWith('#!')) throw invalid('the batch script must start with #! and its interpreter (sbatch refuses any other)');
    for (const name of Object.keys(submission.environment)) {
      if (!ENV_NAME.test(name)) throw invalid(`${JSON.stringify(name)} cannot be an environment variable name`);
    }
    const args = ['--parsable', `--job-name=${jobName}`, `--chdir=${submission.workdir}`, `--output=${submission.workdir}/slurm-%j.out`];
    const { timeLimitMinutes, cpus } = submission;
    if (timeLimitMinutes !== undefined) {
      if (!Number.isInteger(timeLimitMinutes) || timeLimitMinutes < 1) throw invalid(`timeLimitMinutes must be a whole number of minutes, at least 1, not ${timeLimitMinutes}`);
      args.push(`--time=${timeLimitMinutes}`);
    }
    if (cpus !== undefined) {
      if (!Number.isInteger(cpus) || cpus < 1) throw invalid(`cpus must be a whole number, at least 1, not ${cpus}`);
      args.push(`--cpus-per-task=${cpus}`);
    }
    // ALL: the job gets sbatch's environment, which is built here (values go by environment, not
    // on the command line, where --export would split them at commas).
    args.push('--export=ALL');
    return args;
  }

  #baseEnv(): Record<string, string> {
    if (this.#conf === undefined) throw new ArcError('UNAVAILABLE', 'no Slurm conf: set SLURM_CONF (bash scripts/slurm.sh env prints it) or pass slurmConf', { retryable: false });
    // Slurm's commands retry a missing conf for 60 s before saying so.
    if (!existsSync(this.#conf)) throw new ArcError('UNAVAILABLE', `the Slurm conf ${this.#conf} does not exist (SLURM_CONF); a retry helps only once it does`, { retryable: false });
    return { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SLURM_CONF: this.#conf };
  }

  #passedEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of this.#passed) {
      const value = process.env[name];
      if (value !== undefined) env[name] = value;
    }
    return env;
  }

  #run(command: SlurmCommand, args: readonly string[], extra: { env?: Record<string, string>; input?: string } = {}): Promise<string> {
    return runSlurmCommand({
      command,
      args,
      env: extra.env ?? this.#baseEnv(),
      timeoutMs: this.#timeoutMs,
      ...(extra.input === undefined ? {} : { input: extra.input }),
      ...(this.#binDir === undefined ? {} : { binDir: this.#binDir }),
    });
  }
}

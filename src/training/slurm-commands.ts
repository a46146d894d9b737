/**
 * Runs Slurm's client commands (sbatch, squeue, scontrol, scancel) for the Slurm adapter: no shell,
 * a fixed small environment, a time limit, and failures turned into ArcErrors that say what went
 * wrong and whether a retry helps.
 *
 * The environment is built, not inherited: Slurm's commands read SQUEUE_FORMAT, SLURM_TIME_FORMAT,
 * SBATCH_* and similar variables, any of which in the control plane's environment would change what
 * they print or submit.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ArcError } from '../core/errors.ts';

export type SlurmCommand = 'sbatch' | 'squeue' | 'scontrol' | 'scancel';

export interface SlurmRun {
  readonly command: SlurmCommand;
  readonly args: readonly string[];
  /** The whole environment of the command. */
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** Written to its stdin (sbatch reads the batch script there). */
  readonly input?: string;
  /** Where the commands are; undefined: found on env.PATH. */
  readonly binDir?: string;
}

/** A listing of 1,000 jobs is about 1.5 MB; this leaves room for far more. */
const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;

/** Slurm's words for "the controller did not answer" (client and server side). */
const UNREACHABLE = /Unable to contact slurm controller|Socket timed out|Connection refused|Zero Bytes were transmitted|Communication connection failure|slurm_receive_msg/i;
/** munged not running, or a key the controller does not share. */
const AUTH = /munge|Invalid authentication credential|Protocol authentication error/i;
/** The controller is up but busy (sbatch itself waits a while before giving up with this). */
const BUSY = /temporarily unable to accept job|Resource temporarily unavailable|Job submit\/allocate failed: .*busy/i;

/**
 * The error for a command that ran and failed. Exported for the unit tests: the words are Slurm's,
 * and which ones mean "try again" is the part worth checking.
 */
export function commandFailure(command: SlurmCommand, exitCode: number | null, stderr: string): ArcError {
  const said = stderr.trim().split('\n').slice(-3).join(' / ') || `exit status ${exitCode ?? 'unknown'}`;
  if (UNREACHABLE.test(stderr)) return new ArcError('UNAVAILABLE', `${command}: slurmctld is unreachable (${said}); retry when the controller is back`, { retryable: true });
  if (AUTH.test(stderr)) return new ArcError('UNAVAILABLE', `${command}: Slurm's munge authentication failed (${said}); is munged running with the cluster's key? A retry helps once it is`, { retryable: true });
  if (BUSY.test(stderr)) return new ArcError('UNAVAILABLE', `${command}: Slurm is too busy to accept the request (${said}); retry later`, { retryable: true });
  if (command === 'sbatch') return new ArcError('INVALID_INPUT', `sbatch refused the job (${said}); the same submission will be refused again`, { retryable: false });
  return new ArcError('INTERNAL', `${command} failed (${said})`, { retryable: false });
}

/** Runs one command; resolves its stdout when it exits 0. */
export function runSlurmCommand(run: SlurmRun): Promise<string> {
  const file = run.binDir === undefined ? run.command : join(run.binDir, run.command);
  return new Promise((resolve, reject) => {
    const child = spawn(file, [...run.args], { env: run.env, stdio: ['pipe', 'pipe', 'pipe'], timeout: run.timeoutMs, killSignal: 'SIGKILL' });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let bytes = 0;
    let overflow = false;
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_OUTPUT_BYTES) {
        overflow = true;
        child.kill('SIGKILL');
        return;
      }
      into.push(chunk);
    };
    child.stdout.on('data', collect(stdout));
    child.stderr.on('data', collect(stderr));
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        reject(new ArcError('UNAVAILABLE', `${run.command} is not installed here (not found${run.binDir === undefined ? ' on PATH' : ` in ${run.binDir}`}); install Slurm's client commands (Debian: slurm-client), then retry`, { retryable: true, cause: error }));
      } else {
        reject(new ArcError('UNAVAILABLE', `${run.command} could not be run: ${error.message}`, { retryable: true, cause: error }));
      }
    });
    child.on('close', (code, signal) => {
      const err = Buffer.concat(stderr).toString('utf8');
      if (overflow) reject(new ArcError('INTERNAL', `${run.command} printed over ${MAX_OUTPUT_BYTES} bytes; stopped it`, { retryable: false }));
      else if (signal !== null) reject(new ArcError('TIMEOUT', `${run.command} did not finish within ${run.timeoutMs} ms (killed by ${signal}); slurmctld may be overloaded, retry`, { retryable: true }));
      else if (code !== 0) reject(commandFailure(run.command, code, err));
      else resolve(Buffer.concat(stdout).toString('utf8'));
    });
    // A command that exits before reading its stdin (a missing conf) closes the pipe: not our error to report.
    child.stdin.on('error', () => undefined);
    child.stdin.end(run.input ?? '');
  });
}

/**
 * Where the Slurm suites find a cluster: SLURM_CONF, else the conf `bash scripts/slurm.sh start`
 * writes. One probe, so every suite that needs Slurm skips (or runs) for the same reason.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DEFAULT_CONF = fileURLToPath(new URL('../../.cache/slurm/slurm.conf', import.meta.url));

export const SLURM_CONF = process.env['SLURM_CONF'] ?? DEFAULT_CONF;

export type SlurmProbe = { readonly available: true } | { readonly available: false; readonly reason: string };

/** The controller answers `sinfo` within 5 s and its node takes jobs (idle, mixed or allocated). */
export async function probeSlurm(conf: string = SLURM_CONF): Promise<SlurmProbe> {
  if (!existsSync(conf)) return { available: false, reason: `no Slurm conf at ${conf} (bash scripts/slurm.sh start writes one; no such file)` };
  const answer = await new Promise<{ error: Error | null; stdout: string; stderr: string }>((resolve) => {
    execFile('sinfo', ['--noheader', '--format=%T'], { env: { ...process.env, SLURM_CONF: conf }, timeout: 5_000 }, (error, stdout, stderr) => resolve({ error, stdout, stderr }));
  });
  if (answer.error !== null) {
    const detail = answer.stderr.trim() || answer.error.message;
    return { available: false, reason: `sinfo with SLURM_CONF=${conf} failed (bash scripts/slurm.sh start): ${detail}` };
  }
  const states = answer.stdout.split('\n').map((s) => s.trim()).filter((s) => s.length > 0);
  if (!states.some((s) => /^(idle|mixed|allocated|completing)/.test(s))) {
    return { available: false, reason: `Slurm with SLURM_CONF=${conf} has no node taking jobs (sinfo: ${states.join(', ') || 'no nodes'})` };
  }
  return { available: true };
}

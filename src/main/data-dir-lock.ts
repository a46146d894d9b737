/**
 * One embedded ArcNet per data directory: two processes would each think they own every node's
 * reservations. A lock file holds the owner's pid; a lock left by a process that no longer runs
 * (killed, machine rebooted) is taken over.
 */
import { openSync, writeSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ArcError } from '../core/errors.ts';

export const LOCK_FILE = 'arcnet.lock';

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the directory's lock; returns the function that gives it back. */
export function lockDataDir(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number.parseInt(readFileSync(path, 'utf8'), 10);
      if (Number.isInteger(owner) && owner !== process.pid && running(owner)) {
        throw new ArcError('CONFLICT', `data directory ${dir} is in use by another arcnet (pid ${owner}); stop it or choose another --data-dir`, { retryable: false });
      }
      rmSync(path, { force: true });
    }
  }
  throw new ArcError('CONFLICT', `could not take the lock on data directory ${dir}`, { retryable: true });
}

/**
 * Whether an executable can run here, asked by the node deployment manager before it loads a process
 * slice (so a missing binary is FAILED with the reason, not retried) and by the process runtime before
 * it allocates ports: one answer, with one wording, for both.
 */
import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';

/** Why `name` cannot be run (not found, not executable), or undefined when it can; a bare name is looked up on `path`. */
export async function executableProblem(name: string, path: string): Promise<string | undefined> {
  const candidates = name.includes('/') ? [name] : path.split(delimiter).map((dir) => join(dir || '.', name));
  let notExecutable: string | undefined;
  for (const candidate of candidates) {
    try {
      if (!(await stat(candidate)).isFile()) continue;
    } catch {
      continue;
    }
    try {
      await access(candidate, fsConstants.X_OK);
      return undefined;
    } catch {
      notExecutable ??= candidate;
    }
  }
  if (notExecutable) return `executable "${name}" is not executable (${notExecutable})`;
  return name.includes('/') ? `executable "${name}" not found${isAbsolute(name) ? '' : ` (relative to ${process.cwd()})`}` : `executable "${name}" not found on PATH (${path})`;
}

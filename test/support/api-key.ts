/**
 * Tests call the API as its users do: with a key. `keyed(key)` is fetch with `Authorization: Bearer
 * <key>` added; `operatorKeyIn(dataDir)` reads the key `arcnet up` keeps for its own CLI.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export function bearer(key: string | undefined): Record<string, string> {
  return key === undefined ? {} : { authorization: `Bearer ${key}` };
}

export function keyed(key: string | undefined): typeof fetch {
  return (input, init = {}) => fetch(input, { ...init, headers: { ...bearer(key), ...(init.headers as Record<string, string> | undefined) } });
}

export function operatorKeyIn(dataDir: string): string {
  return readFileSync(join(dataDir, 'operator.key'), 'utf8').trim();
}

/**
 * fetch with the operator key of an `arcnet up` started with `--data-dir dir`, read once the file is
 * there (the server writes it before it listens, so a probe that reaches the server has it).
 */
export function keyedFromDir(dir: string): typeof fetch {
  let key: string | undefined;
  return (input, init) => {
    if (key === undefined && existsSync(join(dir, 'operator.key'))) key = operatorKeyIn(dir);
    return keyed(key)(input, init);
  };
}

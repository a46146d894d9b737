/**
 * The key the CLI presents to a server: `$ARCNET_API_KEY`, else the operator key `arcnet up` keeps in
 * its data directory (`$XTDB_DATA_DIR` or `.arcnet`, `operator.key`), so the quick start needs no key
 * typed. Undefined when neither exists: the server then answers 401 and says what it needs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export function clientKey(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env['ARCNET_API_KEY']?.trim();
  if (fromEnv) return fromEnv;
  const file = join(env['XTDB_DATA_DIR'] ?? '.arcnet', 'operator.key');
  if (!existsSync(file)) return undefined;
  const key = readFileSync(file, 'utf8').trim();
  return key.length > 0 ? key : undefined;
}

/** `authorization` for a fetch, when there is a key. */
export function authHeaders(key: string | undefined = clientKey()): Record<string, string> {
  return key === undefined ? {} : { authorization: `Bearer ${key}` };
}

/**
 * The access module: the process's key ring (API keys, enrolment tokens, node keys; src/access/) and
 * the operator key that lets its own CLI in. Every process with an API starts it first; the server's
 * access hook, the token routes and the agent gateway's enrolment all read the same ring.
 *
 * It also keeps the process's audit log (`src/access/audit.ts`, collection `audit`): the token
 * routes, the agent gateway's enrolments and the jobs coordinator record their mutations in it, and
 * `GET /api/v1/audit` reads it. It exists under --insecure-no-auth too (every actor is then `insecure`).
 *
 * The operator key lives in a file beside the data (`<dataDir>/operator.key`, 0600): created on the
 * first start, adopted into the store on later ones, so `arcnet up` and then `arcnet nodes` work with
 * no key typed. With no file (an in-memory data dir) the key is made for this run only.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { KeyRing } from '../../access/api-keys.ts';
import { AuditLog } from '../../access/audit.ts';
import type { Engines } from '../engines.ts';
import type { ModuleHandle } from './module.ts';

export interface AccessModuleOptions {
  /** `--insecure-no-auth`: no key ring, every call an operator (development only). */
  readonly insecure: boolean;
  /** Where the operator key is kept; null keeps it in memory for this run. */
  readonly operatorKeyFile: string | null;
  /** API requests a minute per key, worker or source address (0: unlimited). */
  readonly ratePerMinute: number;
}

export interface AccessModule extends ModuleHandle {
  readonly keys: KeyRing | undefined;
  /** The operator key of this process's own CLI; undefined under --insecure-no-auth. */
  readonly operatorKey: string | undefined;
  readonly audit: AuditLog;
}

export const OPERATOR_KEY_FILE = 'operator.key';

async function ensureOperatorKey(keys: KeyRing, file: string | null, audit: AuditLog): Promise<string> {
  const spec = { name: 'operator (created at first start)', role: 'operator' as const, createdBy: 'bootstrap' };
  if (file !== null && existsSync(file)) return adoptFile(keys, file, spec);
  const created = await keys.create(spec);
  await audit.record({ actor: 'system:bootstrap', action: 'key.created', target: { kind: 'key', id: created.record.id }, details: { name: created.record.name, role: created.record.role, file } });
  if (file === null) return created.key;
  mkdirSync(dirname(file), { recursive: true });
  try {
    // Exclusive: replicas starting together on one directory agree on the first key written.
    writeFileSync(file, `${created.key}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    await keys.revoke(created.record.id, 'bootstrap: another replica wrote the key file first');
    return adoptFile(keys, file, spec);
  }
  chmodSync(file, 0o600);
  return created.key;
}

async function adoptFile(keys: KeyRing, file: string, spec: Parameters<KeyRing['adopt']>[1]): Promise<string> {
  const key = readFileSync(file, 'utf8').trim();
  await keys.adopt(key, spec);
  return key;
}

export async function startAccessModule(engines: Pick<Engines, 'stores' | 'clock' | 'logger'>, options: AccessModuleOptions): Promise<AccessModule> {
  const keys = options.insecure ? undefined : new KeyRing(engines.stores.documents, engines.clock);
  const audit = new AuditLog(engines.stores.documents, engines.clock, engines.logger.child({ component: 'audit' }));
  const operatorKey = keys ? await ensureOperatorKey(keys, options.operatorKeyFile, audit) : undefined;
  return {
    name: 'access',
    keys,
    operatorKey,
    audit,
    api: { access: { keys, ratePerMinute: options.ratePerMinute }, audit },
    health: () => ({ ready: true, details: { authentication: keys ? 'api keys' : 'OFF (--insecure-no-auth)' } }),
    stop: async () => undefined,
  };
}

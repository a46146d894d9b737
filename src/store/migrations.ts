/**
 * What both adapters' schemas share: a migration is a numbered piece of SQL, the list is append-only
 * (a released build must be able to open every store an older build wrote), and a store written by a
 * newer build is refused rather than half understood.
 */
import { ArcError } from '../core/errors.ts';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** The migrations still to apply to a store at version `applied`; `store` names it in the refusal. */
export function pendingMigrations(migrations: readonly Migration[], applied: number, store: string): readonly Migration[] {
  const known = migrations.at(-1)?.version ?? 0;
  if (applied > known) {
    throw new ArcError('INTERNAL', `${store} is at version ${applied}, newer than this build understands (${known}); upgrade arcnet`, {
      retryable: false,
    });
  }
  return migrations.filter((migration) => migration.version > applied);
}

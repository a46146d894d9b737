/**
 * The SQLite adapter's schema: versioned migrations applied on open, in one IMMEDIATE transaction so
 * two processes opening a fresh file at once apply each migration exactly once.
 */
import type { DatabaseSync } from 'node:sqlite';
import { pendingMigrations, type Migration } from './migrations.ts';

/** Append-only (src/store/migrations.ts). */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'documents, kv, leases',
    sql: `
      CREATE TABLE documents (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT    NOT NULL,
        id         TEXT    NOT NULL,
        version    INTEGER NOT NULL,
        valid_from INTEGER NOT NULL,
        tx_time    INTEGER NOT NULL,
        body       TEXT,
        deleted    INTEGER NOT NULL CHECK (deleted IN (0, 1)),
        UNIQUE (collection, id, version)
      );
      -- Serves both the point as-of read (seek to id, walk valid_from backwards) and list's window,
      -- whose partition/order keys it matches so SQLite needs no sort for the ranking.
      CREATE INDEX documents_as_of ON documents (collection, id, valid_from, tx_time, seq);

      CREATE TABLE kv (
        key             TEXT    PRIMARY KEY,
        value           TEXT    NOT NULL,
        create_revision INTEGER NOT NULL,
        mod_revision    INTEGER NOT NULL,
        version         INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE kv_events (
        revision INTEGER PRIMARY KEY,
        key      TEXT    NOT NULL,
        type     TEXT    NOT NULL CHECK (type IN ('put', 'delete')),
        value    TEXT
      );
      -- A counter rather than MAX(kv_events.revision) so compacting the event log later cannot make
      -- the store revision go backwards.
      CREATE TABLE kv_revision (
        id       INTEGER PRIMARY KEY CHECK (id = 0),
        revision INTEGER NOT NULL
      );
      INSERT INTO kv_revision (id, revision) VALUES (0, 0);

      -- Rows outlive release and expiry (holder NULL) because the token is the high-water mark that
      -- fencing depends on: deleting the row would restart tokens at 1.
      CREATE TABLE leases (
        name       TEXT    PRIMARY KEY,
        holder     TEXT,
        token      INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    name: 'history retention',
    sql: `
      -- Retention reads one id's versions by transaction time (src/store/retention.ts).
      CREATE INDEX documents_tx ON documents (collection, id, tx_time);
      -- Per collection and tier (resolution_ms; 0 is the horizon): transaction time compacted up to.
      CREATE TABLE retention_progress (
        collection        TEXT    NOT NULL,
        resolution_ms     INTEGER NOT NULL,
        compacted_through INTEGER NOT NULL,
        PRIMARY KEY (collection, resolution_ms)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 3,
    name: 'retention index on retained collections only',
    sql: `
      -- A full index cost every write a fourth B-tree (about 12 % of job throughput on a file store);
      -- src/store/sqlite-retention.ts keeps a partial one over the retained collections instead.
      DROP INDEX documents_tx;
      -- The collections that partial index covers: its WHERE clause, readable without parsing SQL.
      CREATE TABLE retention_indexed (
        collection TEXT PRIMARY KEY
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 4,
    name: 'write-once records',
    sql: `
      -- RecordStore (ADR 0014): one row per record and one random-key index, where a document version
      -- pays for two (the version key and the as-of index) and a read of the id's latest version.
      -- seq without AUTOINCREMENT: no sqlite_sequence row to update per insert.
      CREATE TABLE records (
        seq         INTEGER PRIMARY KEY,
        collection  TEXT    NOT NULL,
        id          TEXT    NOT NULL,
        recorded_at INTEGER NOT NULL,
        body        TEXT    NOT NULL
      );
      CREATE UNIQUE INDEX records_id ON records (collection, id);
      -- Expiry walks a collection oldest first; its keys grow with time, so inserts append at its right edge.
      CREATE INDEX records_age ON records (collection, recorded_at);
      -- Decision records were documents for one build (d07f941); they move here, where they expire.
      INSERT INTO records (collection, id, recorded_at, body)
        SELECT collection, id, tx_time, body FROM documents
        WHERE collection = 'inference_decisions' AND version = 1 AND deleted = 0 ORDER BY seq;
      DELETE FROM documents WHERE collection = 'inference_decisions';
    `,
  },
];

/** Applies the pending migrations; `inWriteTransaction` runs its body under the write lock. */
export function migrate(db: DatabaseSync, inWriteTransaction: (body: () => void) => void): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  inWriteTransaction(() => {
    const row = db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get();
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const migration of pendingMigrations(MIGRATIONS, Number(row?.['v'] ?? 0), 'the SQLite database schema')) {
      db.exec(migration.sql);
      record.run(migration.version, migration.name, Date.now());
    }
  });
}

/**
 * The PostgreSQL adapter's schema: versioned migrations applied on open, and the names derived from
 * the store's schema (NOTIFY channel, migration lock) that every process opening it must agree on.
 */
import { createHash } from 'node:crypto';
import type { Sql } from 'postgres';
import { ArcError } from '../core/errors.ts';
import { pendingMigrations, type Migration } from './migrations.ts';
import { READABLE_SCHEMA_SQL } from './postgres-readable-schema.ts';

/**
 * Append-only (src/store/migrations.ts).
 *
 * Keys, ids and names are COLLATE "C" so ordering and prefix ranges are by code point (the SQLite
 * adapter's BINARY order) whatever the database's default collation. Times are epoch milliseconds
 * from the caller's clock, not timestamptz from the server's, so ManualClock-driven callers and
 * servers with skewed clocks agree. Bodies and values are JSON text rather than jsonb: jsonb would
 * reorder keys and reject \u0000 inside strings. Migration 2 derives jsonb and timestamptz columns
 * from them for people reading with psql (ADR 0013); the adapter never reads those.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'documents, kv, leases',
    sql: `
      CREATE TABLE documents (
        collection text    COLLATE "C" NOT NULL,
        id         text    COLLATE "C" NOT NULL,
        version    integer NOT NULL,
        valid_from bigint  NOT NULL,
        tx_time    bigint  NOT NULL,
        body       text,
        deleted    boolean NOT NULL,
        PRIMARY KEY (collection, id, version)
      );
      -- Matches the as-of ordering, so get is one index probe and list's DISTINCT ON needs no sort.
      CREATE INDEX documents_as_of ON documents (collection, id, valid_from DESC, tx_time DESC, version DESC);

      -- The latest version per id: the row writers lock (FOR UPDATE) to serialise puts of one id, and
      -- what compare-and-set compares with, without scanning history.
      CREATE TABLE document_heads (
        collection text    COLLATE "C" NOT NULL,
        id         text    COLLATE "C" NOT NULL,
        version    integer NOT NULL,
        deleted    boolean NOT NULL,
        PRIMARY KEY (collection, id)
      ) WITH (fillfactor = 80);

      CREATE TABLE kv (
        key             text   COLLATE "C" PRIMARY KEY,
        value           text   NOT NULL,
        create_revision bigint NOT NULL,
        mod_revision    bigint NOT NULL,
        version         bigint NOT NULL
      ) WITH (fillfactor = 80);
      CREATE TABLE kv_events (
        revision bigint PRIMARY KEY,
        key      text   COLLATE "C" NOT NULL,
        type     text   NOT NULL CHECK (type IN ('put', 'delete')),
        value    text
      );
      -- A counter row rather than a sequence: every KV write updates it in its own transaction, so its
      -- row lock orders writers. Revisions are then gap-free and become visible in revision order,
      -- which is what lets a watcher read "revision > last" without ever skipping a late commit.
      CREATE TABLE kv_revision (
        id       smallint PRIMARY KEY CHECK (id = 0),
        revision bigint   NOT NULL
      );
      INSERT INTO kv_revision (id, revision) VALUES (0, 0);

      -- Rows outlive release and expiry (holder NULL) because the token is the high-water mark that
      -- fencing depends on: deleting the row would restart tokens at 1.
      CREATE TABLE leases (
        name       text   COLLATE "C" PRIMARY KEY,
        holder     text,
        token      bigint NOT NULL,
        expires_at bigint NOT NULL
      ) WITH (fillfactor = 80);
    `,
  },
  { version: 2, name: 'readable with psql: jsonb and timestamptz columns, comments, current views', sql: READABLE_SCHEMA_SQL },
  {
    version: 3,
    name: 'history retention',
    sql: `
      CREATE INDEX documents_tx ON documents (collection, id, tx_time);
      CREATE TABLE retention_progress (
        collection        text   COLLATE "C" NOT NULL,
        resolution_ms     bigint NOT NULL,
        compacted_through bigint NOT NULL,
        PRIMARY KEY (collection, resolution_ms)
      );
      COMMENT ON INDEX documents_tx IS 'History retention reads one id''s versions by transaction time.';
      COMMENT ON TABLE retention_progress IS 'How far history retention (ADR 0013) has compacted each collection, per tier.';
      COMMENT ON COLUMN retention_progress.collection IS 'Collection compacted.';
      COMMENT ON COLUMN retention_progress.resolution_ms IS 'The tier: its resolution in ms (60000 = one version per minute), 0 for the horizon.';
      COMMENT ON COLUMN retention_progress.compacted_through IS 'Transaction time (epoch ms) up to which this tier has compacted the collection.';
    `,
  },
  {
    version: 4,
    name: 'write-once records',
    sql: `
      -- RecordStore (ADR 0014): a record is one row and one key; no head row, no version numbering.
      CREATE TABLE records (
        collection     text        COLLATE "C" NOT NULL,
        id             text        COLLATE "C" NOT NULL,
        recorded_at    bigint      NOT NULL,
        body           text        NOT NULL,
        recorded_at_at timestamptz GENERATED ALWAYS AS (to_timestamp(recorded_at / 1000.0)) STORED,
        PRIMARY KEY (collection, id)
      );
      CREATE INDEX records_age ON records (collection, recorded_at);
      -- Decision records were documents for one build (d07f941); they move here, where they expire.
      INSERT INTO records (collection, id, recorded_at, body)
        SELECT collection, id, tx_time, body FROM documents
        WHERE collection = 'inference_decisions' AND version = 1 AND NOT deleted;
      DELETE FROM documents WHERE collection = 'inference_decisions';
      DELETE FROM document_heads WHERE collection = 'inference_decisions';
      COMMENT ON TABLE records IS 'Write-once records (ADR 0014): stored once per id, removed whole by age (inference_decisions: 24 h).';
      COMMENT ON COLUMN records.collection IS 'Collection the record belongs to.';
      COMMENT ON COLUMN records.id IS 'Record id, unique per collection; the first writer''s body is kept.';
      COMMENT ON COLUMN records.recorded_at IS 'Transaction time (epoch ms, the writer''s clock): when the record was stored; expiry is by it.';
      COMMENT ON COLUMN records.body IS 'The record as JSON text (body::jsonb to query it).';
      COMMENT ON COLUMN records.recorded_at_at IS 'recorded_at as timestamptz.';
      COMMENT ON INDEX records_age IS 'Expiry reads a collection oldest first.';
    `,
  },
];

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Plain identifiers only, so the name needs no escaping anywhere it is spliced into SQL or a startup parameter. */
export function requireSchemaName(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) {
    throw new ArcError('INVALID_INPUT', `schema must be a plain identifier of at most 63 characters ([A-Za-z_][A-Za-z0-9_]*), got "${schema}"`);
  }
  return schema;
}

export function quoteIdent(schema: string): string {
  return `"${schema}"`;
}

/** Channel names are identifiers (63 bytes at most): long schema names get a digest instead. */
export function notifyChannel(schema: string): string {
  const channel = `arcnet_kv_${schema}`;
  return channel.length <= 63 ? channel : `arcnet_kv_${createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
}

/**
 * Advisory locks are database-wide, so the key is derived from the schema: stores in other schemas
 * migrate (and compact) independently. `purpose` "schema migrations" is the key every build uses.
 */
export function advisoryLockKey(purpose: string, schema: string): string {
  return createHash('sha256').update(`arcnet ${purpose}\u0000${schema}`).digest().readBigInt64BE(0).toString();
}

/**
 * One transaction under an advisory lock, so processes opening a fresh schema at once apply each
 * migration exactly once: CREATE SCHEMA/TABLE IF NOT EXISTS alone race on the catalog's unique indexes.
 */
export async function migrate<T extends Record<string, unknown>>(sql: Sql<T>, schema: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe('SELECT pg_advisory_xact_lock($1::int8)', [advisoryLockKey('schema migrations', schema)], { prepare: false });
    // Checked first because CREATE SCHEMA IF NOT EXISTS demands CREATE on the database even when the
    // schema exists, which a least-privilege role opening a provisioned schema would not have.
    const existing = await tx.unsafe('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema], { prepare: false });
    if (existing.length === 0) await tx.unsafe(`CREATE SCHEMA ${quoteIdent(schema)}`);
    await tx.unsafe(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer     PRIMARY KEY,
      name       text        NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const rows = await tx.unsafe('SELECT coalesce(max(version), 0)::int4 AS v FROM schema_migrations', [], { prepare: false });
    for (const migration of pendingMigrations(MIGRATIONS, Number(rows[0]?.['v'] ?? 0), `schema "${schema}"`)) {
      await tx.unsafe(migration.sql);
      await tx.unsafe('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name], { prepare: false });
    }
  });
}

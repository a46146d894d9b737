/**
 * Migration 2 of the PostgreSQL store: the state readable with psql alone (ADR 0013). The adapter
 * keeps writing and reading what migration 1 made (JSON text, epoch milliseconds); everything here is
 * derived from it by the database and never written by the adapter:
 *
 * - `body_json`/`value_json jsonb` generated beside the JSON text. The text stays the source of truth
 *   because it round-trips exactly (key order, U+0000 and lone surrogates inside strings, which jsonb
 *   refuses). A body jsonb cannot hold has NULL here rather than failing the write.
 * - `*_at timestamptz` generated beside each epoch-millisecond column.
 * - `COMMENT ON` every table and column, so `\d+` explains itself.
 * - Views of what is current now (per collection, and leases), and `documents_as_of()` for any
 *   (valid time, transaction time) pair: the same resolution rule as the adapter's reads.
 *
 * Adding STORED generated columns rewrites `documents` once, under the migration's lock; every
 * process opening the store waits for it. The collection names in the views are the ones the code
 * writes (src/mesh/aggregator.ts NODES_COLLECTION, src/jobs/coordinator.ts *_COLLECTION).
 */

/** JSON text jsonb refuses: a \u0000 escape, or a \uD800-\uDFFF escape (JSON.stringify writes those only for lone surrogates). */
const JSONB_UNSAFE = String.raw`'\\u(0000|[dD][89a-fA-F])'`;

const jsonbOf = (column: string): string => `CASE WHEN ${column} IS NULL OR ${column} ~ ${JSONB_UNSAFE} THEN NULL ELSE ${column}::jsonb END`;
const timeOf = (column: string): string => `to_timestamp(${column} / 1000.0)`;
const NOW_MS = `floor(extract(epoch FROM now()) * 1000)::int8`;

const quote = (text: string): string => `'${text.replaceAll("'", "''")}'`;

/** The comments of a current-documents view: its own columns, then the four every such view has. */
function viewComments(view: string, what: string, columns: readonly (readonly [string, string])[]): string {
  const all = [
    ...columns,
    ['version', 'The version current now.'],
    ['valid_from_at', 'Since when that version is valid (valid time).'],
    ['tx_time_at', 'When the store learned it (transaction time).'],
    ['body', 'The whole document (jsonb).'],
  ];
  return [`COMMENT ON VIEW ${view} IS ${quote(what)};`, ...all.map(([column, text]) => `COMMENT ON COLUMN ${view}.${column} IS ${quote(text ?? '')};`)].join('\n');
}

export const READABLE_SCHEMA_SQL = `
  ALTER TABLE documents
    ADD COLUMN valid_from_at timestamptz GENERATED ALWAYS AS (${timeOf('valid_from')}) STORED,
    ADD COLUMN tx_time_at    timestamptz GENERATED ALWAYS AS (${timeOf('tx_time')}) STORED,
    ADD COLUMN body_json     jsonb       GENERATED ALWAYS AS (${jsonbOf('body')}) STORED;
  ALTER TABLE kv
    ADD COLUMN value_json jsonb GENERATED ALWAYS AS (${jsonbOf('value')}) STORED;
  ALTER TABLE leases
    ADD COLUMN expires_at_tz timestamptz GENERATED ALWAYS AS (${timeOf('expires_at')}) STORED;

  -- The adapter's as-of rule: among versions valid at valid_at and stored by known_at, the greatest
  -- valid_from wins, then the latest transaction, then the highest version. Deleted ids are left out.
  CREATE FUNCTION documents_as_of(collection_name text, valid_at timestamptz, known_at timestamptz DEFAULT now())
  RETURNS TABLE (id text, version integer, valid_from_at timestamptz, tx_time_at timestamptz, body jsonb)
  LANGUAGE sql STABLE
  BEGIN ATOMIC
    SELECT d.id, d.version, d.valid_from_at, d.tx_time_at, d.body_json
    FROM (
      SELECT DISTINCT ON (v.id) v.id, v.version, v.valid_from_at, v.tx_time_at, v.body_json, v.deleted
      FROM documents v
      WHERE v.collection = collection_name
        AND v.valid_from <= floor(extract(epoch FROM valid_at) * 1000)::int8
        AND v.tx_time <= floor(extract(epoch FROM known_at) * 1000)::int8
      ORDER BY v.id, v.valid_from DESC, v.tx_time DESC, v.version DESC
    ) d
    WHERE NOT d.deleted
    ORDER BY d.id;
  END;

  CREATE VIEW current_documents AS
    SELECT d.collection, d.id, d.version, d.valid_from_at, d.tx_time_at, d.body_json AS body
    FROM (
      SELECT DISTINCT ON (collection, id) collection, id, version, valid_from_at, tx_time_at, body_json, deleted
      FROM documents
      WHERE valid_from <= ${NOW_MS} AND tx_time <= ${NOW_MS}
      ORDER BY collection, id, valid_from DESC, tx_time DESC, version DESC
    ) d
    WHERE NOT d.deleted;

  CREATE VIEW current_nodes AS
    SELECT id, body->>'geozone' AS geozone, body->>'status' AS status, version, valid_from_at, tx_time_at, body
    FROM current_documents WHERE collection = 'nodes';
  CREATE VIEW current_workers AS
    SELECT id, body->>'region' AS region, body->>'status' AS status, version, valid_from_at, tx_time_at, body
    FROM current_documents WHERE collection = 'workers';
  CREATE VIEW current_jobs AS
    SELECT id, body->'job'->>'status' AS status, version, valid_from_at, tx_time_at, body
    FROM current_documents WHERE collection = 'jobs';
  CREATE VIEW current_job_executions AS
    SELECT id, body->>'job_id' AS job_id, body->>'node_id' AS node_id, body->>'status' AS status, version, valid_from_at, tx_time_at, body
    FROM current_documents WHERE collection = 'job_executions';

  CREATE VIEW current_leases AS
    SELECT name, holder, token, expires_at_tz AS expires_at
    FROM leases
    WHERE holder IS NOT NULL AND expires_at > ${NOW_MS};

  COMMENT ON TABLE schema_migrations IS 'Migrations applied to this schema, one row each; ArcNet applies the missing ones when it opens the store and refuses a schema newer than it knows.';
  COMMENT ON COLUMN schema_migrations.version IS 'Migration number (src/store/postgres-schema.ts).';
  COMMENT ON COLUMN schema_migrations.name IS 'What the migration does.';
  COMMENT ON COLUMN schema_migrations.applied_at IS 'When this schema got it (server clock).';

  COMMENT ON TABLE documents IS 'Every version of every bitemporal document, one immutable row each (ADR 0002). Read through documents_as_of() or the current_* views; history retention (ADR 0013) compacts old versions of the configured collections.';
  COMMENT ON COLUMN documents.collection IS 'Collection: nodes, workers, jobs, job_executions, ...';
  COMMENT ON COLUMN documents.id IS 'Document id within its collection.';
  COMMENT ON COLUMN documents.version IS 'Per id: 1 for the first put, +1 for each put or delete, in commit order. Retention may leave gaps.';
  COMMENT ON COLUMN documents.valid_from IS 'Valid time (epoch ms, writer''s clock): when this version became true in the world.';
  COMMENT ON COLUMN documents.tx_time IS 'Transaction time (epoch ms, writer''s clock): when the store learned this version.';
  COMMENT ON COLUMN documents.body IS 'The document as JSON text, exactly as written (the source of truth); NULL for a deletion.';
  COMMENT ON COLUMN documents.deleted IS 'True when this version is a deletion (a tombstone): the id does not exist from valid_from on.';
  COMMENT ON COLUMN documents.valid_from_at IS 'valid_from as timestamptz (generated).';
  COMMENT ON COLUMN documents.tx_time_at IS 'tx_time as timestamptz (generated).';
  COMMENT ON COLUMN documents.body_json IS 'body as jsonb (generated); NULL for a deletion, or for the rare body jsonb cannot hold (\\u0000 or a lone surrogate in a string).';

  COMMENT ON TABLE document_heads IS 'The latest version of each document id (in commit order): what writers lock and compare-and-set checks.';
  COMMENT ON COLUMN document_heads.collection IS 'Collection of the document.';
  COMMENT ON COLUMN document_heads.id IS 'Document id.';
  COMMENT ON COLUMN document_heads.version IS 'Its latest version; documents always keeps this row.';
  COMMENT ON COLUMN document_heads.deleted IS 'Whether that latest version is a deletion.';

  COMMENT ON TABLE kv IS 'The KV store''s current keys (blueprints/, slices/, endpoints/ ...), one row per live key.';
  COMMENT ON COLUMN kv.key IS 'The key; prefixes are compared by code point (COLLATE "C").';
  COMMENT ON COLUMN kv.value IS 'The value as JSON text, exactly as written.';
  COMMENT ON COLUMN kv.create_revision IS 'Store revision at which this key was created (since its last deletion).';
  COMMENT ON COLUMN kv.mod_revision IS 'Store revision of its last write; what compare-and-set compares.';
  COMMENT ON COLUMN kv.version IS 'Writes to this key since creation (1 on create).';
  COMMENT ON COLUMN kv.value_json IS 'value as jsonb (generated); NULL for the rare value jsonb cannot hold.';

  COMMENT ON TABLE kv_events IS 'Every KV change in revision order: what watches replay and follow.';
  COMMENT ON COLUMN kv_events.revision IS 'Store revision of the change; gap-free, visible in order.';
  COMMENT ON COLUMN kv_events.key IS 'The key changed.';
  COMMENT ON COLUMN kv_events.type IS 'put or delete.';
  COMMENT ON COLUMN kv_events.value IS 'The value put, as JSON text; NULL for a delete.';

  COMMENT ON TABLE kv_revision IS 'One row: the store revision. Every KV write locks it, which orders writers and keeps revisions gap-free.';
  COMMENT ON COLUMN kv_revision.id IS 'Always 0.';
  COMMENT ON COLUMN kv_revision.revision IS 'The latest revision handed out (0 when the KV store is empty).';

  COMMENT ON TABLE leases IS 'Every lease ever granted, one row per name, kept after release and expiry so fencing tokens never restart. current_leases shows the live ones.';
  COMMENT ON COLUMN leases.name IS 'Lease name: reservation/<node>, aggregator/<zone>, coordinator, ...';
  COMMENT ON COLUMN leases.holder IS 'Who holds it; NULL once released.';
  COMMENT ON COLUMN leases.token IS 'Fencing token of the latest grant: strictly increasing per name; fenced writes must carry exactly this.';
  COMMENT ON COLUMN leases.expires_at IS 'When the latest grant lapses (epoch ms, granter''s clock); live while holder is set and this is in the future.';
  COMMENT ON COLUMN leases.expires_at_tz IS 'expires_at as timestamptz (generated).';

  COMMENT ON FUNCTION documents_as_of(text, timestamptz, timestamptz) IS 'The documents of a collection as they were at valid_at, as the store knew them at known_at (default now), one row per live id.';

${viewComments('current_documents', 'Every live document as of now (server clock), one row per collection and id.', [
    ['collection', 'Collection.'],
    ['id', 'Document id.'],
  ])}
${viewComments('current_nodes', 'Nodes as of now: telemetry, capacity and status per node (src/mesh/node.ts NodeState).', [
    ['id', 'Node id.'],
    ['geozone', 'Geozone (CAISO, ERCOT, PJM, ...).'],
    ['status', 'online, busy, draining or offline.'],
  ])}
${viewComments('current_workers', 'Batch-job workers as of now (src/jobs/model.ts WorkerRecord).', [
    ['id', 'Worker (node) id.'],
    ['region', 'Region the worker registered with.'],
    ['status', 'Worker status.'],
  ])}
${viewComments('current_jobs', 'Verified batch jobs as of now (src/jobs/job-plan.ts StoredJob).', [
    ['id', 'Job id.'],
    ['status', 'Job status.'],
  ])}
${viewComments('current_job_executions', 'Executions of batch jobs as of now (src/jobs/model.ts JobExecution).', [
    ['id', 'Execution id.'],
    ['job_id', 'The job it runs.'],
    ['node_id', 'The worker it runs on.'],
    ['status', 'Execution status.'],
  ])}

  COMMENT ON VIEW current_leases IS 'Leases live now (server clock): who holds each and with which fencing token.';
  COMMENT ON COLUMN current_leases.name IS 'Lease name.';
  COMMENT ON COLUMN current_leases.holder IS 'Who holds it.';
  COMMENT ON COLUMN current_leases.token IS 'Fencing token of this grant.';
  COMMENT ON COLUMN current_leases.expires_at IS 'When the grant lapses unless renewed.';
`;

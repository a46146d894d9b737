/**
 * One batch of history retention on PostgreSQL (the pass and the rule: src/store/retention.ts): one
 * statement. Every process on a schema runs the pass; a transaction-scoped advisory
 * lock taken by each batch lets one compact at a time, and a process that finds it taken leaves the
 * pass to the holder until its next interval.
 */
import type { CompactionBatch, CompactionEngine } from './retention.ts';
import { advisoryLockKey } from './postgres-schema.ts';
import type { Pg } from './postgres-client.ts';

/** A time's grid point: the horizon at or before it, else the next whole multiple of the resolution ($5). */
const gridPoint = (column: string): string =>
  `CASE WHEN $6::int8 IS NOT NULL AND ${column} <= $6::int8 THEN $6::int8 ELSE ((${column} + $5::int8 - 1) / $5::int8) * $5::int8 END`;

// $1 collection, $2 ids, $3..$4 the transaction-time window, $5 resolution, $6 horizon, $7 lock key.
// Every CTE reads the snapshot from before the DELETE, so each version is judged against all of them.
// Times at or before the epoch are left alone: integer division truncates there, which would misplace them.
const COMPACT = `
  WITH lock AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($7::int8) AS held),
  candidates AS MATERIALIZED (
    SELECT r.ctid AS row_id, r.id, r.version, r.valid_from, r.tx_time
    FROM unnest($2::text[]) AS p(id)
    CROSS JOIN LATERAL (
      SELECT ctid, id, version, valid_from, tx_time FROM documents
      WHERE collection = $1 AND id = p.id AND tx_time > $3::int8 AND tx_time <= $4::int8
    ) r
    WHERE (SELECT held FROM lock)
  ),
  doomed AS MATERIALIZED (
    SELECT c.row_id
    FROM candidates c
    JOIN document_heads h ON h.collection = $1 AND h.id = c.id AND c.version < h.version
    CROSS JOIN LATERAL (
      SELECT 1 FROM documents s
      WHERE s.collection = $1 AND s.id = c.id
        AND s.valid_from >= c.valid_from AND s.valid_from <= ${gridPoint('c.valid_from')}
        AND s.tx_time <= ${gridPoint('c.tx_time')}
        AND (s.valid_from > c.valid_from OR s.tx_time > c.tx_time OR (s.tx_time = c.tx_time AND s.version > c.version))
      LIMIT 1
    ) outranked
    WHERE c.valid_from > 0 AND c.tx_time > 0
  ),
  removed AS (
    DELETE FROM documents d WHERE d.ctid = ANY (ARRAY(SELECT row_id FROM doomed)) RETURNING 1
  )
  SELECT (SELECT held FROM lock) AS held,
         (SELECT count(*) FROM candidates)::int8 AS examined,
         (SELECT count(*) FROM removed)::int8 AS deleted`;

/**
 * Whether the planner's picture of documents is missing or stale: changed rows since the last
 * ANALYZE past a fifth of the table (autovacuum's own default is a tenth, so with it on this rarely
 * fires). Compaction changes the table as fast as telemetry grows it, and with stale statistics the
 * planner probes an id's versions by scanning all of them: a batch of milliseconds takes a second.
 */
const STATISTICS_STALE = `
  SELECT coalesce(s.n_mod_since_analyze, 0) > greatest(1000, 0.2 * greatest(c.reltuples, 0)) AS stale
  FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
  WHERE c.oid = 'documents'::regclass`;

export class PgCompaction implements CompactionEngine {
  private readonly pg: Pg;
  private readonly lockKey: string;
  private analyzeRefused = false;

  constructor(pg: Pg, schema: string) {
    this.pg = pg;
    this.lockKey = advisoryLockKey('history retention', schema);
  }

  /** ANALYZE documents when its statistics are stale; a role that may not (not the owner) is told once and carries on. */
  async beforePass(): Promise<void> {
    if (this.analyzeRefused) return;
    const [row] = await this.pg.query<{ stale: boolean }>(STATISTICS_STALE, []);
    if (row?.stale !== true) return;
    try {
      await this.pg.query('ANALYZE documents', [], false);
    } catch (error) {
      this.analyzeRefused = true;
      this.pg.logger?.warn({ err: error }, 'history retention cannot ANALYZE documents; leaving statistics to autovacuum');
    }
  }

  async ids(collection: string, after: string | undefined, limit: number): Promise<readonly string[]> {
    const rows =
      after === undefined
        ? await this.pg.query<{ id: string }>('SELECT id FROM document_heads WHERE collection = $1 ORDER BY id LIMIT $2', [collection, limit])
        : await this.pg.query<{ id: string }>('SELECT id FROM document_heads WHERE collection = $1 AND id > $2 ORDER BY id LIMIT $3', [collection, after, limit]);
    return rows.map((row) => row.id);
  }

  async compact(batch: CompactionBatch): Promise<{ examined: number; deleted: number } | undefined> {
    // One statement is one transaction, so its lock is held to its end. Planned afresh each time (not
    // the flight's generic plan): which index serves it depends on how much history there is.
    const [row] = await this.pg.query<{ held: boolean; examined: number; deleted: number }>(
      COMPACT,
      [batch.collection, batch.ids, batch.after, batch.through, batch.everyMs, batch.horizon, this.lockKey],
      false,
    );
    return row === undefined || !row.held ? undefined : { examined: row.examined, deleted: row.deleted };
  }

  async oldest(collection: string): Promise<number | undefined> {
    const [row] = await this.pg.query<{ t: number | null }>('SELECT min(tx_time) AS t FROM documents WHERE collection = $1', [collection]);
    return row?.t ?? undefined;
  }

  async progress(collection: string, resolutionMs: number): Promise<number | undefined> {
    const [row] = await this.pg.query<{ compacted_through: number }>(
      'SELECT compacted_through FROM retention_progress WHERE collection = $1 AND resolution_ms = $2',
      [collection, resolutionMs],
    );
    return row?.compacted_through;
  }

  async saveProgress(collection: string, resolutionMs: number, through: number): Promise<void> {
    await this.pg.execute(
      `INSERT INTO retention_progress AS p (collection, resolution_ms, compacted_through) VALUES ($1, $2, $3)
       ON CONFLICT (collection, resolution_ms) DO UPDATE SET compacted_through = greatest(p.compacted_through, excluded.compacted_through)`,
      [collection, resolutionMs, through],
    );
  }
}

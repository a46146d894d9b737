/**
 * One batch of history retention on SQLite (the pass and the rule: src/store/retention.ts). Each batch
 * is one short IMMEDIATE transaction on the store's own connection; the pass yields to the event loop
 * between batches, so writers queue behind at most one batch.
 *
 * The windows are read through a partial index over the retained collections only
 * (`documents_retained_tx`): a full (collection, id, tx_time) index made every write pay for a B-tree
 * that only retention reads, jobs and executions included. SQLite uses a partial index only when the
 * query repeats its WHERE term, so the statements are built from the set the index covers, kept in
 * `retention_indexed` and read again at every pass (another process may have widened it).
 */
import type { CompactionBatch, CompactionEngine } from './retention.ts';
import type { Sqlite } from './sqlite-client.ts';

const RETAINED_INDEX = 'documents_retained_tx';

/** A time's grid point: the horizon at or before it, else the next whole multiple of the resolution (?5). */
const gridPoint = (column: string): string => `CASE WHEN ?6 IS NOT NULL AND ${column} <= ?6 THEN ?6 ELSE ((${column} + ?5 - 1) / ?5) * ?5 END`;

const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`;
/** The partial index's WHERE term, spelt identically in the index and in every query that must use it. */
const coveredTerm = (column: string, covered: readonly string[]): string => `${column} IN (${covered.map(literal).join(', ')})`;

interface Statements {
  readonly covered: readonly string[];
  readonly candidates: string;
  readonly compact: string;
  readonly oldest: string;
}

function statements(covered: readonly string[]): Statements {
  // ?1 collection, ?2 ids (JSON array), ?3..?4 the transaction-time window, ?5 resolution, ?6 horizon.
  const candidates = `
    FROM json_each(?2) j
    CROSS JOIN documents r INDEXED BY ${RETAINED_INDEX}
      ON ${coveredTerm('r.collection', covered)} AND r.collection = ?1 AND r.id = j.value AND r.tx_time > ?3 AND r.tx_time <= ?4`;
  // Not the latest version of its id (a seek past its own version: max() would walk every version of the id).
  // Times at or before the epoch are left alone: integer division truncates there, which would misplace them.
  const compact = `
    DELETE FROM documents WHERE seq IN (
      SELECT r.seq ${candidates}
      WHERE r.valid_from > 0 AND r.tx_time > 0
        AND EXISTS (SELECT 1 FROM documents m WHERE m.collection = ?1 AND m.id = r.id AND m.version > r.version)
        AND EXISTS (
          SELECT 1 FROM documents s
          WHERE s.collection = ?1 AND s.id = r.id
            AND s.valid_from >= r.valid_from AND s.valid_from <= ${gridPoint('r.valid_from')}
            AND s.tx_time <= ${gridPoint('r.tx_time')}
            AND (s.valid_from > r.valid_from OR s.tx_time > r.tx_time OR (s.tx_time = r.tx_time AND s.seq > r.seq))
        )
    )`;
  const oldest = `SELECT min(tx_time) AS t FROM documents INDEXED BY ${RETAINED_INDEX} WHERE ${coveredTerm('collection', covered)} AND collection = ?`;
  return { covered, candidates, compact, oldest };
}

/**
 * Widens the partial index to cover `collections` (never narrows it: another process on the same file
 * may retain more). A no-op when it already covers them, which is every open after the first.
 */
export function coverRetainedCollections(s: Sqlite, collections: readonly string[]): readonly string[] {
  return s.write(() => {
    const covered = new Set(indexedCollections(s));
    const missing = collections.filter((c) => !covered.has(c));
    if (missing.length > 0 || (covered.size > 0 && !indexExists(s))) {
      for (const collection of missing) covered.add(collection);
      const all = [...covered].sort();
      s.run(`DROP INDEX IF EXISTS ${RETAINED_INDEX}`);
      s.run(`CREATE INDEX ${RETAINED_INDEX} ON documents (collection, id, tx_time) WHERE ${coveredTerm('collection', all)}`);
      for (const collection of missing) s.stmt('INSERT INTO retention_indexed (collection) VALUES (?)').run(collection);
    }
    return [...covered].sort();
  });
}

function indexedCollections(s: Sqlite): readonly string[] {
  return s
    .stmt('SELECT collection FROM retention_indexed ORDER BY collection')
    .all()
    .map((row) => row['collection'] as string);
}

function indexExists(s: Sqlite): boolean {
  return s.stmt("SELECT 1 AS present FROM sqlite_master WHERE type = 'index' AND name = ?").get(RETAINED_INDEX) !== undefined;
}

/** ?1 collection, ?2 the id to start after, ?3 how many. Two variants: "?2 IS NULL OR id > ?2" would scan to ?2. */
const skipScan = (first: string): string => `
  WITH RECURSIVE page(id, n) AS (
    SELECT (SELECT id FROM documents WHERE collection = ?1 ${first} ORDER BY id LIMIT 1), 1
    UNION ALL
    SELECT (SELECT d.id FROM documents d WHERE d.collection = ?1 AND d.id > page.id ORDER BY d.id LIMIT 1), n + 1
    FROM page WHERE page.id IS NOT NULL AND n < ?3
  )
  SELECT id FROM page WHERE id IS NOT NULL`;
const FIRST_IDS = skipScan('');
const IDS_AFTER = skipScan('AND id > ?2');

export class SqliteCompaction implements CompactionEngine {
  private readonly s: Sqlite;
  private sql: Statements;

  /** `retained`: the policy's collections, indexed now so the first pass does not build the index. */
  constructor(s: Sqlite, retained: readonly string[]) {
    this.s = s;
    this.sql = statements(coverRetainedCollections(s, retained));
  }

  async beforePass(): Promise<void> {
    this.s.ensureOpen();
    const covered = indexedCollections(this.s);
    if (covered.join('\u0000') !== this.sql.covered.join('\u0000')) this.sql = statements(covered);
  }

  async ids(collection: string, after: string | undefined, limit: number): Promise<readonly string[]> {
    this.s.ensureOpen();
    // A skip scan over the index: one seek per distinct id, however many versions each has.
    const rows = this.s.stmt(after === undefined ? FIRST_IDS : IDS_AFTER).all(collection, after ?? null, limit);
    return rows.map((row) => row['id'] as string);
  }

  async compact(batch: CompactionBatch): Promise<{ examined: number; deleted: number }> {
    this.s.ensureOpen();
    // node:sqlite binds a number as REAL, and the grid arithmetic needs integer division: bigints bind as INTEGER.
    const horizon = batch.horizon === null ? null : BigInt(batch.horizon);
    const params = [batch.collection, JSON.stringify(batch.ids), batch.after, batch.through, BigInt(batch.everyMs), horizon] as const;
    const { candidates, compact } = this.sql;
    return this.s.write(() => {
      const examined = Number(this.s.stmt(`SELECT count(*) AS n ${candidates}`).get(...params.slice(0, 4))?.['n'] ?? 0);
      const deleted = Number(this.s.stmt(compact).run(...params).changes);
      return { examined, deleted };
    });
  }

  async oldest(collection: string): Promise<number | undefined> {
    this.s.ensureOpen();
    const value = this.s.stmt(this.sql.oldest).get(collection)?.['t'];
    return value === null || value === undefined ? undefined : Number(value);
  }

  async progress(collection: string, resolutionMs: number): Promise<number | undefined> {
    this.s.ensureOpen();
    const value = this.s
      .stmt('SELECT compacted_through FROM retention_progress WHERE collection = ? AND resolution_ms = ?')
      .get(collection, resolutionMs)?.['compacted_through'];
    return value === undefined ? undefined : Number(value);
  }

  async saveProgress(collection: string, resolutionMs: number, through: number): Promise<void> {
    this.s.ensureOpen();
    this.s.write(() =>
      this.s
        .stmt(
          `INSERT INTO retention_progress (collection, resolution_ms, compacted_through) VALUES (?, ?, ?)
           ON CONFLICT (collection, resolution_ms) DO UPDATE SET compacted_through = max(compacted_through, excluded.compacted_through)`,
        )
        .run(collection, resolutionMs, through),
    );
  }
}

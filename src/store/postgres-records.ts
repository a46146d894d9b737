/**
 * The RecordStore port on PostgreSQL (ADR 0014): a batch is one INSERT ... ON CONFLICT DO NOTHING over
 * unnested arrays, an expiry chunk one DELETE.
 */
import { decode, encode, requireLimit, requireTime } from './input.ts';
import type { RecordPut, RecordStore, StoredRecord } from './ports.ts';
import { requireText, type Pg, type Row } from './postgres-client.ts';

// Rows go in input order, so of an id given twice the first lands and the second meets it.
const INSERT_RECORDS = `
  INSERT INTO records (collection, id, recorded_at, body)
  SELECT collection, id, $4::int8, body
  FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(collection, id, body, ord)
  ORDER BY ord
  ON CONFLICT (collection, id) DO NOTHING
  RETURNING collection, id`;

const GET_RECORD = 'SELECT collection, id, recorded_at, body FROM records WHERE collection = $1 AND id = $2';

// SKIP LOCKED: replicas sweeping at once take different rows instead of queueing behind each other.
const EXPIRE_RECORDS = `
  WITH gone AS (
    DELETE FROM records WHERE (collection, id) IN (
      SELECT collection, id FROM records
      WHERE collection = $1 AND recorded_at < $2
      ORDER BY recorded_at LIMIT $3
      FOR UPDATE SKIP LOCKED
    )
    RETURNING 1
  )
  SELECT count(*)::int8 AS n FROM gone`;

interface RecordRow extends Row {
  collection: string;
  id: string;
  recorded_at: number;
  body: string;
}

export class PgRecordStore implements RecordStore {
  private readonly pg: Pg;
  constructor(pg: Pg) {
    this.pg = pg;
  }

  async insertMany<T>(records: readonly RecordPut<T>[]): Promise<boolean[]> {
    this.pg.ensureOpen();
    if (records.length === 0) return [];
    const collections = records.map((r) => requireText(r.collection, 'collection'));
    const ids = records.map((r) => requireText(r.id, 'record id'));
    const bodies = records.map((r) => encode(r.body, 'record body'));
    const rows = await this.pg.query<{ collection: string; id: string }>(INSERT_RECORDS, [collections, ids, bodies, this.pg.clock.now()]);
    const landed = new Set(rows.map((row) => `${row.collection}\u0000${row.id}`));
    // Only the first of a repeated id can have landed.
    return records.map((r) => landed.delete(`${r.collection}\u0000${r.id}`));
  }

  async get<T>(collection: string, id: string): Promise<StoredRecord<T> | undefined> {
    this.pg.ensureOpen();
    const [row] = await this.pg.query<RecordRow>(GET_RECORD, [requireText(collection, 'collection'), requireText(id, 'record id')]);
    if (row === undefined) return undefined;
    return { collection: row.collection, id: row.id, recordedAt: row.recorded_at, body: decode<T>(row.body) as T };
  }

  async expire(collection: string, before: number, limit: number): Promise<number> {
    this.pg.ensureOpen();
    // Planned for its parameters: a plan cached on an empty table would scan it for ever after.
    const [row] = await this.pg.query<{ n: number }>(EXPIRE_RECORDS, [requireText(collection, 'collection'), requireTime(before, 'before'), requireLimit(limit)], false);
    return row?.n ?? 0;
  }
}

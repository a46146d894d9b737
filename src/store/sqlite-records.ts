/**
 * The RecordStore port on SQLite (ADR 0014): write-once rows in `records`, one prepared INSERT per
 * record inside one IMMEDIATE transaction. node:sqlite runs a cached statement in about a microsecond,
 * so one multi-row statement (json_each or a VALUES list) measured slower than a statement per row:
 * the cost of a record is its B-tree inserts, which the table keeps to one random-key index.
 */
import { decode, encode, requireLimit, requireTime } from './input.ts';
import type { RecordPut, RecordStore, StoredRecord } from './ports.ts';
import type { Sqlite } from './sqlite-client.ts';

const INSERT = 'INSERT INTO records (collection, id, recorded_at, body) VALUES (?, ?, ?, ?) ON CONFLICT (collection, id) DO NOTHING';
const GET = 'SELECT collection, id, recorded_at, body FROM records WHERE collection = ? AND id = ?';
const EXPIRE = `
  DELETE FROM records WHERE seq IN (
    SELECT seq FROM records INDEXED BY records_age
    WHERE collection = ? AND recorded_at < ?
    ORDER BY recorded_at LIMIT ?
  )`;

export class SqliteRecordStore implements RecordStore {
  private readonly s: Sqlite;
  constructor(s: Sqlite) {
    this.s = s;
  }

  async insertMany<T>(records: readonly RecordPut<T>[]): Promise<boolean[]> {
    this.s.ensureOpen();
    if (records.length === 0) return [];
    const bodies = records.map((r) => encode(r.body, 'record body'));
    const now = this.s.clock.now();
    return this.s.write(() => {
      const insert = this.s.stmt(INSERT);
      return records.map((r, i) => Number(insert.run(r.collection, r.id, now, bodies[i]!).changes) === 1);
    });
  }

  async get<T>(collection: string, id: string): Promise<StoredRecord<T> | undefined> {
    this.s.ensureOpen();
    const row = this.s.stmt(GET).get(collection, id);
    if (row === undefined) return undefined;
    return { collection: row['collection'] as string, id: row['id'] as string, recordedAt: row['recorded_at'] as number, body: decode<T>(row['body']) as T };
  }

  async expire(collection: string, before: number, limit: number): Promise<number> {
    this.s.ensureOpen();
    requireTime(before, 'before');
    requireLimit(limit);
    return this.s.write(() => Number(this.s.stmt(EXPIRE).run(collection, before, limit).changes));
  }
}

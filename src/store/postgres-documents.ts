/**
 * The DocumentStore port on PostgreSQL: immutable version rows plus one head row per id that writers
 * lock, every write one flight whose fence and compare-and-set checks are conditions of its SQL.
 */
import { ArcError, StaleFencingTokenError } from '../core/errors.ts';
import { decode, encode, requireExpected, requireTime } from './input.ts';
import type { DocumentPut, DocumentStore, DocumentVersion, PutOptions, ReadOptions, WriteOutcome } from './ports.ts';
import { requireFence, requireText, type Pg, type Row } from './postgres-client.ts';

const DOC_COLUMNS = 'collection, id, version, valid_from, tx_time, body, deleted';

/**
 * Taken before the write statement, in the same flight: an id being written by another transaction is
 * waited for here, so the write statement's snapshot (taken after) sees that writer's head. Sorted, so
 * two batches over the same ids lock them in one order and cannot deadlock.
 */
const LOCK_HEADS = `
  SELECT 1 FROM document_heads
  WHERE (collection, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
  ORDER BY collection, id
  FOR UPDATE`;

/**
 * The whole batch in one statement: fence check, compare-and-set, version numbering, heads and
 * history. Nothing is written unless every fence and every expected version holds.
 *
 * - lease: the fence rows, FOR SHARE so no grant can commit a newer token before this transaction
 *   does; a locking read returns the row's latest committed version even if it changed after the
 *   statement's snapshot, so the comparison is with the token that is current now.
 * - seq: the k-th put of an id in the batch gets head + k, and compares with what the batch itself
 *   wrote before it (lag), so repeated ids are numbered and checked in batch order.
 * - An id created concurrently and not locked above is caught by the documents primary key (both
 *   writers number from 1), which aborts the flight; Pg.flight runs it again.
 */
const WRITE_DOCUMENTS = `
  WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::text[], $7::int8[])
      WITH ORDINALITY AS t(collection, id, expected, valid_from, body, fence_lease, fence_token, ord)
  ),
  lease AS MATERIALIZED (
    SELECT name, token FROM leases
    WHERE name = ANY($6::text[])
    ORDER BY name
    FOR SHARE
  ),
  stale AS (
    SELECT i.fence_lease, i.fence_token, l.token AS current
    FROM input i LEFT JOIN lease l ON l.name = i.fence_lease
    WHERE i.fence_lease IS NOT NULL AND l.token IS DISTINCT FROM i.fence_token
    ORDER BY i.ord
    LIMIT 1
  ),
  seq AS (
    SELECT i.ord, i.collection, i.id, i.expected, i.valid_from, i.body,
           coalesce(h.version, 0) AS base,
           coalesce(lag(i.body IS NULL) OVER w, h.deleted, true) AS latest_deleted,
           coalesce(h.version, 0) + row_number() OVER w AS version
    FROM input i LEFT JOIN document_heads h ON h.collection = i.collection AND h.id = i.id
    WINDOW w AS (PARTITION BY i.collection, i.id ORDER BY i.ord)
  ),
  verdict AS (
    SELECT NOT EXISTS (SELECT 1 FROM stale) AS fence_ok,
           coalesce(bool_and(CASE WHEN expected IS NULL THEN true
                                  WHEN expected = 0 THEN latest_deleted
                                  ELSE expected = version - 1 END), true) AS cas_ok
    FROM seq
  ),
  heads AS (
    INSERT INTO document_heads AS h (collection, id, version, deleted)
    SELECT DISTINCT ON (collection, id) collection, id, version, body IS NULL
    FROM seq
    WHERE (SELECT fence_ok AND cas_ok FROM verdict)
    ORDER BY collection, id, ord DESC
    ON CONFLICT (collection, id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted
  ),
  docs AS (
    INSERT INTO documents (collection, id, version, valid_from, tx_time, body, deleted)
    SELECT collection, id, version, valid_from, $8::int8, body, body IS NULL
    FROM seq
    WHERE (SELECT fence_ok AND cas_ok FROM verdict)
  )
  SELECT v.fence_ok, v.cas_ok, s.base, s.version,
         (SELECT fence_lease FROM stale) AS stale_lease,
         (SELECT fence_token FROM stale) AS stale_token,
         (SELECT current FROM stale) AS stale_current
  FROM seq s CROSS JOIN verdict v
  ORDER BY s.ord`;

const GET_DOCUMENT = `
  SELECT ${DOC_COLUMNS} FROM documents
  WHERE collection = $1 AND id = $2 AND valid_from <= $3 AND tx_time <= $4
  ORDER BY valid_from DESC, tx_time DESC, version DESC
  LIMIT 1`;

// One pass over the collection's index range: DISTINCT ON keeps each id's first row in as-of order.
const LIST_DOCUMENTS = `
  SELECT ${DOC_COLUMNS} FROM (
    SELECT DISTINCT ON (id) ${DOC_COLUMNS} FROM documents
    WHERE collection = $1 AND valid_from <= $2 AND tx_time <= $3
    ORDER BY id, valid_from DESC, tx_time DESC, version DESC
  ) latest
  WHERE NOT deleted
  ORDER BY id`;

// Version is commit order per id (writers of one id are serialised on its head row).
const DOCUMENT_HISTORY = `SELECT ${DOC_COLUMNS} FROM documents WHERE collection = $1 AND id = $2 ORDER BY version`;

interface DocRow extends Row {
  collection: string;
  id: string;
  version: number;
  valid_from: number;
  tx_time: number;
  body: string | null;
  deleted: boolean;
}

interface WriteRow extends Row {
  fence_ok: boolean;
  cas_ok: boolean;
  base: number;
  version: number;
  stale_lease: string | null;
  stale_token: number | null;
  stale_current: number | null;
}

function toVersion<T>(row: DocRow): DocumentVersion<T> {
  return {
    collection: row.collection,
    id: row.id,
    version: row.version,
    validFrom: row.valid_from,
    txTime: row.tx_time,
    body: decode<T>(row.body),
    deleted: row.deleted,
  };
}

interface PreparedPut {
  readonly collection: string;
  readonly id: string;
  readonly body: string | null;
  readonly validFrom: number;
  readonly options: PutOptions | undefined;
}

export class PgDocumentStore implements DocumentStore {
  private readonly pg: Pg;
  constructor(pg: Pg) {
    this.pg = pg;
  }

  async put<T>(collection: string, id: string, body: T, options?: PutOptions): Promise<WriteOutcome<T>> {
    this.pg.ensureOpen();
    const now = this.pg.clock.now();
    const [outcome] = await this.write<T>([this.prepare(collection, id, encode(body, 'document body'), options, now)], now);
    return outcome as WriteOutcome<T>;
  }

  async delete(collection: string, id: string, options?: PutOptions): Promise<WriteOutcome<never>> {
    this.pg.ensureOpen();
    // A delete always appends a tombstone, even for an id with no live version: in a bitemporal store a
    // (possibly retroactive) "this did not exist from validFrom" is itself a fact worth recording.
    const now = this.pg.clock.now();
    const [outcome] = await this.write<never>([this.prepare(collection, id, null, options, now)], now);
    return outcome as WriteOutcome<never>;
  }

  /**
   * On any version mismatch nothing lands, and every outcome is ok:false 'version-mismatch' carrying
   * the id's latest committed version: reporting ok:true for puts that did not land would lie, and the
   * current versions let the caller rebuild the whole batch in one read. A stale fence throws.
   */
  async putMany<T>(puts: readonly DocumentPut<T>[]): Promise<WriteOutcome<T>[]> {
    this.pg.ensureOpen();
    if (puts.length === 0) return [];
    const now = this.pg.clock.now();
    const prepared = puts.map((p) => this.prepare(p.collection, p.id, encode(p.body, 'document body'), p.options, now));
    return this.write<T>(prepared, now);
  }

  private prepare(collection: string, id: string, body: string | null, options: PutOptions | undefined, now: number): PreparedPut {
    requireText(collection, 'collection');
    requireText(id, 'document id');
    requireExpected(options?.expectedVersion, 'expectedVersion');
    requireFence(options?.fence);
    return { collection, id, body, validFrom: requireTime(options?.validFrom ?? now, 'validFrom'), options };
  }

  private async write<T>(puts: readonly PreparedPut[], now: number): Promise<WriteOutcome<T>[]> {
    const collections = puts.map((p) => p.collection);
    const ids = puts.map((p) => p.id);
    const [, rows] = await this.pg.flight([
      { text: LOCK_HEADS, params: [collections, ids] },
      {
        text: WRITE_DOCUMENTS,
        params: [
          collections,
          ids,
          puts.map((p) => p.options?.expectedVersion ?? null),
          puts.map((p) => p.validFrom),
          puts.map((p) => p.body),
          puts.map((p) => p.options?.fence?.lease ?? null),
          puts.map((p) => p.options?.fence?.token ?? null),
          now,
        ],
      },
    ]);
    const written = (rows ?? []) as WriteRow[];
    const verdict = written[0];
    if (verdict === undefined || written.length !== puts.length) {
      throw new ArcError('INTERNAL', `document write returned ${written.length} rows for ${puts.length} puts`);
    }
    if (!verdict.fence_ok) {
      throw new StaleFencingTokenError(verdict.stale_lease ?? '', verdict.stale_token ?? 0, verdict.stale_current ?? undefined);
    }
    if (!verdict.cas_ok) {
      return written.map((row): WriteOutcome<T> => ({ ok: false, reason: 'version-mismatch', currentVersion: row.base }));
    }
    return puts.map((put, i): WriteOutcome<T> => ({
      ok: true,
      version: {
        collection: put.collection,
        id: put.id,
        version: written[i]?.version ?? 0,
        validFrom: put.validFrom,
        txTime: now,
        body: decode<T>(put.body),
        deleted: put.body === null,
      },
    }));
  }

  async get<T>(collection: string, id: string, options?: ReadOptions): Promise<DocumentVersion<T> | undefined> {
    this.pg.ensureOpen();
    const now = this.pg.clock.now();
    const asOf = requireTime(options?.asOf ?? now, 'asOf');
    const knownAt = requireTime(options?.knownAt ?? now, 'knownAt');
    const [row] = await this.pg.query<DocRow>(GET_DOCUMENT, [requireText(collection, 'collection'), requireText(id, 'document id'), asOf, knownAt]);
    if (row === undefined || row.deleted) return undefined;
    return toVersion<T>(row);
  }

  async list<T>(collection: string, options?: ReadOptions): Promise<DocumentVersion<T>[]> {
    this.pg.ensureOpen();
    const now = this.pg.clock.now();
    const asOf = requireTime(options?.asOf ?? now, 'asOf');
    const knownAt = requireTime(options?.knownAt ?? now, 'knownAt');
    const rows = await this.pg.query<DocRow>(LIST_DOCUMENTS, [requireText(collection, 'collection'), asOf, knownAt]);
    return rows.map((row) => toVersion<T>(row));
  }

  async history<T>(collection: string, id: string): Promise<DocumentVersion<T>[]> {
    this.pg.ensureOpen();
    const rows = await this.pg.query<DocRow>(DOCUMENT_HISTORY, [requireText(collection, 'collection'), requireText(id, 'document id')]);
    return rows.map((row) => toVersion<T>(row));
  }
}

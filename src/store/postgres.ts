/**
 * PostgreSQL adapter for the state ports (distributed mode): several processes share one schema, so
 * every check-then-write runs inside one database transaction and every ordering guarantee comes from
 * row locks, never from this process's memory.
 *
 * A write is one network flight: BEGIN, its statements and COMMIT go to the server together (pipelined
 * on a reserved connection) and run back to back. Row locks are then held for server time only, never
 * across a client round trip, and a write costs one round trip however many rows it lands. The price is
 * that no statement can branch on an earlier one's result in JavaScript: the conditions (fence,
 * compare-and-set) live in the SQL, and the outcome is read from the last statement's row.
 */
import postgres from 'postgres';
import type { Logger } from '../core/logging.ts';
import { ArcError, StaleFencingTokenError, errorMessage } from '../core/errors.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import type {
  AcquireOutcome,
  AcquireRequest,
  DocumentPut,
  DocumentStore,
  DocumentVersion,
  KvEntry,
  KvEvent,
  KvPutOptions,
  KvStore,
  KvWatch,
  KvWriteOutcome,
  LeaseGrant,
  LeaseStore,
  PutOptions,
  ReadOptions,
  StateStores,
  WriteOutcome,
} from './ports.ts';
import { migrate, notifyChannel, quoteIdent, requireSchemaName } from './postgres-schema.ts';
import { decode, encode, prefixUpperBound, requireAcquireBatch, requireExpected, requireTime, requireTtl } from './input.ts';

export interface PostgresStoreOptions {
  /** postgres://user[:password]@host[:port]/database */
  readonly url: string;
  /** Where the tables live (created if missing); default "public". One schema is one store. */
  readonly schema?: string;
  readonly clock?: Clock;
  /** Where exceptions thrown by watch callbacks, and watch read failures, are reported. */
  readonly logger?: Logger;
  /** Pool size (default 10). The first watch opens one more connection, dedicated to LISTEN. */
  readonly max?: number;
  /**
   * How often open watches check the store revision (default 1000 ms). NOTIFY wakes them at once;
   * this only bounds how late an event is when a notification was lost (LISTEN connection dropped).
   */
  readonly watchPollMs?: number;
  /**
   * How long the first connection may take before opening fails UNAVAILABLE, and each later
   * connection attempt before the call waiting for it does (default 10 s).
   */
  readonly connectTimeoutMs?: number;
}

/** int8 columns hold epoch milliseconds, revisions and tokens: all far below 2^53, so numbers, not strings. */
const INT8 = {
  to: 20,
  from: [20],
  serialize: (value: number): string => String(value),
  parse: (raw: string): number => Number(raw),
};

type Db = postgres.Sql<{ int8: number }>;
type Param = string | number | boolean | null | readonly (string | number | null)[];
type Row = Record<string, unknown>;

interface Statement {
  readonly text: string;
  readonly params: readonly Param[];
}

const WATCH_BATCH = 500;
const FLIGHT_ATTEMPTS = 10;
const ACQUIRE_ATTEMPTS = 8;

/** Errors after which the server may answer again later: the network, the server going down, no free slots. */
const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  '53300', // too_many_connections
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '25P03', // idle_in_transaction_session_timeout
]);

/** Aborts that leave nothing committed, so running the same flight again is safe. */
const RETRYABLE_ABORTS = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '23505', // unique_violation: two writers creating the same new document id
]);

function pgCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

type ClientOptions = postgres.Options<{ int8: typeof INT8 }>;

class Pg {
  readonly sql: Db;
  readonly clock: Clock;
  readonly channel: string;
  readonly logger: Logger | undefined;
  /** host:port, for messages that must say which server did not answer. */
  readonly endpoint: string;
  private readonly url: string;
  private readonly options: ClientOptions;
  private closed = false;

  constructor(url: string, options: ClientOptions, clock: Clock, schema: string, logger: Logger | undefined) {
    this.url = url;
    this.options = options;
    const sql: Db = postgres(url, options);
    this.sql = sql;
    this.clock = clock;
    this.channel = notifyChannel(schema);
    this.logger = logger;
    const { host, port, path } = sql.options as unknown as { host: string[]; port: number[]; path?: string | false };
    this.endpoint = typeof path === 'string' && path !== '' ? path : `${host[0] ?? 'localhost'}:${port[0] ?? 5432}`;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  ensureOpen(): void {
    if (this.closed) throw new ArcError('CLOSED', 'the PostgreSQL state store is closed', { retryable: false });
  }

  translate(error: unknown): unknown {
    if (error instanceof ArcError) return error;
    const code = pgCode(error);
    if (code === undefined) return error;
    if (this.closed && (code === 'CONNECTION_ENDED' || code === 'CONNECTION_DESTROYED')) {
      return new ArcError('CLOSED', 'the PostgreSQL state store is closed', { retryable: false, cause: error });
    }
    if (CONNECTION_ERRORS.has(code) || code.startsWith('08')) {
      return new ArcError('UNAVAILABLE', `PostgreSQL at ${this.endpoint} is unavailable: ${errorMessage(error)}`, {
        retryable: true,
        cause: error,
      });
    }
    if (code === '40001' || code === '40P01' || code === '23505') {
      // From a flight, only once its retries ran out.
      return new ArcError('CONFLICT', `PostgreSQL aborted the transaction under contention (${code}): ${errorMessage(error)}`, {
        retryable: true,
        cause: error,
      });
    }
    // 54000: a key too long for a btree entry (~2.7 kB); 22021/22P05: text PostgreSQL cannot store.
    if (code === '54000' || code === '22021' || code === '22P05') {
      return new ArcError('INVALID_INPUT', `PostgreSQL refused the value: ${errorMessage(error)}`, { retryable: false, cause: error });
    }
    if (error instanceof postgres.PostgresError) {
      return new ArcError('INTERNAL', `PostgreSQL error ${code}: ${error.message}`, { retryable: false, cause: error });
    }
    return error;
  }

  async query<R extends Row>(text: string, params: readonly Param[]): Promise<R[]> {
    this.ensureOpen();
    try {
      return (await this.sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true })) as unknown as R[];
    } catch (error) {
      throw this.translate(error);
    }
  }

  /** Like query, but the statement's affected-row count (UPDATE without RETURNING). */
  async execute(text: string, params: readonly Param[]): Promise<number> {
    this.ensureOpen();
    try {
      const result = await this.sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true });
      return result.count;
    } catch (error) {
      throw this.translate(error);
    }
  }

  /**
   * One transaction in one flight (see the module comment); resolves to each statement's rows. An
   * abort that committed nothing (deadlock, a racing insert of the same new id) runs the flight again
   * from BEGIN, with fresh snapshots; connection failures are not retried, since a COMMIT whose answer
   * was lost may have landed.
   */
  async flight(statements: readonly Statement[]): Promise<Row[][]> {
    for (let attempt = 1; ; attempt++) {
      this.ensureOpen();
      let failure: unknown;
      let results: Row[][] | undefined;
      let tx: postgres.ReservedSql<{ int8: number }>;
      try {
        tx = await this.sql.reserve();
      } catch (error) {
        throw this.translate(error);
      }
      try {
        const queries = [
          tx.unsafe('BEGIN'),
          // Write statements only ever look rows up by key, so their best plan depends on neither the
          // values nor the table sizes. Left to itself PostgreSQL re-plans them on every call (their
          // array parameters make each custom plan look cheaper than the generic one: about 1 ms per
          // statement), and a generic plan cached while the tables were empty seq-scans them forever
          // after. So: plan once, by index. Reads keep the defaults: list's plan does depend on sizes.
          tx.unsafe('SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off'),
          ...statements.map((s) => tx.unsafe(s.text, s.params as postgres.ParameterOrJSON<never>[], { prepare: true })),
          tx.unsafe('COMMIT'),
        ];
        // execute() in order: each query goes out when executed, so this is the order on the wire.
        // Their outcomes are collected just below.
        for (const query of queries) void query.execute();
        const settled = await Promise.allSettled(queries);
        // After the first error the rest fail with 25P02 (transaction aborted) and COMMIT answers ROLLBACK.
        const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
        failure = (rejected.find((s) => pgCode(s.reason) !== '25P02') ?? rejected[0])?.reason;
        if (rejected.length === 0) {
          results = settled.slice(2, -1).map((s) => (s as PromiseFulfilledResult<unknown>).value as Row[]);
        }
      } finally {
        tx.release();
      }
      if (results !== undefined) return results;
      const code = pgCode(failure);
      if (code !== undefined && RETRYABLE_ABORTS.has(code) && attempt < FLIGHT_ATTEMPTS) {
        // Jittered so two writers that just collided do not collide again in lockstep.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 2 * attempt));
        continue;
      }
      throw this.translate(failure);
    }
  }

  /**
   * A one-connection client for LISTEN, outside the pool (a LISTEN must stay on one session). Not
   * postgres.js's sql.listen: after a dropped connection that re-listens once and, if the server is
   * still unreachable, gives up without telling anyone. Here the owner learns of every close and
   * issues LISTEN again itself.
   */
  openListener(onNotify: (payload: string) => void, onClose: () => void): Db {
    // onnotify is a postgres.js option its typings omit (sql.listen is built on it).
    const options = {
      ...this.options,
      max: 1,
      idle_timeout: null,
      max_lifetime: null,
      fetch_types: false,
      onnotify: (_channel: string, payload: string) => onNotify(payload),
      onclose: onClose,
    } as unknown as ClientOptions;
    return postgres(this.url, options);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sql.end({ timeout: 5 });
  }
}

/** PostgreSQL text cannot hold U+0000; refusing it here names the field instead of failing with an encoding error. */
function requireText(value: string, what: string): string {
  if (typeof value !== 'string') throw new ArcError('INVALID_INPUT', `${what} must be a string`);
  if (value.includes('\u0000')) throw new ArcError('INVALID_INPUT', `${what} must not contain U+0000`);
  return value;
}

function requireFence(fence: { lease: string; token: number } | undefined): void {
  if (fence === undefined) return;
  requireText(fence.lease, 'fence.lease');
  if (!Number.isSafeInteger(fence.token)) throw new ArcError('INVALID_INPUT', `fence.token must be an integer, got ${fence.token}`);
}

// ---------------------------------------------------------------------------------------------------
// Documents

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

class PgDocumentStore implements DocumentStore {
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

// ---------------------------------------------------------------------------------------------------
// KV

/**
 * Every KV write takes the counter row first, in its own statement, so (a) writers are serialised and
 * revisions are handed out in commit order, and (b) the write statement after it, with a fresh
 * snapshot, sees every earlier write: its compare-and-set cannot read a stale modRevision.
 */
const LOCK_REVISION = 'SELECT 1 FROM kv_revision WHERE id = 0 FOR UPDATE';

// The fence row is read FOR SHARE (its latest committed token, and no new grant until this commits).
const KV_PUT = `
  WITH cur AS (
    SELECT (SELECT mod_revision FROM kv WHERE key = $1::text) AS mod_revision,
           (SELECT token FROM leases WHERE name = $3::text FOR SHARE) AS fence_current
  ),
  go AS (
    SELECT 1 FROM cur
    WHERE ($3::text IS NULL OR fence_current IS NOT DISTINCT FROM $4::int8)
      AND ($5::int8 IS NULL OR coalesce(mod_revision, 0) = $5::int8)
  ),
  rev AS (
    UPDATE kv_revision SET revision = revision + 1 WHERE id = 0 AND EXISTS (SELECT 1 FROM go) RETURNING revision
  ),
  up AS (
    INSERT INTO kv AS k (key, value, create_revision, mod_revision, version)
    SELECT $1::text, $2::text, revision, revision, 1 FROM rev
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision, version = k.version + 1
  ),
  ev AS (
    INSERT INTO kv_events (revision, key, type, value) SELECT revision, $1::text, 'put', $2::text FROM rev
  )
  SELECT c.mod_revision, c.fence_current, r.revision, NULL::int8 AS store_revision,
         CASE WHEN r.revision IS NOT NULL THEN pg_notify($6::text, r.revision::text) END AS notified
  FROM cur c LEFT JOIN rev r ON true`;

// Deleting a missing key changes nothing, so it consumes no revision and emits no event.
const KV_DELETE = `
  WITH cur AS (
    SELECT (SELECT mod_revision FROM kv WHERE key = $1::text) AS mod_revision,
           (SELECT token FROM leases WHERE name = $2::text FOR SHARE) AS fence_current,
           (SELECT revision FROM kv_revision WHERE id = 0) AS store_revision
  ),
  go AS (
    SELECT 1 FROM cur
    WHERE ($2::text IS NULL OR fence_current IS NOT DISTINCT FROM $3::int8)
      AND ($4::int8 IS NULL OR coalesce(mod_revision, 0) = $4::int8)
      AND mod_revision IS NOT NULL
  ),
  rev AS (
    UPDATE kv_revision SET revision = revision + 1 WHERE id = 0 AND EXISTS (SELECT 1 FROM go) RETURNING revision
  ),
  del AS (
    DELETE FROM kv WHERE key = $1::text AND EXISTS (SELECT 1 FROM rev)
  ),
  ev AS (
    INSERT INTO kv_events (revision, key, type, value) SELECT revision, $1::text, 'delete', NULL FROM rev
  )
  SELECT c.mod_revision, c.fence_current, r.revision, c.store_revision,
         CASE WHEN r.revision IS NOT NULL THEN pg_notify($5::text, r.revision::text) END AS notified
  FROM cur c LEFT JOIN rev r ON true`;

const KV_COLUMNS = 'key, value, create_revision, mod_revision, version';
const KV_GET = `SELECT ${KV_COLUMNS} FROM kv WHERE key = $1`;
const KV_REVISION = 'SELECT revision FROM kv_revision WHERE id = 0';
// One statement so the entries and the revision come from one snapshot; the counter row is always
// there, so an empty range still yields the revision. Two variants: a NULL upper bound in a generic
// plan would cost the index its upper limit.
const KV_LIST_FROM = `
  SELECT r.revision AS store_revision, k.key, k.value, k.create_revision, k.mod_revision, k.version
  FROM kv_revision r LEFT JOIN LATERAL (SELECT ${KV_COLUMNS} FROM kv WHERE key >= $1) k ON true
  WHERE r.id = 0
  ORDER BY k.key`;
const KV_LIST_RANGE = `
  SELECT r.revision AS store_revision, k.key, k.value, k.create_revision, k.mod_revision, k.version
  FROM kv_revision r LEFT JOIN LATERAL (SELECT ${KV_COLUMNS} FROM kv WHERE key >= $1 AND key < $2) k ON true
  WHERE r.id = 0
  ORDER BY k.key`;
const KV_EVENTS_FROM = `
  SELECT revision, key, type, value FROM kv_events
  WHERE revision > $1 AND key >= $2
  ORDER BY revision LIMIT ${WATCH_BATCH}`;
const KV_EVENTS_RANGE = `
  SELECT revision, key, type, value FROM kv_events
  WHERE revision > $1 AND key >= $2 AND key < $3
  ORDER BY revision LIMIT ${WATCH_BATCH}`;

interface KvRow extends Row {
  key: string;
  value: string;
  create_revision: number;
  mod_revision: number;
  version: number;
}

interface KvWriteRow extends Row {
  mod_revision: number | null;
  fence_current: number | null;
  revision: number | null;
  store_revision: number | null;
}

interface EventRow extends Row {
  revision: number;
  key: string;
  type: 'put' | 'delete';
  value: string | null;
}

function toEntry<T>(row: KvRow): KvEntry<T> {
  return {
    key: row.key,
    value: decode<T>(row.value) as T,
    modRevision: row.mod_revision,
    createRevision: row.create_revision,
    version: row.version,
  };
}

interface Watcher {
  readonly lower: string;
  readonly upper: string | undefined;
  readonly onEvent: (event: KvEvent<unknown>) => void;
  /** Highest revision delivered (or skipped as before fromRevision). */
  last: number;
  /** Another read is due: set by every wake-up, cleared when a read starts. */
  wanted: boolean;
  /** A read loop is in progress: at most one per watcher, so delivery stays in order. */
  running: boolean;
  closed: boolean;
}

class PgKvStore implements KvStore {
  private readonly pg: Pg;
  private readonly pollMs: number;
  private readonly watchers = new Set<Watcher>();
  private poll: NodeJS.Timeout | undefined;
  private polling = false;
  private listener: Db | undefined;
  private listening: 'no' | 'starting' | 'yes' = 'no';
  private failing = false;

  constructor(pg: Pg, pollMs: number) {
    this.pg = pg;
    this.pollMs = pollMs;
  }

  async get<T>(key: string): Promise<KvEntry<T> | undefined> {
    this.pg.ensureOpen();
    const [row] = await this.pg.query<KvRow>(KV_GET, [requireText(key, 'key')]);
    return row === undefined ? undefined : toEntry<T>(row);
  }

  async put<T>(key: string, value: T, options?: KvPutOptions): Promise<KvWriteOutcome> {
    this.pg.ensureOpen();
    requireText(key, 'key');
    requireExpected(options?.expectedRevision, 'expectedRevision');
    requireFence(options?.fence);
    const text = encode(value, `value for key "${key}"`);
    const fence = options?.fence;
    const row = await this.write({
      text: KV_PUT,
      params: [key, text, fence?.lease ?? null, fence?.token ?? null, options?.expectedRevision ?? null, this.pg.channel],
    });
    return this.outcome(row, options);
  }

  async delete(key: string, options?: KvPutOptions): Promise<KvWriteOutcome> {
    this.pg.ensureOpen();
    requireText(key, 'key');
    requireExpected(options?.expectedRevision, 'expectedRevision');
    requireFence(options?.fence);
    const fence = options?.fence;
    const row = await this.write({
      text: KV_DELETE,
      params: [key, fence?.lease ?? null, fence?.token ?? null, options?.expectedRevision ?? null, this.pg.channel],
    });
    return this.outcome(row, options);
  }

  private async write(statement: Statement): Promise<KvWriteRow> {
    const [, rows] = await this.pg.flight([{ text: LOCK_REVISION, params: [] }, statement]);
    const row = rows?.[0] as KvWriteRow | undefined;
    if (row === undefined) throw new ArcError('INTERNAL', 'kv write returned no row');
    // Local watchers need not wait for the NOTIFY round trip.
    if (row.revision !== null) this.wakeAll(row.revision);
    return row;
  }

  private outcome(row: KvWriteRow, options: KvPutOptions | undefined): KvWriteOutcome {
    const fence = options?.fence;
    if (fence !== undefined && row.fence_current !== fence.token) {
      throw new StaleFencingTokenError(fence.lease, fence.token, row.fence_current ?? undefined);
    }
    if (row.revision !== null) return { ok: true, revision: row.revision };
    const current = row.mod_revision ?? 0;
    if (options?.expectedRevision !== undefined && options.expectedRevision !== current) {
      return { ok: false, reason: 'revision-mismatch', currentRevision: current };
    }
    return { ok: true, revision: row.store_revision ?? 0 };
  }

  async list<T>(prefix: string): Promise<{ entries: KvEntry<T>[]; revision: number }> {
    this.pg.ensureOpen();
    requireText(prefix, 'prefix');
    const upper = prefixUpperBound(prefix);
    const rows =
      upper === undefined
        ? await this.pg.query<KvRow & { store_revision: number }>(KV_LIST_FROM, [prefix])
        : await this.pg.query<KvRow & { store_revision: number }>(KV_LIST_RANGE, [prefix, upper]);
    const entries = rows.filter((row) => row.key !== null).map((row) => toEntry<T>(row));
    return { entries, revision: rows[0]?.store_revision ?? 0 };
  }

  async revision(): Promise<number> {
    this.pg.ensureOpen();
    const [row] = await this.pg.query<{ revision: number }>(KV_REVISION, []);
    return row?.revision ?? 0;
  }

  /**
   * Replay and live delivery are the same loop: each watcher remembers the last revision it delivered
   * and, when woken, reads the event log past it in revision order. Because revisions become visible
   * in order (the counter row lock), "past the last one delivered" can never skip a commit that lands
   * late, and reading by revision makes duplicate wake-ups harmless. Wake-ups come from this store's
   * own commits, from NOTIFY (other processes' commits), and from a poll of the revision counter for
   * notifications lost while the LISTEN connection was down.
   */
  watch<T>(prefix: string, fromRevision: number, onEvent: (event: KvEvent<T>) => void): KvWatch {
    this.pg.ensureOpen();
    requireText(prefix, 'prefix');
    requireExpected(fromRevision, 'fromRevision');
    const watcher: Watcher = {
      lower: prefix,
      upper: prefixUpperBound(prefix),
      onEvent: onEvent as (event: KvEvent<unknown>) => void,
      last: fromRevision,
      wanted: false,
      running: false,
      closed: false,
    };
    this.watchers.add(watcher);
    if (this.poll === undefined) {
      this.poll = setInterval(() => void this.pollRevision(), this.pollMs);
      this.poll.unref();
    }
    this.listen();
    this.schedule(watcher);
    return {
      close: () => {
        watcher.closed = true;
        this.watchers.delete(watcher);
        if (this.watchers.size === 0) this.stopPolling();
      },
    };
  }

  /**
   * One LISTEN per store, kept until close (an idle LISTEN costs nothing). Whenever its connection
   * closes, notifications may be lost until it is back: the poll issues LISTEN again (the client
   * reconnects on demand), and once it is in place every watcher reads once more, catching up on
   * whatever was committed while nobody listened.
   */
  private listen(): void {
    if (this.listening !== 'no' || this.pg.isClosed) return;
    this.listening = 'starting';
    this.listener ??= this.pg.openListener(
      (payload) => {
        const revision = Number(payload);
        this.wakeAll(Number.isSafeInteger(revision) ? revision : Number.MAX_SAFE_INTEGER);
      },
      () => {
        this.listening = 'no';
      },
    );
    this.listener.unsafe(`LISTEN ${quoteIdent(this.pg.channel)}`).then(
      () => {
        this.listening = 'yes';
        this.wakeAll(Number.MAX_SAFE_INTEGER);
      },
      (error: unknown) => {
        this.listening = 'no';
        this.reportReadFailure(error);
      },
    );
  }

  private stopPolling(): void {
    if (this.poll !== undefined) clearInterval(this.poll);
    this.poll = undefined;
  }

  private async pollRevision(): Promise<void> {
    if (this.polling || this.pg.isClosed) return;
    this.polling = true;
    try {
      if (this.listening === 'no') this.listen();
      const [row] = await this.pg.query<{ revision: number }>(KV_REVISION, []);
      if (row !== undefined) this.wakeAll(row.revision);
    } catch (error) {
      this.reportReadFailure(error);
    } finally {
      this.polling = false;
    }
  }

  private wakeAll(revision: number): void {
    for (const watcher of this.watchers) if (watcher.last < revision) this.schedule(watcher);
  }

  /** setImmediate so a burst of wake-ups is one read, and no callback ever runs inside watch() or put(). */
  private schedule(watcher: Watcher): void {
    if (watcher.closed) return;
    watcher.wanted = true;
    if (watcher.running) return;
    watcher.running = true;
    setImmediate(() => void this.drain(watcher));
  }

  private async drain(watcher: Watcher): Promise<void> {
    try {
      while (watcher.wanted && !watcher.closed && !this.pg.isClosed) {
        watcher.wanted = false;
        for (;;) {
          const rows =
            watcher.upper === undefined
              ? await this.pg.query<EventRow>(KV_EVENTS_FROM, [watcher.last, watcher.lower])
              : await this.pg.query<EventRow>(KV_EVENTS_RANGE, [watcher.last, watcher.lower, watcher.upper]);
          for (const row of rows) {
            if (watcher.closed) return;
            const event: KvEvent<unknown> = { type: row.type, key: row.key, revision: row.revision, value: decode(row.value) };
            // Advanced before the call so a throwing callback still sees each event exactly once.
            watcher.last = event.revision;
            try {
              watcher.onEvent(event);
            } catch (error) {
              this.reportCallbackError(error, event);
            }
          }
          if (rows.length < WATCH_BATCH) break;
        }
      }
      this.failing = false;
    } catch (error) {
      // The poll sees this watcher is behind and wakes it again.
      this.reportReadFailure(error);
    } finally {
      watcher.running = false;
    }
  }

  /** Once per outage, not once per poll tick. */
  private reportReadFailure(error: unknown): void {
    if (this.pg.isClosed || this.failing) return;
    this.failing = true;
    this.pg.logger?.warn({ err: error }, 'kv watch cannot read from PostgreSQL; retrying on the next poll');
  }

  private reportCallbackError(error: unknown, event: KvEvent<unknown>): void {
    if (this.pg.logger !== undefined) {
      this.pg.logger.error({ err: error, key: event.key, revision: event.revision }, 'kv watch callback threw');
    } else {
      process.emitWarning(`kv watch callback threw at revision ${event.revision} (${event.key}): ${errorMessage(error)}`);
    }
  }

  async close(): Promise<void> {
    for (const watcher of this.watchers) watcher.closed = true;
    this.watchers.clear();
    this.stopPolling();
    await this.listener?.end({ timeout: 0 });
  }
}

// ---------------------------------------------------------------------------------------------------
// Leases

/**
 * One statement, so one round trip and atomic across processes. The upsert grants when the lease is
 * free, expired or already this holder's (SET and WHERE see the existing row: a live same-holder row
 * keeps its token, any other grant gets token + 1, and the row is never deleted, so tokens never
 * restart). When it does not grant, ON CONFLICT has locked the row and `cur`, a locking read, returns
 * that row's latest version: who holds it now, not as of the statement's snapshot. A row inserted by
 * another process after the snapshot is invisible to `cur`, giving no row at all: the caller retries.
 */
const ACQUIRE = `
  WITH up AS (
    INSERT INTO leases AS l (name, holder, token, expires_at) VALUES ($1, $2, 1, $4)
    ON CONFLICT (name) DO UPDATE SET
      token = CASE WHEN l.holder = excluded.holder AND l.expires_at > $3 THEN l.token ELSE l.token + 1 END,
      holder = excluded.holder,
      expires_at = excluded.expires_at
    WHERE l.holder IS NULL OR l.expires_at <= $3 OR l.holder = excluded.holder
    RETURNING token
  ),
  cur AS (
    SELECT holder, token, expires_at FROM leases WHERE name = $1 FOR UPDATE
  )
  SELECT true AS granted, token, NULL::text AS holder, NULL::int8 AS expires_at FROM up
  UNION ALL
  SELECT false, token, holder, expires_at FROM cur WHERE NOT EXISTS (SELECT 1 FROM up)`;

/**
 * ACQUIRE for a whole batch in one statement. The upsert takes the requests in name order (COLLATE "C",
 * the column's order, which document fences also lock leases in), so two batches over overlapping
 * names wait for each other's rows in one order and cannot deadlock. `cur` reads only the rows the
 * upsert did not grant, which makes it run after the upsert: every row it locks, ON CONFLICT has
 * already locked, so it adds no lock of its own and returns each row's latest version. A name missing
 * from both (inserted by another process after the snapshot) is for the caller to retry, as in ACQUIRE.
 */
const ACQUIRE_MANY = `
  WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) AS t(name, holder, expires_at)
  ),
  up AS (
    INSERT INTO leases AS l (name, holder, token, expires_at)
    SELECT name, holder, 1, expires_at FROM input ORDER BY name COLLATE "C"
    ON CONFLICT (name) DO UPDATE SET
      token = CASE WHEN l.holder = excluded.holder AND l.expires_at > $4 THEN l.token ELSE l.token + 1 END,
      holder = excluded.holder,
      expires_at = excluded.expires_at
    WHERE l.holder IS NULL OR l.expires_at <= $4 OR l.holder = excluded.holder
    RETURNING name, token
  ),
  cur AS (
    SELECT name, holder, expires_at FROM leases
    WHERE name = ANY($1::text[]) AND name NOT IN (SELECT name FROM up)
    ORDER BY name
    FOR UPDATE
  )
  SELECT name, true AS granted, token, NULL::text AS holder, NULL::int8 AS expires_at FROM up
  UNION ALL
  SELECT name, false, NULL::int8, holder, expires_at FROM cur`;

/**
 * Taken before RELEASE_MANY in the same transaction: an UPDATE … FROM locks rows in whatever order its
 * join produces, which against a concurrent ACQUIRE_MANY could deadlock (and a deadlock is only
 * detected after deadlock_timeout, a second by default). Name order here matches ACQUIRE_MANY's.
 */
const LOCK_LEASES = 'SELECT 1 FROM leases WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE';

// RELEASE for a batch. Its snapshot is taken after LOCK_LEASES, so it sees the rows as they are locked.
const RELEASE_MANY = `
  UPDATE leases AS l SET holder = NULL, expires_at = $3
  FROM unnest($1::text[], $2::int8[]) AS r(name, token)
  WHERE l.name = r.name AND l.token = r.token AND l.holder IS NOT NULL
  RETURNING l.name, l.token`;

// Renewal needs the grant still live: once it expired, anyone observing current() saw the lease free,
// so the holder must acquire again (and get a new token) rather than silently resume.
const RENEW = `
  UPDATE leases SET expires_at = $4
  WHERE name = $1 AND token = $2 AND holder IS NOT NULL AND expires_at > $3
  RETURNING holder`;

// Release succeeds while the token is still the latest grant, even past expiry: no one else can have
// been granted meanwhile (that would have bumped the token), so "true" means "never deposed".
const RELEASE = 'UPDATE leases SET holder = NULL, expires_at = $3 WHERE name = $1 AND token = $2 AND holder IS NOT NULL';

const CURRENT = 'SELECT holder, token, expires_at FROM leases WHERE name = $1 AND holder IS NOT NULL AND expires_at > $2';

interface LeaseRow extends Row {
  granted: boolean;
  token: number;
  holder: string | null;
  expires_at: number | null;
}

interface LeaseBatchRow extends Row {
  name: string;
  granted: boolean;
  token: number | null;
  holder: string | null;
  expires_at: number | null;
}

class PgLeaseStore implements LeaseStore {
  private readonly pg: Pg;
  constructor(pg: Pg) {
    this.pg = pg;
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireOutcome> {
    this.pg.ensureOpen();
    requireText(name, 'lease name');
    requireText(holder, 'holder');
    requireTtl(ttlMs);
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
      const now = this.pg.clock.now();
      const expiresAt = now + ttlMs;
      const [row] = await this.pg.query<LeaseRow>(ACQUIRE, [name, holder, now, expiresAt]);
      if (row === undefined) continue;
      if (row.granted) return { ok: true, grant: { name, holder, token: row.token, expiresAt } };
      if (row.holder !== null && row.expires_at !== null && row.expires_at > now && row.holder !== holder) {
        return { ok: false, reason: 'held', holder: row.holder, expiresAt: row.expires_at };
      }
    }
    throw new ArcError('CONFLICT', `lease "${name}" changed hands ${ACQUIRE_ATTEMPTS} times while being acquired; retry`, { retryable: true });
  }

  /**
   * One flight per attempt; Pg.flight reruns it after a deadlock or serialization failure. Requests
   * whose rows the statement could not read (see ACQUIRE_MANY) are sent again on their own, as
   * acquire() retries; every other outcome is final after the first flight.
   */
  async acquireMany(requests: readonly AcquireRequest[]): Promise<AcquireOutcome[]> {
    this.pg.ensureOpen();
    for (const r of requests) {
      requireText(r.name, 'lease name');
      requireText(r.holder, 'holder');
    }
    requireAcquireBatch(requests);
    const outcomes: (AcquireOutcome | undefined)[] = requests.map(() => undefined);
    let pending = requests.map((_, i) => i);
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS && pending.length > 0; attempt++) {
      const now = this.pg.clock.now();
      const batch = pending.map((i) => requests[i] as AcquireRequest);
      const [rows] = await this.pg.flight([
        {
          text: ACQUIRE_MANY,
          params: [batch.map((r) => r.name), batch.map((r) => r.holder), batch.map((r) => now + r.ttlMs), now],
        },
      ]);
      const byName = new Map(((rows ?? []) as LeaseBatchRow[]).map((row) => [row.name, row]));
      const unsettled: number[] = [];
      for (const i of pending) {
        const { name, holder, ttlMs } = requests[i] as AcquireRequest;
        const row = byName.get(name);
        if (row?.granted === true && row.token !== null) {
          outcomes[i] = { ok: true, grant: { name, holder, token: row.token, expiresAt: now + ttlMs } };
        } else if (row !== undefined && row.holder !== null && row.expires_at !== null && row.expires_at > now && row.holder !== holder) {
          outcomes[i] = { ok: false, reason: 'held', holder: row.holder, expiresAt: row.expires_at };
        } else {
          unsettled.push(i);
        }
      }
      pending = unsettled;
    }
    if (pending.length > 0) {
      const named = pending.slice(0, 5).map((i) => `"${requests[i]?.name}"`).join(', ');
      const more = pending.length > 5 ? ` and ${pending.length - 5} more` : '';
      throw new ArcError('CONFLICT', `leases ${named}${more} changed hands ${ACQUIRE_ATTEMPTS} times while being acquired; retry`, { retryable: true });
    }
    return outcomes as AcquireOutcome[];
  }

  async renew(grant: LeaseGrant, ttlMs: number): Promise<LeaseGrant | undefined> {
    this.pg.ensureOpen();
    requireTtl(ttlMs);
    const now = this.pg.clock.now();
    const expiresAt = now + ttlMs;
    const [row] = await this.pg.query<{ holder: string }>(RENEW, [requireText(grant.name, 'lease name'), grant.token, now, expiresAt]);
    return row === undefined ? undefined : { name: grant.name, holder: row.holder, token: grant.token, expiresAt };
  }

  async release(grant: Pick<LeaseGrant, 'name' | 'token'>): Promise<boolean> {
    this.pg.ensureOpen();
    return (await this.pg.execute(RELEASE, [requireText(grant.name, 'lease name'), grant.token, this.pg.clock.now()])) === 1;
  }

  async releaseMany(grants: readonly Pick<LeaseGrant, 'name' | 'token'>[]): Promise<boolean[]> {
    this.pg.ensureOpen();
    if (grants.length === 0) return [];
    for (const grant of grants) requireText(grant.name, 'lease name');
    const names = grants.map((g) => g.name);
    const [, rows] = await this.pg.flight([
      { text: LOCK_LEASES, params: [names] },
      { text: RELEASE_MANY, params: [names, grants.map((g) => g.token), this.pg.clock.now()] },
    ]);
    // A row is released once however often the batch names it; like release() called in turn, only
    // the first mention of that grant reports true.
    const released = new Map<string, Set<number>>();
    for (const row of (rows ?? []) as { name: string; token: number }[]) {
      const tokens = released.get(row.name) ?? new Set<number>();
      tokens.add(row.token);
      released.set(row.name, tokens);
    }
    return grants.map((grant) => released.get(grant.name)?.delete(grant.token) ?? false);
  }

  async current(name: string): Promise<LeaseGrant | undefined> {
    this.pg.ensureOpen();
    const [row] = await this.pg.query<{ holder: string; token: number; expires_at: number }>(CURRENT, [
      requireText(name, 'lease name'),
      this.pg.clock.now(),
    ]);
    return row === undefined ? undefined : { name, holder: row.holder, token: row.token, expiresAt: row.expires_at };
  }
}

// ---------------------------------------------------------------------------------------------------

/**
 * The first connection, under a deadline of our own: postgres.js's connect_timeout restarts with every
 * attempt, and when something accepts TCP but closes before the startup handshake (a load balancer or
 * pooler with no server behind it) it reconnects at once, forever, with the query still pending.
 */
async function connectWithin(pg: Pg, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ArcError('UNAVAILABLE', `PostgreSQL at ${pg.endpoint} did not complete a connection within ${timeoutMs} ms`, { retryable: true })),
      timeoutMs,
    );
  });
  try {
    await Promise.race([pg.query('SELECT 1', []), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Connects, applies pending migrations (creating the schema if missing) and returns the three ports. */
export async function openPostgresStores(options: PostgresStoreOptions): Promise<StateStores> {
  const schema = requireSchemaName(options.schema ?? 'public');
  const max = options.max ?? 10;
  if (!Number.isSafeInteger(max) || max < 1) throw new ArcError('INVALID_INPUT', `max must be a positive integer, got ${max}`);
  const logger = options.logger;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const clientOptions: ClientOptions = {
    max,
    connect_timeout: Math.max(1, Math.ceil(connectTimeoutMs / 1000)),
    types: { int8: INT8 },
    // Every connection, including the LISTEN one, resolves unqualified names in the store's schema.
    connection: { search_path: quoteIdent(schema), application_name: 'arcnet' },
    onnotice: (notice) => logger?.debug({ notice: notice['message'] }, 'PostgreSQL notice'),
  };
  const pg = new Pg(options.url, clientOptions, options.clock ?? systemClock, schema, logger);
  try {
    await connectWithin(pg, connectTimeoutMs);
    // No deadline here: migrating may rightly wait for another process that is migrating the schema.
    await migrate(pg.sql, schema);
  } catch (error) {
    await pg.sql.end({ timeout: 0 }).catch(() => undefined);
    throw pg.translate(error);
  }
  const kv = new PgKvStore(pg, options.watchPollMs ?? 1_000);
  return {
    documents: new PgDocumentStore(pg),
    kv,
    leases: new PgLeaseStore(pg),
    close: async () => {
      await kv.close();
      await pg.close();
    },
  };
}

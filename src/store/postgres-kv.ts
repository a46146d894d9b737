/** The KvStore port on PostgreSQL: a counter row that orders writers, the current keys, and an event log watches read. */
import { ArcError, StaleFencingTokenError } from '../core/errors.ts';
import { decode, encode, prefixUpperBound, requireExpected } from './input.ts';
import { KvWatchers, WATCH_BATCH, type EventLog } from './kv-watch.ts';
import type { KvEntry, KvEvent, KvPutOptions, KvStore, KvWatch, KvWriteOutcome } from './ports.ts';
import { quoteIdent } from './postgres-schema.ts';
import type { QueryMeter } from './query-metrics.ts';
import { requireFence, requireText, type Db, type Pg, type Row, type Statement } from './postgres-client.ts';

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

export class PgKvStore implements KvStore {
  private readonly pg: Pg;
  private readonly watchers: KvWatchers;
  private listener: Db | undefined;
  private listening: 'no' | 'starting' | 'yes' = 'no';

  /**
   * `pollMs`: how often open watches check the store revision. NOTIFY wakes them at once; the poll only
   * bounds how late an event is when a notification was lost (LISTEN connection dropped).
   */
  constructor(pg: Pg, pollMs: number, meter: QueryMeter) {
    this.pg = pg;
    const log: EventLog = {
      readEvents: (after, lower, upper) =>
        upper === undefined
          ? pg.query<EventRow>(KV_EVENTS_FROM, [after, lower])
          : pg.query<EventRow>(KV_EVENTS_RANGE, [after, lower, upper]),
      revision: async () => (await pg.query<{ revision: number }>(KV_REVISION, []))[0]?.revision ?? 0,
      get closed() {
        return pg.isClosed;
      },
    };
    this.watchers = new KvWatchers(log, {
      pollMs,
      logger: pg.logger,
      meter,
      onPoll: () => {
        if (this.listening === 'no') this.listen();
      },
    });
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
    if (row.revision !== null) this.watchers.wake(row.revision);
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
   * Replay and live delivery are one loop (src/store/kv-watch.ts). Because revisions become visible in
   * order (the counter row lock), "past the last one delivered" can never skip a commit that lands
   * late. Wake-ups come from this store's own commits, from NOTIFY (other processes' commits), and from
   * the poll of the revision counter for notifications lost while the LISTEN connection was down.
   */
  watch<T>(prefix: string, fromRevision: number, onEvent: (event: KvEvent<T>) => void): KvWatch {
    this.pg.ensureOpen();
    requireText(prefix, 'prefix');
    const watch = this.watchers.watch(prefix, fromRevision, onEvent);
    this.listen();
    return watch;
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
        this.watchers.wake(Number.isSafeInteger(revision) ? revision : Number.MAX_SAFE_INTEGER);
      },
      () => {
        this.listening = 'no';
      },
    );
    this.listener.unsafe(`LISTEN ${quoteIdent(this.pg.channel)}`).then(
      () => {
        this.listening = 'yes';
        this.watchers.wake(Number.MAX_SAFE_INTEGER);
      },
      (error: unknown) => {
        this.listening = 'no';
        this.watchers.reportReadFailure(error);
      },
    );
  }

  async close(): Promise<void> {
    this.watchers.close();
    await this.listener?.end({ timeout: 0 });
  }
}

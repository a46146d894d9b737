/** Opens the state ports on one SQLite connection (a file, or ':memory:'). */
import type { Logger } from '../core/logging.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import type { Registry } from 'prom-client';
import { assembleStores } from './assemble.ts';
import { queryMeter } from './query-metrics.ts';
import { resolveRetention, type OpenedStores, type RetentionOption } from './retention.ts';
import { Sqlite } from './sqlite-client.ts';
import { SqliteDocumentStore } from './sqlite-documents.ts';
import { SqliteRecordStore } from './sqlite-records.ts';
import { SqliteKvStore } from './sqlite-kv.ts';
import { SqliteLeaseStore } from './sqlite-leases.ts';
import { SqliteCompaction } from './sqlite-retention.ts';

export interface SqliteStoreOptions {
  /** A file path, or ':memory:' for a private in-memory database. */
  readonly path: string;
  readonly clock?: Clock;
  /** How long a write waits for another connection's lock before failing UNAVAILABLE. */
  readonly busyTimeoutMs?: number;
  /** How often an open watch looks for events written through other connections to the same file. */
  readonly watchPollMs?: number;
  /** Where exceptions thrown by watch callbacks are reported; they never stop delivery. */
  readonly logger?: Logger;
  /**
   * Size past which the WAL is folded back and rewound on the writing connection (default 64 MB).
   * Under sustained writes the background PASSIVE checkpoint never finds the WAL fully copied when a
   * transaction starts, so without this the file grows without bound (hundreds of MB a minute).
   */
  readonly walLimitBytes?: number;
  /** Where `arcnet_store_query_duration_ms{engine="sqlite"}` is registered; no registry, no timing. */
  readonly registry?: Registry;
  /**
   * History retention (src/store/retention.ts, ADR 0013): on with DEFAULT_RETENTION when not given,
   * overrides merged over it, false for none. Embedded mode has no one else to compact its file.
   */
  readonly retention?: RetentionOption;
}

export function openSqliteStores(options: SqliteStoreOptions): OpenedStores {
  const clock = options.clock ?? systemClock;
  const policy = resolveRetention(options.retention);
  const sqlite = new Sqlite(options.path, clock, options.busyTimeoutMs ?? 5_000, options.walLimitBytes);
  const meter = queryMeter('sqlite', options.registry);
  const kv = new SqliteKvStore(sqlite, options.watchPollMs ?? 250, options.logger, meter);
  const parts = {
    documents: new SqliteDocumentStore(sqlite),
    records: new SqliteRecordStore(sqlite),
    kv,
    leases: new SqliteLeaseStore(sqlite),
    compaction: new SqliteCompaction(sqlite, policy?.collections ?? []),
    close: async () => {
      kv.close();
      sqlite.close();
    },
  };
  return assembleStores(parts, { meter, retention: policy, clock, logger: options.logger });
}

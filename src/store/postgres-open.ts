/** Opens the three state ports on one PostgreSQL schema: connect, migrate, hand out the adapters. */
import type { Logger } from '../core/logging.ts';
import { ArcError } from '../core/errors.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import type { Registry } from 'prom-client';
import { assembleStores } from './assemble.ts';
import { queryMeter } from './query-metrics.ts';
import { INT8, Pg, connectWithin, type ClientOptions } from './postgres-client.ts';
import { PgDocumentStore } from './postgres-documents.ts';
import { PgRecordStore } from './postgres-records.ts';
import { PgKvStore } from './postgres-kv.ts';
import { PgLeaseStore } from './postgres-leases.ts';
import { PgCompaction } from './postgres-retention.ts';
import { resolveRetention, type OpenedStores, type RetentionOption } from './retention.ts';
import { migrate, quoteIdent, requireSchemaName } from './postgres-schema.ts';
import { acceptsSsl, postgresSslOption, sslModeOfUrl, sslNotSupported, type PostgresSslMode } from './postgres-ssl.ts';

/** PostgreSQL's default retention batch (DEFAULT_RETENTION's is sized for SQLite's event loop). */
export const POSTGRES_BATCH_ROWS = 1_000;

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
  /** Where `arcnet_store_query_duration_ms{engine="postgres"}` is registered; no registry, no timing. */
  readonly registry?: Registry;
  /**
   * History retention (src/store/retention.ts, ADR 0013): on with DEFAULT_RETENTION when not given
   * (batches of POSTGRES_BATCH_ROWS), overrides merged over it, false for none. Every process may run
   * it; they take turns.
   */
  readonly retention?: RetentionOption;
  /** TLS to the server (src/store/postgres-ssl.ts); unset, the URL's `?sslmode=` or PGSSLMODE decide, as in postgres.js. */
  readonly sslmode?: PostgresSslMode;
  /** PEM CA bundle the server's certificate must chain to, with `sslmode: 'verify-full'`. */
  readonly sslCa?: string;
}

/** The URL's first host and port, IPv6 without its brackets (a multi-host URL is not a WHATWG URL, so by pattern). */
function urlEndpoint(url: string): { host: string; port: number } {
  const match = /^[a-z]+:\/\/(?:[^@/]*@)?(\[[^\]]*\]|[^:/,?]*)(?::(\d+))?/i.exec(url);
  return { host: match?.[1]?.replace(/^\[(.*)\]$/, '$1') || 'localhost', port: Number(match?.[2] ?? 5432) };
}

/** Connects, applies pending migrations (creating the schema if missing) and returns the three ports. */
export async function openPostgresStores(options: PostgresStoreOptions): Promise<OpenedStores> {
  const schema = requireSchemaName(options.schema ?? 'public');
  // A batch is one statement on the server here, not time on this process's event loop: larger batches, fewer round trips.
  const policy = resolveRetention(options.retention === false ? false : { batchRows: POSTGRES_BATCH_ROWS, ...options.retention });
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
    ...(options.sslmode === undefined ? {} : { ssl: postgresSslOption(options.sslmode, urlEndpoint(options.url).host, options.sslCa) }),
  };
  const clock = options.clock ?? systemClock;
  const pg = new Pg(options.url, clientOptions, clock, schema, logger);
  try {
    await connectWithin(pg, connectTimeoutMs);
    // No deadline here: migrating may rightly wait for another process that is migrating the schema.
    await migrate(pg.sql, schema);
  } catch (error) {
    await pg.sql.end({ timeout: 0 }).catch(() => undefined);
    // TLS asked for and the server has SSL off shows as a reset socket: say which setting it is.
    const mode = options.sslmode ?? sslModeOfUrl(options.url);
    if (mode !== undefined && mode !== 'disable' && mode !== 'allow' && mode !== 'prefer') {
      const { host, port } = urlEndpoint(options.url);
      if ((await acceptsSsl(host, port)) === false) throw sslNotSupported(pg.endpoint, mode);
    }
    throw pg.translate(error);
  }
  const meter = queryMeter('postgres', options.registry);
  const kv = new PgKvStore(pg, options.watchPollMs ?? 1_000, meter);
  const parts = {
    documents: new PgDocumentStore(pg),
    records: new PgRecordStore(pg),
    kv,
    leases: new PgLeaseStore(pg),
    compaction: new PgCompaction(pg, schema),
    close: async () => {
      await kv.close();
      await pg.close();
    },
  };
  return assembleStores(parts, { meter, retention: policy, clock, logger });
}

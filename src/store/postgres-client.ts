/**
 * The PostgreSQL client every port adapter shares: one postgres.js pool per opened store, the
 * translation of driver and server errors into ArcErrors, and the one-flight transaction.
 *
 * A write is one network flight: BEGIN, its statements and COMMIT go to the server together (pipelined
 * on a reserved connection) and run back to back. Row locks are then held for server time only, never
 * across a client round trip, and a write costs one round trip however many rows it lands. The price is
 * that no statement can branch on an earlier one's result in JavaScript: the conditions (fence,
 * compare-and-set) live in the SQL, and the outcome is read from the last statement's row.
 */
import postgres from 'postgres';
import type { Logger } from '../core/logging.ts';
import { ArcError, errorMessage } from '../core/errors.ts';
import type { Clock } from '../core/clock.ts';
import { notifyChannel } from './postgres-schema.ts';

/** int8 columns hold epoch milliseconds, revisions and tokens: all far below 2^53, so numbers, not strings. */
export const INT8 = {
  to: 20,
  from: [20],
  serialize: (value: number): string => String(value),
  parse: (raw: string): number => Number(raw),
};

export type Db = postgres.Sql<{ int8: number }>;
export type Param = string | number | boolean | null | readonly (string | number | null)[];
export type Row = Record<string, unknown>;

export interface Statement {
  readonly text: string;
  readonly params: readonly Param[];
}

const FLIGHT_ATTEMPTS = 10;

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

export type ClientOptions = postgres.Options<{ int8: typeof INT8 }>;

export class Pg {
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

  /**
   * One statement, in a transaction of its own. Prepared (planned once per connection) unless
   * `prepare` is false: a statement whose best plan depends on the data planned each time instead.
   */
  async query<R extends Row>(text: string, params: readonly Param[], prepare = true): Promise<R[]> {
    this.ensureOpen();
    try {
      return (await this.sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare })) as unknown as R[];
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
export function requireText(value: string, what: string): string {
  if (typeof value !== 'string') throw new ArcError('INVALID_INPUT', `${what} must be a string`);
  if (value.includes('\u0000')) throw new ArcError('INVALID_INPUT', `${what} must not contain U+0000`);
  return value;
}

export function requireFence(fence: { lease: string; token: number } | undefined): void {
  if (fence === undefined) return;
  requireText(fence.lease, 'fence.lease');
  if (!Number.isSafeInteger(fence.token)) throw new ArcError('INVALID_INPUT', `fence.token must be an integer, got ${fence.token}`);
}

/**
 * The first connection, under a deadline of our own: postgres.js's connect_timeout restarts with every
 * attempt, and when something accepts TCP but closes before the startup handshake (a load balancer or
 * pooler with no server behind it) it reconnects at once, forever, with the query still pending.
 */
export async function connectWithin(pg: Pg, timeoutMs: number): Promise<void> {
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

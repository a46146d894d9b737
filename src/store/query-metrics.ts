/**
 * `arcnet_store_query_duration_ms{engine, query_type}`: seed 000's `arcnet_xtdb_query_duration_ms`,
 * named for our store. A query's duration is the time from the port call to its answer as the caller
 * sees it, pool waits, group commits and in-flight retries included, whether it succeeded or threw.
 *
 * The histogram is registered on the registry the composition root passes in the open options (the
 * API's `ArcMetrics.registry`), so the store never imports the API layer; with no registry nothing is
 * wrapped and nothing is timed. One decorator per port serves both engines.
 */
import { Histogram, type Registry } from 'prom-client';
import type { DocumentStore, KvStore, LeaseStore, RecordStore } from './ports.ts';

export const STORE_QUERY_DURATION = 'arcnet_store_query_duration_ms';

export type StoreEngine = 'sqlite' | 'postgres';

export type StoreQueryType =
  | 'document_put'
  | 'document_put_many'
  | 'document_delete'
  | 'document_get'
  | 'document_list'
  | 'document_history'
  | 'record_insert_many'
  | 'record_get'
  | 'record_expire'
  | 'kv_put'
  | 'kv_delete'
  | 'kv_get'
  | 'kv_list'
  | 'kv_revision'
  /** A watch reading the event log past its last delivered revision (replay or live). */
  | 'kv_watch_read'
  /** The watch poll's read of the store revision. */
  | 'kv_watch_poll'
  | 'lease_acquire'
  | 'lease_acquire_many'
  | 'lease_renew'
  | 'lease_release'
  | 'lease_release_many'
  | 'lease_current'
  /** One batch of history retention (src/store/retention.ts). */
  | 'retention_compact';

/** Milliseconds: SQLite answers in microseconds, PostgreSQL in a round trip or more. */
const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000];

export interface QueryMeter {
  readonly enabled: boolean;
  /** Calls `call` and observes how long its promise took to settle. */
  time<R>(type: StoreQueryType, call: () => Promise<R>): Promise<R>;
}

export const UNMETERED: QueryMeter = { enabled: false, time: (_type, call) => call() };

/** The meter for one engine on `registry`; the histogram is created once per registry and shared. */
export function queryMeter(engine: StoreEngine, registry: Registry | undefined): QueryMeter {
  if (registry === undefined) return UNMETERED;
  const existing = registry.getSingleMetric(STORE_QUERY_DURATION);
  const histogram =
    existing instanceof Histogram
      ? (existing as Histogram<'engine' | 'query_type'>)
      : new Histogram({
          name: STORE_QUERY_DURATION,
          help: 'State store query duration by engine and query type, from the port call to its answer (ms)',
          labelNames: ['engine', 'query_type'],
          buckets: BUCKETS,
          registers: [registry],
        });
  const children = new Map<StoreQueryType, { observe(ms: number): void }>();
  const child = (type: StoreQueryType): { observe(ms: number): void } => {
    let found = children.get(type);
    if (found === undefined) {
      found = histogram.labels({ engine, query_type: type });
      children.set(type, found);
    }
    return found;
  };
  return {
    enabled: true,
    time: <R>(type: StoreQueryType, call: () => Promise<R>): Promise<R> => {
      const start = performance.now();
      const observe = (): void => child(type).observe(performance.now() - start);
      let settled: Promise<R>;
      try {
        settled = call();
      } catch (error) {
        observe();
        return Promise.reject(error as Error);
      }
      void settled.then(observe, observe);
      return settled;
    },
  };
}

export function meterDocuments(documents: DocumentStore, meter: QueryMeter): DocumentStore {
  if (!meter.enabled) return documents;
  return {
    put: (collection, id, body, options) => meter.time('document_put', () => documents.put(collection, id, body, options)),
    putMany: (puts) => meter.time('document_put_many', () => documents.putMany(puts)),
    delete: (collection, id, options) => meter.time('document_delete', () => documents.delete(collection, id, options)),
    get: (collection, id, options) => meter.time('document_get', () => documents.get(collection, id, options)),
    list: (collection, options) => meter.time('document_list', () => documents.list(collection, options)),
    history: (collection, id) => meter.time('document_history', () => documents.history(collection, id)),
  };
}

export function meterRecords(records: RecordStore, meter: QueryMeter): RecordStore {
  if (!meter.enabled) return records;
  return {
    insertMany: (batch) => meter.time('record_insert_many', () => records.insertMany(batch)),
    get: (collection, id) => meter.time('record_get', () => records.get(collection, id)),
    expire: (collection, before, limit) => meter.time('record_expire', () => records.expire(collection, before, limit)),
  };
}

/** Watch reads are observed where they happen, in the shared watch loop (src/store/kv-watch.ts). */
export function meterKv(kv: KvStore, meter: QueryMeter): KvStore {
  if (!meter.enabled) return kv;
  return {
    get: (key) => meter.time('kv_get', () => kv.get(key)),
    put: (key, value, options) => meter.time('kv_put', () => kv.put(key, value, options)),
    delete: (key, options) => meter.time('kv_delete', () => kv.delete(key, options)),
    list: (prefix) => meter.time('kv_list', () => kv.list(prefix)),
    revision: () => meter.time('kv_revision', () => kv.revision()),
    watch: (prefix, fromRevision, onEvent) => kv.watch(prefix, fromRevision, onEvent),
  };
}

export function meterLeases(leases: LeaseStore, meter: QueryMeter): LeaseStore {
  if (!meter.enabled) return leases;
  return {
    acquire: (name, holder, ttlMs) => meter.time('lease_acquire', () => leases.acquire(name, holder, ttlMs)),
    renew: (grant, ttlMs) => meter.time('lease_renew', () => leases.renew(grant, ttlMs)),
    release: (grant) => meter.time('lease_release', () => leases.release(grant)),
    acquireMany: (requests) => meter.time('lease_acquire_many', () => leases.acquireMany(requests)),
    releaseMany: (grants) => meter.time('lease_release_many', () => leases.releaseMany(grants)),
    current: (name) => meter.time('lease_current', () => leases.current(name)),
  };
}

/**
 * State ports: bitemporal documents, write-once records with expiry, a revisioned KV store with
 * prefix watch, and leases with fencing tokens. Each adapter (SQLite embedded, PostgreSQL) writes
 * its own SQL behind these contracts; one contract suite per port runs against every adapter.
 *
 * Times are milliseconds since the epoch. "Valid time" is when a fact was true in the world;
 * "transaction time" is when the store learned it. Both are assigned by the adapter's clock unless
 * the caller gives a valid time explicitly (a late or corrected fact).
 */

/**
 * A fencing token checked where a write lands, in the write's own transaction: the write is rejected
 * with StaleFencingTokenError when the lease has since been granted with a higher token (the writer
 * was deposed) or never granted this token.
 */
export interface Fence {
  readonly lease: string;
  readonly token: number;
}

export interface DocumentVersion<T> {
  readonly collection: string;
  readonly id: string;
  /** 1 for the first put, +1 for each put or delete of this id. */
  readonly version: number;
  readonly validFrom: number;
  readonly txTime: number;
  /** Undefined when this version is a deletion. */
  readonly body: T | undefined;
  readonly deleted: boolean;
}

export interface PutOptions {
  /** When the fact became true; defaults to the store's current time. */
  readonly validFrom?: number;
  /** Compare-and-set: the write succeeds only if the id's latest version is this (0 = must not exist). */
  readonly expectedVersion?: number;
  readonly fence?: Fence;
}

export interface ReadOptions {
  /** Valid time to read at; defaults to now. */
  readonly asOf?: number;
  /** Transaction time to read at ("what did we know then"); defaults to now. */
  readonly knownAt?: number;
}

export interface DocumentPut<T> {
  readonly collection: string;
  readonly id: string;
  readonly body: T;
  readonly options?: PutOptions;
}

export type WriteOutcome<T> =
  | { readonly ok: true; readonly version: DocumentVersion<T> }
  | { readonly ok: false; readonly reason: 'version-mismatch'; readonly currentVersion: number };

export interface DocumentStore {
  put<T>(collection: string, id: string, body: T, options?: PutOptions): Promise<WriteOutcome<T>>;
  /** Several puts in one transaction: all land or none. A version mismatch in any fails the whole batch. */
  putMany<T>(puts: readonly DocumentPut<T>[]): Promise<WriteOutcome<T>[]>;
  delete(collection: string, id: string, options?: PutOptions): Promise<WriteOutcome<never>>;
  get<T>(collection: string, id: string, options?: ReadOptions): Promise<DocumentVersion<T> | undefined>;
  /** Every live (not deleted) document of the collection as of the given times, ordered by id. */
  list<T>(collection: string, options?: ReadOptions): Promise<DocumentVersion<T>[]>;
  /** Every version of a document, in transaction-time order. */
  history<T>(collection: string, id: string): Promise<DocumentVersion<T>[]>;
}

/**
 * A write-once record of a collection: stored once under its id, read back by id, and removed whole
 * when it is old. No versions, no valid time: for facts that are never corrected (ADR 0014), which the
 * bitemporal documents' version bookkeeping and as-of index would only make dearer to write.
 */
export interface RecordPut<T> {
  readonly collection: string;
  readonly id: string;
  readonly body: T;
}

export interface StoredRecord<T> {
  readonly collection: string;
  readonly id: string;
  /** Transaction time: when the store wrote it (the store's clock); expiry is by this time. */
  readonly recordedAt: number;
  readonly body: T;
}

export interface RecordStore {
  /**
   * Stores each record whose id its collection does not hold yet, all in one transaction; an id
   * already there (or given twice in the batch) keeps its first body. Written-or-not per record, in
   * input order.
   */
  insertMany<T>(records: readonly RecordPut<T>[]): Promise<boolean[]>;
  get<T>(collection: string, id: string): Promise<StoredRecord<T> | undefined>;
  /**
   * Removes at most `limit` of the collection's records recorded before `before`, oldest first, and
   * says how many: one short transaction, so a sweep calls it again while it returns `limit`. Safe to
   * run from several processes at once (a record removed twice is removed once).
   */
  expire(collection: string, before: number, limit: number): Promise<number>;
}

export interface KvEntry<T = unknown> {
  readonly key: string;
  readonly value: T;
  /** Store-wide revision of this key's last modification. */
  readonly modRevision: number;
  readonly createRevision: number;
  /** How many times this key was written since creation (1 on create). */
  readonly version: number;
}

export interface KvEvent<T = unknown> {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly revision: number;
  /** Undefined for deletes. */
  readonly value: T | undefined;
}

export interface KvPutOptions {
  /** Compare-and-set on the key's modRevision; 0 means the key must not exist. */
  readonly expectedRevision?: number;
  readonly fence?: Fence;
}

export type KvWriteOutcome =
  | { readonly ok: true; readonly revision: number }
  | { readonly ok: false; readonly reason: 'revision-mismatch'; readonly currentRevision: number };

export interface KvWatch {
  close(): void;
}

export interface KvStore {
  get<T>(key: string): Promise<KvEntry<T> | undefined>;
  put<T>(key: string, value: T, options?: KvPutOptions): Promise<KvWriteOutcome>;
  delete(key: string, options?: KvPutOptions): Promise<KvWriteOutcome>;
  /** Entries whose key starts with the prefix, ordered by key, and the store revision they were read at. */
  list<T>(prefix: string): Promise<{ entries: KvEntry<T>[]; revision: number }>;
  /** The store's current revision (0 when empty). */
  revision(): Promise<number>;
  /**
   * Calls `onEvent` for every change under `prefix` with revision > `fromRevision`, in revision order:
   * first the stored history, then live changes. Events are delivered once each, never out of order.
   */
  watch<T>(prefix: string, fromRevision: number, onEvent: (event: KvEvent<T>) => void): KvWatch;
}

export interface LeaseGrant {
  readonly name: string;
  readonly holder: string;
  /** Strictly increasing per lease name across every grant ever made; renewals keep the token. */
  readonly token: number;
  readonly expiresAt: number;
}

export type AcquireOutcome =
  | { readonly ok: true; readonly grant: LeaseGrant }
  | { readonly ok: false; readonly reason: 'held'; readonly holder: string; readonly expiresAt: number };

export interface AcquireRequest {
  readonly name: string;
  readonly holder: string;
  readonly ttlMs: number;
}

export interface LeaseStore {
  /** Grants the lease if it is free or expired (or already held by `holder`, which renews it keeping the token). */
  acquire(name: string, holder: string, ttlMs: number): Promise<AcquireOutcome>;
  /** Extends a live grant; undefined when the grant was lost (expired and taken, or released). */
  renew(grant: LeaseGrant, ttlMs: number): Promise<LeaseGrant | undefined>;
  /** Releases the grant if it is still the current one; false if it had already been lost. */
  release(grant: Pick<LeaseGrant, 'name' | 'token'>): Promise<boolean>;
  /**
   * Acquires several distinct leases at once, each exactly as acquire() would; outcomes in request order.
   * One round trip / transaction where the adapter can. The batch is not all-or-nothing: each lease is
   * granted or reported held on its own. A name given twice is INVALID_INPUT, and nothing is acquired.
   */
  acquireMany(requests: readonly AcquireRequest[]): Promise<AcquireOutcome[]>;
  /** Releases several grants at once, each exactly as release() would; results in input order. */
  releaseMany(grants: readonly Pick<LeaseGrant, 'name' | 'token'>[]): Promise<boolean[]>;
  /** The live grant, if any. */
  current(name: string): Promise<LeaseGrant | undefined>;
}

/** What a composition root opens: the state ports over one backing store. */
export interface StateStores {
  readonly documents: DocumentStore;
  readonly records: RecordStore;
  readonly kv: KvStore;
  readonly leases: LeaseStore;
  close(): Promise<void>;
}

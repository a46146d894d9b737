/**
 * Embedded adapter for the state ports on node:sqlite. The adapter is split by port beside this file
 * (sqlite-client, -schema, -documents, -kv, -leases, -open); this module is its one entry point.
 */
export { openSqliteStores, type SqliteStoreOptions } from './sqlite-open.ts';

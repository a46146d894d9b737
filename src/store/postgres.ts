/**
 * PostgreSQL adapter for the state ports (distributed mode): several processes share one schema, so
 * every check-then-write runs inside one database transaction and every ordering guarantee comes from
 * row locks, never from this process's memory. The adapter is split by port beside this file
 * (postgres-client, -schema, -documents, -kv, -leases, -open); this module is its one entry point.
 */
export { openPostgresStores, type PostgresStoreOptions } from './postgres-open.ts';

/**
 * Opens the engines a process runs on, for every combination the modes use: the bus in memory or on
 * Kafka, state in SQLite (a data directory guarded by its lock, or in memory) or in PostgreSQL. This is
 * the one place adapters are chosen; modules (`src/main/modules/`) only see the ports it returns, and
 * `kinds` says truthfully what is underneath (for `/stats`, `/health` and banners).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock } from '../core/clock.ts';
import { newId } from '../core/ids.ts';
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logging.ts';
import type { BusAdapter } from '../bus/ports.ts';
import { MemoryBus } from '../bus/memory.ts';
import { KafkaBus } from '../bus/kafka.ts';
import type { KafkaConnectionOptions } from '../bus/kafka-config.ts';
import { MessageBus, type BusObserver } from '../bus/typed-bus.ts';
import type { Registry } from 'prom-client';
import type { StateStores } from '../store/ports.ts';
import { openSqliteStores } from '../store/sqlite.ts';
import { openPostgresStores } from '../store/postgres.ts';
import type { PostgresSslMode } from '../store/postgres-ssl.ts';
import { lockDataDir } from './data-dir-lock.ts';

export type BusKind = 'memory' | 'kafka';
/** `sqlite-memory` is SQLite with nothing on disk (`--memory`). */
export type StoreKind = 'sqlite' | 'sqlite-memory' | 'postgres';

export interface EngineKinds {
  readonly bus: BusKind;
  readonly store: StoreKind;
}

/** Kafka as the bus; without it the bus is in memory. */
export interface KafkaChoice extends KafkaConnectionOptions {
  /** How long a member that died silently keeps its partitions: the failover time of the consumer groups. */
  readonly sessionTimeoutMs?: number;
}

/** PostgreSQL's connection: URL, schema, and TLS (`sslmode`, `sslCa`: src/store/postgres-ssl.ts). */
export interface PostgresChoice {
  readonly url: string;
  readonly schema?: string;
  readonly sslmode?: PostgresSslMode;
  /** PEM, for `verify-full`. */
  readonly sslCa?: string;
}

/** Where state lives: PostgreSQL, SQLite in a data directory, or (dataDir null) SQLite in memory. */
export type StoreChoice = { readonly postgres: PostgresChoice } | { readonly dataDir: string | null };

export interface BusEngineOptions {
  /** Prefix of the instance id (`aggregator-1a2b3c4d`); every group and transactional id of the process derives from it. */
  readonly role: string;
  readonly geozones: readonly string[];
  readonly kafka?: KafkaChoice;
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Counts what the typed bus produces, consumes and dead-letters (the process's metrics). */
  readonly observer?: BusObserver;
  /**
   * Where the adapters register their timings (the process's metrics): Kafka's
   * `arcnet_kafka_produce_duration_ms`, the store's `arcnet_store_query_duration_ms`; none, no timing.
   */
  readonly registry?: Registry;
}

export interface EngineOptions extends BusEngineOptions {
  readonly store: StoreChoice;
}

/** The bus alone, for a process that keeps no state (the simulator). */
export interface BusEngines {
  readonly instanceId: string;
  readonly kinds: { readonly bus: BusKind };
  readonly adapter: BusAdapter;
  readonly bus: MessageBus;
  readonly clock: Clock;
  readonly logger: Logger;
  close(): Promise<void>;
}

export interface Engines extends BusEngines {
  readonly kinds: EngineKinds;
  readonly stores: StateStores;
}

/** Opens the bus (and creates the topics of the geozones); closes it again if that fails. */
export async function openBusEngines(options: BusEngineOptions): Promise<BusEngines> {
  const instanceId = `${options.role}-${newId().slice(0, 8)}`;
  const logger = (options.logger ?? silentLogger).child({ instance: instanceId });
  return connectBus(instanceId, logger, options);
}

async function connectBus(instanceId: string, logger: Logger, options: BusEngineOptions): Promise<BusEngines> {
  const kafka = options.kafka;
  const adapter: BusAdapter = kafka
    ? new KafkaBus({
        ...kafka,
        clientId: `${kafka.clientId}-${instanceId}`,
        logger: logger.child({ component: 'kafka' }),
        ...(options.registry ? { registry: options.registry } : {}),
        ...(kafka.sessionTimeoutMs ? { sessionTimeoutMs: kafka.sessionTimeoutMs, heartbeatIntervalMs: Math.max(100, Math.floor(kafka.sessionTimeoutMs / 10)) } : {}),
      })
    : new MemoryBus();
  const bus = new MessageBus(adapter, { logger, ...(options.observer ? { observer: options.observer } : {}) });
  try {
    await bus.ensureTopics(options.geozones);
  } catch (error) {
    await adapter.close();
    throw error;
  }
  return { instanceId, kinds: { bus: kafka ? 'kafka' : 'memory' }, adapter, bus, clock: options.clock ?? systemClock, logger, close: () => adapter.close() };
}

/**
 * Opens the store, then the bus, under one instance id. A data directory is locked first (one
 * embedded server per directory); PostgreSQL is shared by any number of processes and needs no lock.
 * `close()` closes the bus, then the store, then gives the lock back.
 */
export async function openEngines(options: EngineOptions): Promise<Engines> {
  const instanceId = `${options.role}-${newId().slice(0, 8)}`;
  const logger = (options.logger ?? silentLogger).child({ instance: instanceId });
  const clock = options.clock ?? systemClock;
  const { stores, store, unlock } = await openStore(options.store, { clock, logger, ...(options.registry ? { registry: options.registry } : {}) });
  let bus: BusEngines;
  try {
    bus = await connectBus(instanceId, logger, { ...options, clock });
  } catch (error) {
    await closeStores(stores, logger);
    unlock();
    throw error;
  }
  let closed: Promise<void> | undefined;
  return {
    ...bus,
    kinds: { bus: bus.kinds.bus, store },
    stores,
    close: () =>
      (closed ??= (async () => {
        await bus.close();
        await closeStores(stores, logger);
        unlock();
      })()),
  };
}

interface StoreCommon {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly registry?: Registry;
}

async function openStore(choice: StoreChoice, common: StoreCommon): Promise<{ stores: StateStores; store: StoreKind; unlock: () => void }> {
  if ('postgres' in choice) {
    const { url, schema, sslmode, sslCa } = choice.postgres;
    const ssl = { ...(sslmode ? { sslmode } : {}), ...(sslCa ? { sslCa } : {}) };
    return { stores: await openPostgresStores({ url, ...(schema ? { schema } : {}), ...ssl, ...common }), store: 'postgres', unlock: () => undefined };
  }
  if (choice.dataDir === null) return { stores: openSqliteStores({ path: ':memory:', ...common }), store: 'sqlite-memory', unlock: () => undefined };
  mkdirSync(choice.dataDir, { recursive: true });
  const unlock = lockDataDir(choice.dataDir);
  try {
    return { stores: openSqliteStores({ path: join(choice.dataDir, 'arcnet.db'), ...common }), store: 'sqlite', unlock };
  } catch (error) {
    unlock();
    throw error;
  }
}

async function closeStores(stores: StateStores, logger: Logger): Promise<void> {
  try {
    await stores.close();
  } catch (error) {
    logger.error({ err: errorMessage(error) }, 'store did not close cleanly');
  }
}

/** The word older clients read from `/stats` and `/health`: `embedded` only when both engines are. */
export function modeOf(kinds: Partial<EngineKinds>): 'embedded' | 'distributed' | 'mixed' {
  const busEmbedded = kinds.bus !== 'kafka';
  const storeEmbedded = kinds.store !== 'postgres';
  if (busEmbedded && storeEmbedded) return 'embedded';
  return busEmbedded || storeEmbedded ? 'mixed' : 'distributed';
}

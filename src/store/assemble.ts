/**
 * What both open functions do once their engine is connected and migrated: time every port call on
 * the meter, start history retention, and close in one order (retention first, so no batch runs on
 * a closing connection; then the engine's watches and connection).
 */
import type { Logger } from '../core/logging.ts';
import type { Clock } from '../core/clock.ts';
import type { DocumentStore, KvStore, LeaseStore, RecordStore } from './ports.ts';
import { meterDocuments, meterKv, meterLeases, meterRecords, type QueryMeter } from './query-metrics.ts';
import { startRetention, type CompactionEngine, type OpenedStores, type RetentionPolicy } from './retention.ts';

export interface EngineParts {
  readonly documents: DocumentStore;
  readonly records: RecordStore;
  readonly kv: KvStore;
  readonly leases: LeaseStore;
  readonly compaction: CompactionEngine;
  /** Closes the engine's watches and its connection. */
  close(): Promise<void>;
}

export interface AssembleOptions {
  readonly meter: QueryMeter;
  readonly retention: RetentionPolicy | undefined;
  readonly clock: Clock;
  readonly logger: Logger | undefined;
}

export function assembleStores(parts: EngineParts, options: AssembleOptions): OpenedStores {
  const retention = startRetention(parts.compaction, options.retention, options.clock, options.logger, options.meter);
  return {
    documents: meterDocuments(parts.documents, options.meter),
    records: meterRecords(parts.records, options.meter),
    kv: meterKv(parts.kv, options.meter),
    leases: meterLeases(parts.leases, options.meter),
    compactHistory: () => retention.compactHistory(),
    close: async () => {
      await retention.stop();
      await parts.close();
    },
  };
}

/**
 * The audit log (seed 001: "all state mutations logged"; issue 11): for every mutation, who made it
 * (a key id and its role, a worker, or `system:<component>`), what it was (an action, its target,
 * a few details), when, and from where (the caller's address). Each record is one document of the
 * `audit` collection in the bitemporal store, valid from the moment it happened, written once and
 * never updated: its id is new every time and time-ordered (`<ISO instant>_<instance><sequence>`), so
 * the history of an id is always one version and no later write can rewrite what was recorded.
 *
 * Two ways in, by how much the record must be tied to its change:
 * - `prepare(entry)` gives the put of a record for a caller that writes the change itself: the
 *   coordinator adds it to its plan's one `putMany`, so a reputation change and its record land
 *   together or not at all (`src/jobs/coordinator.ts`).
 * - `record(entry)` writes a record of its own for a change already made (a key created, a node
 *   enrolled). A failure there is logged and swallowed: the caller's change has succeeded, and the
 *   request must not fail after the fact.
 *
 * Reads (`query`) are operator-only (`GET /api/v1/audit`, `arcnet audit`), newest first, at most
 * 1,000 at a time. The store port has no range read, so a query lists the collection and filters
 * by valid time before it parses a body: fine for an operator's question, never on a hot path.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import { ArcError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import type { DocumentPut, DocumentStore } from '../store/ports.ts';

export const AUDIT_COLLECTION = 'audit';

/** Every action recorded today; `GET /api/v1/audit?action=` accepts exactly these. */
export const AUDIT_ACTIONS = [
  'job.submitted',
  'node.enrolled',
  'key.created',
  'key.revoked',
  'worker.registered',
  'worker.reputation',
  'worker.status',
] as const;

export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export const MAX_AUDIT_LIMIT = 1_000;

export interface AuditTarget {
  /** `job`, `node`, `key`, `worker`. */
  readonly kind: string;
  readonly id: string;
}

export interface AuditEntry {
  /** A key id, `worker:<node id>`, `insecure` under --insecure-no-auth, or `system:<component>`. */
  readonly actor: string;
  readonly actorRole?: string;
  readonly action: AuditAction;
  readonly target: AuditTarget;
  /** A few fields (a name, a delta, a score): the callers build them from bounded values, so they are stored as given. */
  readonly details?: Readonly<Record<string, unknown>>;
  /** The caller's source address, where a call made the change. */
  readonly address?: string;
}

export interface AuditRecord {
  readonly id: string;
  /** ISO-8601, the moment the change was made; also the document's valid time. */
  readonly at: string;
  readonly actor: string;
  readonly actorRole: string | null;
  readonly action: AuditAction;
  readonly target: AuditTarget;
  readonly details: Readonly<Record<string, unknown>>;
  readonly address: string | null;
}

export interface AuditQuery {
  /** Inclusive, epoch ms. */
  readonly since?: number;
  /** Inclusive, epoch ms. */
  readonly until?: number;
  readonly actor?: string;
  readonly action?: AuditAction;
  /** 1 to 1,000. */
  readonly limit: number;
}

export interface AuditPage {
  /** Newest first. */
  readonly records: readonly AuditRecord[];
  /** More records matched than `limit`: narrow the window or raise the limit. */
  readonly more: boolean;
}

export function isAuditAction(value: string): value is AuditAction {
  return (AUDIT_ACTIONS as readonly string[]).includes(value);
}

export class AuditLog {
  private readonly documents: DocumentStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** Keeps the ids of two logs (processes) apart; drawn once, since records are written on the jobs path. */
  private readonly instance = randomBytes(4).toString('hex');
  /** Orders the records of one process within a millisecond. */
  private sequence = 0;

  constructor(documents: DocumentStore, clock: Clock, logger: Logger) {
    this.documents = documents;
    this.clock = clock;
    this.logger = logger;
  }

  /** The put of one new record, for a caller that writes it in the same transaction as the change. */
  prepare(entry: AuditEntry): DocumentPut<AuditRecord> {
    const now = this.clock.now();
    const at = new Date(now).toISOString();
    this.sequence++;
    const id = `${at}_${this.instance}${this.sequence.toString(36).padStart(8, '0')}`;
    const record: AuditRecord = {
      id,
      at,
      actor: entry.actor,
      actorRole: entry.actorRole ?? null,
      action: entry.action,
      target: entry.target,
      details: entry.details ?? {},
      address: entry.address ?? null,
    };
    // No compare-and-set here: a caller's putMany that met a mismatch would roll its whole change back
    // without a word (the coordinator reads no outcomes). The id is new: instant, instance, sequence.
    return { collection: AUDIT_COLLECTION, id, body: record, options: { validFrom: now } };
  }

  /** Writes one record of a change already made; never throws (the failure is logged), so it cannot fail the call that made the change. */
  async record(entry: AuditEntry): Promise<AuditRecord | undefined> {
    const put = this.prepare(entry);
    try {
      // Alone, the write can check it creates the id: a record is never a second version of another.
      const outcome = await this.documents.put(put.collection, put.id, put.body, { ...put.options, expectedVersion: 0 });
      if (!outcome.ok) throw new ArcError('CONFLICT', `audit record id ${put.id} already exists`);
      return put.body;
    } catch (error) {
      this.logger.error({ err: errorMessage(error), action: entry.action, actor: entry.actor, target: entry.target }, 'could not write an audit record; the change itself was made');
      return undefined;
    }
  }

  /** Records newest first, filtered; at most `limit` (1 to 1,000). */
  async query(filter: AuditQuery): Promise<AuditPage> {
    const limit = Math.min(MAX_AUDIT_LIMIT, Math.max(1, Math.floor(filter.limit)));
    // Valid time is the record's `at`: `until` is the read's asOf, `since` a filter on the versions' valid time, both before any body is parsed.
    const versions = await this.documents.list<AuditRecord>(AUDIT_COLLECTION, filter.until === undefined ? {} : { asOf: filter.until });
    const inWindow = filter.since === undefined ? versions : versions.filter((v) => v.validFrom >= filter.since!);
    // Ids start with the ISO instant, so id order is time order whatever the engine's collation.
    inWindow.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const records: AuditRecord[] = [];
    let more = false;
    for (const version of inWindow) {
      const record = version.body;
      if (record === undefined) continue;
      if (filter.actor !== undefined && record.actor !== filter.actor) continue;
      if (filter.action !== undefined && record.action !== filter.action) continue;
      if (records.length === limit) {
        more = true;
        break;
      }
      records.push(record);
    }
    return { records, more };
  }
}

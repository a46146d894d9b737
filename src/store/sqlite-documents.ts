/** The DocumentStore port on SQLite: bitemporal documents as immutable assertion rows (ADR 0002). */
import { decode, encode, requireExpected, requireTime } from './input.ts';
import type { DocumentPut, DocumentStore, DocumentVersion, PutOptions, ReadOptions, WriteOutcome } from './ports.ts';
import { Rollback, type Row, type Sqlite } from './sqlite-client.ts';

const DOC_COLUMNS = 'collection, id, version, valid_from, tx_time, body, deleted';

function toVersion<T>(row: Row): DocumentVersion<T> {
  return { ...versionFields(row), body: decode<T>(row['body'] ?? null) };
}

/** Everything of a version but its body. */
function versionFields(row: Row): Omit<DocumentVersion<never>, 'body'> {
  return {
    collection: row['collection'] as string,
    id: row['id'] as string,
    version: row['version'] as number,
    validFrom: row['valid_from'] as number,
    txTime: row['tx_time'] as number,
    deleted: row['deleted'] === 1,
  };
}

/**
 * The version a write just appended. Its body is parsed from the stored text only when read: most
 * writers ignore it, and parsing every written body back cost the jobs coordinator ~3 % of its time.
 */
function writtenVersion<T>(row: Row): DocumentVersion<T> {
  let body: T | undefined;
  let parsed = false;
  return {
    ...versionFields(row),
    get body(): T | undefined {
      if (!parsed) {
        body = decode<T>(row['body'] ?? null);
        parsed = true;
      }
      return body;
    },
  };
}

export class SqliteDocumentStore implements DocumentStore {
  private readonly s: Sqlite;
  constructor(s: Sqlite) {
    this.s = s;
  }

  private latestVersion(collection: string, id: string): { version: number; deleted: boolean } {
    const row = this.s
      .stmt('SELECT version, deleted FROM documents WHERE collection = ? AND id = ? ORDER BY version DESC LIMIT 1')
      .get(collection, id);
    return row === undefined ? { version: 0, deleted: true } : { version: row['version'] as number, deleted: row['deleted'] === 1 };
  }

  /**
   * expectedVersion 0 means "no live document": it matches an id never written and one whose latest
   * version is a deletion, so create-if-absent works after a delete. Any other value must equal the
   * latest version exactly (by version number, whatever its valid time).
   */
  private static casHolds(expected: number | undefined, latest: { version: number; deleted: boolean }): boolean {
    if (expected === undefined) return true;
    if (expected === 0) return latest.deleted;
    return expected === latest.version;
  }

  /** Runs inside a write transaction. */
  private append(collection: string, id: string, version: number, validFrom: number, now: number, body: string | null): Row {
    this.s
      .stmt(
        'INSERT INTO documents (collection, id, version, valid_from, tx_time, body, deleted) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(collection, id, version, validFrom, now, body, body === null ? 1 : 0);
    return { collection, id, version, valid_from: validFrom, tx_time: now, body, deleted: body === null ? 1 : 0 };
  }

  private writeOne<T>(collection: string, id: string, body: string | null, options: PutOptions | undefined): WriteOutcome<T> {
    this.s.ensureOpen();
    requireExpected(options?.expectedVersion, 'expectedVersion');
    const now = this.s.clock.now();
    const validFrom = requireTime(options?.validFrom ?? now, 'validFrom');
    return this.s.write(() => {
      this.s.checkFence(options?.fence);
      const latest = this.latestVersion(collection, id);
      if (!SqliteDocumentStore.casHolds(options?.expectedVersion, latest)) {
        return { ok: false, reason: 'version-mismatch', currentVersion: latest.version } as const;
      }
      const row = this.append(collection, id, latest.version + 1, validFrom, now, body);
      return { ok: true, version: writtenVersion<T>(row) } as const;
    });
  }

  async put<T>(collection: string, id: string, body: T, options?: PutOptions): Promise<WriteOutcome<T>> {
    return this.writeOne<T>(collection, id, encode(body, 'document body'), options);
  }

  async delete(collection: string, id: string, options?: PutOptions): Promise<WriteOutcome<never>> {
    // A delete always appends a tombstone, even for an id with no live version: in a bitemporal store a
    // (possibly retroactive) "this did not exist from validFrom" is itself a fact worth recording.
    return this.writeOne<never>(collection, id, null, options);
  }

  /**
   * On any version mismatch nothing lands, and every outcome is ok:false 'version-mismatch' carrying
   * the id's latest committed version: reporting ok:true for puts that were rolled back would lie, and
   * the current versions let the caller rebuild the whole batch in one read. A stale fence throws.
   */
  async putMany<T>(puts: readonly DocumentPut<T>[]): Promise<WriteOutcome<T>[]> {
    this.s.ensureOpen();
    if (puts.length === 0) return [];
    const now = this.s.clock.now();
    const prepared = puts.map((p) => {
      requireExpected(p.options?.expectedVersion, 'expectedVersion');
      return { put: p, body: encode(p.body, 'document body'), validFrom: requireTime(p.options?.validFrom ?? now, 'validFrom') };
    });
    return this.s.write(() => {
      // Versions as committed before this batch, for the mismatch report (a later put of the same id in
      // the batch sees the earlier one's uncommitted row).
      const before = new Map<string, number>();
      const outcomes: WriteOutcome<T>[] = [];
      let failed = false;
      for (const { put, body, validFrom } of prepared) {
        this.s.checkFence(put.options?.fence);
        const latest = this.latestVersion(put.collection, put.id);
        const key = `${put.collection}\u0000${put.id}`;
        if (!before.has(key)) before.set(key, latest.version);
        if (!SqliteDocumentStore.casHolds(put.options?.expectedVersion, latest)) {
          failed = true;
          outcomes.push({ ok: false, reason: 'version-mismatch', currentVersion: latest.version });
          continue;
        }
        const row = this.append(put.collection, put.id, latest.version + 1, validFrom, now, body);
        outcomes.push({ ok: true, version: writtenVersion<T>(row) });
      }
      if (!failed) return outcomes;
      return new Rollback(
        prepared.map(({ put }): WriteOutcome<T> => ({
          ok: false,
          reason: 'version-mismatch',
          currentVersion: before.get(`${put.collection}\u0000${put.id}`) ?? 0,
        })),
      );
    });
  }

  async get<T>(collection: string, id: string, options?: ReadOptions): Promise<DocumentVersion<T> | undefined> {
    this.s.ensureOpen();
    const now = this.s.clock.now();
    const row = this.s
      .stmt(
        `SELECT ${DOC_COLUMNS} FROM documents
         WHERE collection = ? AND id = ? AND valid_from <= ? AND tx_time <= ?
         ORDER BY valid_from DESC, tx_time DESC, seq DESC LIMIT 1`,
      )
      .get(collection, id, options?.asOf ?? now, options?.knownAt ?? now);
    if (row === undefined || row['deleted'] === 1) return undefined;
    return toVersion<T>(row);
  }

  async list<T>(collection: string, options?: ReadOptions): Promise<DocumentVersion<T>[]> {
    this.s.ensureOpen();
    const now = this.s.clock.now();
    // One pass over the collection's index range: rank each id's visible rows and keep the winner.
    const rows = this.s
      .stmt(
        `SELECT ${DOC_COLUMNS} FROM (
           SELECT ${DOC_COLUMNS}, ROW_NUMBER() OVER (
             PARTITION BY id ORDER BY valid_from DESC, tx_time DESC, seq DESC
           ) AS rank
           FROM documents
           WHERE collection = ? AND valid_from <= ? AND tx_time <= ?
         )
         WHERE rank = 1 AND deleted = 0
         ORDER BY id`,
      )
      .all(collection, options?.asOf ?? now, options?.knownAt ?? now);
    return rows.map((row) => toVersion<T>(row));
  }

  async history<T>(collection: string, id: string): Promise<DocumentVersion<T>[]> {
    this.s.ensureOpen();
    // seq is commit order even if the clock stepped backwards between writes.
    const rows = this.s.stmt(`SELECT ${DOC_COLUMNS} FROM documents WHERE collection = ? AND id = ? ORDER BY seq`).all(collection, id);
    return rows.map((row) => toVersion<T>(row));
  }
}

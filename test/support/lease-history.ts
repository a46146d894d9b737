/**
 * Every lease grant, renewal and release, as PostgreSQL applied them: the store keeps one row per
 * lease (`leases`: name, holder, token, expires_at; the row outlives release and expiry because its
 * token is the fencing high-water mark) and no history, so a test that must judge who held a node
 * when installs a trigger in its own schema that copies each row change, in the same transaction, to
 * `lease_history`. A change is then recorded exactly when it committed, in the order the row lock
 * serialised it (`seq` is ordered per lease name).
 *
 * `grantsOf()` turns the rows back into grants; `exclusionViolations()` checks the store's own
 * promise on them: a lease is granted again only once its previous grant was released or expired.
 */
import type postgres from 'postgres';

export interface LeaseChange {
  readonly seq: number;
  /** The server's clock when the row changed (epoch ms; the same machine's clock as the processes'). */
  readonly atMs: number;
  readonly name: string;
  readonly oldHolder: string | null;
  readonly oldToken: number | null;
  readonly holder: string | null;
  readonly token: number;
  readonly expiresAt: number;
}

export async function installLeaseHistory(sql: postgres.Sql, schema: string): Promise<void> {
  const s = `"${schema}"`;
  await sql.unsafe(`
    CREATE TABLE ${s}.lease_history (
      seq        bigserial PRIMARY KEY,
      at_ms      bigint NOT NULL,
      name       text   NOT NULL,
      old_holder text,
      old_token  bigint,
      holder     text,
      token      bigint NOT NULL,
      expires_at bigint NOT NULL
    );
    CREATE FUNCTION ${s}.record_lease_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO ${s}.lease_history (at_ms, name, holder, token, expires_at)
        VALUES ((extract(epoch FROM clock_timestamp()) * 1000)::bigint, NEW.name, NEW.holder, NEW.token, NEW.expires_at);
      ELSE
        INSERT INTO ${s}.lease_history (at_ms, name, old_holder, old_token, holder, token, expires_at)
        VALUES ((extract(epoch FROM clock_timestamp()) * 1000)::bigint, NEW.name, OLD.holder, OLD.token, NEW.holder, NEW.token, NEW.expires_at);
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER lease_history AFTER INSERT OR UPDATE ON ${s}.leases FOR EACH ROW EXECUTE FUNCTION ${s}.record_lease_change();
  `);
}

export async function readLeaseHistory(sql: postgres.Sql, schema: string, namePrefix: string): Promise<LeaseChange[]> {
  const rows = await sql.unsafe<{ seq: string; at_ms: string; name: string; old_holder: string | null; old_token: string | null; holder: string | null; token: string; expires_at: string }[]>(
    `SELECT seq, at_ms, name, old_holder, old_token, holder, token, expires_at FROM "${schema}".lease_history WHERE starts_with(name, $1) ORDER BY seq`,
    [namePrefix],
  );
  return rows.map((r) => ({
    seq: Number(r.seq),
    atMs: Number(r.at_ms),
    name: r.name,
    oldHolder: r.old_holder,
    oldToken: r.old_token === null ? null : Number(r.old_token),
    holder: r.holder,
    token: Number(r.token),
    expiresAt: Number(r.expires_at),
  }));
}

/** The rows of the `leases` table itself: the current holder and token of each lease. */
export async function readLeases(sql: postgres.Sql, schema: string, namePrefix: string): Promise<Map<string, { holder: string | null; token: number; expiresAt: number }>> {
  const rows = await sql.unsafe<{ name: string; holder: string | null; token: string; expires_at: string }[]>(
    `SELECT name, holder, token, expires_at FROM "${schema}".leases WHERE starts_with(name, $1)`,
    [namePrefix],
  );
  return new Map(rows.map((r) => [r.name, { holder: r.holder, token: Number(r.token), expiresAt: Number(r.expires_at) }]));
}

/** One grant of a lease: a token given to a holder, from its grant until its release or its (last renewed) expiry. */
export interface Grant {
  readonly name: string;
  readonly token: number;
  readonly holder: string;
  /** The granting process's clock at the grant (expires_at − TTL of the first row with this token). */
  readonly grantedAt: number;
  readonly firstSeq: number;
  /** Expiry after the last renewal (a same-holder acquire keeps the token and moves it). */
  lastExpiresAt: number;
  renewals: number;
  /** The releasing process's clock at the release (the store writes it as expires_at), if released. */
  releasedAt?: number;
  releaseSeq?: number;
}

/** When a grant stopped holding the node: its release, or its expiry if that came first or it was never released. */
export const endOf = (grant: Grant): number => Math.min(grant.lastExpiresAt, grant.releasedAt ?? Infinity);

/** Grants per lease name, in token order, rebuilt from the changes (read in seq order) and the TTL every grant was given. */
export function grantsOf(changes: readonly LeaseChange[], ttlMs: number): Map<string, Grant[]> {
  const byName = new Map<string, Grant[]>();
  for (const change of changes) {
    const grants = byName.get(change.name) ?? [];
    byName.set(change.name, grants);
    const last = grants.at(-1);
    if (change.holder === null) {
      // A release: the row keeps its token, loses its holder, and expires_at becomes the release time.
      if (last && last.token === change.token && last.releasedAt === undefined) {
        last.releasedAt = change.expiresAt;
        last.releaseSeq = change.seq;
      } else {
        throw new Error(`lease ${change.name}: release of token ${change.token} at seq ${change.seq} matches no open grant`);
      }
    } else if (last && last.token === change.token) {
      if (last.holder !== change.holder || last.releasedAt !== undefined) {
        throw new Error(`lease ${change.name}: token ${change.token} given again (to ${change.holder}) at seq ${change.seq}`);
      }
      last.lastExpiresAt = change.expiresAt;
      last.renewals++;
    } else {
      grants.push({ name: change.name, token: change.token, holder: change.holder, grantedAt: change.expiresAt - ttlMs, firstSeq: change.seq, lastExpiresAt: change.expiresAt, renewals: 0 });
    }
  }
  return byName;
}

/**
 * Pairs of consecutive grants of one lease where the later one began while the earlier one still held
 * it: neither released before it (in commit order) nor expired by the later grant's clock. Tokens must
 * also rise by exactly one per grant.
 */
export function exclusionViolations(grants: ReadonlyMap<string, readonly Grant[]>): string[] {
  const violations: string[] = [];
  for (const [name, list] of grants) {
    for (let i = 1; i < list.length; i++) {
      const previous = list[i - 1]!;
      const current = list[i]!;
      if (current.token !== previous.token + 1) violations.push(`${name}: token ${current.token} follows ${previous.token}`);
      const released = previous.releaseSeq !== undefined && previous.releaseSeq < current.firstSeq;
      const expired = current.grantedAt >= previous.lastExpiresAt;
      if (!released && !expired) {
        violations.push(`${name}: token ${current.token} (${current.holder}) granted at ${current.grantedAt} while token ${previous.token} (${previous.holder}) held it until ${previous.lastExpiresAt}`);
      }
    }
  }
  return violations;
}

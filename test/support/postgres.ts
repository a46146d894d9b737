/**
 * Where the PostgreSQL tests find a server, and schemas of their own on it: one place, so every suite
 * that needs PostgreSQL skips (or runs) for the same reason. `bash scripts/postgres.sh ensure` provides one.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';

export const POSTGRES_URL = process.env['ARCNET_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

export type PostgresProbe = { readonly available: true } | { readonly available: false; readonly reason: string };

/** host:port of a URL, for messages (the URL itself may carry a password). */
export function postgresEndpoint(url = POSTGRES_URL): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}`;
  } catch {
    return 'an unparseable ARCNET_POSTGRES_URL';
  }
}

/** One connection for the test's own inspection and setup; end it when done. */
export function adminConnection(url = POSTGRES_URL, connectTimeoutSeconds = 10): postgres.Sql {
  return postgres(url, { max: 1, connect_timeout: connectTimeoutSeconds, onnotice: () => undefined, fetch_types: false });
}

/** Whether the server answers within 2 s; the reason is what a skipped suite prints. */
export async function probePostgres(url = POSTGRES_URL): Promise<PostgresProbe> {
  const sql = adminConnection(url, 2);
  let timer: NodeJS.Timeout | undefined;
  // postgres.js's own timeout restarts with each attempt, and it retries at once when something
  // accepts TCP and hangs up (a proxy, a pooler without a server): without this the probe never returns.
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error('no PostgreSQL handshake within 2 s'), { code: 'NO_HANDSHAKE_WITHIN_2S' })), 2000);
  });
  try {
    await Promise.race([sql`SELECT 1`, deadline]);
    return { available: true };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const detail = typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
    return { available: false, reason: `cannot connect to ${postgresEndpoint(url)}: ${detail}` };
  } finally {
    clearTimeout(timer);
    await sql.end({ timeout: 0 });
  }
}

export interface TestSchemas {
  /**
   * A schema name no other test or test process uses. Not created unless asked: opening a store
   * creates its schema, and some tests are about exactly that.
   */
  fresh(options?: { create?: boolean }): Promise<string>;
  /** Drops every schema handed out (and everything in it); call from afterAll. */
  dropAll(): Promise<void>;
}

/**
 * Dropping is batched at the end rather than per test: a DROP is a commit (an fsync) plus a
 * connection, which per test would add seconds to the suite for nothing.
 */
export function testSchemas(url = POSTGRES_URL): TestSchemas {
  const names: string[] = [];
  return {
    fresh: async (options = {}) => {
      const name = `arcnet_test_${process.pid}_${randomBytes(5).toString('hex')}`;
      names.push(name);
      if (options.create) {
        const sql = adminConnection(url);
        try {
          await sql.unsafe(`CREATE SCHEMA "${name}"`);
        } finally {
          await sql.end({ timeout: 0 });
        }
      }
      return name;
    },
    dropAll: async () => {
      const pending = names.splice(0);
      if (pending.length === 0) return;
      const sql = adminConnection(url);
      try {
        // A few per statement: one DROP takes a lock per dropped object, and the lock table is finite.
        for (let i = 0; i < pending.length; i += 8) {
          await sql.unsafe(`DROP SCHEMA IF EXISTS ${pending.slice(i, i + 8).map((n) => `"${n}"`).join(', ')} CASCADE`);
        }
      } finally {
        await sql.end({ timeout: 0 });
      }
    },
  };
}

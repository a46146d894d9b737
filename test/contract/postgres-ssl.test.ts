/**
 * PostgreSQL's sslmode against the real server here (issue 11, "Transport"). The development
 * server usually has SSL off: then asking for TLS fails at open, soon, with one sentence naming
 * sslmode and what to change, and `disable` works. Where SSL is on, `require` works instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArcError } from '../../src/core/errors.ts';
import { openPostgresStores } from '../../src/store/postgres.ts';
import { acceptsSsl } from '../../src/store/postgres-ssl.ts';
import { needEngines } from '../support/engines.ts';
import { POSTGRES_URL, adminConnection, postgresEndpoint, testSchemas } from '../support/postgres.ts';

const probe = needEngines('postgres');
const schemas = testSchemas();

describe.skipIf(!probe.available)(probe.title('PostgreSQL sslmode'), () => {
  let sslOn = false;
  beforeAll(async () => {
    const sql = adminConnection();
    try {
      sslOn = (await sql<{ ssl: string }[]>`SHOW ssl`)[0]!.ssl === 'on';
    } finally {
      await sql.end({ timeout: 0 });
    }
  });
  afterAll(() => schemas.dropAll());

  it('tells whether the server accepts TLS, as SHOW ssl says', async () => {
    const { hostname, port } = new URL(POSTGRES_URL);
    expect(await acceptsSsl(hostname, Number(port || 5432))).toBe(sslOn);
  });

  it('opens and works with sslmode disable', async () => {
    const stores = await openPostgresStores({ url: POSTGRES_URL, schema: await schemas.fresh(), sslmode: 'disable', retention: false });
    try {
      await stores.documents.put('ssl-check', 'a', { ok: true });
      expect((await stores.documents.get<{ ok: boolean }>('ssl-check', 'a'))?.body).toEqual({ ok: true });
    } finally {
      await stores.close();
    }
  });

  it('with sslmode require (the setting or ?sslmode= in the URL): refused at open, within seconds, naming sslmode, when the server has SSL off; open otherwise', async () => {
    const attempts = [
      { sslmode: 'require' as const, url: POSTGRES_URL },
      { url: `${POSTGRES_URL}${POSTGRES_URL.includes('?') ? '&' : '?'}sslmode=require` },
    ];
    for (const attempt of attempts) {
      const started = Date.now();
      const outcome = await openPostgresStores({ ...attempt, schema: await schemas.fresh(), retention: false, connectTimeoutMs: 10_000 }).then(
        async (stores) => {
          await stores.close();
          return 'opened';
        },
        (error: unknown) => error,
      );
      if (sslOn) {
        expect(outcome).toBe('opened');
        continue;
      }
      expect(outcome).toBeInstanceOf(ArcError);
      expect(outcome).toMatchObject({ code: 'INVALID_INPUT', retryable: false });
      expect((outcome as Error).message).toBe(
        `PostgreSQL at ${postgresEndpoint()} does not accept SSL connections (it answered "N" to SSLRequest), but sslmode is require: turn ssl on in the server's postgresql.conf, or set sslmode=disable (postgres.sslmode, ARCNET_POSTGRES_SSLMODE, or ?sslmode= in the URL)`,
      );
      // Not the connect timeout: the refusal is known as soon as the server answers.
      expect(Date.now() - started).toBeLessThan(5_000);
    }
  });
});

/**
 * TLS to PostgreSQL (issue 11, "Transport"): libpq's `sslmode` names, three of them, mapped onto
 * postgres.js's `ssl` option, and the check that turns "the server has SSL off" into one clear
 * sentence instead of a reset socket.
 *
 * - `disable`: plain TCP, whatever the URL or PGSSLMODE say.
 * - `require`: encrypted, the server's certificate not checked (libpq's meaning without a root cert).
 * - `verify-full`: encrypted, the certificate must chain to `ca` (else the system's CAs) and name the
 *   host of the URL, an IP address included.
 */
import { connect } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { ArcError } from '../core/errors.ts';

export type PostgresSslMode = 'disable' | 'require' | 'verify-full';

export const POSTGRES_SSL_MODES: readonly PostgresSslMode[] = ['disable', 'require', 'verify-full'];

export function isPostgresSslMode(value: string): value is PostgresSslMode {
  return (POSTGRES_SSL_MODES as readonly string[]).includes(value);
}

/** postgres.js's `ssl` for a mode: false, 'require', or tls.connect options that verify. */
export function postgresSslOption(mode: PostgresSslMode, host: string, ca?: string): false | 'require' | ConnectionOptions {
  if (mode === 'disable') return false;
  if (mode === 'require') return 'require';
  // postgres.js hands tls.connect an existing socket and a servername only for DNS names; `host`
  // makes the identity check use the URL's host, so an IP address is checked against the IP SANs.
  return { rejectUnauthorized: true, host, ...(ca === undefined ? {} : { ca }) };
}

/** What the URL's own `?sslmode=` asks for, when it is one of ours (postgres.js reads the URL too). */
export function sslModeOfUrl(url: string): string | undefined {
  try {
    return new URL(url).searchParams.get('sslmode') ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the server at host:port agrees to TLS: PostgreSQL answers an SSLRequest with one byte,
 * 'S' (yes) or 'N' (SSL off). Undefined when it cannot tell (no answer within the time, connection refused).
 */
export function acceptsSsl(host: string, port: number, timeoutMs = 3_000): Promise<boolean | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (answer: boolean | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.once('connect', () => socket.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]))); // length 8, code 80877103
    socket.once('data', (data) => done(data[0] === 0x53 ? true : data[0] === 0x4e ? false : undefined));
    socket.once('error', () => done(undefined));
  });
}

/** The refusal when TLS was asked for and the server has it off. */
export function sslNotSupported(endpoint: string, mode: string): ArcError {
  return new ArcError(
    'INVALID_INPUT',
    `PostgreSQL at ${endpoint} does not accept SSL connections (it answered "N" to SSLRequest), but sslmode is ${mode}: turn ssl on in the server's postgresql.conf, or set sslmode=disable (postgres.sslmode, ARCNET_POSTGRES_SSLMODE, or ?sslmode= in the URL)`,
    { retryable: false },
  );
}

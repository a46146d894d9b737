/**
 * TLS between ArcNet's own processes (issue 11, "Transport"; seed 001: TLS 1.3, mTLS between
 * components): what a listening process needs (certificate, key, and a CA to verify clients by),
 * what a client needs (a CA to trust, its own certificate and key), and the one minimum version both
 * sides insist on. PEM contents travel in these types; files are read once, where flags and settings
 * are resolved, so a missing file is refused at start naming the flag.
 */
import { readFileSync } from 'node:fs';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { ArcError, errorMessage } from './errors.ts';

/** Seed 001's floor: a TLS 1.2 client is refused at the handshake, by servers and clients alike. */
export const MIN_TLS_VERSION = 'TLSv1.3' as const;

/** A listening process's TLS: it then serves HTTPS and WSS only. */
export interface ServerTls {
  /** PEM certificate chain. */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string;
  /**
   * PEM CA bundle. Given, the server asks every client for a certificate and verifies it against
   * these; the routes only nodes call then refuse a client without a verified one
   * (`src/access/client-certificate.ts`). Other routes may still come without one.
   */
  readonly ca?: string;
}

/** What a client presents and trusts when it calls an ArcNet server over `https://` / `wss://`. */
export interface ClientTls {
  /** PEM CA bundle the server's certificate must chain to; absent: the system's CAs. */
  readonly ca?: string;
  /** PEM client certificate, for servers started with `--tls-ca`. */
  readonly cert?: string;
  /** PEM private key of `cert`. */
  readonly key?: string;
}

/** Options for `https.createServer` / Fastify's `https`: TLS 1.3 only; with a CA, client certificates asked for and verified. */
export function serverTlsOptions(tls: ServerTls): TlsOptions {
  return {
    cert: tls.cert,
    key: tls.key,
    minVersion: MIN_TLS_VERSION,
    // requestCert without rejectUnauthorized: the handshake completes for a client without a
    // certificate (the CLI, a browser), and each route decides from `socket.authorized` whether it
    // needs one. A certificate that does not verify leaves `authorized` false, never true.
    ...(tls.ca === undefined ? {} : { ca: tls.ca, requestCert: true, rejectUnauthorized: false }),
  };
}

/** Options for `tls.connect` (undici's `connect`, `ws`): TLS 1.3 only, the CA and client certificate where given. */
export function clientTlsOptions(tls: ClientTls | undefined): SecureContextOptions {
  return {
    minVersion: MIN_TLS_VERSION,
    ...(tls?.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls?.cert === undefined ? {} : { cert: tls.cert }),
    ...(tls?.key === undefined ? {} : { key: tls.key }),
  };
}

export interface TlsPaths {
  readonly cert?: string;
  readonly key?: string;
  readonly ca?: string;
}

/** How each path was given, for messages: a flag (`--tls-cert`) or a setting (`ARCNET_TLS_CERT`). */
export interface TlsNames {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

function invalid(message: string): ArcError {
  return new ArcError('INVALID_INPUT', message, { retryable: false });
}

/** Reads a PEM file, naming the flag or setting when it cannot be read or holds no PEM block. */
export function readPem(path: string, name: string, what: 'certificate' | 'key' | 'CA'): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw invalid(`${name} ${path}: cannot read the ${what} file: ${errorMessage(error)}`);
  }
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text)) throw invalid(`${name} ${path}: not a PEM file (no -----BEGIN …----- block)`);
  try {
    if (what === 'key') createPrivateKey(text);
    else new X509Certificate(text);
  } catch (error) {
    throw invalid(`${name} ${path}: not a PEM ${what === 'key' ? 'private key' : 'certificate'}: ${errorMessage(error)}`);
  }
  return text;
}

/** Refuses a key that is not the certificate's: Node would otherwise fail later with "key values mismatch". */
function matched(cert: string, key: string, names: TlsNames): void {
  if (!new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) throw invalid(`${names.key} is not the private key of ${names.cert}`);
}

/**
 * A server's TLS from paths: none given, none; certificate and key must come together; a CA alone
 * is refused (mTLS needs the server's own certificate first).
 */
export function serverTlsFrom(paths: TlsPaths, names: TlsNames): ServerTls | undefined {
  if (paths.cert === undefined && paths.key === undefined) {
    if (paths.ca !== undefined) throw invalid(`${names.ca} needs ${names.cert} and ${names.key}: client certificates are verified only over TLS`);
    return undefined;
  }
  if (paths.cert === undefined) throw invalid(`${names.key} needs ${names.cert} (the certificate of that key)`);
  if (paths.key === undefined) throw invalid(`${names.cert} needs ${names.key} (the certificate's private key)`);
  const cert = readPem(paths.cert, names.cert, 'certificate');
  const key = readPem(paths.key, names.key, 'key');
  matched(cert, key, names);
  return { cert, key, ...(paths.ca === undefined ? {} : { ca: readPem(paths.ca, names.ca, 'CA') }) };
}

/** A client's TLS from paths: none given, none; a certificate needs its key and the other way round. */
export function clientTlsFrom(paths: TlsPaths, names: TlsNames): ClientTls | undefined {
  if (paths.cert === undefined && paths.key === undefined && paths.ca === undefined) return undefined;
  if (paths.cert !== undefined && paths.key === undefined) throw invalid(`${names.cert} needs ${names.key} (the certificate's private key)`);
  if (paths.key !== undefined && paths.cert === undefined) throw invalid(`${names.key} needs ${names.cert} (the certificate of that key)`);
  const ca = paths.ca === undefined ? undefined : readPem(paths.ca, names.ca, 'CA');
  if (paths.cert === undefined || paths.key === undefined) return { ...(ca === undefined ? {} : { ca }) };
  const cert = readPem(paths.cert, names.cert, 'certificate');
  const key = readPem(paths.key, names.key, 'key');
  matched(cert, key, names);
  return { ...(ca === undefined ? {} : { ca }), cert, key };
}

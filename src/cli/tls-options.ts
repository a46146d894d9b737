/**
 * The TLS flags of the CLI (docs/security.md, "Transport"), in two groups with the same names:
 *
 * - a process that listens (`up`, `server`, `coordinator`, and an aggregator's or scheduler's
 *   `--http-port`): `--tls-cert`/`--tls-key` serve HTTPS and WSS only, `--tls-ca` asks clients for
 *   certificates and makes agents and workers present one. Each falls back on its setting
 *   (ARCNET_TLS_* / `tls.*` in the config file).
 * - a command that calls a server (`agent`, `simulate --server`, `nodes`, `stats`, `submit`, `list`,
 *   `get`): `--tls-ca` trusts a development CA, `--tls-cert`/`--tls-key` present a client certificate.
 *   The one-shot commands then reach the server through `cliHttp()`.
 *
 * A file that cannot be read, or a certificate without its key, is one line and exit 2.
 */
import type { Command } from 'commander';
import { errorMessage } from '../core/errors.ts';
import { defaultHttpClient, httpClient, type HttpClient } from '../core/http-client.ts';
import { clientTlsFrom, serverTlsFrom, type ClientTls, type ServerTls, type TlsPaths } from '../core/tls.ts';
import { usage } from './options.ts';

export interface TlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

export function withServerTlsOptions(command: Command): Command {
  return command
    .option('--tls-cert <pem>', 'serve HTTPS and WSS only (TLS 1.3 minimum) with this PEM certificate chain; needs --tls-key (default $ARCNET_TLS_CERT or tls.cert; bash scripts/dev-certs.sh makes one)')
    .option('--tls-key <pem>', "the certificate's PEM private key (default $ARCNET_TLS_KEY or tls.key)")
    .option('--tls-ca <pem>', 'mTLS: ask clients for a certificate and verify it against this PEM CA; agents and workers must present one, other callers may still use an API key alone (default $ARCNET_TLS_CA or tls.ca)');
}

/** The listener's TLS: flags over the settings; undefined when neither names a certificate. */
export function serverTlsOf(flags: TlsFlags, settings: TlsPaths | undefined): ServerTls | undefined {
  const paths = { cert: flags.tlsCert ?? settings?.cert, key: flags.tlsKey ?? settings?.key, ca: flags.tlsCa ?? settings?.ca };
  // Each is named as it was given: by its setting only when the setting gave it, else as the flag to pass.
  const named = (flag: string | undefined, setting: string | undefined, flagName: string, settingName: string): string => (flag === undefined && setting !== undefined ? settingName : flagName);
  const names = {
    cert: named(flags.tlsCert, settings?.cert, '--tls-cert', 'ARCNET_TLS_CERT (tls.cert)'),
    key: named(flags.tlsKey, settings?.key, '--tls-key', 'ARCNET_TLS_KEY (tls.key)'),
    ca: named(flags.tlsCa, settings?.ca, '--tls-ca', 'ARCNET_TLS_CA (tls.ca)'),
  };
  try {
    return serverTlsFrom(stripUndefined(paths), names);
  } catch (error) {
    throw usage(errorMessage(error));
  }
}

let current: HttpClient = defaultHttpClient;

/**
 * Adds the client flags, and before the command's action builds the client the one-shot commands
 * use (`cliHttp()`), so a bad file is refused before anything is sent.
 */
export function withClientTlsOptions(command: Command): Command {
  return command
    .option('--tls-ca <pem>', "PEM CA the server's certificate must chain to (an https:// --server with a development CA from scripts/dev-certs.sh); default the system's CAs")
    .option('--tls-cert <pem>', 'PEM client certificate, for a server started with --tls-ca; needs --tls-key')
    .option('--tls-key <pem>', "the client certificate's PEM private key")
    .hook('preAction', (self) => {
      const tls = clientTlsOf(self.opts<TlsFlags>());
      current = tls === undefined ? defaultHttpClient : httpClient(tls);
    });
}

/** The client TLS the flags name; undefined when they name none. */
export function clientTlsOf(flags: TlsFlags): ClientTls | undefined {
  try {
    return clientTlsFrom(stripUndefined({ cert: flags.tlsCert, key: flags.tlsKey, ca: flags.tlsCa }), { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' });
  } catch (error) {
    throw usage(errorMessage(error));
  }
}

/** How the one-shot commands reach a server: with the TLS of their flags. */
export function cliHttp(): HttpClient {
  return current;
}

function stripUndefined(paths: { cert: string | undefined; key: string | undefined; ca: string | undefined }): TlsPaths {
  return {
    ...(paths.cert === undefined ? {} : { cert: paths.cert }),
    ...(paths.key === undefined ? {} : { key: paths.key }),
    ...(paths.ca === undefined ? {} : { ca: paths.ca }),
  };
}

/** `{ tls }` for a process's config when the flags or settings name a certificate, else nothing. */
export function serverTlsConfig(flags: TlsFlags, settings: TlsPaths | undefined): { tls?: ServerTls } {
  const tls = serverTlsOf(flags, settings);
  return tls === undefined ? {} : { tls };
}

/** `{ tls }` for a client's options when the flags name any, else nothing. */
export function clientTlsConfig(flags: TlsFlags): { tls?: ClientTls } {
  const tls = clientTlsOf(flags);
  return tls === undefined ? {} : { tls };
}

/** The banner's line about TLS: what a client needs to connect. */
export function tlsBanner(tls: ServerTls | undefined): string {
  if (tls === undefined) return '';
  if (tls.ca === undefined) return '  TLS 1.3 only (HTTPS, WSS); clients with a development CA pass --tls-ca <ca.pem>\n';
  return '  TLS 1.3 only, mTLS: agents and workers present a client certificate of the --tls-ca CA (--tls-cert, --tls-key; bash scripts/dev-certs.sh <dir> <node-name>)\n';
}

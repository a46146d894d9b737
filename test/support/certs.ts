/** Certificates for the TLS suites, made by the project's own script (scripts/dev-certs.sh) as a user would. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const DEV_CERTS_SCRIPT = join(import.meta.dirname, '../../scripts/dev-certs.sh');

export interface PemPair {
  readonly certPath: string;
  readonly keyPath: string;
  readonly cert: string;
  readonly key: string;
}

export interface DevCerts {
  readonly dir: string;
  readonly caPath: string;
  readonly ca: string;
  readonly server: PemPair;
  /** A client certificate per name given, subject CN = the name. */
  client(name: string): PemPair;
  /** What the script printed. */
  readonly output: string;
}

const pair = (dir: string, name: string): PemPair => ({
  certPath: join(dir, `${name}.pem`),
  keyPath: join(dir, `${name}.key`),
  cert: readFileSync(join(dir, `${name}.pem`), 'utf8'),
  key: readFileSync(join(dir, `${name}.key`), 'utf8'),
});

/** Runs `bash scripts/dev-certs.sh <dir> [--host h] <names…>` and reads back what it wrote. */
export function devCerts(dir: string, names: readonly string[], hosts: readonly string[] = []): DevCerts {
  const output = execFileSync('bash', [DEV_CERTS_SCRIPT, dir, ...hosts.flatMap((h) => ['--host', h]), ...names], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    dir,
    caPath: join(dir, 'ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    server: pair(dir, 'server'),
    client: (name) => pair(dir, name),
    output,
  };
}

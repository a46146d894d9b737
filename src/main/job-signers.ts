/**
 * Trusted job signers from disk, for the coordinator (settings `jobs.signers`) and the worker
 * (`--trusted-signers`): a directory holding one PEM public key per signer, named `<key_id>.pub`
 * (what `arcnet jobs keygen` writes beside the private `<key_id>.key`). Other files are ignored, so
 * the directory keygen wrote into can be used as it is. Read once at start: a key added later needs
 * a restart. Anything wrong (no directory, a file that is not an Ed25519 public key, a bad key id in
 * a file name) stops the start with a sentence naming the file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { errorMessage } from '../core/errors.ts';
import { isKeyId, parsePublicKey, type SigningPolicy } from '../jobs/signing.ts';

export const PUBLIC_KEY_SUFFIX = '.pub';
export const PRIVATE_KEY_SUFFIX = '.key';

/** The signer directory could not be read as one. */
export class SignerKeysError extends Error {}

/** Every `<key_id>.pub` in `dir`, by key id. */
export function loadTrustedSigners(dir: string): Map<string, KeyObject> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    throw new SignerKeysError(`cannot read the trusted signers directory ${dir}: ${errorMessage(error)}`);
  }
  const signers = new Map<string, KeyObject>();
  for (const name of names.filter((n) => n.endsWith(PUBLIC_KEY_SUFFIX)).sort()) {
    const keyId = name.slice(0, -PUBLIC_KEY_SUFFIX.length);
    const path = join(dir, name);
    if (!isKeyId(keyId)) throw new SignerKeysError(`${path}: "${keyId}" is not a key id (letters, digits, ".", "_", "-", at most 64)`);
    try {
      signers.set(keyId, parsePublicKey(readFileSync(path, 'utf8')));
    } catch (error) {
      throw new SignerKeysError(`${path}: ${errorMessage(error)}`);
    }
  }
  return signers;
}

/**
 * The signing policy a process runs with. Requiring signatures with no trusted key would refuse
 * every job, so it is refused here rather than discovered one job at a time.
 */
export function signingPolicy(options: { readonly signersDir?: string; readonly required?: boolean; readonly what: string }): SigningPolicy {
  const trusted = options.signersDir === undefined ? new Map<string, KeyObject>() : loadTrustedSigners(options.signersDir);
  const required = options.required ?? false;
  if (required && trusted.size === 0) {
    throw new SignerKeysError(
      options.signersDir === undefined
        ? `${options.what} requires signed jobs but trusts no signer: give a directory of <key_id>.pub files`
        : `${options.what} requires signed jobs but ${options.signersDir} holds no <key_id>.pub file: every job would be refused`,
    );
  }
  return { trusted, required };
}

/**
 * Signed jobs (issue 11; seed 004's "job signing: verify submitter identity"). A submitter signs the
 * fields of a job that decide what runs and how its result is judged with its Ed25519 key; the
 * coordinator verifies on submission and every worker verifies again before it creates a container,
 * so neither a forged submission nor a coordinator (or anyone between it and the worker) that
 * changes the job on the way can make a worker run something the submitter did not ask for.
 *
 * The signed payload, byte for byte (what another client must produce to sign):
 *
 *   UTF-8 of  "arcnet-job-v1\n" + canonical JSON of { id, name, docker_image, command, environment,
 *             input_data, required_cpu, required_memory, required_gpu, redundancy, consensus,
 *             max_executions, timeout_seconds, network }
 *
 * - every field is present, with the value the job record holds after defaults (input_data null
 *   when there is none, environment {} when empty): a signer states every field, so the signature
 *   covers what will run, not what a server's defaults happen to be;
 * - canonical JSON is RFC 8785 (JCS) for the values a job has: object keys sorted by UTF-16 code
 *   units at every level, no whitespace, strings and numbers as ECMAScript's JSON.stringify writes
 *   them, arrays in their order;
 * - `id` is signed, so a signature cannot be replayed onto another job; the prefix names the
 *   purpose and version, so these bytes never verify as anything else signed with the same key.
 *
 * Not signed: description, submitted_by and credits_required (cosmetic or accounting; none changes
 * what runs or how it is judged). Keys are PEM (SPKI public, PKCS#8 private), as `node:crypto`
 * writes them. Pure: no I/O here; reading key files is the composition root's (`src/main/job-signers.ts`).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import type { ExecutionAssignment, Job, JobSignature } from './model.ts';

export type { JobSignature } from './model.ts';

export const SIGNATURE_CONTEXT = 'arcnet-job-v1';

/** The fields a signature covers, in the order the documentation lists them (the payload sorts them). */
export const SIGNED_FIELDS = [
  'id',
  'name',
  'docker_image',
  'command',
  'environment',
  'input_data',
  'required_cpu',
  'required_memory',
  'required_gpu',
  'redundancy',
  'consensus',
  'max_executions',
  'timeout_seconds',
  'network',
] as const;

export type SignedField = (typeof SIGNED_FIELDS)[number];
export type SignedSpec = Pick<Job, SignedField>;

/** Key ids name files (`<key_id>.pub`), so they are kept to what is safe in a file name. */
export const KEY_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
const KEY_ID = new RegExp(KEY_ID_PATTERN);
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const ED25519_SIGNATURE_BYTES = 64;

/** Trusted signers by key id, and whether an unsigned job is refused. */
export interface SigningPolicy {
  readonly trusted: ReadonlyMap<string, KeyObject>;
  readonly required: boolean;
}

export const NO_SIGNING: SigningPolicy = { trusted: new Map(), required: false };

export function isKeyId(value: string): boolean {
  return KEY_ID.test(value);
}

/** RFC 8785 canonical JSON for JSON values (finite numbers only: a job holds no other kind). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`cannot sign a non-finite number (${value})`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    // Array.prototype.sort compares UTF-16 code units, which is JCS's order.
    const keys = Object.keys(value).filter((key) => (value as Record<string, unknown>)[key] !== undefined).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`).join(',')}}`;
  }
  throw new TypeError(`cannot sign a value of type ${typeof value}`);
}

/** Exactly the signed fields of a job (or anything shaped like one); other fields are left out. */
export function signedSpecOf(job: SignedSpec): SignedSpec {
  return {
    id: job.id,
    name: job.name,
    docker_image: job.docker_image,
    command: job.command,
    environment: job.environment,
    input_data: job.input_data,
    required_cpu: job.required_cpu,
    required_memory: job.required_memory,
    required_gpu: job.required_gpu,
    redundancy: job.redundancy,
    consensus: job.consensus,
    max_executions: job.max_executions,
    timeout_seconds: job.timeout_seconds,
    network: job.network,
  };
}

/** The bytes that are signed (see the module comment). */
export function signedPayload(spec: SignedSpec): Buffer {
  return Buffer.from(`${SIGNATURE_CONTEXT}\n${canonicalJson(signedSpecOf(spec))}`, 'utf8');
}

/** The job's signature with `privateKey` (an Ed25519 KeyObject or PKCS#8 PEM). */
export function signJob(spec: SignedSpec, keyId: string, privateKey: KeyObject | string): JobSignature {
  if (!isKeyId(keyId)) throw new TypeError(`key id "${keyId}" must be letters, digits, ".", "_" or "-" (at most 64, not starting with a punctuation mark)`);
  const key = typeof privateKey === 'string' ? parsePrivateKey(privateKey) : privateKey;
  return { key_id: keyId, value: sign(null, signedPayload(spec), key).toString('base64') };
}

/** A new Ed25519 key pair as PEM: SPKI public key, PKCS#8 private key. */
export function generateSigningKeyPair(): { publicKey: string; privateKey: string } {
  return generateKeyPairSync('ed25519', { publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
}

/** An Ed25519 public key from PEM; a sentence naming what is wrong otherwise. */
export function parsePublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (error) {
    throw new TypeError(`not a PEM public key (${(error as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError(`an Ed25519 public key is needed, this one is ${key.asymmetricKeyType ?? 'not asymmetric'}`);
  return key;
}

/** An Ed25519 private key from PEM; a sentence naming what is wrong otherwise. */
export function parsePrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (error) {
    throw new TypeError(`not a PEM private key (${(error as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError(`an Ed25519 private key is needed, this one is ${key.asymmetricKeyType ?? 'not asymmetric'}`);
  return key;
}

/**
 * Why a signature was refused: `malformed` (not a signature at all; the caller's input is wrong),
 * `unsigned` (none, where one is required), `unknown-key` (a signer nobody here trusts) or
 * `does-not-verify` (the job is not what the key signed: tampered, or signed over other values).
 */
export type SignatureRefusal = { readonly kind: 'malformed' | 'unsigned' | 'unknown-key' | 'does-not-verify'; readonly reason: string };

export type SignatureCheck = { readonly ok: true; readonly signature: JobSignature | null } | ({ readonly ok: false } & SignatureRefusal);

const refuse = (kind: SignatureRefusal['kind'], reason: string): SignatureCheck => ({ ok: false, kind, reason });

/**
 * Checks a job's signature against a policy: a signature must verify by a trusted key whether or not
 * signatures are required; a job without one passes only where they are not. `ok` carries the
 * verified signature (null for an accepted unsigned job).
 */
export function checkSignature(spec: SignedSpec, signature: JobSignature | null | undefined, policy: SigningPolicy): SignatureCheck {
  if (!signature) return policy.required ? refuse('unsigned', `job ${spec.id} is not signed, and signatures are required`) : { ok: true, signature: null };
  if (typeof signature.key_id !== 'string' || !isKeyId(signature.key_id)) return refuse('malformed', `signature.key_id must be a key id (letters, digits, ".", "_", "-"), got ${JSON.stringify(signature.key_id)}`);
  if (typeof signature.value !== 'string' || !BASE64.test(signature.value)) return refuse('malformed', 'signature.value must be base64');
  const bytes = Buffer.from(signature.value, 'base64');
  if (bytes.length !== ED25519_SIGNATURE_BYTES) return refuse('malformed', `signature.value must be an Ed25519 signature of ${ED25519_SIGNATURE_BYTES} bytes, got ${bytes.length}`);
  const key = policy.trusted.get(signature.key_id);
  if (!key) {
    const known = [...policy.trusted.keys()].sort();
    return refuse('unknown-key', `signature by key "${signature.key_id}" is from no trusted signer (trusted: ${known.length === 0 ? 'none configured' : known.join(', ')})`);
  }
  let payload: Buffer;
  try {
    payload = signedPayload(spec);
  } catch (error) {
    return refuse('does-not-verify', `signature by key "${signature.key_id}" does not verify: ${(error as Error).message}`);
  }
  if (!verify(null, payload, key, bytes)) return refuse('does-not-verify', `signature by key "${signature.key_id}" does not verify over job ${spec.id}'s signed fields (${SIGNED_FIELDS.join(', ')})`);
  return { ok: true, signature: { key_id: signature.key_id, value: signature.value } };
}

/**
 * The signed spec an assignment carries, for the worker to verify (the job id is the signed `id`);
 * undefined when a signed field is missing from it (a coordinator that does not send them).
 */
export function signedSpecOfAssignment(assignment: ExecutionAssignment): SignedSpec | undefined {
  const { name, redundancy, consensus, max_executions: maxExecutions } = assignment;
  if (name === undefined || redundancy === undefined || consensus === undefined || maxExecutions === undefined) return undefined;
  return { ...assignment, id: assignment.job_id, name, redundancy, consensus, max_executions: maxExecutions };
}

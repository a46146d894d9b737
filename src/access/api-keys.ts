/**
 * API keys: what every caller presents (`Authorization: Bearer arck_<id>_<secret>`). A key is shown
 * once, when it is created; the store keeps its id, role, binding and the SHA-256 of its secret
 * (the secret is 32 random bytes, so a slow hash would add nothing). Revocation is a new version of
 * the key's document, so the bitemporal store remembers who could do what, when.
 *
 * Lookups are cached per key id for `cacheMs` (5 s by default): a revocation made through another
 * process is honoured within that time, and the hot path is a map lookup plus one SHA-256.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import { ArcError } from '../core/errors.ts';
import type { DocumentStore } from '../store/ports.ts';
import { ROLES, type Principal, type Role } from './principal.ts';

export const API_KEYS_COLLECTION = 'api_keys';
/** node id → its current node key's id: one enrolled identity per node. */
export const NODE_KEYS_COLLECTION = 'node_keys';

interface NodeKeyIndex {
  readonly key_id: string;
}
const KEY_PATTERN = /^arck_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface ApiKeyRecord {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly geozone: string | null;
  readonly node_id: string | null;
  /** For node keys: the enrolment (or operator) key that enrolled the node. */
  readonly enrolled_by: string | null;
  readonly secret_sha256: string;
  readonly created_at: string;
  readonly created_by: string;
  readonly expires_at: string | null;
  readonly revoked_at: string | null;
  readonly revoked_by: string | null;
}

/** What `arcnet token list` shows: never the hash. */
export type PublicApiKey = Omit<ApiKeyRecord, 'secret_sha256'> & { readonly status: 'active' | 'revoked' | 'expired' };

export interface NewKey {
  readonly name: string;
  readonly role: Role;
  readonly geozone?: string;
  readonly nodeId?: string;
  readonly enrolledBy?: string;
  /** Who asked for it (a key id, or `bootstrap`). */
  readonly createdBy: string;
  readonly expiresAt?: number;
}

export interface CreatedKey {
  readonly record: PublicApiKey;
  /** The whole key: shown once, never stored. */
  readonly key: string;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

function sameHash(expectedHex: string, actualHex: string): boolean {
  const expected = Buffer.from(expectedHex, 'hex');
  const actual = Buffer.from(actualHex, 'hex');
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** Whether a presented bearer looks like an API key (others may be worker credentials, `arcw_…`). */
export function isApiKey(presented: string): boolean {
  return presented.startsWith('arck_');
}

export function requireRole(value: string, field: string): Role {
  if (!(ROLES as readonly string[]).includes(value)) throw new ArcError('INVALID_INPUT', `${field}: "${value}" is not a role (one of ${ROLES.join(', ')})`);
  return value as Role;
}

/** The stored record of a new key: its binding, who made it, and the hash of its secret. */
function newRecord(id: string, secret: string, spec: NewKey, now: number): ApiKeyRecord {
  return {
    id,
    name: spec.name,
    role: spec.role,
    geozone: spec.geozone ?? null,
    node_id: spec.nodeId ?? null,
    enrolled_by: spec.enrolledBy ?? null,
    secret_sha256: sha256(secret),
    created_at: new Date(now).toISOString(),
    created_by: spec.createdBy,
    expires_at: spec.expiresAt === undefined ? null : new Date(spec.expiresAt).toISOString(),
    revoked_at: null,
    revoked_by: null,
  };
}

interface Cached {
  readonly record: ApiKeyRecord | undefined;
  readonly until: number;
}

export class KeyRing {
  private readonly documents: DocumentStore;
  private readonly clock: Clock;
  private readonly cacheMs: number;
  private readonly cache = new Map<string, Cached>();

  constructor(documents: DocumentStore, clock: Clock, options: { cacheMs?: number } = {}) {
    this.documents = documents;
    this.clock = clock;
    this.cacheMs = options.cacheMs ?? 5_000;
  }

  async create(spec: NewKey): Promise<CreatedKey> {
    if (spec.name.length === 0 || spec.name.length > 255) throw new ArcError('INVALID_INPUT', 'name: must be 1 to 255 characters');
    if (spec.role === 'node' && (spec.nodeId === undefined || spec.geozone === undefined)) throw new ArcError('INVALID_INPUT', 'a node key is bound to a node id and a geozone');
    if (spec.role === 'enrolment' && spec.geozone === undefined) throw new ArcError('INVALID_INPUT', 'geozone: an enrolment token enrols nodes into one geozone; name it');
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const now = this.clock.now();
    const record = newRecord(id, secret, spec, now);
    await this.documents.put(API_KEYS_COLLECTION, id, record, { expectedVersion: 0 });
    this.cache.set(id, { record, until: now + this.cacheMs });
    return { record: this.present(record, now), key: `arck_${id}_${secret}` };
  }

  /** Registers a key whose whole text is already known (a bootstrap key read from a file); idempotent. */
  async adopt(key: string, spec: NewKey): Promise<PublicApiKey> {
    const match = KEY_PATTERN.exec(key);
    if (!match) throw new ArcError('INVALID_INPUT', 'the key file does not hold an ArcNet key (arck_<16 hex>_<43 base64url>)');
    const [, id, secret] = match as unknown as [string, string, string];
    const now = this.clock.now();
    const existing = (await this.documents.get<ApiKeyRecord>(API_KEYS_COLLECTION, id))?.body;
    if (existing) {
      if (!sameHash(existing.secret_sha256, sha256(secret))) throw new ArcError('CONFLICT', `key ${id} exists with another secret`);
      return this.present(existing, now);
    }
    const record = newRecord(id, secret, spec, now);
    await this.documents.put(API_KEYS_COLLECTION, id, record, { expectedVersion: 0 });
    return this.present(record, now);
  }

  /** The principal a presented key proves, or undefined (unknown, wrong secret, revoked, expired). */
  async authenticate(presented: string): Promise<Principal | undefined> {
    const match = KEY_PATTERN.exec(presented);
    if (!match) return undefined;
    const [, id, secret] = match as unknown as [string, string, string];
    const now = this.clock.now();
    let cached = this.cache.get(id);
    if (cached === undefined || cached.until <= now) {
      const record = (await this.documents.get<ApiKeyRecord>(API_KEYS_COLLECTION, id))?.body;
      cached = { record, until: now + this.cacheMs };
      this.cache.set(id, cached);
      if (this.cache.size > 100_000) this.cache.delete(this.cache.keys().next().value as string);
    }
    const record = cached.record;
    if (!record || !sameHash(record.secret_sha256, sha256(secret))) return undefined;
    if (this.statusOf(record, now) !== 'active') return undefined;
    return {
      keyId: record.id,
      name: record.name,
      role: record.role,
      ...(record.geozone === null ? {} : { geozone: record.geozone }),
      ...(record.node_id === null ? {} : { nodeId: record.node_id }),
      ...(record.enrolled_by === null ? {} : { enrolledBy: record.enrolled_by }),
    };
  }

  async list(): Promise<PublicApiKey[]> {
    const now = this.clock.now();
    const versions = await this.documents.list<ApiKeyRecord>(API_KEYS_COLLECTION);
    return versions
      .flatMap((v) => (v.body ? [this.present(v.body, now)] : []))
      .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
  }

  async get(id: string): Promise<PublicApiKey | undefined> {
    const record = (await this.documents.get<ApiKeyRecord>(API_KEYS_COLLECTION, id))?.body;
    return record ? this.present(record, this.clock.now()) : undefined;
  }

  /** The active node key bound to a node id, if the node is enrolled. */
  async nodeKeyOf(nodeId: string): Promise<PublicApiKey | undefined> {
    const index = (await this.documents.get<NodeKeyIndex>(NODE_KEYS_COLLECTION, nodeId))?.body;
    if (!index) return undefined;
    const key = await this.get(index.key_id);
    return key?.status === 'active' ? key : undefined;
  }

  /**
   * Issues the node key of a node being enrolled: bound to its id and geozone, naming the token that
   * enrolled it. A node already holding an active key is refused (CONFLICT): whoever has the key is
   * that node, and an operator revokes it to enrol the node again.
   */
  async enrolNode(spec: { nodeId: string; name: string; geozone: string; enrolledBy: string }): Promise<CreatedKey> {
    const index = await this.documents.get<NodeKeyIndex>(NODE_KEYS_COLLECTION, spec.nodeId);
    if (index?.body) {
      const current = await this.get(index.body.key_id);
      if (current?.status === 'active') {
        throw new ArcError('CONFLICT', `node ${spec.nodeId} is already enrolled (key ${current.id}): connect with its node key, or have an operator revoke that key to enrol it again`, { retryable: false });
      }
    }
    const created = await this.create({ name: spec.name, role: 'node', nodeId: spec.nodeId, geozone: spec.geozone, enrolledBy: spec.enrolledBy, createdBy: spec.enrolledBy });
    const outcome = await this.documents.put<NodeKeyIndex>(NODE_KEYS_COLLECTION, spec.nodeId, { key_id: created.record.id }, { expectedVersion: index?.version ?? 0 });
    if (!outcome.ok) {
      // Another session enrolled the same node at the same moment: it won, this key must not live.
      await this.revoke(created.record.id, 'enrolment race');
      throw new ArcError('CONFLICT', `node ${spec.nodeId} was enrolled by another session just now`, { retryable: false });
    }
    return created;
  }

  async revoke(id: string, by: string): Promise<PublicApiKey> {
    const current = await this.documents.get<ApiKeyRecord>(API_KEYS_COLLECTION, id);
    if (!current?.body) throw new ArcError('NOT_FOUND', `key ${id} is not known`);
    const now = this.clock.now();
    if (current.body.revoked_at !== null) return this.present(current.body, now);
    const revoked: ApiKeyRecord = { ...current.body, revoked_at: new Date(now).toISOString(), revoked_by: by };
    const outcome = await this.documents.put(API_KEYS_COLLECTION, id, revoked, { expectedVersion: current.version });
    if (!outcome.ok) throw new ArcError('CONFLICT', `key ${id} changed while it was being revoked; retry`, { retryable: true });
    this.cache.set(id, { record: revoked, until: now + this.cacheMs });
    return this.present(revoked, now);
  }

  private statusOf(record: Pick<ApiKeyRecord, 'revoked_at' | 'expires_at'>, now: number): PublicApiKey['status'] {
    if (record.revoked_at !== null) return 'revoked';
    if (record.expires_at !== null && Date.parse(record.expires_at) <= now) return 'expired';
    return 'active';
  }

  private present(record: ApiKeyRecord, now: number): PublicApiKey {
    const { secret_sha256: _hash, ...rest } = record;
    return { ...rest, status: this.statusOf(record, now) };
  }
}

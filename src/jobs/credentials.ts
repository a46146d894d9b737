/**
 * Worker credentials (DESIGN §4: seed 004 takes results from anyone). A credential is issued at
 * registration, shown to the worker once, and stored only as its SHA-256; every worker call presents
 * it as `Authorization: Bearer …`. The check runs once, at the API edge (`src/api/job-routes.ts`),
 * and yields an `AuthenticatedWorker`, the only way into the coordinator's worker calls.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { JobsError } from './errors.ts';
import type { WorkerRecord } from './model.ts';

/** A node id whose credential was checked. Only the functions below make one. */
export type AuthenticatedWorker = string & { readonly __checked: 'worker credential' };

export function issueCredential(): string {
  return `arcw_${randomBytes(24).toString('base64url')}`;
}

export function hashCredential(credential: string): string {
  return createHash('sha256').update(credential).digest('hex');
}

/** Constant-time comparison of a presented credential with the stored hash. */
export function credentialMatches(credentialHash: string, presented: string): boolean {
  const expected = Buffer.from(credentialHash, 'hex');
  const actual = Buffer.from(hashCredential(presented), 'hex');
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/**
 * Checks that `presented` is the credential of node `nodeId` (whose record is `worker`, if known):
 * UNAUTHENTICATED without one, NOT_FOUND for a node that is not a worker, FORBIDDEN for another's.
 */
export function authenticateWorker(worker: WorkerRecord | undefined, nodeId: string, presented: string | undefined): AuthenticatedWorker {
  if (presented === undefined) throw new JobsError('UNAUTHENTICATED', 'missing worker credential: send "Authorization: Bearer <credential>" as returned by POST /api/v1/nodes/register');
  if (!worker || worker.id !== nodeId) throw new JobsError('NOT_FOUND', `node ${nodeId} is not registered as a worker`);
  if (!credentialMatches(worker.credential_hash, presented)) throw new JobsError('FORBIDDEN', `the credential presented does not belong to node ${nodeId}`);
  return nodeId as AuthenticatedWorker;
}

/**
 * Re-registering a known id keeps its reputation and credits, so it must prove it is the same
 * worker: the known node's authenticated id, or undefined for a node not registered yet.
 */
export function authenticateReregistration(existing: WorkerRecord | undefined, presented: string | undefined): AuthenticatedWorker | undefined {
  if (!existing) return undefined;
  if (presented === undefined) throw new JobsError('UNAUTHENTICATED', `node ${existing.id} is already registered; present its credential (Authorization: Bearer …) to register again`);
  if (!credentialMatches(existing.credential_hash, presented)) throw new JobsError('FORBIDDEN', `the credential presented does not belong to node ${existing.id}`);
  return existing.id as AuthenticatedWorker;
}

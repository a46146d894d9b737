/**
 * Who is calling: the principal an API key, a node credential or a client certificate proves. Every
 * route and WebSocket reads it from the request (`principalOf`), never from the body.
 */
import type { FastifyRequest } from 'fastify';

/**
 * `viewer` reads; `developer` submits work and reads its own; `operator` does everything, enrolment
 * and node actions included; `node` is an enrolled agent or worker, bound to its node id and geozone;
 * `enrolment` is an operator-issued token that can only enrol nodes (into its geozone).
 */
export type Role = 'viewer' | 'developer' | 'operator' | 'node' | 'enrolment';

export const ROLES: readonly Role[] = ['viewer', 'developer', 'operator', 'node', 'enrolment'];

export interface Principal {
  /** The key's id (never its secret); `insecure` under --insecure-no-auth. */
  readonly keyId: string;
  /** The key's human name, as `arcnet token list` shows it. */
  readonly name: string;
  readonly role: Role;
  /** Node and enrolment keys are bound to one geozone. */
  readonly geozone?: string;
  /** Node keys are bound to one node id. */
  readonly nodeId?: string;
  /** Enrolment keys pass their id on to the nodes they enrol: one party, one operator (quorum diversity). */
  readonly enrolledBy?: string;
}

/** Where a call came from, for the audit log and rate limits. */
export interface CallOrigin {
  readonly principal: Principal;
  readonly address: string;
}

const principals = new WeakMap<FastifyRequest, Principal>();

export function setPrincipal(request: FastifyRequest, principal: Principal): void {
  principals.set(request, principal);
}

/** The authenticated caller; throws if a route was reached without the access hook (a wiring bug). */
export function principalOf(request: FastifyRequest): Principal {
  const principal = principals.get(request);
  if (principal === undefined) throw new Error(`route ${request.routeOptions.url} was reached without authentication`);
  return principal;
}

export function originOf(request: FastifyRequest): CallOrigin {
  return { principal: principalOf(request), address: request.ip };
}

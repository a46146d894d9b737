/**
 * Who may call what. Every route and WebSocket declares one rule (`config: { access }`); a route
 * registered without one stops the server from starting (`src/api/access-hook.ts`), so a new route
 * cannot ship open by accident. `decide` is pure: the hook supplies what the caller proved.
 */
import type { Principal, Role } from './principal.ts';

export type AccessRule =
  /** Anyone, with the reason written down (liveness probes cannot carry keys). */
  | { readonly kind: 'public'; readonly why: string }
  /** An API key whose role is one of these. */
  | { readonly kind: 'roles'; readonly roles: readonly Role[] }
  /**
   * A registered worker's own credential (`arcw_…`, seed 004's worker calls); the route then checks
   * that it is the credential of the node the call is about. With `or`, an API key of those roles too.
   */
  | { readonly kind: 'worker'; readonly or?: readonly Role[] };

export const ACCESS = {
  public: (why: string): AccessRule => ({ kind: 'public', why }),
  /** Reads: every operator-side role. */
  viewer: { kind: 'roles', roles: ['viewer', 'developer', 'operator'] } as AccessRule,
  /** Submitting work. */
  developer: { kind: 'roles', roles: ['developer', 'operator'] } as AccessRule,
  /** Keys, enrolment, node actions, audit. */
  operator: { kind: 'roles', roles: ['operator'] } as AccessRule,
  /** An inference agent's session: an enrolled node, or a token that enrols it on hello. */
  agent: { kind: 'roles', roles: ['node', 'enrolment', 'operator'] } as AccessRule,
  worker: { kind: 'worker' } as AccessRule,
  /** Registering a worker: an enrolment token (or operator key) for a new one, its own credential to re-register. */
  workerRegistration: { kind: 'worker', or: ['enrolment', 'operator'] } as AccessRule,
} as const;

/** What the caller proved before the rule is applied. */
export interface Presented {
  /** A bearer (header, or `key` query parameter on a WebSocket) was sent at all. */
  readonly credential: boolean;
  /** The API key it proved, if it was a valid one. */
  readonly principal?: Principal;
  /** The worker it proved, if it was a valid worker credential. */
  readonly workerId?: string;
}

export type Decision = { readonly allowed: true } | { readonly allowed: false; readonly code: 'UNAUTHENTICATED' | 'FORBIDDEN'; readonly message: string };

const ALLOWED: Decision = { allowed: true };

export function decide(rule: AccessRule, presented: Presented, route: string): Decision {
  if (rule.kind === 'public') return ALLOWED;
  const roles = rule.kind === 'roles' ? rule.roles : (rule.or ?? []);
  if (rule.kind === 'worker' && presented.workerId !== undefined) return ALLOWED;
  if (presented.principal !== undefined && roles.includes(presented.principal.role)) return ALLOWED;
  const wanted = [...(rule.kind === 'worker' ? ['a worker credential'] : []), ...(roles.length > 0 ? [`an API key with role ${roles.join(' or ')}`] : [])].join(' or ');
  if (!presented.credential) {
    return { allowed: false, code: 'UNAUTHENTICATED', message: `${route} needs ${wanted}: send "Authorization: Bearer <key>"` };
  }
  if (presented.principal === undefined && presented.workerId === undefined) {
    return { allowed: false, code: 'UNAUTHENTICATED', message: `${route}: the credential presented is not valid (unknown, revoked or expired)` };
  }
  const who = presented.principal ? `key ${presented.principal.keyId} (role ${presented.principal.role})` : `worker ${presented.workerId}`;
  return { allowed: false, code: 'FORBIDDEN', message: `${route} needs ${wanted}; ${who} may not` };
}

/**
 * Authentication and authorisation for every route and WebSocket of a server, before anything else
 * happens to the request: the hook runs on `onRequest`, so a body is never read, parsed or validated
 * for a caller who may not send it, and a WebSocket is never upgraded for one.
 *
 * - Each route declares its rule in `config.access` (`src/access/policy.ts`); registering a route
 *   without one throws, so the server does not start with an open route.
 * - The bearer comes from `Authorization: Bearer …`; browsers cannot set headers on a WebSocket, so
 *   an upgrade may carry it as `?key=` instead (seed 001: API keys for console connections).
 * - Rate limits (`@fastify/rate-limit`) count per API key, per worker, or per source address for
 *   public routes, and answer 429 with `Retry-After`.
 * - `--insecure-no-auth` (no key ring) lets every call through as an operator, and says so loudly at start.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fastifyRateLimit from '@fastify/rate-limit';
import { ArcError } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { isApiKey, type KeyRing } from '../access/api-keys.ts';
import { decide, type AccessRule, type Presented } from '../access/policy.ts';
import { setPrincipal, type Principal } from '../access/principal.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: AccessRule;
  }
}

export const INSECURE_PRINCIPAL: Principal = { keyId: 'insecure', name: 'no authentication (--insecure-no-auth)', role: 'operator' };

export interface AccessOptions {
  /** Verifies API keys; undefined only under `--insecure-no-auth`. */
  readonly keys: KeyRing | undefined;
  /** The worker a worker credential belongs to (the jobs module, where it runs). */
  readonly workerOf?: (credential: string) => string | undefined;
  /**
   * Throws (NOT_LEADER, retryable) when this process cannot vouch for a worker credential it does not
   * know: a standby coordinator's view may not hold a worker registered on the leader a moment ago,
   * and a 401 there would make the worker drop a result the leader would take.
   */
  readonly assertWorkerAuthority?: () => void;
  /** Requests per minute per key, worker or address; 0 turns limiting off. */
  readonly ratePerMinute: number;
  readonly logger: Logger;
}

/** The credential in an `Authorization` header: `Bearer <credential>`, or the bare credential. */
export function bearerFromHeader(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : header.trim() || undefined;
}

function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header !== undefined) return bearerFromHeader(header);
  if (request.headers.upgrade?.toLowerCase() === 'websocket') {
    const key = (request.query as Record<string, unknown> | undefined)?.['key'];
    if (typeof key === 'string' && key.length > 0) return key;
  }
  return undefined;
}

const limitKeys = new WeakMap<FastifyRequest, string>();

/** Installs the access hook (before any route is added) and the rate limiter. */
export async function installAccess(app: FastifyInstance, options: AccessOptions): Promise<void> {
  const { keys } = options;
  if (keys === undefined) {
    options.logger.warn('AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach this port is an operator. For development only.');
  }

  app.addHook('onRoute', (route) => {
    if (route.config?.access === undefined) {
      throw new Error(`route ${String(route.method)} ${route.url} declares no access rule (config.access, src/access/policy.ts): every route must say who may call it`);
    }
  });

  app.addHook('onRequest', async (request) => {
    const rule = request.routeOptions.config.access;
    // No rule: no route matched, and the not-found handler answers.
    if (rule === undefined || rule.kind === 'public') {
      limitKeys.set(request, `address:${request.ip}`);
      return;
    }
    if (keys === undefined) {
      setPrincipal(request, INSECURE_PRINCIPAL);
      limitKeys.set(request, `address:${request.ip}`);
      return;
    }
    const bearer = bearerOf(request);
    let presented: Presented = { credential: bearer !== undefined };
    if (bearer !== undefined) {
      if (isApiKey(bearer)) {
        const principal = await keys.authenticate(bearer);
        if (principal) presented = { ...presented, principal };
      } else if (rule.kind === 'worker') {
        const workerId = options.workerOf?.(bearer);
        if (workerId !== undefined) presented = { ...presented, workerId };
        else options.assertWorkerAuthority?.();
      }
    }
    const decision = decide(rule, presented, `${request.method} ${request.routeOptions.url ?? request.url}`);
    if (!decision.allowed) throw new ArcError(decision.code, decision.message);
    if (presented.principal) {
      setPrincipal(request, presented.principal);
      limitKeys.set(request, `key:${presented.principal.keyId}`);
    } else if (presented.workerId !== undefined) {
      setPrincipal(request, { keyId: `worker:${presented.workerId}`, name: `worker ${presented.workerId}`, role: 'node', nodeId: presented.workerId });
      limitKeys.set(request, `worker:${presented.workerId}`);
    }
  });

  if (options.ratePerMinute > 0) {
    await app.register(fastifyRateLimit, {
      global: true,
      max: options.ratePerMinute,
      timeWindow: 60_000,
      hook: 'onRequest',
      keyGenerator: (request) => limitKeys.get(request) ?? `address:${request.ip}`,
      errorResponseBuilder: (_request, context) =>
        Object.assign(new ArcError('RATE_LIMITED', `rate limit: more than ${context.max} requests a minute from this caller; retry in ${Math.ceil(context.ttl / 1000)} s`), {
          statusCode: 429,
          retryAfterS: context.ttl / 1000,
        }),
    });
  }
}

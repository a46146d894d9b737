/**
 * `GET /api/v1/audit` (operators only; `arcnet audit` calls it): the audit log of `src/access/audit.ts`,
 * newest first, filtered by time window, actor and action. `since`/`until` are ISO-8601 instants (or
 * epoch milliseconds, as `asOf` is elsewhere); a bad one is a 400 naming the field.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { AUDIT_ACTIONS, MAX_AUDIT_LIMIT, type AuditLog } from '../access/audit.ts';
import { ACCESS } from '../access/policy.ts';
import { queryInstant } from './validator.ts';
import { ArcError } from '../core/errors.ts';

const AuditQuery = Type.Object(
  {
    since: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    until: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    actor: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    action: Type.Optional(Type.Union(AUDIT_ACTIONS.map((a) => Type.Literal(a)))),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_AUDIT_LIMIT })),
  },
  { additionalProperties: false },
);

export function registerAuditRoutes(app: FastifyInstance, audit: AuditLog): void {
  app.get<{ Querystring: Static<typeof AuditQuery> }>('/api/v1/audit', { schema: { querystring: AuditQuery }, config: { access: ACCESS.operator } }, async (request) => {
    const { actor, action } = request.query;
    const since = queryInstant('since', request.query.since);
    const until = queryInstant('until', request.query.until);
    if (since !== undefined && until !== undefined && until < since) {
      throw new ArcError('INVALID_INPUT', `querystring/until: ${new Date(until).toISOString()} is before since ${new Date(since).toISOString()}`);
    }
    const limit = request.query.limit ?? 100;
    const page = await audit.query({
      limit,
      ...(since === undefined ? {} : { since }),
      ...(until === undefined ? {} : { until }),
      ...(actor === undefined ? {} : { actor }),
      ...(action === undefined ? {} : { action }),
    });
    return {
      count: page.records.length,
      more: page.more,
      limit,
      since: since === undefined ? null : new Date(since).toISOString(),
      until: until === undefined ? null : new Date(until).toISOString(),
      records: page.records,
    };
  });
}

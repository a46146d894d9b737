/**
 * `GET /api/v1/events?severity=&geozone=&q=&limit=`: the system events this server has seen since it
 * started (`src/api/event-log.ts`), newest first. `since` in the answer says from when.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Severity } from '../contracts/messages.ts';
import { ACCESS } from '../access/policy.ts';
import { EVENT_LOG_CAPACITY, type EventLog } from './event-log.ts';

const EventQuery = Type.Object(
  {
    severity: Type.Optional(Severity),
    geozone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' })),
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: EVENT_LOG_CAPACITY })),
  },
  { additionalProperties: false },
);

export function registerEventRoutes(app: FastifyInstance, log: EventLog): void {
  app.get<{ Querystring: Static<typeof EventQuery> }>('/api/v1/events', { schema: { querystring: EventQuery }, config: { access: ACCESS.viewer } }, async (request) => {
    const { severity, geozone, q, limit = 100 } = request.query;
    const page = log.query({ limit, ...(severity === undefined ? {} : { severity }), ...(geozone === undefined ? {} : { geozone }), ...(q === undefined ? {} : { q }) });
    return {
      since: new Date(page.since).toISOString(),
      held: page.held,
      dropped: page.dropped,
      count: page.events.length,
      events: page.events,
    };
  });
}

/**
 * The central orchestrator's global queries: `GET /api/v1/global` (now, from the orchestrator's
 * memory: per zone and total nodes, active, GPU average, energy, last summary, and the active alerts)
 * and `GET /api/v1/global/history?from=&to=&geozone=&limit=` (the stored `global_view` documents by
 * valid time; without `geozone` the total and every zone). Instants as everywhere on this API: ISO-8601
 * or epoch milliseconds (src/core/instants.ts), a bad one a 400 naming the field.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ArcError } from '../core/errors.ts';
import { ACCESS } from '../access/policy.ts';
import { queryInstant } from './validator.ts';
import type { CentralOrchestrator } from '../mesh/central.ts';

export const HISTORY_LIMIT_MAX = 10_000;

const HistoryQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    to: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    geozone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: HISTORY_LIMIT_MAX })),
  },
  { additionalProperties: false },
);

export function registerGlobalRoutes(app: FastifyInstance, central: CentralOrchestrator): void {
  app.get('/api/v1/global', { config: { access: ACCESS.viewer } }, async () => central.snapshot());

  app.get<{ Querystring: Static<typeof HistoryQuery> }>('/api/v1/global/history', { schema: { querystring: HistoryQuery }, config: { access: ACCESS.viewer } }, async (request) => {
    const { geozone, limit = 1_000 } = request.query;
    const from = queryInstant('from', request.query.from);
    const to = queryInstant('to', request.query.to);
    if (from !== undefined && to !== undefined && from > to) throw new ArcError('INVALID_INPUT', 'querystring/from: is after querystring/to');
    const series = await central.history({ limit, ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }), ...(geozone === undefined ? {} : { geozone }) });
    if (series === undefined) throw new ArcError('NOT_FOUND', `no global view history for geozone ${geozone}: it has not reported to this orchestrator`);
    return { from: from === undefined ? null : new Date(from).toISOString(), to: to === undefined ? null : new Date(to).toISOString(), geozone: geozone ?? null, series };
  });
}

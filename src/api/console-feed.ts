/**
 * The `/telemetry` WebSocket route: who may open it, what its query may say, and the hand-over to the
 * hub (./console-hub.ts, the protocol is src/contracts/console.ts).
 *
 * Every refusal is an HTTP answer before the upgrade, with the body every route answers
 * (./errors.ts), so a client never gets a socket it must then interpret:
 * - no key or a bad one: 401/403 from the access hook (viewers and up may read the feed);
 * - a browser page from an origin that is neither this server's nor one `--cors-origin` allows:
 *   403 naming the origin (a client that sends no `Origin`, the CLI or a script, is judged by its key);
 * - a bad query: 400 naming the parameter, e.g. `querystring/inferencePerSecond must be <= 10000`,
 *   `querystring/since: needs session` or an unknown parameter.
 *
 * Query: `session` + `since` resume a session; `snapshot=telemetry` asks for seed 001's form of the
 * snapshot (one `telemetry` message per node) instead of one `snapshot` message; `inferencePerSecond`
 * (1..10000) caps `inference` + `rejection` messages to this client; `key` is the API key of a browser,
 * which cannot set headers on a WebSocket (read by the access hook).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ArcError } from '../core/errors.ts';
import { ACCESS } from '../access/policy.ts';
import type { ConsoleHub, FeedRequest } from './console-hub.ts';

export const FEED_PATH = '/telemetry';

const FeedQuery = Type.Object(
  {
    key: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    session: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' })),
    since: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
    snapshot: Type.Optional(Type.Union([Type.Literal('nodes'), Type.Literal('telemetry')])),
    inferencePerSecond: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
  },
  { additionalProperties: false },
);
type FeedQuery = Static<typeof FeedQuery>;

/** Whether a page on `origin` may use this server (./console-delivery.ts: `--cors-origin`). */
export type OriginCheck = (origin: string) => boolean;

/** Same origin: the page was served by this host (the `Origin`'s host is the `Host` the browser sent). */
export function sameOrigin(origin: string, request: FastifyRequest): boolean {
  try {
    return new URL(origin).host === request.headers.host;
  } catch {
    return false;
  }
}

/** The query's pairs and defaults; `session` and `since` only together. */
export function feedRequest(query: FeedQuery): FeedRequest {
  if (query.session !== undefined && query.since === undefined) throw new ArcError('INVALID_INPUT', 'querystring/since: needed with session (the last seq this client received)');
  if (query.since !== undefined && query.session === undefined) throw new ArcError('INVALID_INPUT', 'querystring/session: needed with since (the session id from hello)');
  return {
    ...(query.session === undefined ? {} : { session: query.session }),
    ...(query.since === undefined ? {} : { since: query.since }),
    snapshot: query.snapshot ?? 'nodes',
    inferencePerSecond: query.inferencePerSecond ?? null,
  };
}

export function registerConsoleFeed(app: FastifyInstance, hub: ConsoleHub, allowedOrigin: OriginCheck): void {
  app.get<{ Querystring: FeedQuery }>(
    FEED_PATH,
    {
      websocket: true,
      schema: { querystring: FeedQuery },
      config: { access: ACCESS.viewer },
      // A browser sends Origin on every upgrade; a page elsewhere must not read the feed with a key it was handed.
      onRequest: async (request) => {
        const origin = request.headers.origin;
        if (origin !== undefined && !sameOrigin(origin, request) && !allowedOrigin(origin)) {
          throw new ArcError('FORBIDDEN', `origin ${origin} may not open ${FEED_PATH}: not this server's origin and not allowed by --cors-origin`);
        }
      },
      preHandler: async (request) => {
        // Parsed here, before the upgrade, so a bad pair is an HTTP 400 like any bad query.
        feedRequests.set(request, feedRequest(request.query));
      },
    },
    (socket, request) => {
      hub.connect(socket, feedRequests.get(request) ?? feedRequest(request.query));
    },
  );
}

const feedRequests = new WeakMap<FastifyRequest, FeedRequest>();

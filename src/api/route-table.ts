/**
 * The routes a server registered, as data: method, path, whether it is a WebSocket, and the schema
 * of each part. Fastify prints its routes as a tree but does not list them; this records them from
 * the `onRoute` hook as they are added, on the root and in every encapsulated plugin after it, so a
 * test can walk every route of a real server (the fuzz suite, `test/integration/api-fuzz.test.ts`)
 * and a route added later is walked without editing the test.
 */
import type { FastifyInstance } from 'fastify';
import type { AccessRule } from '../access/policy.ts';

export interface RouteEntry {
  readonly method: string;
  readonly url: string;
  readonly websocket: boolean;
  /** Who may call it (`config.access`); the access hook refuses to register a route without one. */
  readonly access: AccessRule | undefined;
  readonly schema: { readonly body?: unknown; readonly querystring?: unknown; readonly params?: unknown; readonly headers?: unknown };
}

const tables = new WeakMap<FastifyInstance, RouteEntry[]>();

/** Starts recording `app`'s routes; call before the first route is added. */
export function recordRoutes(app: FastifyInstance): void {
  const table: RouteEntry[] = [];
  tables.set(app, table);
  app.addHook('onRoute', (route) => {
    const schema = route.schema ?? {};
    const parts = {
      ...(schema.body === undefined ? {} : { body: schema.body }),
      ...(schema.querystring === undefined ? {} : { querystring: schema.querystring }),
      ...(schema.params === undefined ? {} : { params: schema.params }),
      ...(schema.headers === undefined ? {} : { headers: schema.headers }),
    };
    for (const method of [route.method].flat()) table.push({ method, url: route.url, websocket: route.websocket === true, access: route.config?.access, schema: parts });
  });
}

/** Every route `app` registered since `recordRoutes`, in registration order. */
export function routesOf(app: FastifyInstance): readonly RouteEntry[] {
  const table = tables.get(app);
  if (table === undefined) throw new Error('routesOf: this server was not built with recordRoutes (src/api/server.ts buildServer does it)');
  return table;
}

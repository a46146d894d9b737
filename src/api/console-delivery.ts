/**
 * How the console reaches a browser: the built app (`web/dist`, `npm run build:console`) at `/`, and
 * CORS for pages served elsewhere (`--cors-origin`).
 *
 * Static files: `/assets/*` are content-hashed by Vite, so they are cached for a year as immutable;
 * `index.html` and other unhashed files are `no-cache` (revalidated, so a new build shows at once).
 * Any other GET that accepts HTML gets `index.html` (the app routes in the browser); API paths and
 * non-HTML requests keep the JSON 404. Bodies over 4 KiB, the console's files and the API's large
 * answers alike (a 5,000-node list is 4 MB of JSON), are brotli or gzip as `Accept-Encoding` asks
 * (`installCompression`); small answers, every inference submission among them, are sent as they
 * are. Without a build, `/`
 * answers 503 saying how to make one; the API works regardless.
 *
 * CORS: none by default (the console is same-origin; no header is sent). With `--cors-origin` a page
 * on a listed origin (or any, with an explicit `*`) may call the API with its key: preflights are
 * answered here (public: a preflight carries no credential by the Fetch standard), answers carry
 * `Access-Control-Allow-Origin`, and `/telemetry` accepts upgrades from it (./console-feed.ts).
 */
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { constants as zlibConstants } from 'node:zlib';
import { join, relative, resolve, sep } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fastifyStatic from '@fastify/static';
import fastifyCompress from '@fastify/compress';
import { ACCESS } from '../access/policy.ts';
import type { OriginCheck } from './console-feed.ts';

/** `<repo>/web/dist`, from this file's place in the repository. */
export const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL('../../web/dist/', import.meta.url));

const CONSOLE_ACCESS = { access: ACCESS.public('console assets carry no data; the console signs in with an API key') };
const IMMUTABLE = 'public, max-age=31536000, immutable';
/** Paths that are the API's, never the app's: an unknown one is the API's JSON 404. */
const API_PREFIXES = ['api/', 'telemetry', 'agent', 'metrics', 'stats', 'health', 'ready'];

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ArcNet console not built</title></head>
<body><h1>ArcNet console not built</h1>
<p>console not built: run <code>npm run build:console</code> and reload. The API works without it.</p></body></html>
`;

export interface ConsoleDeliveryOptions {
  /** The built console; `DEFAULT_CONSOLE_DIR` unless a test or a deployment points elsewhere. */
  readonly dir?: string;
}

/**
 * Compression for every route registered after it. Brotli at quality 4, not the default 11: these
 * bodies are compressed per response, and 11 costs seconds on a large node list for a few percent.
 */
export async function installCompression(app: FastifyInstance): Promise<void> {
  await app.register(fastifyCompress, {
    global: true,
    threshold: 4096,
    encodings: ['br', 'gzip'],
    brotliOptions: { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 4 } },
  });
}

/** Serves the console at `/` with its cache headers and compression (see the file header). */
export async function registerConsoleDelivery(app: FastifyInstance, options: ConsoleDeliveryOptions = {}): Promise<void> {
  const dir = resolve(options.dir ?? DEFAULT_CONSOLE_DIR);
  await app.register(async (scope) => {
    await scope.register(fastifyStatic, { root: dir, serve: false });
    const index = (reply: FastifyReply): FastifyReply => {
      if (!existsSync(join(dir, 'index.html'))) return reply.status(503).header('cache-control', 'no-store').type('text/html; charset=utf-8').send(NOT_BUILT);
      return reply.header('cache-control', 'no-cache').sendFile('index.html', dir, { cacheControl: false });
    };
    scope.get('/', { config: CONSOLE_ACCESS }, async (_request, reply) => index(reply));
    scope.get<{ Params: { '*': string } }>('/*', { config: CONSOLE_ACCESS }, async (request, reply) => {
      const path = request.params['*'];
      const file = fileIn(dir, path);
      if (file !== undefined) {
        const name = relative(dir, file);
        return reply.header('cache-control', name.startsWith(`assets${sep}`) ? IMMUTABLE : 'no-cache').sendFile(name, dir, { cacheControl: false });
      }
      if (API_PREFIXES.some((prefix) => path.startsWith(prefix)) || !acceptsHtml(request)) return reply.callNotFound();
      return index(reply);
    });
  });
}

/** The regular file `path` names inside `dir`, or undefined (missing, a directory, or outside `dir`). */
function fileIn(dir: string, path: string): string | undefined {
  let file: string;
  try {
    file = resolve(dir, decodeURIComponent(path));
  } catch {
    return undefined;
  }
  if (!file.startsWith(dir + sep)) return undefined;
  try {
    return statSync(file).isFile() ? file : undefined;
  } catch {
    return undefined;
  }
}

function acceptsHtml(request: FastifyRequest): boolean {
  return (request.headers.accept ?? '').includes('text/html');
}

/**
 * `--cors-origin` values: `*`, or origins `scheme://host[:port]` (no path). Several in one value are
 * comma-separated. A wrong one is refused with the reason, so a typo does not silently open nothing.
 */
export function parseCorsOrigins(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const value of values.flatMap((v) => v.split(','))) {
    const origin = value.trim();
    if (origin === '') continue;
    if (origin === '*') {
      out.push(origin);
      continue;
    }
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw new Error(`--cors-origin "${origin}" is not an origin: expected scheme://host[:port], e.g. https://console.example.com, or *`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== origin.replace(/\/$/, '')) {
      throw new Error(`--cors-origin "${origin}" is not an origin: expected http(s)://host[:port] without a path (got ${url.origin === 'null' ? 'no origin' : `origin ${url.origin}`})`);
    }
    out.push(url.origin);
  }
  return out;
}

/** Whether a page on an origin may call this server, by the `--cors-origin` list. */
export function corsPolicy(origins: readonly string[]): OriginCheck {
  const any = origins.includes('*');
  const listed = new Set(origins);
  return (origin) => any || listed.has(origin);
}

const ALLOW_METHODS = 'GET, POST, PUT, PATCH, DELETE, OPTIONS';
const ALLOW_HEADERS = 'Authorization, Content-Type';

/**
 * CORS on every answer of `app`: call before any route. With no origins it does nothing at all (the
 * default: same-origin only, no headers, no preflight route).
 */
export function installCors(app: FastifyInstance, origins: readonly string[]): void {
  if (origins.length === 0) return;
  const allowed = corsPolicy(origins);
  const any = origins.includes('*');
  app.addHook('onSend', async (request, reply) => {
    const origin = request.headers.origin;
    if (origin === undefined || !allowed(origin)) return;
    void reply.header('access-control-allow-origin', any ? '*' : origin);
    if (!any) void reply.header('vary', 'Origin');
    void reply.header('access-control-expose-headers', 'Retry-After, WWW-Authenticate');
  });
  const preflight = { config: { access: ACCESS.public('a CORS preflight carries no credential (Fetch standard); it only asks which origins may') } };
  const answer = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const origin = request.headers.origin;
    if (origin === undefined || !allowed(origin)) {
      return reply.status(403).send({ statusCode: 403, error: 'Forbidden', code: 'FORBIDDEN', message: `origin ${origin ?? '(none)'} is not allowed by --cors-origin`, retryable: false });
    }
    return reply
      .status(204)
      .header('access-control-allow-methods', ALLOW_METHODS)
      .header('access-control-allow-headers', ALLOW_HEADERS)
      .header('access-control-max-age', '600')
      .send();
  };
  app.options('/', preflight, answer);
  app.options('/*', preflight, answer);
}

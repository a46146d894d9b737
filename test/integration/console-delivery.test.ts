/**
 * How a browser gets the console from a real embedded ArcNet (src/api/console-delivery.ts): a built
 * app (a small fixture here, as `vite build` lays it out) with its cache headers, gzip and brotli, the
 * SPA fallback beside the API's JSON 404, the 503 page without a build; and CORS: none by default,
 * preflight and headers for an allowed origin only, the same rule for the /telemetry upgrade.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import WebSocket from 'ws';
import { withDefaults } from '../../src/main/config.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { parseCorsOrigins } from '../../src/api/console-delivery.ts';
import { until } from '../support/until.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A raw HTTP exchange: the bytes as sent (fetch would decode them), with the headers a browser sends. */
function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const call = request(url, { method, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
    });
    call.on('error', reject);
    call.end();
  });
}

const HTML = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
const INDEX = `<!doctype html><html><head><title>ArcNet</title><script type="module" src="/assets/index-3f2a9c1b.js"></script></head><body><div id="root"></div><!-- ${'padding so the page is worth compressing '.repeat(60)} --></body></html>\n`;
const SCRIPT = `export const views = ${JSON.stringify(Array.from({ length: 200 }, (_v, i) => `view-${i}`))};\n`;

describe('console delivery and CORS', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'arcnet-console-'));
  const dist = join(scratch, 'dist');
  let built: EmbeddedSystem;
  let bare: EmbeddedSystem;
  const ALLOWED = 'https://console.example.com';

  beforeAll(async () => {
    mkdirSync(join(dist, 'assets'), { recursive: true });
    writeFileSync(join(dist, 'index.html'), INDEX);
    writeFileSync(join(dist, 'assets', 'index-3f2a9c1b.js'), SCRIPT);
    writeFileSync(join(dist, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    built = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 }, api: { consoleDir: dist, corsOrigins: [ALLOWED] } }));
    bare = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 }, api: { consoleDir: join(scratch, 'never-built') } }));
  });
  afterAll(async () => {
    await built?.stop();
    await bare?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('serves index.html at / with no-cache, and hashed assets as immutable for a year', async () => {
    const index = await get(`${built.url}/`, { accept: HTML });
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toMatch(/^text\/html/);
    expect(index.headers['cache-control']).toBe('no-cache');
    expect(index.body.toString()).toBe(INDEX);
    const asset = await get(`${built.url}/assets/index-3f2a9c1b.js`);
    expect(asset.status).toBe(200);
    expect(asset.headers['content-type']).toMatch(/javascript/);
    expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(asset.body.toString()).toBe(SCRIPT);
    const favicon = await get(`${built.url}/favicon.svg`);
    expect(favicon.headers['cache-control']).toBe('no-cache');
    expect(favicon.headers['content-type']).toMatch(/^image\/svg\+xml/);
  });

  it('compresses with brotli or gzip as Accept-Encoding asks, and not at all when it does not', async () => {
    const br = await get(`${built.url}/assets/index-3f2a9c1b.js`, { 'accept-encoding': 'gzip, deflate, br' });
    expect(br.headers['content-encoding']).toBe('br');
    expect(brotliDecompressSync(br.body).toString()).toBe(SCRIPT);
    expect(br.body.length).toBeLessThan(SCRIPT.length / 2);
    const gzip = await get(`${built.url}/`, { accept: HTML, 'accept-encoding': 'gzip' });
    expect(gzip.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gzip.body).toString()).toBe(INDEX);
    expect(gzip.headers['vary']).toMatch(/accept-encoding/i);
    const plain = await get(`${built.url}/`, { accept: HTML });
    expect(plain.headers['content-encoding']).toBeUndefined();
  });

  it('answers the app\'s own paths with index.html, and unknown API paths with the JSON 404', async () => {
    for (const path of ['/zones', '/nodes/6f1d3c4e-0000-4000-8000-000000000001', '/explain/abc?tab=filters']) {
      const page = await get(`${built.url}${path}`, { accept: HTML });
      expect(page.status, path).toBe(200);
      expect(page.body.toString(), path).toBe(INDEX);
      expect(page.headers['cache-control'], path).toBe('no-cache');
    }
    for (const [path, accept] of [['/api/v1/nope', HTML], ['/api/nothing', 'application/json'], ['/zones', 'application/json'], ['/assets/missing-0000.js', '*/*']] as const) {
      const answer = await get(`${built.url}${path}`, { accept });
      expect(answer.status, path).toBe(404);
      expect(answer.headers['content-type'], path).toMatch(/^application\/json/);
      expect(JSON.parse(answer.body.toString()), path).toMatchObject({ statusCode: 404, error: 'Not Found', message: `no route GET ${path}` });
    }
    // Out of the directory: never a file from elsewhere.
    const escape = await get(`${built.url}/..%2F..%2Fetc%2Fpasswd`, { accept: '*/*' });
    expect(escape.status).toBe(404);
    // API routes are untouched by the fallback.
    expect((await get(`${built.url}/health`, { accept: HTML })).headers['content-type']).toMatch(/^application\/json/);
  });

  it('answers 503 with how to build the console when there is no build, and the API still works', async () => {
    for (const path of ['/', '/zones']) {
      const page = await get(`${bare.url}${path}`, { accept: HTML });
      expect(page.status, path).toBe(503);
      expect(page.headers['content-type'], path).toMatch(/^text\/html/);
      expect(page.body.toString(), path).toContain('console not built: run <code>npm run build:console</code>');
    }
    expect((await get(`${bare.url}/health`)).status).toBe(200);
  });

  it('sends no CORS headers and answers no preflight by default', async () => {
    const origin = 'https://elsewhere.example';
    const preflight = await get(`${bare.url}/api/v1/nodes`, { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' }, 'OPTIONS');
    expect(preflight.status).toBe(404);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    const simple = await get(`${bare.url}/health`, { origin });
    expect(simple.headers['access-control-allow-origin']).toBeUndefined();
    expect(Object.keys(simple.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
  });

  it('answers an allowed origin\'s preflight with 204 and the methods and headers, and refuses others', async () => {
    const ask = { 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' };
    const allowed = await get(`${built.url}/api/v1/inference`, { origin: ALLOWED, ...ask }, 'OPTIONS');
    expect(allowed.status).toBe(204);
    expect(allowed.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(String(allowed.headers['access-control-allow-methods'])).toMatch(/POST/);
    expect(String(allowed.headers['access-control-allow-headers']).toLowerCase().split(/,\s*/)).toEqual(expect.arrayContaining(['authorization', 'content-type']));
    expect(allowed.headers['vary']).toMatch(/Origin/);
    const refused = await get(`${built.url}/api/v1/inference`, { origin: 'https://elsewhere.example', ...ask }, 'OPTIONS');
    expect(refused.status).toBe(403);
    expect(refused.headers['access-control-allow-origin']).toBeUndefined();
    // The answers themselves: readable by the allowed page, errors included (a 401 it must be able to show).
    const unauthenticated = await get(`${built.url}/api/v1/nodes`, { origin: ALLOWED });
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers['access-control-allow-origin']).toBe(ALLOWED);
    const withKey = await get(`${built.url}/api/v1/nodes`, { origin: ALLOWED, authorization: `Bearer ${built.operatorKey!}` });
    expect(withKey.status).toBe(200);
    expect(withKey.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect((await get(`${built.url}/api/v1/nodes`, { origin: 'https://elsewhere.example', authorization: `Bearer ${built.operatorKey!}` })).headers['access-control-allow-origin']).toBeUndefined();
  });

  it('lets an allowed origin open /telemetry and refuses another', async () => {
    const url = `${built.url.replace('http', 'ws')}/telemetry?key=${encodeURIComponent(built.operatorKey!)}`;
    const outcome = (origin: string): Promise<number> =>
      new Promise((resolve) => {
        const socket = new WebSocket(url, { origin });
        socket.on('error', () => undefined);
        socket.once('open', () => {
          socket.close();
          resolve(101);
        });
        socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      });
    expect(await outcome(ALLOWED)).toBe(101);
    expect(await outcome('https://elsewhere.example')).toBe(403);
    expect(await outcome(built.url)).toBe(101);
  });

  it('takes --cors-origin values as origins or an explicit *, and says what is wrong with others', () => {
    expect(parseCorsOrigins(['https://a.example, http://localhost:5173', 'https://b.example/'])).toEqual(['https://a.example', 'http://localhost:5173', 'https://b.example']);
    expect(parseCorsOrigins(['*'])).toEqual(['*']);
    expect(() => parseCorsOrigins(['console.example.com'])).toThrow('--cors-origin "console.example.com" is not an origin: expected scheme://host[:port]');
    expect(() => parseCorsOrigins(['https://a.example/app'])).toThrow('without a path');
    expect(() => parseCorsOrigins(['ftp://a.example'])).toThrow('not an origin');
  });

  describe('on a mesh of 300 nodes', () => {
    let mesh: EmbeddedSystem;
    beforeAll(async () => {
      mesh = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 300, requestRate: 0 }, api: { consoleDir: dist } }));
      const key = { authorization: `Bearer ${mesh.operatorKey!}` };
      await until(async () => (JSON.parse((await get(`${mesh.url}/api/v1/nodes`, key)).body.toString('utf8')) as { count: number }).count === 300, 'all 300 simulated nodes to report', 20_000, { intervalMs: 200 });
    });
    afterAll(async () => {
      await mesh?.stop();
    });

    it('compresses the API\'s large answers and leaves small ones as they are', async () => {
      const key = { authorization: `Bearer ${mesh.operatorKey!}` };
      const plain = await get(`${mesh.url}/api/v1/nodes`, key);
      const list = JSON.parse(plain.body.toString('utf8')) as { count: number };
      expect(list.count).toBe(300);
      const gzipped = await get(`${mesh.url}/api/v1/nodes`, { ...key, 'accept-encoding': 'gzip' });
      expect(gzipped.headers['content-encoding']).toBe('gzip');
      expect(JSON.parse(gunzipSync(gzipped.body).toString('utf8'))).toEqual(list);
      expect(gzipped.body.length).toBeLessThan(plain.body.length / 4);
      const small = await get(`${mesh.url}/api/v1/whoami`, { ...key, 'accept-encoding': 'gzip, br' });
      expect(small.status).toBe(200);
      expect(small.headers['content-encoding']).toBeUndefined();
    });

    it('deflates a large snapshot on /telemetry for a client that offers it', async () => {
      const received = async (perMessageDeflate: boolean): Promise<{ text: number; wire: number }> => {
        const socket = new WebSocket(`${mesh.url.replace('http', 'ws')}/telemetry?key=${encodeURIComponent(mesh.operatorKey!)}`, { perMessageDeflate });
        try {
          const snapshot = await new Promise<string>((resolve, reject) => {
            socket.on('message', (data: Buffer) => {
              const text = data.toString('utf8');
              if (text.includes('"type":"snapshot"')) resolve(text);
            });
            socket.once('error', reject);
          });
          // Bytes off the TCP socket so far: the upgrade, the hello and the snapshot as sent.
          const wire = (socket as unknown as { _socket: { bytesRead: number } })._socket.bytesRead;
          return { text: snapshot.length, wire };
        } finally {
          socket.close();
        }
      };
      const deflated = await received(true);
      const raw = await received(false);
      expect(deflated.text).toBeGreaterThan(64 * 1024);
      expect(raw.wire).toBeGreaterThan(raw.text);
      expect(deflated.wire).toBeLessThan(deflated.text / 4);
    });
  });
});

/**
 * TLS and mTLS on a real server in this process (issue 11, "Transport"), with certificates from
 * scripts/dev-certs.sh: HTTPS and WSS only, TLS 1.3 minimum, the routes only nodes call refused
 * without a verified client certificate before anything else happens, the certificate's subject read
 * back by `clientCertificateOf`, and a role's health port over TLS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { createServer as createHttpsServer } from 'node:https';
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { startRoleHttp } from '../../src/main/role-http.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { httpClient, defaultHttpClient, type HttpClient } from '../../src/core/http-client.ts';
import { serverTlsOptions, type ClientTls } from '../../src/core/tls.ts';
import { NODE_ROUTES, clientCertificateOf } from '../../src/access/client-certificate.ts';
import { WORKER_STREAM_PATH } from '../../src/jobs/protocol.ts';
import { devCerts, type DevCerts } from '../support/certs.ts';

const dir = mkdtempSync(join(tmpdir(), 'arcnet-tls-'));
let certs: DevCerts;
let stranger: DevCerts;
const clients: HttpClient[] = [];
const client = (tls?: ClientTls): HttpClient => {
  const made = httpClient(tls);
  clients.push(made);
  return made;
};

beforeAll(() => {
  certs = devCerts(join(dir, 'ours'), ['node-7', 'scheduler']);
  // Same names, another CA: a certificate that is well formed but not one this server trusts.
  stranger = devCerts(join(dir, 'theirs'), ['node-7']);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  rmSync(dir, { recursive: true, force: true });
});

/** What the server answers a WebSocket upgrade: 101, or the refusal's status and message. */
async function upgrade(http: HttpClient, url: string): Promise<{ status: number; message?: string }> {
  return new Promise((resolve, reject) => {
    const socket = http.webSocket(url);
    socket.once('open', () => {
      socket.terminate();
      resolve({ status: 101 });
    });
    socket.once('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => {
        socket.terminate();
        let message: string | undefined;
        try {
          message = (JSON.parse(body) as { message?: string }).message;
        } catch {
          message = body;
        }
        resolve({ status: response.statusCode ?? 0, ...(message === undefined ? {} : { message }) });
      });
    });
    socket.once('error', (error) => reject(error));
  });
}

describe('dev-certs.sh', () => {
  it('makes a CA, a server certificate for localhost and loopback, one client certificate per name, keys 0600, and keeps them on a second run', () => {
    const server = new X509Certificate(certs.server.cert);
    expect(server.subjectAltName).toContain('DNS:localhost');
    expect(server.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(server.subjectAltName).toMatch(/IP Address:(0:0:0:0:0:0:0:1|::1)/);
    expect(server.verify(new X509Certificate(certs.ca).publicKey)).toBe(true);
    const node = new X509Certificate(certs.client('node-7').cert);
    expect(node.subject).toContain('CN=node-7');
    expect(node.verify(new X509Certificate(certs.ca).publicKey)).toBe(true);
    expect(node.verify(new X509Certificate(stranger.ca).publicKey)).toBe(false);
    for (const key of ['ca.key', 'server.key', 'node-7.key', 'scheduler.key']) expect(statSync(join(certs.dir, key)).mode & 0o777).toBe(0o600);
    expect(certs.output).toMatch(/wrote .*ca\.pem/);

    // Again, with an extra host name: the CA and the client certificates are kept, the server's re-issued with the new SAN.
    const again = devCerts(certs.dir, ['node-7'], ['arcnet.internal']);
    expect(again.output).toMatch(/kept .*ca\.pem/);
    expect(again.output).toMatch(/kept .*node-7\.pem/);
    expect(again.ca).toBe(certs.ca);
    expect(again.client('node-7').cert).toBe(certs.client('node-7').cert);
    expect(new X509Certificate(again.server.cert).subjectAltName).toContain('DNS:arcnet.internal');
    expect(new X509Certificate(again.server.cert).verify(new X509Certificate(certs.ca).publicKey)).toBe(true);
    certs = again;
  });
});

describe('an embedded server with --tls-cert, --tls-key and --tls-ca', () => {
  let system: EmbeddedSystem;
  let port = 0;
  beforeAll(async () => {
    system = await startEmbedded(
      withDefaults({ host: '127.0.0.1', port: 0, dataDir: null, tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca }, simulation: { nodes: 0, requestRate: 0 } }),
    );
    port = Number(new URL(system.url).port);
  });
  afterAll(async () => {
    await system?.stop();
  });

  it('serves HTTPS only: its URL says so, a client trusting the CA gets /health without a certificate, plain HTTP gets nothing', async () => {
    expect(system.url).toBe(`https://127.0.0.1:${port}`);
    const health = await client({ ca: certs.ca }).fetch(`${system.url}/health`);
    expect(health.status).toBe(200);
    // Without the development CA the server's certificate is not trusted.
    await expect(defaultHttpClient.fetch(`${system.url}/health`)).rejects.toThrow(/fetch failed/);
    const plain = await defaultHttpClient.fetch(`http://127.0.0.1:${port}/health`).then(
      (r) => `answered ${r.status}`,
      (e: Error) => `failed: ${String((e.cause as Error | undefined)?.message ?? e.message)}`,
    );
    expect(plain).toMatch(/^failed/);
  });

  it('refuses a TLS 1.2 client at the handshake', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: certs.ca, servername: 'localhost', maxVersion: 'TLSv1.2' });
      socket.once('secureConnect', () => {
        resolve(`connected with ${String(socket.getProtocol())}`);
        socket.destroy();
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(`refused: ${error.code ?? error.message}`));
    });
    expect(outcome).toMatch(/^refused: .*PROTOCOL_VERSION/);
    const tls13 = await new Promise<string | null>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: certs.ca, servername: 'localhost' });
      socket.once('secureConnect', () => {
        resolve(socket.getProtocol());
        socket.destroy();
      });
      socket.once('error', reject);
    });
    expect(tls13).toBe('TLSv1.3');
  });

  it('refuses worker calls and the agent and worker sessions without a verified client certificate, with 401 naming it, before the body is read', async () => {
    const anonymous = client({ ca: certs.ca });
    const foreign = client({ ca: certs.ca, cert: stranger.client('node-7').cert, key: stranger.client('node-7').key });
    const node = client({ ca: certs.ca, cert: certs.client('node-7').cert, key: certs.client('node-7').key });
    // The body would be a 400 if it were read: the certificate check comes first.
    const register = (http: HttpClient) => http.fetch(`${system.url}/api/v1/nodes/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"cpu_cores": "lots"' });

    const none = await register(anonymous);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { message: string }).message).toMatch(/POST \/api\/v1\/nodes\/register needs a client certificate signed by this server's CA \(--tls-ca\): none was presented/);
    const wrong = await register(foreign);
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { message: string }).message).toMatch(/client certificate .*not accepted/);
    // With ours the call goes on to the next check (its body, or its credential): it is not refused for the certificate.
    const ours = await register(node);
    expect(((await ours.json()) as { message?: string }).message ?? '').not.toMatch(/client certificate/);

    const heartbeat = await anonymous.fetch(`${system.url}/api/v1/nodes/x/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(heartbeat.status).toBe(401);
    const result = await anonymous.fetch(`${system.url}/api/v1/worker/result`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(result.status).toBe(401);

    const wss = system.url.replace(/^https/, 'wss');
    for (const path of ['/agent', `${WORKER_STREAM_PATH}?node_id=x`]) {
      const refused = await upgrade(anonymous, `${wss}${path}`);
      expect(refused.status, path).toBe(401);
      expect(refused.message, path).toMatch(/needs a client certificate/);
      expect((await upgrade(foreign, `${wss}${path}`)).message, path).toMatch(/not accepted/);
      const passed = await upgrade(node, `${wss}${path}`);
      expect(passed.message ?? '', path).not.toMatch(/client certificate/);
    }

    // Other routes may come without a certificate (and authenticate by API key where they need one).
    const nodes = await anonymous.fetch(`${system.url}/api/v1/nodes`);
    expect(((await nodes.json()) as { message?: string }).message ?? '').not.toMatch(/client certificate/);
  });

  it('names only routes the server really has, so a renamed node route cannot silently lose the check', () => {
    for (const route of NODE_ROUTES) expect(system.server.hasRoute({ method: route.method, url: route.url }), `${route.method} ${route.url}`).toBe(true);
  });
});

describe('clientCertificateOf', () => {
  it("gives the verified certificate's subject CN and SHA-256 fingerprint, and nothing for no certificate or another CA's", async () => {
    const tls = { cert: certs.server.cert, key: certs.server.key, ca: certs.ca };
    const app = Fastify({ serverFactory: (handler) => createHttpsServer(serverTlsOptions(tls), handler) });
    app.get('/who', async (request) => clientCertificateOf(request) ?? null);
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const url = `https://127.0.0.1:${(app.server.address() as { port: number }).port}/who`;
      const ask = async (clientTls: ClientTls): Promise<unknown> => (await client(clientTls).fetch(url)).json();
      const scheduler = certs.client('scheduler');
      expect(await ask({ ca: certs.ca, cert: scheduler.cert, key: scheduler.key })).toEqual({ subject: 'scheduler', fingerprint: new X509Certificate(scheduler.cert).fingerprint256 });
      expect(await ask({ ca: certs.ca })).toBeNull();
      expect(await ask({ ca: certs.ca, cert: stranger.client('node-7').cert, key: stranger.client('node-7').key })).toBeNull();
    } finally {
      await app.close();
    }
  });
});

describe("a role's health port with TLS", () => {
  it('serves HTTPS; /health stays open to probes, /metrics needs a client certificate of the CA', async () => {
    const registry = new Registry();
    const http = await startRoleHttp({
      host: '127.0.0.1',
      port: 0,
      role: 'scheduler',
      report: () => ({ ready: true, body: { status: 'ok' } }),
      metrics: registry,
      logger: silentLogger,
      tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca },
    });
    try {
      expect(http.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const probe = client({ ca: certs.ca });
      expect((await probe.fetch(`${http.url}/health`)).status).toBe(200);
      const refused = await probe.fetch(`${http.url}/metrics`);
      expect(refused.status).toBe(401);
      expect(await refused.text()).toMatch(/client certificate/);
      const scraper = client({ ca: certs.ca, cert: certs.client('scheduler').cert, key: certs.client('scheduler').key });
      expect((await scraper.fetch(`${http.url}/metrics`)).status).toBe(200);
    } finally {
      await http.close();
    }
  });
});

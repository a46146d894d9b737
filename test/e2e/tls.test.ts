/**
 * TLS and mTLS end to end, as an operator would set them up (issue 11, "Transport"): certificates
 * from scripts/dev-certs.sh, `arcnet up` with --tls-cert, --tls-key and --tls-ca, a real `arcnet
 * agent` and a real worker (`arcnet agent --worker --no-inference`, containers through the Docker
 * Engine API) connecting with their client certificates, and what is refused: an agent or a worker
 * without a certificate, a TLS 1.2 client, plain HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { httpClient, defaultHttpClient, type HttpClient } from '../../src/core/http-client.ts';
import { CLI, freePort, startCli as start, untilUp, type CliProcess } from '../support/processes.ts';
import { devCerts, type DevCerts } from '../support/certs.ts';
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { needEngines } from '../support/engines.ts';

const run = promisify(execFile);
const until = <T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> => untilUp(probe, what, timeoutMs);
const SEED_HASH = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03';
const containers = needEngines('containers');

interface NodeView {
  id: string;
  name: string;
  status: string;
  worker_status?: string;
}

async function exited(child: ChildProcess, timeoutMs = 30_000): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`process ${child.pid} still running after ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

describe('arcnet up with TLS and mTLS, a real agent and a real worker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-e2e-tls-'));
  const dataDir = join(dir, 'data');
  const children: CliProcess[] = [];
  const clients: HttpClient[] = [];
  let certs: DevCerts;
  let url = '';
  let port = 0;
  let server: CliProcess;
  /** The client a user of the API has: the development CA, no client certificate. */
  let user: HttpClient;

  /** The operator key `arcnet up` writes for its own CLI, where the access layer runs (none without it). */
  const operatorKey = (): string | undefined => {
    const file = join(dataDir, 'operator.key');
    return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
  };
  const auth = (): Record<string, string> => {
    const key = operatorKey();
    return key === undefined ? {} : { authorization: `Bearer ${key}` };
  };
  /** Flags an agent needs to enrol where the access layer runs. */
  const enrol = (name: string): string[] => {
    const key = operatorKey();
    return key === undefined ? [] : ['--token', key, '--node-key', join(dir, `${name}.node-key`)];
  };
  const tlsFlags = (name?: string): string[] => [
    '--tls-ca', certs.caPath,
    ...(name === undefined ? [] : ['--tls-cert', certs.client(name).certPath, '--tls-key', certs.client(name).keyPath]),
  ];
  const api = async <T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: T }> => {
    const response = await user.fetch(`${url}${path}`, {
      method: init.method ?? 'GET',
      headers: { 'content-type': 'application/json', ...auth() },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    return { status: response.status, body: (await response.json()) as T };
  };
  const nodes = async (): Promise<NodeView[]> => (await api<{ nodes: NodeView[] }>('/api/v1/nodes')).body.nodes;

  beforeAll(async () => {
    certs = devCerts(join(dir, 'certs'), ['tls-agent', 'tls-worker']);
    user = httpClient({ ca: certs.ca });
    clients.push(user);
    port = await freePort();
    url = `https://127.0.0.1:${port}`;
    server = start([
      'up', '--port', String(port), '--data-dir', dataDir, '--nodes', '3', '--rate', '0', '--telemetry-interval', '500', '--no-status',
      '--tls-cert', certs.server.certPath, '--tls-key', certs.server.keyPath, '--tls-ca', certs.caPath,
    ]);
    children.push(server);
    await until(async () => (await user.fetch(`${url}/health`)).ok, 'arcnet up to answer /health over HTTPS');
  }, 60_000);

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child !== server) child.kill('SIGKILL');
    if (server && server.exitCode === null) {
      server.kill('SIGINT');
      await exited(server).catch(() => server.kill('SIGKILL'));
    }
    await Promise.all(clients.map((c) => c.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('says it serves HTTPS with mTLS, and refuses plain HTTP and a TLS 1.2 client on its port', async () => {
    expect(server.output()).toContain(`API and console feed: ${url}`);
    expect(server.output()).toMatch(/TLS 1\.3 only, mTLS/);
    const plain = await defaultHttpClient.fetch(`http://127.0.0.1:${port}/health`).then(
      (r) => `answered ${r.status}`,
      () => 'failed',
    );
    expect(plain).toBe('failed');
    const old = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: certs.ca, servername: 'localhost', maxVersion: 'TLSv1.2' });
      socket.once('secureConnect', () => {
        resolve(`connected with ${String(socket.getProtocol())}`);
        socket.destroy();
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(`refused: ${error.code ?? error.message}`));
    });
    expect(old).toMatch(/^refused: .*PROTOCOL_VERSION/);
  });

  it('takes a real agent with its client certificate: its node is listed over HTTPS and runs a request dispatched over WSS', async () => {
    const agent = start([
      'agent', '--server', url, '--name', 'tls-agent', '--geozone', 'ERCOT', '--geohash', '9vk1eh', '--models', 'tls-model', '--speed', '0.05', '--telemetry-interval', '300', '--log-level', 'warn',
      ...tlsFlags('tls-agent'), ...enrol('tls-agent'),
    ]);
    children.push(agent);
    const node = await until(async () => (await nodes()).find((n) => n.name === 'tls-agent' && n.status === 'online'), 'the agent to report telemetry over WSS');

    const submitted = await api<{ id: string; nodeId: string }>('/api/v1/inference', { method: 'POST', body: { modelId: 'tls-model', contextWindowTokens: 128, requesterGeozone: 'ERCOT' } });
    expect(submitted.status).toBe(201);
    expect(submitted.body.nodeId).toBe(node.id);
    await until(async () => (await api<{ status: string }>(`/api/v1/inference/${submitted.body.id}`)).body.status === 'completed', 'the agent to return the result');

    // The CLI over HTTPS: with the CA it lists the agent; without it the server's certificate is not trusted.
    const key = operatorKey();
    const env = { ...process.env, NO_COLOR: '1', ...(key === undefined ? {} : { ARCNET_API_KEY: key }) };
    const listed = await run(process.execPath, [CLI, 'nodes', '--server', url, '--geozone', 'ERCOT', '--tls-ca', certs.caPath], { env });
    expect(listed.stdout).toMatch(/tls-agent\s+ERCOT\s+online/);
    const untrusted = await run(process.execPath, [CLI, 'stats', '--server', url], { env }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
    expect(untrusted.code).toBe(2);
    expect(untrusted.stderr.trim().split('\n')).toHaveLength(1);
    expect(untrusted.stderr).toMatch(/cannot reach https:\/\/127\.0\.0\.1:\d+: .*certificate/);
  }, 90_000);

  it('refuses an agent without a client certificate: its session is refused with 401, and it never becomes a node', async () => {
    const anonymous = start(['agent', '--server', url, '--name', 'no-cert', '--geozone', 'ERCOT', '--log-level', 'info', ...tlsFlags(), ...enrol('no-cert')]);
    children.push(anonymous);
    // An agent that reads the refusal exits 2 with the server's sentence; one that does not yet keeps
    // retrying and logs each 401. Either way the upgrade was refused, which is what is asserted.
    await until(async () => anonymous.exitCode !== null || /\b401\b/.test(anonymous.output()), 'the agent to be refused');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    if (anonymous.exitCode !== null) {
      expect(anonymous.exitCode).toBe(2);
      expect(anonymous.output()).toMatch(/refused .*401.*GET \/agent needs a client certificate signed by this server's CA \(--tls-ca\): none was presented/);
    } else {
      expect(anonymous.output()).toMatch(/Unexpected server response: 401/);
      anonymous.kill('SIGINT');
      await exited(anonymous);
    }
    expect(anonymous.output()).not.toMatch(/agent welcomed/);
    expect((await nodes()).some((n) => n.name === 'no-cert')).toBe(false);
  }, 60_000);

  it.skipIf(!containers.available)(containers.title('registers a real worker over mTLS and runs a job in a container; a worker without a certificate is refused'), async () => {
    const endpoint = testEngineEndpoint();
    const worker = start([
      'agent', '--worker', '--no-inference', '--server', url, '--name', 'tls-worker', '--docker-host', endpoint, '--worker-state', join(dir, 'tls-worker.json'),
      '--cpus', '2', '--memory-gb', '2', '--heartbeat-interval', '500', '--log-level', 'warn', ...tlsFlags('tls-worker'), ...enrol('tls-worker'),
    ]);
    children.push(worker);
    await until(async () => (await nodes()).find((n) => n.name === 'tls-worker' && n.status === 'online'), 'the worker to register over mTLS');
    await until(async () => (await api<{ workers: { connected: number } }>('/stats')).body.workers.connected >= 1, "the worker's push session over WSS");

    const job = await api<{ id: string; message?: string }>('/api/v1/jobs', {
      method: 'POST',
      body: { name: 'over mTLS', docker_image: TEST_IMAGE, command: ['sh', '-c', 'echo hello | sha256sum'], redundancy: 1, consensus: 1 },
    });
    expect(job.status, job.body.message).toBe(201);
    const done = await until(async () => {
      const { body } = await api<{ status: string; result: string | null; executions: { node_id: string }[] }>(`/api/v1/jobs/${job.body.id}`);
      return body.status === 'completed' || body.status === 'failed' ? body : undefined;
    }, 'the job to finish', 60_000);
    expect(done.status).toBe('completed');
    expect(done.result).toContain(SEED_HASH);

    const anonymous = start([
      'agent', '--worker', '--no-inference', '--server', url, '--name', 'no-cert-worker', '--docker-host', endpoint, '--worker-state', join(dir, 'no-cert-worker.json'),
      '--log-level', 'error', ...tlsFlags(), ...enrol('no-cert-worker'),
    ]);
    children.push(anonymous);
    expect(await exited(anonymous)).toBe(2);
    expect(anonymous.output()).toMatch(/registration refused \(401\): POST \/api\/v1\/nodes\/register needs a client certificate/);
    expect((await nodes()).some((n) => n.name === 'no-cert-worker')).toBe(false);
  }, 120_000);

  it('refuses a certificate without its key as a bad flag: one line, exit 2, nothing started', async () => {
    const outcome = await run(process.execPath, [CLI, 'up', '--port', '0', '--memory', '--tls-cert', certs.server.certPath]).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
    expect(outcome.code).toBe(2);
    expect(outcome.stderr).toBe('arcnet: --tls-cert needs --tls-key (the certificate\'s private key)\n');
  });
});

/**
 * The worker checks signatures itself (issue 11): a real `Worker` running containers on the real
 * engine (Podman's Docker API here), its coordinator the real embedded server, and between them a
 * proxy playing the attacker on the path (or a compromised coordinator): it rewrites the command of
 * the job named "tamper-me" in every assignment it passes on, push frames and pending-jobs alike.
 *
 * The worker trusts alice only and requires signatures; the server trusts alice and carol and does
 * not require them. An honest job signed by alice runs (the control: the engine reports its
 * container created); the tampered job, an unsigned job and carol's job are each reported back as a
 * failed execution saying why, and the engine's own event log shows no container created for them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { DockerRuntime } from '../../src/agent/docker-runtime.ts';
import { Worker } from '../../src/agent/worker.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { signingPolicy } from '../../src/main/job-signers.ts';
import { generateSigningKeyPair, signJob, type SignedSpec } from '../../src/jobs/signing.ts';
import type { ExecutionAssignment } from '../../src/jobs/model.ts';
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { needEngines } from '../support/engines.ts';
import { until } from '../support/until.ts';

/** The key the system's own CLI uses, where the access layer (issue 11, landing beside this) issues one; undefined before it. */
const operatorKeyOf = (system: EmbeddedSystem): string | undefined => (system as EmbeddedSystem & { readonly operatorKey?: string }).operatorKey;

const SEED_HASH = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03';
const engine = needEngines('containers');
const endpoint = testEngineEndpoint();
const alice = generateSigningKeyPair();
const carol = generateSigningKeyPair();

interface JobView {
  id: string;
  status: string;
  result: string | null;
  executions: { status: string; error_message: string | null }[];
}

/** The attacker's edit: the job named "tamper-me" runs something else. */
function tamper(assignment: ExecutionAssignment): ExecutionAssignment {
  return assignment.name === 'tamper-me' ? { ...assignment, command: ['sh', '-c', 'echo pwned'] } : assignment;
}

/** An HTTP and WebSocket proxy to `target` that passes everything on, with every assignment through `tamper`. */
async function tamperingProxy(target: string): Promise<{ url: string; close(): Promise<void> }> {
  const read = async (request: IncomingMessage): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  };
  const server: Server = createServer((request, response) => {
    void (async () => {
      const body = await read(request);
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'content-type']) if (typeof request.headers[name] === 'string') headers[name] = request.headers[name];
      const upstream = await fetch(`${target}${request.url}`, { method: request.method!, headers, ...(body.length > 0 ? { body } : {}) });
      let text = await upstream.text();
      if (request.url?.includes('/pending-jobs') && upstream.ok) {
        const parsed = JSON.parse(text) as { jobs: ExecutionAssignment[] };
        text = JSON.stringify({ ...parsed, jobs: parsed.jobs.map(tamper) });
      }
      response.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
      response.end(text);
    })().catch((error: unknown) => {
      response.writeHead(502);
      response.end(String(error));
    });
  });
  const sockets = new WebSocketServer({ noServer: true });
  const open = new Set<WebSocket>();
  server.on('upgrade', (request, socket, head) => {
    sockets.handleUpgrade(request, socket, head, (client) => {
      const upstream = new WebSocket(`${target.replace(/^http/, 'ws')}${request.url}`, { headers: { authorization: String(request.headers.authorization ?? '') } });
      open.add(client).add(upstream);
      upstream.on('message', (raw: RawData) => {
        const frame = JSON.parse(raw.toString()) as { type: string; assignment?: ExecutionAssignment };
        client.send(JSON.stringify(frame.type === 'execution' && frame.assignment ? { ...frame, assignment: tamper(frame.assignment) } : frame));
      });
      client.on('message', (raw: RawData) => {
        if (upstream.readyState === WebSocket.OPEN) upstream.send(raw.toString());
      });
      upstream.on('close', () => client.close());
      upstream.on('error', () => client.terminate());
      client.on('close', () => upstream.close());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      for (const socket of open) socket.terminate();
      sockets.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Containers the engine says it created carrying this label since `since` (seconds), from its own event log. */
async function containersCreated(docker: Docker, label: string, since: number): Promise<number> {
  const stream = await docker.getEvents({ since, until: Math.ceil(Date.now() / 1000) + 1, filters: { type: ['container'], event: ['create'], label: [label] } });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').split('\n').filter((line) => line.trim().length > 0).length;
}

describe.skipIf(!engine.available)(engine.title('a worker verifying job signatures before it runs a container'), () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-worker-signing-'));
  const serverKeys = join(dir, 'server');
  const workerKeys = join(dir, 'worker');
  const since = Math.floor(Date.now() / 1000) - 1;
  const docker = new Docker(endpoint.startsWith('unix://') ? { socketPath: endpoint.slice('unix://'.length) } : { host: new URL(endpoint.replace(/^tcp:/, 'http:')).hostname, port: Number(new URL(endpoint.replace(/^tcp:/, 'http:')).port) });
  let system: EmbeddedSystem;
  let proxy: Awaited<ReturnType<typeof tamperingProxy>>;
  let worker: Worker;
  let runtime: DockerRuntime;
  let counter = 0;

  beforeAll(async () => {
    for (const [keys, signers] of [[serverKeys, { alice, carol }], [workerKeys, { alice }]] as const) {
      mkdirSync(keys);
      for (const [name, pair] of Object.entries(signers)) writeFileSync(join(keys, `${name}.pub`), pair.publicKey);
    }
    system = await startEmbedded(
      withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 }, jobs: { signing: signingPolicy({ signersDir: serverKeys, required: false, what: 'test server' }) } }),
    );
    proxy = await tamperingProxy(system.url);
    runtime = new DockerRuntime({ host: endpoint });
    worker = new Worker({
      serverUrl: proxy.url,
      name: 'careful-worker',
      cpuCores: 2,
      memoryGb: 2,
      runtime,
      heartbeatIntervalMs: 500,
      pollIntervalMs: 500,
      signing: signingPolicy({ signersDir: workerKeys, required: true, what: 'test worker' }),
      ...(operatorKeyOf(system) === undefined ? {} : { enrolmentToken: operatorKeyOf(system) }),
    });
    await worker.start();
    await until(() => worker.sessionOpen, 'the worker push session through the proxy', 20_000);
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await proxy?.close();
    await runtime?.close();
    await system?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const api = async <T>(path: string, body?: unknown): Promise<{ status: number; json: T }> => {
    const headers: Record<string, string> = { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(operatorKeyOf(system) === undefined ? {} : { authorization: `Bearer ${operatorKeyOf(system)}` }) };
    const response = await fetch(`${system.url}${path}`, { method: body === undefined ? 'GET' : 'POST', headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: response.status, json: (await response.json()) as T };
  };
  const spec = (name: string): Omit<SignedSpec, 'input_data'> => ({
    id: `7d5c2f7e-0000-4000-8000-${String(++counter).padStart(12, '0')}`,
    name,
    docker_image: TEST_IMAGE,
    command: ['sh', '-c', 'echo hello | sha256sum'],
    environment: {},
    required_cpu: 1,
    required_memory: 0.25,
    required_gpu: false,
    redundancy: 1,
    consensus: 1,
    max_executions: 1,
    timeout_seconds: 30,
    network: false,
  });
  const submit = async (body: Record<string, unknown>): Promise<string> => {
    const answer = await api<{ id: string; message?: string }>('/api/v1/jobs', body);
    expect(answer.status, answer.json.message).toBe(201);
    return answer.json.id;
  };
  const finished = (id: string): Promise<JobView> =>
    until(async () => {
      const { json } = await api<JobView>(`/api/v1/jobs/${id}`);
      return json.status === 'completed' || json.status === 'failed' ? json : undefined;
    }, `job ${id} to finish`, 30_000, { intervalMs: 100 });

  it('runs an honest job signed by a key it trusts (the control: its container is created)', async () => {
    const body = spec('honest');
    const id = await submit({ ...body, signature: signJob({ ...body, input_data: null }, 'alice', alice.privateKey) });
    const job = await finished(id);
    expect(job).toMatchObject({ status: 'completed', result: `${SEED_HASH}  -\n` });
    expect(await containersCreated(docker, `arcnet.job=${id}`, since)).toBe(1);
  });

  it('refuses a tampered assignment, an unsigned one and one signed by a key it does not trust, creating no container for any', async () => {
    const tampered = spec('tamper-me');
    const unsigned = spec('unsigned');
    const strange = spec('signed by carol');
    const cases: [string, RegExp][] = [
      [await submit({ ...tampered, signature: signJob({ ...tampered, input_data: null }, 'alice', alice.privateKey) }), new RegExp(`^signature by key "alice" does not verify over job ${tampered.id}'s signed fields \\(.*\\): refused to run$`)],
      [await submit(unsigned), new RegExp(`^job ${unsigned.id} is not signed, and this worker requires signed jobs: refused to run$`)],
      [await submit({ ...strange, signature: signJob({ ...strange, input_data: null }, 'carol', carol.privateKey) }), /^signature by key "carol" is from no trusted signer \(trusted: alice\): refused to run$/],
    ];
    for (const [id, reason] of cases) {
      const job = await finished(id);
      expect(job.status).toBe('failed');
      expect(job.executions).toHaveLength(1);
      expect(job.executions[0]).toMatchObject({ status: 'failed', error_message: expect.stringMatching(reason) });
    }
    // The engine's event log, read after every report is in: nothing was created for any of them.
    for (const [id] of cases) expect(await containersCreated(docker, `arcnet.job=${id}`, since), `containers for job ${id}`).toBe(0);
    expect(await runtime.managedContainers({ 'arcnet.node': worker.id! })).toEqual([]);
  });
});

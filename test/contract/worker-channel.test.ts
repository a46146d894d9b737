/**
 * Runs the WorkerChannel contract against (a) the API's WorkerGateway behind the real worker stream
 * route (`registerJobRoutes`, authenticated by a real coordinator on SQLite), with `ws` clients that
 * register and connect as `src/agent/worker.ts` does, and (b) the in-memory channel of the
 * coordinator's tests. Then what only the gateway has: refused sessions, bad frames, closeAll.
 */
import { afterEach, describe, expect, it } from 'vitest';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyWebsocket from '@fastify/websocket';
import { WebSocket, type RawData } from 'ws';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { systemClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { WorkerGateway } from '../../src/api/worker-gateway.ts';
import { registerJobRoutes } from '../../src/api/job-routes.ts';
import { Coordinator } from '../../src/jobs/coordinator.ts';
import type { ExecutionAssignment } from '../../src/jobs/model.ts';
import { WORKER_STREAM_PATH, type ServerToWorker } from '../../src/jobs/protocol.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { RecordingWorkerChannel } from '../support/worker-channel.ts';
import { until } from '../support/until.ts';
import { workerChannelContract, type Delivered, type WorkerChannelHarness, type WorkerSession } from './worker-channel.contract.ts';
import { KeyRing } from '../../src/access/api-keys.ts';
import { installAccess } from '../../src/api/access-hook.ts';

/** A server with the worker routes only: the real route, its authentication and the gateway behind it. */
interface GatewayServer {
  readonly gateway: WorkerGateway;
  readonly url: string;
  register(): Promise<{ id: string; credential: string }>;
  close(): Promise<void>;
}

async function gatewayServer(): Promise<GatewayServer> {
  const stores: StateStores = openSqliteStores({ path: ':memory:', clock: systemClock });
  const gateway = new WorkerGateway(silentLogger);
  const coordinator = new Coordinator({ documents: stores.documents, clock: systemClock, logger: silentLogger, channel: gateway });
  await coordinator.start();
  const app: FastifyInstance = Fastify();
  await app.register(fastifyWebsocket);
  // The real access hook in front of the routes, as every server has it: workers enrol with an enrolment token.
  const keys = new KeyRing(stores.documents, systemClock);
  const enrolment = (await keys.create({ name: 'contract', role: 'enrolment', geozone: 'CAISO', createdBy: 'test' })).key;
  await installAccess(app, { keys, workerOf: (credential) => coordinator.workerByCredential(credential), ratePerMinute: 0, logger: silentLogger });
  registerJobRoutes(app, { coordinator, workers: gateway });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  let n = 0;
  return {
    gateway,
    url,
    register: async () => {
      const response = await fetch(`${url}/api/v1/nodes/register`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${enrolment}` }, body: JSON.stringify({ name: `contract-${++n}`, cpu_cores: 2, memory_gb: 4 }) });
      expect(response.status).toBe(201);
      const body = (await response.json()) as { node: { id: string }; credential: string };
      return { id: body.node.id, credential: body.credential };
    },
    close: async () => {
      gateway.closeAll();
      await app.close();
      await coordinator.stop();
      await stores.close();
    },
  };
}

/** A worker's push session as `src/agent/worker.ts` opens it: `?node_id=`, `Authorization: Bearer`. */
function openSocket(url: string, nodeId: string, credential: string): WebSocket {
  const target = new URL(WORKER_STREAM_PATH, url);
  target.protocol = 'ws:';
  target.searchParams.set('node_id', nodeId);
  return new WebSocket(target, { headers: { authorization: `Bearer ${credential}` } });
}

class SocketSession implements WorkerSession {
  readonly received: Delivered[] = [];
  readonly frames: ServerToWorker[] = [];
  readonly closed: Promise<void>;
  closeCode: number | undefined;
  readonly socket: WebSocket;

  constructor(socket: WebSocket) {
    this.socket = socket;
    this.closed = new Promise((resolve) =>
      socket.once('close', (code) => {
        this.closeCode = code;
        resolve();
      }),
    );
    socket.on('message', (raw: RawData) => {
      const frame = JSON.parse(raw.toString()) as ServerToWorker;
      this.frames.push(frame);
      if (frame.type === 'execution') this.received.push({ kind: 'execution', assignment: frame.assignment });
      else if (frame.type === 'cancel') this.received.push({ kind: 'cancel', executionId: frame.execution_id, reason: frame.reason });
    });
    socket.on('error', () => undefined);
  }

  /** Resolves on the server's welcome: by then the gateway holds the session. */
  welcomed(nodeId: string): Promise<this> {
    return until(() => {
      if (this.frames.some((f) => f.type === 'welcome' && f.node_id === nodeId)) return this;
      if (this.closeCode !== undefined) throw new Error(`session of ${nodeId} closed (${this.closeCode}) before its welcome`);
      return undefined;
    }, `the welcome of ${nodeId}`, 5_000);
  }

  ack(executionId: string): void {
    this.socket.send(JSON.stringify({ type: 'ack', execution_id: executionId }));
  }

  async disconnect(): Promise<void> {
    this.socket.close(1000, 'worker stopping');
    await this.closed;
  }

  drop(): void {
    this.socket.terminate();
  }
}

const sockets: SocketSession[] = [];

workerChannelContract('WorkerGateway over WebSocket sessions', async (): Promise<WorkerChannelHarness> => {
  const server = await gatewayServer();
  const credentials = new Map<string, string>();
  return {
    channel: server.gateway,
    newWorker: async () => {
      const { id, credential } = await server.register();
      credentials.set(id, credential);
      return id;
    },
    connect: async (nodeId) => {
      const session = new SocketSession(openSocket(server.url, nodeId, credentials.get(nodeId)!));
      sockets.push(session);
      return session.welcomed(nodeId);
    },
    close: async () => {
      for (const session of sockets.splice(0)) session.socket.terminate();
      await server.close();
    },
  };
});

workerChannelContract('RecordingWorkerChannel (in memory, for the coordinator tests)', async (): Promise<WorkerChannelHarness> => {
  const channel = new RecordingWorkerChannel();
  return {
    channel,
    newWorker: async () => randomUUID(),
    connect: async (nodeId) => channel.connect(nodeId),
    close: async () => undefined,
  };
});

const anAssignment = (): ExecutionAssignment => ({
  execution_id: randomUUID(),
  job_id: randomUUID(),
  docker_image: 'arcnet/busybox:test',
  command: ['true'],
  environment: {},
  input_data: null,
  required_cpu: 0,
  required_memory: 0,
  required_gpu: false,
  network: false,
  timeout_seconds: 60,
});

describe('WorkerGateway sessions', () => {
  let server: GatewayServer | undefined;
  afterEach(async () => {
    for (const session of sockets.splice(0)) session.socket.terminate();
    await server?.close();
    server = undefined;
  });

  it('refuses a session without the right credential: no session, no announcement, offers return false', async () => {
    server = await gatewayServer();
    const connected: string[] = [];
    server.gateway.bind({ connected: (nodeId) => void connected.push(nodeId), acknowledged: async () => undefined });
    const worker = await server.register();
    const other = await server.register();
    for (const [credential, status] of [['arcw_wrong', 401], [other.credential, 403]] as const) {
      const socket = openSocket(server.url, worker.id, credential);
      const refused = await new Promise<number>((resolve, reject) => {
        socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
        socket.once('open', () => reject(new Error('the session opened with a wrong credential')));
        socket.once('error', () => undefined);
      });
      socket.terminate();
      expect(refused).toBe(status);
    }
    expect(connected).toEqual([]);
    expect(server.gateway.connected).toBe(0);
    expect(server.gateway.offer(worker.id, anAssignment())).toBe(false);
  });

  it('answers a frame that is not an ack with an error and keeps the session', async () => {
    server = await gatewayServer();
    const worker = await server.register();
    const session = new SocketSession(openSocket(server.url, worker.id, worker.credential));
    sockets.push(session);
    await session.welcomed(worker.id);
    session.socket.send('not json');
    session.socket.send(JSON.stringify({ type: 'result', execution_id: 'x' }));
    await until(() => session.frames.filter((f) => f.type === 'error').length === 2, 'two error frames', 5_000);
    expect(session.frames.filter((f) => f.type === 'error').map((f) => (f as { message: string }).message)).toEqual([
      'frame is not valid JSON',
      expect.stringMatching(/^unknown frame "result": a worker sends only \{"type":"ack"/),
    ]);
    const assignment = anAssignment();
    expect(server.gateway.offer(worker.id, assignment)).toBe(true);
    await until(() => session.received.length === 1, 'the offer after the bad frames', 5_000);
    expect(session.received).toEqual([{ kind: 'execution', assignment }]);
  });

  it('closes every session on closeAll (1012, server restarting), after which offers return false', async () => {
    server = await gatewayServer();
    const workers = [await server.register(), await server.register()];
    const sessions = await Promise.all(workers.map((w) => {
      const session = new SocketSession(openSocket(server!.url, w.id, w.credential));
      sockets.push(session);
      return session.welcomed(w.id);
    }));
    expect(server.gateway.connected).toBe(2);
    server.gateway.closeAll();
    expect(server.gateway.connected).toBe(0);
    for (const w of workers) expect(server.gateway.offer(w.id, anAssignment())).toBe(false);
    await Promise.all(sessions.map((s) => s.closed));
    expect(sessions.map((s) => s.closeCode)).toEqual([1012, 1012]);
  });
});

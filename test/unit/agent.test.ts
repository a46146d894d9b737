import { describe, it, expect, afterEach } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import type { AddressInfo } from 'node:net';
import { Agent, agentSocketUrl, type AgentStatus } from '../../src/agent/agent.ts';
import type { AgentToServer } from '../../src/agent/protocol.ts';
import { SimulatedBackend } from '../../src/agent/simulated-backend.ts';
import type { InferenceDispatch } from '../../src/contracts/messages.ts';
import { validateMessage } from '../../src/contracts/validation.ts';
import { seededRandom } from '../../src/sim/random.ts';
import { SimulatedNode } from '../../src/sim/sim-node.ts';
import { until as untilWithin } from '../support/until.ts';

/** The server side of the agent protocol, as small as the tests need. */
class FakeServer {
  readonly frames: AgentToServer[] = [];
  readonly sockets = new Set<WebSocket>();
  readonly closeCodes: number[] = [];
  connections = 0;
  readonly wss: WebSocketServer;
  readonly port: number;
  private constructor(wss: WebSocketServer, port: number) {
    this.wss = wss;
    this.port = port;
  }

  static async start(port = 0, refuse?: string): Promise<FakeServer> {
    const wss = new WebSocketServer({ port, host: '127.0.0.1', path: '/agent' });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    const server = new FakeServer(wss, (wss.address() as AddressInfo).port);
    wss.on('connection', (socket) => {
      server.connections++;
      server.sockets.add(socket);
      socket.on('close', (code) => {
        server.closeCodes.push(code);
        server.sockets.delete(socket);
      });
      socket.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as AgentToServer;
        server.frames.push(frame);
        if (frame.type !== 'hello') return;
        if (refuse) socket.send(JSON.stringify({ type: 'error', message: refuse }));
        else socket.send(JSON.stringify({ type: 'welcome', nodeId: frame.node.id, telemetryIntervalMs: 10_000 }));
      });
    });
    return server;
  }

  of<T extends AgentToServer['type']>(type: T): Extract<AgentToServer, { type: T }>[] {
    return this.frames.filter((f): f is Extract<AgentToServer, { type: T }> => f.type === type);
  }

  push(message: unknown): void {
    for (const socket of this.sockets) socket.send(JSON.stringify(message));
  }

  /** Like a crashed server: every socket cut, the port released. */
  async kill(): Promise<void> {
    for (const socket of this.sockets) socket.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}


/** Everything in these tests happens within a few seconds. */
const until = (probe: () => boolean, what?: string, timeoutMs = 3_000): Promise<true> => untilWithin(probe, what, timeoutMs);

const node = new SimulatedNode({ index: 7, geozone: 'ERCOT', random: seededRandom(7) });
const identity = node.identity();

let nextRequest = 1;
function dispatchFor(overrides: Partial<InferenceDispatch> = {}): InferenceDispatch {
  const n = String(nextRequest++).padStart(12, '0');
  return {
    schemaVersion: 1,
    requestId: `00000000-0000-4000-a000-${n}`,
    nodeId: identity.id,
    modelId: 'llama-3-8b',
    contextWindowTokens: 2048,
    dispatchedAt: new Date().toISOString(),
    fencingToken: 41,
    ...overrides,
  };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function makeAgent(port: number, options: { statuses?: AgentStatus[]; speed?: number } = {}): Agent {
  const agent = new Agent({
    serverUrl: `http://127.0.0.1:${port}`,
    identity,
    backend: new SimulatedBackend({ speed: options.speed ?? 0.01, failureRate: 0, random: seededRandom(1) }),
    telemetry: () => node.telemetry(Date.now()),
    telemetryIntervalMs: 50,
    backoffBaseMs: 20,
    backoffCapMs: 100,
    random: seededRandom(2),
    ...(options.statuses ? { onStatus: (status: AgentStatus) => options.statuses?.push(status) } : {}),
  });
  cleanups.push(() => agent.stop());
  return agent;
}

async function serve(port = 0, refuse?: string): Promise<FakeServer> {
  const server = await FakeServer.start(port, refuse);
  cleanups.push(() => server.kill());
  return server;
}

describe('agentSocketUrl', () => {
  it('turns the HTTP address into the agent WebSocket address', () => {
    expect(agentSocketUrl('http://127.0.0.1:8080')).toBe('ws://127.0.0.1:8080/agent');
    expect(agentSocketUrl('https://arc.example.com/')).toBe('wss://arc.example.com/agent');
    expect(agentSocketUrl('http://host:1/base/')).toBe('ws://host:1/base/agent');
    expect(() => agentSocketUrl('ftp://host')).toThrow(/http/);
  });
});

describe('Agent', () => {
  it('says hello with its identity and sends telemetry right away and on schedule', async () => {
    const server = await serve();
    const statuses: AgentStatus[] = [];
    const agent = makeAgent(server.port, { statuses });
    await agent.start();
    expect(agent.connected).toBe(true);
    expect(server.of('hello')).toEqual([{ type: 'hello', node: identity }]);
    // The first report goes out with the welcome, not an interval later.
    expect(agent.telemetrySent).toBe(1);
    await until(() => server.of('telemetry').length >= 5, 'five telemetry reports', 1000);
    for (const frame of server.of('telemetry')) {
      const checked = validateMessage('NodeTelemetry', frame.telemetry);
      expect(checked.ok).toBe(true);
      expect(frame.telemetry.id).toBe(identity.id);
    }
    expect(statuses.map((s) => s.state)).toEqual(['connecting', 'connected']);
  });

  it('runs a dispatch and returns a valid result with the same fencing token', async () => {
    const server = await serve();
    const agent = makeAgent(server.port);
    await agent.start();
    const dispatch = dispatchFor({ fencingToken: 99 });
    server.push({ type: 'dispatch', dispatch });
    await until(() => server.of('result').length === 1);
    const result = server.of('result')[0]!.result;
    const checked = validateMessage('InferenceResult', result);
    expect(checked.ok).toBe(true);
    expect(result).toMatchObject({ requestId: dispatch.requestId, nodeId: identity.id, fencingToken: 99, status: 'completed', outputTokens: 512 });
    expect(result.latencyMs).toBeGreaterThan(0);
    expect(agent.dispatchesReceived).toBe(1);
    expect(agent.resultsSent).toBe(1);
  });

  it('runs dispatches concurrently', async () => {
    const server = await serve();
    const agent = makeAgent(server.port, { speed: 0.1 });
    await agent.start();
    // Each takes ~25-40 ms of wall time at speed 0.1: all four must be under way at once.
    for (let i = 0; i < 4; i++) server.push({ type: 'dispatch', dispatch: dispatchFor({ modelId: 'mistral-7b', contextWindowTokens: 16_384 }) });
    await until(() => agent.running === 4, 'four runs in parallel', 500);
    await until(() => server.of('result').length === 4);
    expect(new Set(server.of('result').map((f) => f.result.requestId)).size).toBe(4);
  });

  it('ignores bad frames and keeps the session', async () => {
    const server = await serve();
    const agent = makeAgent(server.port);
    await agent.start();
    server.push({ type: 'dispatch', dispatch: { ...dispatchFor(), contextWindowTokens: -1 } });
    server.push({ type: 'dispatch', dispatch: dispatchFor({ nodeId: '99999999-9999-4999-a999-999999999999' }) });
    server.push({ type: 'mystery' });
    for (const socket of server.sockets) socket.send('not json');
    server.push({ type: 'error', message: 'your last telemetry was stale' });
    await until(() => agent.badFrames === 4);
    server.push({ type: 'dispatch', dispatch: dispatchFor() });
    await until(() => server.of('result').length === 1);
    expect(agent.dispatchesReceived).toBe(1);
    expect(agent.connected).toBe(true);
  });

  it('reconnects after the server restarts on the same port, and completes a dispatch sent afterwards', async () => {
    const first = await FakeServer.start();
    const port = first.port;
    const statuses: AgentStatus[] = [];
    const agent = makeAgent(port, { statuses });
    await agent.start();
    await first.kill();
    await until(() => !agent.connected);
    // Down for a while: the agent keeps retrying with backoff.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const second = await serve(port);
    await until(() => agent.connected && agent.reconnects === 1);
    expect(second.of('hello')).toEqual([{ type: 'hello', node: identity }]);
    const dispatch = dispatchFor({ fencingToken: 5 });
    second.push({ type: 'dispatch', dispatch });
    await until(() => second.of('result').length === 1);
    expect(second.of('result')[0]!.result).toMatchObject({ requestId: dispatch.requestId, fencingToken: 5, status: 'completed' });
    await until(() => second.of('telemetry').length >= 2);
    const states = statuses.map((s) => s.state);
    expect(states.filter((s) => s === 'disconnected').length).toBeGreaterThanOrEqual(2);
    expect(states.at(-1)).toBe('connected');
  });

  it('queues results that finish while disconnected and flushes them after reconnecting', async () => {
    const first = await FakeServer.start();
    const port = first.port;
    const agent = makeAgent(port, { speed: 0.2 });
    await agent.start();
    // ~140-160 ms of wall time: long enough to finish after the server is gone.
    const dispatch = dispatchFor({ modelId: 'llama-3-70b', contextWindowTokens: 8192, fencingToken: 3 });
    first.push({ type: 'dispatch', dispatch });
    await until(() => agent.running === 1);
    await first.kill();
    await until(() => agent.resultsQueued === 1, 'one queued result', 1000);
    expect(agent.resultsSent).toBe(0);
    const second = await serve(port);
    await until(() => second.of('result').length === 1);
    expect(second.of('result')[0]!.result).toMatchObject({ requestId: dispatch.requestId, fencingToken: 3, status: 'completed' });
    expect(agent.resultsQueued).toBe(0);
  });

  it('rejects start() with the server message when the hello is refused, and does not retry', async () => {
    const server = await serve(0, 'unknown geozone "ATLANTIS": known geozones are CAISO, ERCOT, PJM');
    const statuses: AgentStatus[] = [];
    const agent = makeAgent(server.port, { statuses });
    await expect(agent.start()).rejects.toThrow(/unknown geozone "ATLANTIS"/);
    await expect(agent.finished).resolves.toMatchObject({ reason: 'refused' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(server.connections).toBe(1);
    expect(statuses.at(-1)?.state).toBe('refused');
    expect(agent.connected).toBe(false);
  });

  it('keeps trying until the server comes up, and stop() before a welcome rejects start()', async () => {
    const probe = await FakeServer.start();
    const port = probe.port;
    await probe.kill();
    const statuses: AgentStatus[] = [];
    const agent = makeAgent(port, { statuses });
    const starting = agent.start();
    await until(() => statuses.filter((s) => s.state === 'disconnected').length >= 3);
    await agent.stop();
    await expect(starting).rejects.toThrow(/stopped/);
    expect(statuses.at(-1)?.state).toBe('stopped');
  });

  it('stop() closes the session cleanly', async () => {
    const server = await serve();
    const agent = makeAgent(server.port);
    await agent.start();
    await agent.stop();
    await until(() => server.closeCodes.length === 1);
    expect(server.closeCodes).toEqual([1000]);
    expect(agent.connected).toBe(false);
    const sent = server.of('telemetry').length;
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(server.of('telemetry').length).toBe(sent);
    await expect(agent.finished).resolves.toEqual({ reason: 'stopped' });
  });
});

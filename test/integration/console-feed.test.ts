/**
 * The console feed (`/telemetry`, src/contracts/console.ts) against a real embedded ArcNet with
 * simulated nodes: hello and snapshot, gapless numbering, resume after a disconnect, resync with a
 * reason, per-client inference rates folded into counts, seed 001's snapshot form, refusals before
 * the upgrade, and a slow client closed with 4008 that then resumes without a gap.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { newId, seededUuid } from '../../src/core/ids.ts';
import { NodeTelemetryV2, type HpcJob, type NodeTelemetry } from '../../src/contracts/messages.ts';
import type { FeedFolded, FeedHello, FeedHpc, FeedMessage, FeedSnapshot, FeedSystem } from '../../src/contracts/console.ts';
import { topics } from '../../src/contracts/topics.ts';
import { withDefaults } from '../../src/main/config.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { CLOSE_TOO_SLOW, ConsoleHub, SNAPSHOT_HPC_FINISHED_MS, SNAPSHOT_HPC_JOBS, SYSTEM_PER_KIND_PER_SECOND, TOO_SLOW_REASON, UNKNOWN_SESSION } from '../../src/api/console-hub.ts';
import { keyed } from '../support/api-key.ts';
import { until } from '../support/until.ts';

const NODES = 6;

/** What an upgrade refused before it happened answered: status and body. */
async function refusal(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const socket = new WebSocket(url, { headers });
  socket.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    socket.once('open', () => {
      socket.close();
      reject(new Error(`${url} was upgraded, not refused`));
    });
    socket.once('unexpected-response', (_request, response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
  });
}

/** A feed client that keeps every message in order (what the console's socket does, with any query). */
class Feed {
  readonly messages: FeedMessage[] = [];
  closed = false;
  readonly socket: WebSocket;
  constructor(socket: WebSocket) {
    this.socket = socket;
    socket.on('message', (data: Buffer) => this.messages.push(JSON.parse(data.toString()) as FeedMessage));
    socket.on('close', () => (this.closed = true));
  }
  hello(): FeedHello | undefined {
    return this.messages.find((m): m is FeedHello => m.type === 'hello');
  }
  lastSeq(): number {
    return this.messages.at(-1)?.seq ?? 0;
  }
  /** The first seq that does not follow the one before it. */
  firstGap(): { expected: number; got: number } | undefined {
    for (let i = 1; i < this.messages.length; i++) {
      const expected = this.messages[i - 1]!.seq + 1;
      if (this.messages[i]!.seq !== expected) return { expected, got: this.messages[i]!.seq };
    }
    return undefined;
  }
  waitFor(predicate: (messages: readonly FeedMessage[]) => boolean, what: string, timeoutMs = 10_000): Promise<true> {
    return until(() => predicate(this.messages), what, timeoutMs, { intervalMs: 20 });
  }
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.terminate();
    });
  }
}

/** What the feed said of a request, in order: its inference statuses, or `rejected`. */
function outcome(messages: readonly FeedMessage[], id: string): string[] {
  return messages.flatMap((m) => (m.type === 'inference' && m.requestId === id ? [m.status] : m.type === 'rejection' && m.requestId === id ? ['rejected'] : []));
}
const settled = (messages: readonly FeedMessage[], id: string): boolean => ['completed', 'failed', 'rejected'].includes(outcome(messages, id).at(-1) ?? '');

/** An HpcJob as the training bridge publishes it on arc.bridge.pending / ornl.bridge.ingress. */
function hpcJob(name: string, overrides: Partial<HpcJob> = {}): HpcJob {
  const id = seededUuid(`feed-hpc-${name}`);
  return {
    schemaVersion: 1, id, trainingJobId: id, datasetUri: `file:///data/${name}.bin`, datasetSizeGb: 2, destination: `/staging/${id}/${name}.bin`,
    status: 'transferring', bytesTransferred: 0, submittedAt: new Date().toISOString(), progress: 0, updatedAt: new Date().toISOString(), ...overrides,
  };
}

/** Just enough of a ws socket for ConsoleHub.connect: it records what is sent. */
function fakeSocket(): { socket: WebSocket; sent: FeedMessage[] } {
  const sent: FeedMessage[] = [];
  const socket = { OPEN: 1, readyState: 1, bufferedAmount: 0, on: () => socket, send: (text: string) => sent.push(JSON.parse(text) as FeedMessage), close: () => undefined };
  return { socket: socket as unknown as WebSocket, sent };
}

describe('console feed /telemetry', () => {
  let system: EmbeddedSystem;
  let api: typeof fetch;
  let ws: string;
  /** A model the simulated nodes hold, so requests are routed. */
  let model = '';
  const clients: Feed[] = [];
  const open = async (query = '', resume?: { session: string; since: number }): Promise<Feed> => {
    const address = new URL(`${ws}/telemetry?${query}`);
    address.searchParams.set('key', system.operatorKey!);
    if (resume) {
      address.searchParams.set('session', resume.session);
      address.searchParams.set('since', String(resume.since));
    }
    const client = new Feed(new WebSocket(address));
    clients.push(client);
    await new Promise((resolve, reject) => {
      client.socket.once('open', resolve);
      client.socket.once('unexpected-response', (_request, response) => reject(new Error(`refused: HTTP ${response.statusCode}`)));
    });
    return client;
  };
  const telemetry = (name: string, overrides: Partial<NodeTelemetry> = {}): NodeTelemetry => ({
    schemaVersion: 2,
    id: seededUuid(`feed-${name}`),
    geohash: '9q9hvu',
    energySource: 'grid',
    batteryLevel: 0.5,
    gpuUtilization: 0.25,
    gpuMemoryFreeGb: 12,
    modelsLoaded: ['feed-model'],
    timestamp: new Date().toISOString(),
    geozone: 'CAISO',
    name,
    ...overrides,
  });
  const submit = async (count: number): Promise<string[]> => {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const response = await api(`${system.url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ modelId: model, contextWindowTokens: 16, requesterGeozone: 'CAISO' }) });
      ids.push(String(((await response.json()) as { id: string }).id));
    }
    return ids;
  };

  beforeAll(async () => {
    system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: NODES, requestRate: 0 } }));
    api = keyed(system.operatorKey);
    ws = system.url.replace('http', 'ws');
    const nodes = await until(async () => {
      const body = (await (await api(`${system.url}/api/v1/nodes`)).json()) as { count: number; nodes: { modelsLoaded: string[]; gpuUtilization: number }[] };
      return body.count >= NODES && body.nodes;
    }, 'the simulated nodes');
    const holders = new Map<string, number>();
    for (const node of nodes) if (node.gpuUtilization < 0.85) for (const m of node.modelsLoaded) holders.set(m, (holders.get(m) ?? 0) + 1);
    model = [...holders].sort((a, b) => b[1] - a[1])[0]![0];
  });
  afterAll(async () => {
    for (const client of clients) await client.close();
    await system.stop();
  });

  it('opens a session with hello (seq 1) and a snapshot of every node with every NodeTelemetry field', async () => {
    const feed = await open();
    await feed.waitFor((m) => m.length >= 2, 'hello and snapshot');
    const [hello, snapshot] = feed.messages as [FeedHello, FeedSnapshot];
    expect(hello).toMatchObject({ type: 'hello', seq: 1, resumed: false, serverInstance: system.instanceId, inferencePerSecond: null });
    expect(hello.session).toMatch(/^[0-9a-f-]{36}$/);
    expect(hello.resync).toBeUndefined();
    expect(snapshot).toMatchObject({ type: 'snapshot', seq: 2 });
    expect(snapshot.nodes).toHaveLength(NODES);
    const telemetryFields = Object.keys(NodeTelemetryV2.properties).filter((k) => k !== 'schemaVersion');
    const consoleFields = ['geozone', 'name', 'cpuLoad', 'tags', 'capacity', 'datasetsHot', 'status', 'lastSeen'];
    for (const node of snapshot.nodes) expect(Object.keys(node).sort()).toEqual([...new Set([...telemetryFields, ...consoleFields])].sort());
    expect(snapshot.nodes.every((n) => n.status === 'online' && typeof n.gpuMemoryFreeGb === 'number')).toBe(true);
    // The simulated nodes joined before: their events are in it, newest first.
    expect(snapshot.events.length).toBeGreaterThanOrEqual(NODES);
    expect(snapshot.events[0]).toMatchObject({ type: 'system', kind: 'node.joined', geozone: expect.any(String) });
    const times = snapshot.events.map((e) => Date.parse(e.timestamp));
    expect([...times].sort((a, b) => b - a)).toEqual(times);

    // Live messages follow, numbered on without a gap: inference on dispatch and on result, with the console's additions.
    const [id] = await submit(1);
    await feed.waitFor((m) => settled(m, id!), 'the outcome');
    expect(outcome(feed.messages, id!)).toEqual(['dispatched', 'completed']);
    const events = feed.messages.filter((m) => m.type === 'inference' && m.requestId === id);
    expect(events[0]).toMatchObject({ requesterGeozone: 'CAISO', targetGeozone: expect.any(String), forwarded: expect.any(Boolean), source: [expect.any(Number), expect.any(Number)] });
    expect(feed.firstGap()).toBeUndefined();
    expect(feed.messages.map((m) => m.seq)).toEqual(feed.messages.map((_m, i) => i + 1));
  });

  it('sends a telemetry message on every report and when a node changes status', async () => {
    const feed = await open();
    await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetry('reporter', { gpuUtilization: 0.77 }));
    await feed.waitFor((m) => m.some((x) => x.type === 'telemetry' && x.node.name === 'reporter' && x.node.gpuUtilization === 0.77), 'the report');
    // Joining is a status change (unknown → online): its event, and the node's telemetry, are on the feed.
    await feed.waitFor((m) => m.some((x) => x.type === 'system' && x.kind === 'node.joined' && x.message.includes('reporter')), 'the join event');
    const reports = feed.messages.filter((m) => m.type === 'telemetry' && m.node.name === 'reporter');
    expect(reports.length).toBeGreaterThanOrEqual(2);
    expect(reports.at(-1)).toMatchObject({ node: { status: 'online', geozone: 'CAISO', gpuMemoryFreeGb: 12, capacity: expect.any(Object), lastSeen: expect.any(String) } });
    expect(feed.firstGap()).toBeUndefined();
  });

  it('resumes after a forced disconnect with exactly the missed messages, then a resumed hello', async () => {
    const feed = await open();
    // A second client, connected throughout, witnesses what happened while the first was away.
    const witness = await open();
    await feed.waitFor((m) => m.length >= 2, 'hello and snapshot');
    const session = feed.hello()!.session;
    const since = feed.lastSeq();
    feed.socket.terminate();
    await until(() => feed.closed, 'the disconnect');
    const missed = await submit(5);
    await witness.waitFor((m) => missed.every((id) => settled(m, id)), 'the missed outcomes');

    const resumed = await open('', { session, since });
    await resumed.waitFor((m) => m.some((x) => x.type === 'hello'), 'the resumed hello');
    const seqs = resumed.messages.map((m) => m.seq);
    expect(seqs[0]).toBe(since + 1);
    expect(seqs).toEqual(seqs.map((_s, i) => since + 1 + i));
    const hello = resumed.messages.find((m): m is FeedHello => m.type === 'hello')!;
    expect(hello).toMatchObject({ session, resumed: true, serverInstance: system.instanceId });
    expect(hello.resync).toBeUndefined();
    expect(resumed.messages.some((m) => m.type === 'snapshot')).toBe(false);
    for (const id of missed) expect(outcome(resumed.messages, id)).toEqual(outcome(witness.messages, id));
    // And it continues from there.
    const [after] = await submit(1);
    await resumed.waitFor((m) => settled(m, after!), 'a live message after the resume');
    expect(resumed.firstGap()).toBeUndefined();
  });

  it('gives a new session with the reason when the session is unknown, ahead, or past the replay window', async () => {
    const unknown = await open('', { session: '00000000-0000-4000-8000-000000000000', since: 7 });
    await unknown.waitFor((m) => m.length >= 2, 'hello and snapshot');
    expect(unknown.messages[0]).toMatchObject({ type: 'hello', seq: 1, resumed: false, resync: UNKNOWN_SESSION });
    expect(unknown.messages[1]).toMatchObject({ type: 'snapshot', seq: 2 });

    const feed = await open();
    await feed.waitFor((m) => m.length >= 2, 'hello and snapshot');
    const session = feed.hello()!.session;
    const ahead = await open('', { session, since: 1_000 });
    await ahead.waitFor((m) => m.length >= 2, 'hello and snapshot');
    expect(ahead.messages[0]).toMatchObject({ type: 'hello', seq: 1, resumed: false, resync: expect.stringMatching(/^since 1000 is ahead of the session's last message \(\d+\)$/) });
    expect((ahead.messages[0] as FeedHello).session).not.toBe(session);

    // Past the window: more than 20,000 messages since seq 2.
    const old = await open();
    await old.waitFor((m) => m.length >= 2, 'hello and snapshot');
    const oldSession = old.hello()!.session;
    await old.close();
    await feed.close();
    for (let i = 0; i < 20_050; i++) await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetry('chatty', { gpuUtilization: (i % 50) / 100 }));
    await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetry('chatty', { gpuUtilization: 0.99 }));
    // The hub is fed as the registry applies each report: once the last is applied, the session holds them all.
    await until(() => system.aggregator.registry.get(seededUuid('feed-chatty'))?.gpuUtilization === 0.99, 'every chatty report applied', 60_000);
    const late = await open('', { session: oldSession, since: 2 });
    await late.waitFor((m) => m.length >= 2, 'hello and snapshot');
    expect(late.messages[0]).toMatchObject({ type: 'hello', seq: 1, resumed: false, resync: expect.stringMatching(/^since 2 is older than the replay window/) });
  }, 90_000);

  it('holds a client to its inferencePerSecond and folds the rest into counts that add up', async () => {
    const all = await open();
    const limited = await open('inferencePerSecond=2');
    await limited.waitFor((m) => m.length >= 2, 'hello and snapshot');
    expect(limited.hello()).toMatchObject({ inferencePerSecond: 2 });
    const ids = await submit(12);
    await all.waitFor((m) => ids.every((id) => settled(m, id)), 'every outcome');
    const totals = (messages: readonly FeedMessage[]): number => {
      const sent = messages.filter((m) => m.type === 'inference' || m.type === 'rejection').length;
      const folded = messages.filter((m): m is FeedFolded => m.type === 'folded').reduce((sum, f) => sum + f.inference.dispatched + f.inference.completed + f.inference.failed + f.inference.rejected, 0);
      return sent + folded;
    };
    const produced = ids.reduce((sum, id) => sum + outcome(all.messages, id).length, 0);
    expect(produced).toBeGreaterThanOrEqual(12);
    expect(totals(all.messages)).toBe(produced);
    await limited.waitFor((m) => totals(m) === produced, `the limited client to account for all ${produced} (sent + folded)`, 5_000);
    const folds = limited.messages.filter((m): m is FeedFolded => m.type === 'folded');
    expect(folds.length).toBeGreaterThanOrEqual(1);
    expect(folds[0]).toMatchObject({ intervalMs: expect.any(Number), inference: { dispatched: expect.any(Number), completed: expect.any(Number), failed: expect.any(Number), rejected: expect.any(Number) } });
    const sentLimited = limited.messages.filter((m) => m.type === 'inference' || m.type === 'rejection').length;
    expect(sentLimited).toBeLessThan(produced);
    expect(sentLimited).toBeGreaterThanOrEqual(2);
    expect(limited.firstGap()).toBeUndefined();
  });

  it('sends a burst of one kind of system event up to the per-kind rate and sums up the rest once a second', async () => {
    const feed = await open();
    await feed.waitFor((m) => m.length >= 2, 'hello and snapshot');
    const burst = SYSTEM_PER_KIND_PER_SECOND * 3;
    const kind = 'test.storm';
    for (let i = 0; i < burst; i++) {
      await system.bus.publish(topics.systemEvent, 'SystemEvent', { schemaVersion: 1, id: newId(), kind, severity: 'warn', message: `storm ${i}`, timestamp: new Date().toISOString() });
    }
    const stormOf = (messages: readonly FeedMessage[]): FeedSystem[] => messages.filter((m): m is FeedSystem => m.type === 'system' && m.kind === kind);
    const accounted = (messages: readonly FeedMessage[]): number => stormOf(messages).reduce((sum, m) => sum + (typeof m.details?.['held'] === 'number' ? m.details['held'] : 1), 0);
    await feed.waitFor((m) => accounted(m) === burst, `all ${burst} storm events sent or counted`, 5_000);
    const storm = stormOf(feed.messages);
    expect(storm.length).toBeLessThan(burst);
    expect(storm.some((m) => typeof m.details?.['held'] === 'number' && m.message.includes(`more ${kind} events`))).toBe(true);
    expect(feed.firstGap()).toBeUndefined();
    await feed.close();
  });

  it('carries the current HPC jobs in the snapshot (latest message of each, published before anyone listened), then their live hpc messages', async () => {
    const source = seededUuid('feed-hpc-source');
    // No feed of this test is open yet: the hub keeps the jobs' latest state all the same.
    await system.bus.publish(topics.bridgePending, 'HpcJob', hpcJob('moving', { status: 'pending', sourceNodeId: source, geozone: 'CAISO' }));
    await system.bus.publish(topics.bridgePending, 'HpcJob', hpcJob('moving', { progress: 0.25, bytesTransferred: 500, sourceNodeId: source, geozone: 'CAISO' }));
    await system.bus.publish(topics.bridgePending, 'HpcJob', hpcJob('moving', { progress: 0.5, bytesTransferred: 1_000, sourceNodeId: source, geozone: 'CAISO' }));
    await system.bus.publish(topics.bridgeIngress, 'HpcJob', hpcJob('done', { status: 'completed', progress: 1, bytesTransferred: 2_000, schedulerJobId: '42', checkpointUri: 'file:///staging/ckpt' }));
    const moving = seededUuid('feed-hpc-moving');
    const done = seededUuid('feed-hpc-done');
    const snapshotOf = async (): Promise<FeedSnapshot> => {
      const feed = await open();
      await feed.waitFor((m) => m.length >= 2, 'hello and snapshot');
      return feed.messages[1] as FeedSnapshot;
    };
    // The bus hands the messages to the hub asynchronously: a later session's snapshot has them all.
    const snapshot = await until(async () => {
      const s = await snapshotOf();
      return s.hpcJobs?.find((j) => j.jobId === moving)?.progress === 0.5 && s.hpcJobs.some((j) => j.jobId === done) ? s : undefined;
    }, 'a snapshot with both HPC jobs', 5_000, { intervalMs: 50 });
    const jobs = snapshot.hpcJobs!.filter((j) => j.jobId === moving || j.jobId === done);
    // One entry per job, its latest message, oldest update first; no seq (they are not messages of the session).
    expect(jobs.map((j) => j.jobId)).toEqual([moving, done]);
    expect(jobs[0]).toEqual({ type: 'hpc', jobId: moving, sourceNodeId: source, datasetSizeGb: 2, status: 'transferring', progress: 0.5, bytesTransferred: 1_000, timestamp: expect.any(String), geozone: 'CAISO' });
    expect(jobs[1]).toMatchObject({ type: 'hpc', jobId: done, sourceNodeId: '', status: 'completed', progress: 1, schedulerJobId: '42', checkpointUri: 'file:///staging/ckpt' });
    expect(jobs.some((j) => 'seq' in j)).toBe(false);

    // Seed 001's form has no snapshot: the same jobs follow the nodes as hpc messages of the session.
    const seed = await open('snapshot=telemetry');
    await seed.waitFor((m) => m.filter((x) => x.type === 'hpc').length >= 2, 'the HPC jobs as hpc messages');
    expect(seed.messages.filter((x): x is FeedHpc => x.type === 'hpc' && (x.jobId === moving || x.jobId === done)).map((x) => [x.jobId, x.status, x.progress])).toEqual([[moving, 'transferring', 0.5], [done, 'completed', 1]]);
    expect(seed.firstGap()).toBeUndefined();

    // Live: the next state goes out to the open session, and the next snapshot has it instead.
    const feed = await open();
    await feed.waitFor((m) => m.length >= 2, 'hello and snapshot');
    await system.bus.publish(topics.bridgeIngress, 'HpcJob', hpcJob('moving', { status: 'queued', progress: 1, bytesTransferred: 2_000, sourceNodeId: source, geozone: 'CAISO' }));
    await feed.waitFor((m) => m.some((x) => x.type === 'hpc' && x.jobId === moving && x.status === 'queued'), 'the live hpc message');
    expect(feed.firstGap()).toBeUndefined();
    expect((await snapshotOf()).hpcJobs?.find((j) => j.jobId === moving)).toMatchObject({ status: 'queued', progress: 1 });
  });

  it(`keeps at most ${SNAPSHOT_HPC_JOBS} HPC jobs for the snapshot, finished ones first to go, and drops finished ones ${SNAPSHOT_HPC_FINISHED_MS / 60_000} minutes after they ended`, () => {
    const start = Date.now();
    const now = vi.spyOn(Date, 'now').mockReturnValue(start);
    try {
      const hub = new ConsoleHub({ serverInstance: 'bounds' });
      const snapshotJobs = (): string[] => {
        const { socket, sent } = fakeSocket();
        hub.connect(socket, { snapshot: 'nodes', inferencePerSecond: null });
        return ((sent[1] as FeedSnapshot).hpcJobs ?? []).map((j) => j.jobId);
      };
      hub.hpc(hpcJob('finished-early', { status: 'failed', reason: 'transfer failed' }));
      for (let i = 0; i < SNAPSHOT_HPC_JOBS; i++) hub.hpc(hpcJob(`running-${i}`, { status: 'running', progress: 1 }));
      // Over the bound: the finished job goes, not the oldest running one.
      let ids = snapshotJobs();
      expect(ids).toHaveLength(SNAPSHOT_HPC_JOBS);
      expect(ids).not.toContain(seededUuid('feed-hpc-finished-early'));
      expect(ids[0]).toBe(seededUuid('feed-hpc-running-0'));
      // A job that finishes stays for the snapshot for ten minutes after it ended, then goes; running ones stay.
      hub.hpc(hpcJob('running-0', { status: 'completed', progress: 1 }));
      now.mockReturnValue(start + SNAPSHOT_HPC_FINISHED_MS - 1_000);
      hub.hpc(hpcJob('running-0', { status: 'completed', progress: 1 }));
      ids = snapshotJobs();
      expect(ids.at(-1)).toBe(seededUuid('feed-hpc-running-0'));
      now.mockReturnValue(start + SNAPSHOT_HPC_FINISHED_MS + 1);
      ids = snapshotJobs();
      expect(ids).toHaveLength(SNAPSHOT_HPC_JOBS - 1);
      expect(ids).not.toContain(seededUuid('feed-hpc-running-0'));
      hub.closeAll();
    } finally {
      now.mockRestore();
    }
  });

  it('gives seed 001\'s form on snapshot=telemetry: hello, then one telemetry message per node', async () => {
    const seed = await open('snapshot=telemetry');
    const known = ((await (await api(`${system.url}/api/v1/nodes`)).json()) as { count: number }).count;
    await seed.waitFor((m) => m.length >= 1 + known, 'hello and every node');
    expect(seed.messages[0]).toMatchObject({ type: 'hello', seq: 1 });
    const nodes = seed.messages.slice(1, 1 + known);
    expect(nodes.every((m) => m.type === 'telemetry')).toBe(true);
    expect(seed.messages.some((m) => m.type === 'snapshot')).toBe(false);
    expect(nodes[0]).toMatchObject({ node: { id: expect.any(String), geohash: expect.any(String), energySource: expect.any(String), batteryLevel: expect.any(Number), gpuUtilization: expect.any(Number), modelsLoaded: expect.any(Array), timestamp: expect.any(String) } });
  });

  it('refuses a bad query (400 naming the parameter), a missing or wrong key, and a foreign origin, before upgrading', async () => {
    const key = encodeURIComponent(system.operatorKey!);
    const cases: [string, RegExp][] = [
      [`inferencePerSecond=0`, /querystring\/inferencePerSecond must be >= 1/],
      [`inferencePerSecond=10001`, /querystring\/inferencePerSecond must be <= 10000/],
      [`inferencePerSecond=1.5`, /querystring\/inferencePerSecond must be integer/],
      [`since=3`, /^querystring\/session: needed with since/],
      [`session=abc`, /^querystring\/since: needed with session/],
      [`session=a%20b&since=1`, /querystring\/session must match pattern/],
      [`since=-1&session=abc`, /querystring\/since must be >= 0/],
      [`snapshot=everything`, /querystring\/snapshot/],
      [`bogus=1`, /querystring must NOT have additional properties: "bogus"/],
    ];
    for (const [query, message] of cases) {
      const answer = await refusal(`${ws}/telemetry?key=${key}&${query}`);
      expect(answer.status, query).toBe(400);
      expect(String(answer.body['message']), query).toMatch(message);
    }
    expect((await refusal(`${ws}/telemetry`)).status).toBe(401);
    expect((await refusal(`${ws}/telemetry?key=arck_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`)).status).toBe(401);
    const foreign = await refusal(`${ws}/telemetry?key=${key}`, { origin: 'https://elsewhere.example' });
    expect(foreign.status).toBe(403);
    expect(String(foreign.body['message'])).toContain('origin https://elsewhere.example may not open /telemetry');
    // A page this server served may (its Origin names this host).
    const same = new WebSocket(`${ws}/telemetry?key=${key}`, { origin: system.url });
    await new Promise((resolve, reject) => {
      same.once('open', resolve);
      same.once('unexpected-response', (_request, response) => reject(new Error(`refused: ${response.statusCode}`)));
    });
    same.close();
  });

  it('closes a client that stops reading with 4008, keeps serving, and lets it resume without a gap', async () => {
    const slow = await open();
    await slow.waitFor((m) => m.length >= 2, 'hello and snapshot');
    const session = slow.hello()!.session;
    const closed = new Promise<{ code: number; reason: string }>((resolve) => slow.socket.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
    slow.socket.pause();
    // About 20 MB of reports: beyond what the kernel buffers and the 1 MiB the server allows.
    const models = Array.from({ length: 200 }, (_v, i) => `model-${i}-${'x'.repeat(240)}`);
    for (let i = 0; i < 400; i++) await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetry('heavy', { modelsLoaded: models, gpuUtilization: (i % 10) / 10 }));
    await system.bus.publish(topics.telemetry, 'NodeTelemetry', telemetry('heavy'));
    expect((await fetch(`${system.url}/health`)).status).toBe(200);
    slow.socket.resume();
    expect(await closed).toEqual({ code: CLOSE_TOO_SLOW, reason: TOO_SLOW_REASON });
    expect(slow.firstGap()).toBeUndefined();
    const since = slow.lastSeq();
    const resumed = await open('', { session, since });
    await resumed.waitFor((m) => m.some((x) => x.type === 'hello'), 'the resumed hello', 20_000);
    expect(resumed.messages[0]!.seq).toBe(since + 1);
    expect(resumed.firstGap()).toBeUndefined();
    expect(resumed.hello()).toMatchObject({ session, resumed: true });
    expect(resumed.messages.filter((m) => m.type === 'telemetry' && m.node.name === 'heavy').length + slow.messages.filter((m) => m.type === 'telemetry' && m.node.name === 'heavy').length).toBeGreaterThanOrEqual(401);
  }, 60_000);
});

/**
 * The console's feed reducer (web/src/feed/state.ts): resume, gap detection, snapshot replace,
 * folded counts, seed 001's unsequenced feed, and when a (re)connection shows as live.
 */
import { describe, expect, it } from 'vitest';
import { applyMessages, connectionClosed, connectionState, initialFeedState, mergeRestNodes, type IncomingMessage } from '../../web/src/feed/state.ts';
import type { ConsoleNode, FeedHello, FeedHpc, FeedSystem } from '../../src/contracts/console.ts';

const T = '2026-01-01T00:00:00.000Z';

function node(id: string, overrides: Partial<ConsoleNode> = {}): ConsoleNode {
  return {
    id, geohash: '9q8yy', energySource: 'grid', batteryLevel: 0.5, gpuUtilization: 0.2, gpuMemoryFreeGb: 10, modelsLoaded: [], timestamp: T,
    geozone: 'CAISO', name: `node-${id}`, cpuLoad: 0.1, tags: [], capacity: { cpuCores: 8, memoryGb: 32, gpus: 1 }, datasetsHot: [], status: 'online', lastSeen: T,
    ...overrides,
  };
}

const hello = (seq: number, session: string, resumed = false, extra: Partial<FeedHello> = {}): IncomingMessage =>
  ({ type: 'hello', seq, session, serverInstance: 'srv-1', resumed, inferencePerSecond: 200, timestamp: T, ...extra });
const system = (seq: number | undefined, message: string): IncomingMessage =>
  (seq === undefined ? { type: 'system', severity: 'info', message, timestamp: T } : { type: 'system', seq, severity: 'info', message, timestamp: T });
const telemetry = (seq: number, n: ConsoleNode): IncomingMessage => ({ type: 'telemetry', seq, node: n });

describe('console feed state', () => {
  it('starts a session from hello and applies its snapshot', () => {
    const s = applyMessages(initialFeedState(), [
      hello(1, 'S1'),
      { type: 'snapshot', seq: 2, nodes: [node('a'), node('b')], events: [{ type: 'system', seq: 0, severity: 'warn', message: 'old', timestamp: T }], timestamp: T },
    ]);
    expect(s.session).toBe('S1');
    expect(s.lastSeq).toBe(2);
    expect([...s.nodes.keys()]).toEqual(['a', 'b']);
    expect(s.events.map((e) => e.message)).toEqual(['old']);
    expect(s.gaps).toBe(0);
    expect(s.resyncs).toBe(0);
  });

  it('resumes: the replay after `since`, then the resumed hello, continue the sequence without a gap or a resync', () => {
    let s = applyMessages(initialFeedState(), [hello(1, 'S1'), { type: 'snapshot', seq: 2, nodes: [node('a')], events: [], timestamp: T }, system(3, 'x')]);
    s = applyMessages(s, [system(4, 'y'), system(5, 'z'), hello(6, 'S1', true), system(7, 'after')]);
    expect(s.lastSeq).toBe(7);
    expect(s.gaps).toBe(0);
    expect(s.resyncs).toBe(0);
    expect(s.events.map((e) => e.message)).toEqual(['after', 'z', 'y', 'x']);
    expect(s.nodes.size).toBe(1);
  });

  it('a resumed hello numbered outside the sequence does not move it', () => {
    let s = applyMessages(initialFeedState(), [hello(1, 'S1'), system(2, 'x')]);
    s = applyMessages(s, [hello(9, 'S1', true), system(3, 'y')]);
    expect(s.lastSeq).toBe(3);
    expect(s.gaps).toBe(0);
  });

  it('counts a gap when a seq is skipped, and drops duplicates', () => {
    let s = applyMessages(initialFeedState(), [hello(1, 'S1'), system(2, 'a'), system(5, 'b')]);
    expect(s.gaps).toBe(1);
    expect(s.lastSeq).toBe(5);
    s = applyMessages(s, [system(4, 'late'), system(5, 'dup'), system(6, 'c')]);
    expect(s.gaps).toBe(1);
    expect(s.events.map((e) => e.message)).toEqual(['c', 'b', 'a']);
  });

  it('a new session (resync) replaces nodes and events with its snapshot and restarts the sequence', () => {
    let s = applyMessages(initialFeedState(), [hello(1, 'S1'), { type: 'snapshot', seq: 2, nodes: [node('a'), node('b')], events: [], timestamp: T }, system(3, 'before')]);
    s = applyMessages(s, [
      hello(1, 'S2', false, { resync: 'outside the replay window', serverInstance: 'srv-2' }),
      { type: 'snapshot', seq: 2, nodes: [node('c')], events: [], timestamp: T },
    ]);
    expect(s.session).toBe('S2');
    expect(s.serverInstance).toBe('srv-2');
    expect(s.resyncs).toBe(1);
    expect(s.lastResync).toBe('outside the replay window');
    expect(s.gaps).toBe(0);
    expect(s.lastSeq).toBe(2);
    expect([...s.nodes.keys()]).toEqual(['c']);
    expect(s.events).toEqual([]);
  });

  it("takes the snapshot's HPC jobs, then each job's latest hpc message; a snapshot without hpcJobs (an older server) keeps what was known", () => {
    const hpc = (jobId: string, status: FeedHpc['status'], progress: number): Omit<FeedHpc, 'seq'> =>
      ({ type: 'hpc', jobId, sourceNodeId: '', datasetSizeGb: 1, status, progress, bytesTransferred: Math.round(progress * 1000), timestamp: T });
    let s = applyMessages(initialFeedState(), [
      hello(1, 'S1'),
      { type: 'snapshot', seq: 2, nodes: [], events: [], timestamp: T, hpcJobs: [hpc('j1', 'transferring', 0.4), hpc('j2', 'running', 1)] },
    ]);
    expect([...s.hpc.values()].map((j) => [j.jobId, j.status, j.progress])).toEqual([['j1', 'transferring', 0.4], ['j2', 'running', 1]]);
    s = applyMessages(s, [{ ...hpc('j1', 'transferring', 0.7), seq: 3 }]);
    // The latest message moves the job to the newest end.
    expect([...s.hpc.values()].map((j) => [j.jobId, j.progress])).toEqual([['j2', 1], ['j1', 0.7]]);
    s = applyMessages(s, [hello(1, 'S2'), { type: 'snapshot', seq: 2, nodes: [], events: [], timestamp: T }]);
    expect([...s.hpc.keys()]).toEqual(['j2', 'j1']);
    s = applyMessages(s, [hello(1, 'S3'), { type: 'snapshot', seq: 2, nodes: [], events: [], timestamp: T, hpcJobs: [hpc('j3', 'pending', 0)] }]);
    expect([...s.hpc.keys()]).toEqual(['j3']);
  });

  it('adds folded counts to the request totals', () => {
    const s = applyMessages(initialFeedState(), [
      hello(1, 'S1'),
      { type: 'inference', seq: 2, requestId: 'r1', source: [-120, 37], targetNodeId: 'a', modelId: 'm', priority: 'normal', status: 'dispatched', timestamp: T, requesterGeozone: 'CAISO' },
      { type: 'folded', seq: 3, inference: { dispatched: 10, completed: 7, failed: 1, rejected: 2 }, intervalMs: 1000, timestamp: T },
      { type: 'rejection', seq: 4, requestId: 'r2', source: [-120, 37], requesterGeozone: 'CAISO', modelId: 'm', priority: 'critical', reason: 'no node has the model', timestamp: T },
    ]);
    expect(s.counts).toEqual({ requests: 14, dispatched: 11, completed: 7, failed: 1, rejected: 3, folded: 20 });
    expect(s.zones['CAISO']).toEqual({ requests: 2, rejections: 1, byReason: { 'no node has the model': 1 } });
    expect(s.inference.map((e) => [e.requestId, e.status])).toEqual([['r2', 'rejected'], ['r1', 'dispatched']]);
  });

  it('keeps one log entry per request, updated by later statuses', () => {
    const s = applyMessages(initialFeedState(), [
      { type: 'inference', requestId: 'r1', source: [-120, 37], targetNodeId: 'a', modelId: 'm', priority: 'normal', status: 'dispatched', timestamp: T, forwarded: true },
      { type: 'inference', requestId: 'r1', source: [-120, 37], targetNodeId: 'a', modelId: 'm', priority: 'normal', status: 'completed', latencyMs: 120, timestamp: T },
    ]);
    expect(s.inference).toHaveLength(1);
    expect(s.inference[0]).toMatchObject({ status: 'completed', forwarded: true, latencyMs: 120 });
  });

  it("seed 001's feed (no seq) applies without counting gaps; REST nodes fill in what its telemetry lacks", () => {
    let s = applyMessages(initialFeedState(), [
      { type: 'telemetry', node: { id: 'a', geohash: '9q8yy', energySource: 'cogen', batteryLevel: 1, gpuUtilization: 0.9, modelsLoaded: ['m'], timestamp: T } as ConsoleNode },
      system(undefined, 'x'),
      system(undefined, 'y'),
    ]);
    expect(s.gaps).toBe(0);
    expect(s.lastSeq).toBeNull();
    expect(s.nodes.get('a')?.partial).toBe(true);
    s = mergeRestNodes(s, [node('a', { energySource: 'grid', gpuUtilization: 0.1, geozone: 'PJM', name: 'PJM-1' }), node('b')]);
    expect(s.nodes.get('a')).toMatchObject({ geozone: 'PJM', name: 'PJM-1', energySource: 'cogen', gpuUtilization: 0.9 });
    expect(s.nodes.get('a')?.partial).toBeUndefined();
    expect(s.nodes.size).toBe(2);
  });

  it('a connection is live only once its own hello has been applied, and then with that hello\'s session', () => {
    const fresh = initialFeedState();
    expect(connectionState('connecting', fresh)).toBe('connecting');
    // The socket is open, the hello not applied yet: still connecting, no session to show.
    expect(connectionState('live', fresh)).toBe('connecting');
    const first = applyMessages(fresh, [hello(1, 'S1'), { type: 'snapshot', seq: 2, nodes: [node('a')], events: [], timestamp: T }, system(3, 'x')]);
    expect(connectionState('live', first)).toBe('live');

    // The connection drops and a new one opens: the state still names S1, so it must not say live.
    const reopened = connectionClosed(first);
    expect(reopened.session).toBe('S1');
    expect(connectionState('reconnecting', reopened)).toBe('reconnecting');
    expect(connectionState('live', reopened)).toBe('reconnecting');

    // A restarted server: live and the new session come with the same hello.
    const resynced = applyMessages(reopened, [hello(1, 'S2', false, { resync: 'unknown session' })]);
    expect(resynced.session).toBe('S2');
    expect(connectionState('live', resynced)).toBe('live');

    // A resume: the replay comes first and is not the hello; live once the resumed hello is applied.
    const replayed = applyMessages(reopened, [system(4, 'replayed')]);
    expect(connectionState('live', replayed)).toBe('reconnecting');
    const resumed = applyMessages(replayed, [hello(5, 'S1', true)]);
    expect(resumed.lastSeq).toBe(5);
    expect(connectionState('live', resumed)).toBe('live');

    // Seed 001's feed sends no hello: its first message is what makes the connection live.
    expect(connectionState('live', applyMessages(fresh, [system(undefined, 'x')]))).toBe('live');
    expect(connectionClosed(fresh)).toBe(fresh);
  });

  it('workers known only from the node list follow the list; once the feed reports one, the feed wins', () => {
    let s = applyMessages(initialFeedState(), [hello(1, 'S1'), telemetry(2, node('a'))]);
    s = mergeRestNodes(s, [node('a', { status: 'offline' }), node('w', { status: 'online' })]);
    expect(s.nodes.get('a')?.status).toBe('online');
    expect(s.nodes.get('w')?.status).toBe('online');
    s = mergeRestNodes(s, [node('a', { status: 'offline' }), node('w', { status: 'offline' })]);
    expect(s.nodes.get('a')?.status).toBe('online');
    expect(s.nodes.get('w')?.status).toBe('offline');
    s = applyMessages(s, [telemetry(3, node('w', { status: 'busy' }))]);
    s = mergeRestNodes(s, [node('w', { status: 'offline' })]);
    expect(s.nodes.get('w')?.status).toBe('busy');
    expect(s.nodes.get('w')?.restOnly).toBeUndefined();
  });

  it('never mutates the state it was given', () => {
    const before = applyMessages(initialFeedState(), [hello(1, 'S1'), telemetry(2, node('a'))]);
    const frozenNodes = new Map(before.nodes);
    const after = applyMessages(before, [telemetry(3, node('a', { gpuUtilization: 0.99 })), system(4, 'e') as FeedSystem]);
    expect(before.nodes).toEqual(frozenNodes);
    expect(before.events).toEqual([]);
    expect(after.nodes.get('a')?.gpuUtilization).toBe(0.99);
  });
});

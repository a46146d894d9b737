/**
 * The console's view of the `/telemetry` feed as a pure reducer: `applyMessages(state, batch)`
 * returns the next state and never mutates the one it was given, so the sequence rules (resume,
 * gaps, new sessions) are unit-tested without a socket (test/unit/console-feed-state.test.ts).
 *
 * The socket client hands over messages in batches (a few per animation frame at 500 events/s):
 * the node map is copied once per batch, not once per message, which keeps 5,000 nodes cheap.
 *
 * Sequence rules (src/contracts/console.ts): every message of a session carries `seq`, from 1, no
 * gaps. A `hello` that resumes our session continues it; any other `hello` starts a new session
 * (a resync, if it is not the first) and the `snapshot` after it replaces nodes, events and HPC jobs. A seq
 * at or below the last applied is a duplicate (dropped); one above the next expected is a gap
 * (counted, then applied). Seed 001's older feed sends no seq: its messages apply, and nothing is
 * counted, because there is nothing to count against.
 */
import type { ConsoleNode, FeedFolded, FeedHello, FeedHpc, FeedInference, FeedMessage, FeedRejection, FeedSnapshot, FeedSystem } from '../../../src/contracts/console.ts';

/** The socket's state as the status shows it; defined here, with the reducer, so pure code and its tests need no DOM types. */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting';

/**
 * A node as the console holds it. `partial` marks one known only from seed 001's telemetry fields;
 * `restOnly` one known only from `GET /api/v1/nodes` (a worker that sends no telemetry), which the
 * next read of that list replaces.
 */
export type MeshNode = ConsoleNode & { partial?: true; restOnly?: true };

/** A message as seed 001's feed sends it: the same fields, no `seq`. */
type Unsequenced<T> = T extends unknown ? Omit<T, 'seq'> & { seq?: undefined } : never;

/** What the feed may send: the contract's messages, or seed 001's without `seq`. */
export type IncomingMessage = FeedMessage | Unsequenced<FeedMessage>;

type Body<T> = Omit<T, 'seq'>;

/** An HPC job's latest `hpc` message (from the feed or the snapshot's `hpcJobs`). */
export type HpcMessage = Body<FeedHpc>;

/** One request in the inference log: its latest status (rejections are requests too). */
export interface InferenceEntry {
  requestId: string;
  status: FeedInference['status'] | 'rejected';
  modelId: string;
  priority: FeedInference['priority'];
  targetNodeId: string | null;
  requesterGeozone: string | null;
  targetGeozone: string | null;
  forwarded: boolean;
  latencyMs: number | null;
  reason: string | null;
  timestamp: string;
}

/** A system event, from the feed or `GET /api/v1/events` (which may not number them). */
export type FeedEvent = Body<FeedSystem> & { seq?: number; id?: string };

export interface ZoneCounters {
  requests: number;
  rejections: number;
  byReason: Readonly<Record<string, number>>;
}

export interface FeedCounts {
  /** Requests seen: dispatched plus rejected, the folded ones included. */
  requests: number;
  dispatched: number;
  completed: number;
  failed: number;
  rejected: number;
  /** Inference messages the server held back for our rate and counted in `folded` messages. */
  folded: number;
}

export interface FeedState {
  session: string | null;
  serverInstance: string | null;
  /** The last seq applied in this session; null before the first sequenced message. */
  lastSeq: number | null;
  /** Sequence gaps seen: each is a run of messages we never got. */
  gaps: number;
  /** New sessions after the first (server restart, replay window passed). */
  resyncs: number;
  sessions: number;
  /** Why the last new session was not a resume, as the server said. */
  lastResync: string | null;
  /**
   * Whether the current connection's hello has been applied (on seed 001's feed, which sends no
   * hello: its first message). Until then `session` is still the previous connection's, and the
   * console is not live (`connectionState`).
   */
  greeted: boolean;
  nodes: ReadonlyMap<string, MeshNode>;
  /** Newest first. */
  events: readonly FeedEvent[];
  /** Newest first, one entry per request. */
  inference: readonly InferenceEntry[];
  hpc: ReadonlyMap<string, Body<FeedHpc>>;
  counts: FeedCounts;
  zones: Readonly<Record<string, ZoneCounters>>;
}

export const EVENTS_KEPT = 500;
export const INFERENCE_KEPT = 100;
const HPC_KEPT = 200;

export function initialFeedState(): FeedState {
  return {
    session: null,
    serverInstance: null,
    lastSeq: null,
    gaps: 0,
    resyncs: 0,
    sessions: 0,
    lastResync: null,
    greeted: false,
    nodes: new Map(),
    events: [],
    inference: [],
    hpc: new Map(),
    counts: { requests: 0, dispatched: 0, completed: 0, failed: 0, rejected: 0, folded: 0 },
    zones: {},
  };
}

/**
 * Copy-on-write over one batch: each collection is copied the first time the batch changes it,
 * and the copies are mutated for the rest of the batch.
 */
class Draft {
  private nodesCopy: Map<string, MeshNode> | null = null;
  private hpcCopy: Map<string, Body<FeedHpc>> | null = null;
  private zonesCopy: Record<string, ZoneCounters> | null = null;
  private newEvents: FeedEvent[] = [];
  private newInference: InferenceEntry[] = [];
  state: FeedState;

  constructor(state: FeedState) {
    this.state = { ...state, counts: { ...state.counts } };
  }

  nodes(): Map<string, MeshNode> {
    if (this.nodesCopy === null) this.nodesCopy = new Map(this.state.nodes);
    return this.nodesCopy;
  }

  replaceNodes(nodes: readonly ConsoleNode[]): void {
    this.nodesCopy = new Map(nodes.map((node) => [node.id, node]));
  }

  replaceHpc(jobs: readonly Body<FeedHpc>[]): void {
    this.hpcCopy = new Map(jobs.map((job) => [job.jobId, job]));
  }

  hpc(): Map<string, Body<FeedHpc>> {
    if (this.hpcCopy === null) this.hpcCopy = new Map(this.state.hpc);
    return this.hpcCopy;
  }

  zone(geozone: string): ZoneCounters & { byReason: Record<string, number> } {
    if (this.zonesCopy === null) this.zonesCopy = { ...this.state.zones };
    const current = this.zonesCopy[geozone];
    const copy = { requests: current?.requests ?? 0, rejections: current?.rejections ?? 0, byReason: { ...current?.byReason } };
    this.zonesCopy[geozone] = copy;
    return copy;
  }

  addEvent(event: FeedEvent): void {
    this.newEvents.push(event);
  }

  replaceEvents(events: readonly FeedEvent[]): void {
    this.state = { ...this.state, events: events.slice(0, EVENTS_KEPT) };
    this.newEvents = [];
  }

  /** Updates the request's entry in place when it is in the log, else adds it as the newest. */
  upsertInference(entry: InferenceEntry): void {
    const pending = this.newInference.findIndex((e) => e.requestId === entry.requestId);
    if (pending >= 0) {
      this.newInference[pending] = mergeEntry(this.newInference[pending]!, entry);
      return;
    }
    const logged = this.state.inference.findIndex((e) => e.requestId === entry.requestId);
    if (logged >= 0) {
      const log = this.state.inference.slice();
      log[logged] = mergeEntry(log[logged]!, entry);
      this.state = { ...this.state, inference: log };
      return;
    }
    this.newInference.push(entry);
  }

  finish(): FeedState {
    const next: FeedState = { ...this.state };
    if (this.nodesCopy !== null) next.nodes = this.nodesCopy;
    if (this.hpcCopy !== null) next.hpc = trimMap(this.hpcCopy, HPC_KEPT);
    if (this.zonesCopy !== null) next.zones = this.zonesCopy;
    if (this.newEvents.length > 0) next.events = [...this.newEvents.reverse(), ...next.events].slice(0, EVENTS_KEPT);
    if (this.newInference.length > 0) next.inference = [...this.newInference.reverse(), ...next.inference].slice(0, INFERENCE_KEPT);
    return next;
  }
}

function trimMap<K, V>(map: Map<K, V>, keep: number): Map<K, V> {
  // Insertion order is arrival order: the oldest go first.
  for (const key of map.keys()) {
    if (map.size <= keep) break;
    map.delete(key);
  }
  return map;
}

/** A later message about a request keeps what an earlier one said and it does not repeat. */
function mergeEntry(older: InferenceEntry, newer: InferenceEntry): InferenceEntry {
  return {
    ...newer,
    targetNodeId: newer.targetNodeId ?? older.targetNodeId,
    requesterGeozone: newer.requesterGeozone ?? older.requesterGeozone,
    targetGeozone: newer.targetGeozone ?? older.targetGeozone,
    forwarded: newer.forwarded || older.forwarded,
    latencyMs: newer.latencyMs ?? older.latencyMs,
  };
}

/** Applies a batch of feed messages in arrival order. */
export function applyMessages(state: FeedState, messages: readonly IncomingMessage[]): FeedState {
  if (messages.length === 0) return state;
  const draft = new Draft(state);
  for (const message of messages) step(draft, message);
  return draft.finish();
}

function step(draft: Draft, message: IncomingMessage): void {
  if (message.type === 'hello') {
    hello(draft, message);
    return;
  }
  if (message.seq === undefined && !draft.state.greeted) draft.state = { ...draft.state, greeted: true };
  if (typeof message.seq === 'number' && !inSequence(draft, message.seq)) return;
  switch (message.type) {
    case 'snapshot':
      snapshot(draft, message);
      break;
    case 'telemetry':
      telemetry(draft, message.node);
      break;
    case 'inference':
      inference(draft, message);
      break;
    case 'rejection':
      rejection(draft, message);
      break;
    case 'hpc': {
      // Newest last: the map's order is the order of the jobs' latest messages, so trimming drops the stalest.
      const jobs = draft.hpc();
      jobs.delete(message.jobId);
      jobs.set(message.jobId, message);
      break;
    }
    case 'system':
      draft.addEvent(message);
      break;
    case 'folded':
      folded(draft, message);
      break;
    default:
      // A message type newer than this console: ignored, as seed clients ignore ours.
      break;
  }
}

function hello(draft: Draft, message: Body<FeedHello> & { seq?: number }): void {
  const s = draft.state.greeted ? draft.state : { ...draft.state, greeted: true };
  draft.state = s;
  if (message.resumed && message.session === s.session) {
    // The server replays what we missed first and then sends this hello as the next message of
    // the stream (numbered right after the replay). A hello numbered otherwise must not move our
    // position: the replay is what counts.
    if (typeof message.seq === 'number' && s.lastSeq !== null && message.seq === s.lastSeq + 1) draft.state = { ...s, lastSeq: message.seq };
    return;
  }
  draft.state = {
    ...s,
    session: message.session,
    serverInstance: message.serverInstance,
    lastSeq: typeof message.seq === 'number' ? message.seq : null,
    sessions: s.sessions + 1,
    resyncs: s.sessions > 0 ? s.resyncs + 1 : s.resyncs,
    lastResync: message.resync ?? (s.sessions > 0 ? 'new session' : null),
  };
}

/** The connection closed: the next one is not live until its own hello has been applied. */
export function connectionClosed(state: FeedState): FeedState {
  return state.greeted ? { ...state, greeted: false } : state;
}

/**
 * The connection state to show: the socket's, except that an open socket is only live once its
 * hello has been applied; before that it is still connecting (no session yet) or reconnecting
 * (the session shown is the previous connection's). The store publishes this with the state, so
 * `live` and the new session appear together.
 */
export function connectionState(socket: ConnectionState, state: FeedState): ConnectionState {
  if (socket !== 'live' || state.greeted) return socket;
  return state.sessions > 0 ? 'reconnecting' : 'connecting';
}

/** Checks a sequenced message against the last applied one; false means drop it (a duplicate). */
function inSequence(draft: Draft, seq: number): boolean {
  const s = draft.state;
  if (s.lastSeq !== null) {
    if (seq <= s.lastSeq) return false;
    if (seq > s.lastSeq + 1) draft.state = { ...s, gaps: s.gaps + 1 };
  }
  draft.state = { ...draft.state, lastSeq: seq };
  return true;
}

function snapshot(draft: Draft, message: Body<FeedSnapshot>): void {
  draft.replaceNodes(message.nodes);
  draft.replaceEvents(message.events);
  // A server before `hpcJobs` sends none: what the console knew stays until the jobs' next messages.
  if (message.hpcJobs !== undefined) draft.replaceHpc(message.hpcJobs);
}

const TELEMETRY_DEFAULTS: Omit<ConsoleNode, 'id' | 'geohash' | 'energySource' | 'batteryLevel' | 'gpuUtilization' | 'modelsLoaded' | 'timestamp'> = {
  gpuMemoryFreeGb: 0,
  geozone: '',
  name: '',
  cpuLoad: 0,
  tags: [],
  capacity: { cpuCores: 0, memoryGb: 0, gpus: 0 },
  datasetsHot: [],
  status: 'online',
  lastSeen: '',
};

function telemetry(draft: Draft, node: Partial<ConsoleNode> & { id: string }): void {
  const nodes = draft.nodes();
  const known = nodes.get(node.id);
  if (known !== undefined) {
    // Now the feed reports it: the feed's copy, no longer the node list's.
    const base = known.restOnly === true ? withoutRestOnly(known) : known;
    nodes.set(node.id, { ...base, ...node, ...(node.timestamp !== undefined && node.lastSeen === undefined ? { lastSeen: node.timestamp } : {}) });
    return;
  }
  const complete = node.geozone !== undefined && node.status !== undefined && node.name !== undefined;
  const filled = { ...TELEMETRY_DEFAULTS, name: node.id, lastSeen: node.timestamp ?? '', ...node } as ConsoleNode;
  nodes.set(node.id, complete ? filled : { ...filled, partial: true });
}

function withoutRestOnly(node: MeshNode): MeshNode {
  const { restOnly: _restOnly, ...rest } = node;
  return rest;
}

function inference(draft: Draft, message: Body<FeedInference>): void {
  const counts = draft.state.counts;
  if (message.status === 'dispatched') {
    counts.dispatched++;
    counts.requests++;
    if (message.requesterGeozone !== undefined) draft.zone(message.requesterGeozone).requests++;
  } else if (message.status === 'completed') counts.completed++;
  else if (message.status === 'failed') counts.failed++;
  draft.upsertInference({
    requestId: message.requestId,
    status: message.status,
    modelId: message.modelId,
    priority: message.priority,
    targetNodeId: message.targetNodeId,
    requesterGeozone: message.requesterGeozone ?? null,
    targetGeozone: message.targetGeozone ?? null,
    forwarded: message.forwarded === true,
    latencyMs: message.latencyMs ?? null,
    reason: null,
    timestamp: message.timestamp,
  });
}

function rejection(draft: Draft, message: Body<FeedRejection>): void {
  const counts = draft.state.counts;
  counts.rejected++;
  counts.requests++;
  const zone = draft.zone(message.requesterGeozone);
  zone.requests++;
  zone.rejections++;
  zone.byReason[message.reason] = (zone.byReason[message.reason] ?? 0) + 1;
  draft.upsertInference({
    requestId: message.requestId,
    status: 'rejected',
    modelId: message.modelId,
    priority: message.priority,
    targetNodeId: null,
    requesterGeozone: message.requesterGeozone,
    targetGeozone: null,
    forwarded: false,
    latencyMs: null,
    reason: message.reason,
    timestamp: message.timestamp,
  });
}

function folded(draft: Draft, message: Body<FeedFolded>): void {
  const counts = draft.state.counts;
  const { dispatched, completed, failed, rejected } = message.inference;
  counts.dispatched += dispatched;
  counts.completed += completed;
  counts.failed += failed;
  counts.rejected += rejected;
  counts.requests += dispatched + rejected;
  counts.folded += dispatched + completed + failed + rejected;
}

/**
 * Merges nodes read over REST (`GET /api/v1/nodes`) into the feed's: they fill in what seed 001's
 * telemetry does not carry (name, geozone, status) and nodes the feed has not mentioned (workers
 * that send no telemetry: the list's copy stays theirs, so their status follows the list); where
 * the feed already knows a node fully, the feed's copy is the fresher one and wins. The merged set
 * is the one `/stats` counts (telemetry nodes plus workers), so the status bar counts it.
 */
export function mergeRestNodes(state: FeedState, nodes: readonly ConsoleNode[]): FeedState {
  const merged = new Map(state.nodes);
  for (const rest of nodes) {
    const known = merged.get(rest.id);
    if (known === undefined || known.restOnly === true) merged.set(rest.id, { ...rest, restOnly: true });
    else if (known.partial === true) {
      const { partial: _partial, ...telemetryFields } = known;
      merged.set(rest.id, { ...rest, ...pickTelemetry(telemetryFields) });
    }
  }
  return { ...state, nodes: merged };
}

/** Seed 001's telemetry fields: what a partial node knows for certain. */
function pickTelemetry(node: ConsoleNode): Partial<ConsoleNode> {
  const { id, geohash, energySource, batteryLevel, gpuUtilization, modelsLoaded, timestamp } = node;
  return { id, geohash, energySource, batteryLevel, gpuUtilization, modelsLoaded, timestamp };
}

/**
 * The console's live feed (`/telemetry`, src/contracts/console.ts): per-connection sessions with
 * gapless sequence numbers, a bounded replay window for resuming, per-client inference rates with
 * `folded` counts, and a bound on what a slow client may hold. The route (query, access, origin)
 * is ./console-feed.ts; this file owns sessions and messages.
 *
 * - A session's stream is every message it was given, numbered from 1: `hello`, then `snapshot` (or,
 *   asked for seed 001's form, one `telemetry` per node), then the live messages. A message is part
 *   of the stream whether or not a socket is attached, so a client that resumes within the window
 *   gets exactly what it missed.
 * - Resuming (`session` + `since`) replays messages `since+1..` first; the `hello` with
 *   `resumed: true` follows them as the next message of the stream, so numbering stays gapless and no
 *   message is sent twice. A resume that cannot be honoured is a new session whose `hello` (seq 1)
 *   says why in `resync`.
 * - Each broadcast is serialised once: the shared body without its leading `{` is stored, and each
 *   session's frame is `{"seq":N,` + that tail, so a message costs one string concatenation per client.
 * - Inference and rejection messages pass a global cap first (a load test cannot flood a browser),
 *   then the session's own `inferencePerSecond`; whatever either held back is counted and, once a
 *   second, reported in one `folded` message.
 * - System events pass at most `SYSTEM_PER_KIND_PER_SECOND` of one kind a second (a rejection storm
 *   under overload is one event per request); the rest of that kind become one summary a second
 *   with the count in `details.held`. Status changes still send the node's `telemetry` every time.
 * - A client whose socket holds more than `maxBufferedBytes` beyond its first burst is closed with
 *   4008: skipping messages silently would make gaps, closing makes it resume.
 * - The latest `hpc` message of each HPC job is kept (at most `SNAPSHOT_HPC_JOBS`, finished ones for
 *   `SNAPSHOT_HPC_FINISHED_MS`), so a console that connects mid-job gets it in the snapshot.
 */
import type { WebSocket } from 'ws';
import { decodeGeohash, isGeohash } from '../core/geohash.ts';
import { newId } from '../core/ids.ts';
import type { HpcJob, Priority, SystemEvent } from '../contracts/messages.ts';
import type { ConsoleNode, FeedFolded, FeedHpc, FeedInference, FeedRejection, FeedSystem, NodeStatus } from '../contracts/console.ts';
import type { NodeState } from '../mesh/node.ts';

/** Past this many system events of one kind in a second, the rest go out as one summary a second. */
export const SYSTEM_PER_KIND_PER_SECOND = 20;
export const CLOSE_TOO_SLOW = 4008;
export const TOO_SLOW_REASON = 'too slow: resume with session/since';
export const UNKNOWN_SESSION = 'session unknown: the server restarted or it expired';
/** HPC jobs the snapshot carries: at most this many, finished ones for this long after they ended. */
export const SNAPSHOT_HPC_JOBS = 200;
export const SNAPSHOT_HPC_FINISHED_MS = 10 * 60_000;
const HPC_FINAL: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);

export interface ConsoleHubOptions {
  /** The process's instance id: a client seeing it change knows the server restarted. */
  readonly serverInstance: string;
  /** Inference and rejection messages a second to all clients together (default 500). */
  readonly globalInferencePerSecond?: number;
  /** How long a session keeps its messages for a resume (default 30 s)... */
  readonly replayWindowMs?: number;
  /** ...and at most how many (default 20,000). */
  readonly replayMaxMessages?: number;
  /** How long a session without a socket is kept (default 60 s). */
  readonly sessionTtlMs?: number;
  /** Bytes a client's socket may hold beyond its first burst before it is closed with 4008 (default 1 MiB). */
  readonly maxBufferedBytes?: number;
  /** System events kept for the snapshot (default 200). */
  readonly recentEvents?: number;
}

/** What a client asked for, already validated (./console-feed.ts). */
export interface FeedRequest {
  readonly session?: string;
  readonly since?: number;
  readonly snapshot: 'nodes' | 'telemetry';
  readonly inferencePerSecond: number | null;
}

export interface NodeSource {
  get(id: string): NodeState | undefined;
  all(): Iterable<NodeState>;
}

type FoldedCounts = FeedFolded['inference'];
type HpcBody = Omit<FeedHpc, 'seq'>;
type InferenceStatus = FeedInference['status'];

/** A dispatch or a result, as the tracker saw it (src/api/inference-observer.ts). */
export interface InferenceNotice {
  readonly requestId: string;
  readonly targetNodeId: string;
  readonly modelId: string;
  readonly priority: Priority;
  readonly status: InferenceStatus;
  readonly latencyMs?: number;
  readonly timestamp: string;
  readonly requesterGeozone?: string;
  readonly targetGeozone?: string;
  readonly forwarded?: boolean;
}

export interface RejectionNotice {
  readonly requestId: string;
  readonly requesterGeozone: string;
  readonly modelId: string;
  readonly priority: Priority;
  readonly reason: string;
  readonly timestamp: string;
}

const NO_NODES: NodeSource = { get: () => undefined, all: () => [] };
const STATUSES: ReadonlySet<string> = new Set<NodeStatus>(['online', 'busy', 'draining', 'offline']);

/** The JSON of a message without its leading `{`: shared by every session, framed with its own seq. */
const tailOf = (body: object): string => JSON.stringify(body).slice(1);
const frame = (seq: number, tail: string): string => `{"seq":${seq},${tail}`;

/** A session's last messages, by seq: a ring bounded in count, trimmed by age. */
class Replay {
  private readonly tails: string[];
  private readonly times: number[];
  private start = 0;
  private count = 0;
  last = 0;
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.tails = new Array<string>(capacity);
    this.times = new Array<number>(capacity);
  }

  get first(): number {
    return this.last - this.count + 1;
  }

  push(tail: string, at: number): number {
    const end = (this.start + this.count) % this.capacity;
    this.tails[end] = tail;
    this.times[end] = at;
    if (this.count === this.capacity) this.start = (this.start + 1) % this.capacity;
    else this.count++;
    return ++this.last;
  }

  trim(olderThan: number): void {
    while (this.count > 0 && this.times[this.start]! < olderThan) {
      this.tails[this.start] = '';
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
  }

  /** Frames of messages `since+1..last`; `since` must lie in `first-1..last`. */
  *after(since: number): Generator<string> {
    for (let seq = since + 1; seq <= this.last; seq++) yield frame(seq, this.tails[(this.start + seq - this.first) % this.capacity]!);
  }
}

class Session {
  socket: WebSocket | undefined;
  detachedAt = 0;
  /** Bytes a fresh socket may hold while its snapshot or replay drains. */
  burst = 0;
  sentThisSecond = 0;
  folded: FoldedCounts = { dispatched: 0, completed: 0, failed: 0, rejected: 0 };
  heldBack = false;
  readonly id: string;
  readonly replay: Replay;
  inferencePerSecond: number | null;

  constructor(id: string, replay: Replay, inferencePerSecond: number | null) {
    this.id = id;
    this.replay = replay;
    this.inferencePerSecond = inferencePerSecond;
  }
}

export class ConsoleHub {
  private readonly sessions = new Map<string, Session>();
  private readonly serverInstance: string;
  private readonly globalPerSecond: number;
  private readonly replayWindowMs: number;
  private readonly replayMax: number;
  private readonly sessionTtlMs: number;
  private readonly maxBuffered: number;
  private readonly recentMax: number;
  /** Newest last; the snapshot reverses it. Their seq is 0: they are not messages of the new session. */
  private readonly recent: FeedSystem[] = [];
  private nodes: NodeSource = NO_NODES;
  private globalThisSecond = 0;
  private readonly systemThisSecond = new Map<string, number>();
  private readonly systemHeld = new Map<string, { count: number; severity: SystemEvent['severity'] }>();
  private tickedAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private centres: { at: number; byZone: Map<string, [number, number]> } | undefined;
  /** Each HPC job's latest message and, once finished, when (this clock): oldest update first. */
  private readonly hpcJobs = new Map<string, { message: HpcBody; finishedAt: number | null }>();

  constructor(options: ConsoleHubOptions) {
    this.serverInstance = options.serverInstance;
    this.globalPerSecond = options.globalInferencePerSecond ?? 500;
    this.replayWindowMs = options.replayWindowMs ?? 30_000;
    this.replayMax = options.replayMaxMessages ?? 20_000;
    this.sessionTtlMs = options.sessionTtlMs ?? 60_000;
    this.maxBuffered = options.maxBufferedBytes ?? 1 << 20;
    this.recentMax = options.recentEvents ?? 200;
  }

  /** Where the snapshot's nodes and the status changes' node fields come from (the mesh's registry or view). */
  attachNodes(nodes: NodeSource): void {
    this.nodes = nodes;
  }

  /** Whether any session is kept (attached or awaiting a resume): without one, callers need not build messages. */
  get active(): boolean {
    return this.sessions.size > 0;
  }

  /** Clients with a socket attached. */
  get size(): number {
    let open = 0;
    for (const session of this.sessions.values()) if (session.socket) open++;
    return open;
  }

  /** Attaches a socket: a resumed session when `request` names one that can be honoured, else a new one. */
  connect(socket: WebSocket, request: FeedRequest): void {
    const now = Date.now();
    let session: Session | undefined;
    let resync: string | undefined;
    if (request.session !== undefined && request.since !== undefined) {
      const known = this.sessions.get(request.session);
      if (!known) resync = UNKNOWN_SESSION;
      else {
        known.replay.trim(now - this.replayWindowMs);
        if (request.since < known.replay.first - 1) resync = `since ${request.since} is older than the replay window (oldest kept: ${known.replay.first}; the window is ${Math.round(this.replayWindowMs / 1000)} s or ${this.replayMax} messages)`;
        else if (request.since > known.replay.last) resync = `since ${request.since} is ahead of the session's last message (${known.replay.last})`;
        else session = known;
      }
    }
    if (session) {
      // One socket per session: the newer connection takes it over.
      session.socket?.close(4000, 'session resumed by a newer connection');
      session.inferencePerSecond = request.inferencePerSecond;
      this.attach(session, socket);
      for (const text of session.replay.after(request.since!)) socket.send(text);
      this.append(session, tailOf(this.hello(session, true, undefined)), now);
      this.settleBurst(session);
      return;
    }
    session = new Session(newId(), new Replay(this.replayMax), request.inferencePerSecond);
    this.sessions.set(session.id, session);
    this.ensureTimer();
    this.attach(session, socket);
    this.append(session, tailOf(this.hello(session, false, resync)), now);
    if (request.snapshot === 'telemetry') {
      for (const node of this.nodes.all()) this.append(session, tailOf({ type: 'telemetry', node: consoleNode(node) }), now);
      // Seed 001's form has no snapshot: the current HPC jobs come as its own `hpc` messages.
      for (const job of this.currentHpcJobs(now)) this.append(session, tailOf(job), now);
    } else {
      this.append(session, tailOf({ type: 'snapshot', nodes: [...this.nodes.all()].map((n) => consoleNode(n)), events: [...this.recent].reverse(), timestamp: new Date(now).toISOString(), hpcJobs: this.currentHpcJobs(now) }), now);
    }
    this.settleBurst(session);
  }

  /** A node's report, as the registry applied it. */
  telemetry(node: NodeState): void {
    if (this.sessions.size === 0) return;
    this.broadcast(tailOf({ type: 'telemetry', node: consoleNode(node) }));
  }

  inference(notice: InferenceNotice): void {
    if (this.sessions.size === 0) return;
    const target = this.nodes.get(notice.targetNodeId);
    const message: Omit<FeedInference, 'seq'> = {
      type: 'inference',
      requestId: notice.requestId,
      source: this.sourceOf(notice.requesterGeozone, target?.geohash),
      targetNodeId: notice.targetNodeId,
      modelId: notice.modelId,
      priority: notice.priority,
      status: notice.status,
      ...(notice.latencyMs === undefined ? {} : { latencyMs: notice.latencyMs }),
      timestamp: notice.timestamp,
      ...(notice.requesterGeozone === undefined ? {} : { requesterGeozone: notice.requesterGeozone }),
      ...((notice.targetGeozone ?? target?.geozone) === undefined ? {} : { targetGeozone: notice.targetGeozone ?? target?.geozone }),
      ...(notice.forwarded === undefined ? {} : { forwarded: notice.forwarded }),
    };
    this.rated(notice.status === 'processing' ? 'dispatched' : notice.status, () => tailOf(message));
  }

  rejection(notice: RejectionNotice): void {
    if (this.sessions.size === 0) return;
    const message: Omit<FeedRejection, 'seq'> = { type: 'rejection', ...notice, source: this.sourceOf(notice.requesterGeozone, undefined) };
    this.rated('rejected', () => tailOf(message));
  }

  /**
   * An HPC job's state or transfer progress as the bridge published it (seed 001's `hpc` message). Not
   * rated: the bridge sends a job's progress at most twice a second, and every state change must show.
   */
  hpc(job: HpcJob): void {
    const message: HpcBody = {
      type: 'hpc',
      jobId: job.id,
      sourceNodeId: job.sourceNodeId ?? '',
      datasetSizeGb: job.datasetSizeGb,
      status: job.status,
      progress: job.progress ?? 0,
      bytesTransferred: job.bytesTransferred,
      timestamp: job.updatedAt ?? new Date().toISOString(),
      ...(job.geozone === undefined ? {} : { geozone: job.geozone }),
      ...(job.schedulerJobId === undefined ? {} : { schedulerJobId: job.schedulerJobId }),
      ...(job.reason === undefined ? {} : { reason: job.reason }),
      ...(job.checkpointUri === undefined ? {} : { checkpointUri: job.checkpointUri }),
    };
    this.keepHpc(message);
    if (this.sessions.size === 0) return;
    this.broadcast(tailOf(message));
  }

  /** The latest message per job, moved to the newest end; past the bound, finished jobs go first, then the oldest updated. */
  private keepHpc(message: HpcBody): void {
    const known = this.hpcJobs.get(message.jobId);
    const finishedAt = HPC_FINAL.has(message.status) ? (known?.finishedAt ?? Date.now()) : null;
    this.hpcJobs.delete(message.jobId);
    this.hpcJobs.set(message.jobId, { message, finishedAt });
    if (this.hpcJobs.size <= SNAPSHOT_HPC_JOBS) return;
    this.dropFinishedHpc(Date.now() - SNAPSHOT_HPC_FINISHED_MS);
    if (this.hpcJobs.size <= SNAPSHOT_HPC_JOBS) return;
    this.dropFinishedHpc(Infinity, this.hpcJobs.size - SNAPSHOT_HPC_JOBS);
    for (const id of this.hpcJobs.keys()) {
      if (this.hpcJobs.size <= SNAPSHOT_HPC_JOBS) break;
      this.hpcJobs.delete(id);
    }
  }

  /** Drops finished jobs that ended before `before`, oldest update first, at most `count`. */
  private dropFinishedHpc(before: number, count = Infinity): void {
    let dropped = 0;
    for (const [id, kept] of this.hpcJobs) {
      if (dropped >= count) break;
      if (kept.finishedAt !== null && kept.finishedAt < before) {
        this.hpcJobs.delete(id);
        dropped++;
      }
    }
  }

  /** What a new session's snapshot carries: every unfinished job and the recently finished ones. */
  private currentHpcJobs(now: number): HpcBody[] {
    this.dropFinishedHpc(now - SNAPSHOT_HPC_FINISHED_MS);
    return [...this.hpcJobs.values()].map((kept) => kept.message);
  }

  /** A system event; a node's status change also goes out as its `telemetry`, so the map can turn it offline. */
  system(event: SystemEvent): void {
    const message: Omit<FeedSystem, 'seq'> = {
      type: 'system',
      severity: event.severity,
      message: event.message,
      details: { kind: event.kind, ...event.details },
      timestamp: event.timestamp,
      kind: event.kind,
      ...(event.geozone === undefined ? {} : { geozone: event.geozone }),
    };
    this.recent.push({ seq: 0, ...message });
    if (this.recent.length > this.recentMax) this.recent.shift();
    if (this.sessions.size === 0) return;
    const to = event.details?.['to'];
    const node = event.kind.startsWith('node.') && event.subjectId !== undefined ? this.nodes.get(event.subjectId) : undefined;
    // A view's registry (arcnet server) judges silence on its own clock; the writer's event says what the node is now.
    if (node) this.broadcast(tailOf({ type: 'telemetry', node: { ...consoleNode(node), ...(typeof to === 'string' && STATUSES.has(to) ? { status: to as NodeStatus } : {}) } }));
    // A storm of one kind (every request rejected under overload) is counted past a few a second, then summed up once a second.
    const sent = (this.systemThisSecond.get(event.kind) ?? 0) + 1;
    this.systemThisSecond.set(event.kind, sent);
    if (sent > SYSTEM_PER_KIND_PER_SECOND) {
      const held = this.systemHeld.get(event.kind);
      if (held) held.count++;
      else this.systemHeld.set(event.kind, { count: 1, severity: event.severity });
      return;
    }
    this.broadcast(tailOf(message));
  }

  /** Once a second, one `system` message per kind that was held back, counting what it stands for. */
  private flushHeldSystem(now: number): void {
    this.systemThisSecond.clear();
    if (this.systemHeld.size === 0) return;
    const timestamp = new Date(now).toISOString();
    for (const [kind, held] of this.systemHeld) {
      const summary: Omit<FeedSystem, 'seq'> = {
        type: 'system',
        severity: held.severity,
        message: `${held.count} more ${kind} events in the last second (over ${SYSTEM_PER_KIND_PER_SECOND} a second are counted, not sent; GET /api/v1/events has each)`,
        details: { kind, held: held.count },
        timestamp,
        kind,
      };
      this.broadcast(tailOf(summary));
    }
    this.systemHeld.clear();
  }

  closeAll(): void {
    for (const session of this.sessions.values()) session.socket?.close(1001, 'server shutting down');
    this.sessions.clear();
    this.stopTimer();
  }

  private hello(session: Session, resumed: boolean, resync: string | undefined): object {
    return {
      type: 'hello',
      session: session.id,
      serverInstance: this.serverInstance,
      resumed,
      ...(resync === undefined ? {} : { resync }),
      inferencePerSecond: session.inferencePerSecond,
      timestamp: new Date().toISOString(),
    };
  }

  private attach(session: Session, socket: WebSocket): void {
    session.socket = socket;
    session.burst = Infinity;
    const detach = (): void => {
      if (session.socket !== socket) return;
      session.socket = undefined;
      session.detachedAt = Date.now();
    };
    socket.on('close', detach);
    socket.on('error', detach);
  }

  /** After a snapshot or replay, sent while `burst` was unbounded: the socket may hold that plus the usual bound until it drains. */
  private settleBurst(session: Session): void {
    session.burst = session.socket?.bufferedAmount ?? 0;
  }

  /** Adds a message to the session's stream and sends it if a socket is attached. */
  private append(session: Session, tail: string, now: number): void {
    const seq = session.replay.push(tail, now);
    const socket = session.socket;
    if (!socket || socket.readyState !== socket.OPEN) return;
    socket.send(frame(seq, tail));
    const buffered = socket.bufferedAmount;
    if (buffered <= this.maxBuffered) {
      if (session.burst !== Infinity) session.burst = 0;
    } else if (buffered > this.maxBuffered + session.burst) {
      session.socket = undefined;
      session.detachedAt = now;
      socket.close(CLOSE_TOO_SLOW, TOO_SLOW_REASON);
    }
  }

  private broadcast(tail: string): void {
    const now = Date.now();
    for (const session of this.sessions.values()) this.append(session, tail, now);
  }

  /** An inference or rejection message: under the global cap and each session's own rate, else counted. */
  private rated(status: keyof FoldedCounts, tail: () => string): void {
    if (++this.globalThisSecond > this.globalPerSecond) {
      for (const session of this.sessions.values()) this.fold(session, status);
      return;
    }
    const text = tail();
    const now = Date.now();
    for (const session of this.sessions.values()) {
      const limit = session.inferencePerSecond;
      if (limit !== null && ++session.sentThisSecond > limit) this.fold(session, status);
      else this.append(session, text, now);
    }
  }

  private fold(session: Session, status: keyof FoldedCounts): void {
    session.folded[status]++;
    session.heldBack = true;
  }

  /** Once a second: new rate windows, `folded` where anything was held back, old messages and sessions dropped. */
  private tick(): void {
    const now = Date.now();
    const intervalMs = now - this.tickedAt;
    this.tickedAt = now;
    this.globalThisSecond = 0;
    this.flushHeldSystem(now);
    for (const [id, session] of this.sessions) {
      session.sentThisSecond = 0;
      if (session.heldBack) {
        const folded: Omit<FeedFolded, 'seq'> = { type: 'folded', inference: session.folded, intervalMs, timestamp: new Date(now).toISOString() };
        session.folded = { dispatched: 0, completed: 0, failed: 0, rejected: 0 };
        session.heldBack = false;
        this.append(session, tailOf(folded), now);
      }
      session.replay.trim(now - this.replayWindowMs);
      if (!session.socket && now - session.detachedAt > this.sessionTtlMs) this.sessions.delete(id);
    }
    if (this.sessions.size === 0) this.stopTimer();
  }

  private ensureTimer(): void {
    if (this.timer) return;
    this.tickedAt = Date.now();
    this.timer = setInterval(() => this.tick(), 1_000);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Where a request comes from on the map (seed 001's `source`): the centre of the requester's
   * geozone, as the mean position of its known nodes, recomputed at most every 10 s; else the target.
   */
  private sourceOf(geozone: string | undefined, fallbackGeohash: string | undefined): [number, number] {
    const now = Date.now();
    if (!this.centres || now - this.centres.at > 10_000) this.centres = { at: now, byZone: zoneCentres(this.nodes.all()) };
    const centre = geozone === undefined ? undefined : this.centres.byZone.get(geozone);
    if (centre) return centre;
    return fallbackGeohash !== undefined && isGeohash(fallbackGeohash) ? decodeGeohash(fallbackGeohash) : [0, 0];
  }
}

function zoneCentres(nodes: Iterable<NodeState>): Map<string, [number, number]> {
  const sums = new Map<string, [number, number, number]>();
  for (const node of nodes) {
    if (!isGeohash(node.geohash)) continue;
    const [lng, lat] = decodeGeohash(node.geohash);
    const sum = sums.get(node.geozone) ?? [0, 0, 0];
    sum[0] += lng;
    sum[1] += lat;
    sum[2]++;
    sums.set(node.geozone, sum);
  }
  const round = (v: number): number => Math.round(v * 10_000) / 10_000;
  return new Map([...sums].map(([zone, [lng, lat, n]]) => [zone, [round(lng / n), round(lat / n)]]));
}

/** Every NodeTelemetry field and what the registry knows of the node (src/contracts/console.ts). */
export function consoleNode(node: NodeState): ConsoleNode {
  return {
    id: node.id,
    geohash: node.geohash,
    energySource: node.energySource,
    batteryLevel: node.batteryLevel,
    gpuUtilization: node.gpuUtilization,
    gpuMemoryFreeGb: node.gpuMemoryFreeGb,
    modelsLoaded: [...node.modelsLoaded],
    timestamp: new Date(node.reportedAt).toISOString(),
    geozone: node.geozone,
    name: node.name,
    cpuLoad: node.cpuLoad,
    tags: [...node.tags],
    capacity: { cpuCores: node.capacity.cpuCores, memoryGb: node.capacity.memoryGb, gpus: node.capacity.gpus },
    datasetsHot: [...node.datasetsHot],
    status: node.status,
    lastSeen: new Date(node.lastSeen).toISOString(),
  };
}

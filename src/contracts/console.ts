/**
 * The console's contract: the `/telemetry` feed's messages and the shapes of the REST answers the
 * console reads beyond seed 004's. The web app (`web/`) imports these types; the server builds them.
 *
 * The feed keeps seed 001's four message types with their fields exactly (`telemetry`, `inference`,
 * `hpc`, `system`) and adds fields and types a seed client can ignore:
 * - every message carries `seq`, numbered per session from 1 without gaps, so a client can prove it
 *   missed nothing;
 * - the first message of a session is `hello` (session id, whether it resumed), and a new session's
 *   second is `snapshot` (every node, recent events), unless the client asked for `snapshot=telemetry`,
 *   seed 001's form: one `telemetry` message per known node;
 * - a client that reconnects with `?session=<id>&since=<seq>` within the replay window gets exactly
 *   the messages after `since`, then a `hello` with `resumed: true` numbered after them (the stream
 *   stays gapless); past the window (or after a server restart) it gets a new session and
 *   a snapshot, with the reason in `hello.resync`;
 * - a client that asks for `?inferencePerSecond=N` gets at most N `inference` messages a second and,
 *   once a second while any were held back, one `folded` message counting them.
 */
import type { EnergySource, Priority } from './messages.ts';

export type NodeStatus = 'online' | 'busy' | 'draining' | 'offline';

/** Every NodeTelemetry v2 field, plus what the registry knows of the node (status, when it was last seen). */
export interface ConsoleNode {
  id: string;
  geohash: string;
  energySource: EnergySource;
  batteryLevel: number;
  gpuUtilization: number;
  gpuMemoryFreeGb: number;
  modelsLoaded: string[];
  timestamp: string;
  geozone: string;
  name: string;
  cpuLoad: number;
  tags: string[];
  capacity: { cpuCores: number; memoryGb: number; gpus: number };
  datasetsHot: string[];
  status: NodeStatus;
  lastSeen: string;
}

interface Sequenced {
  /** Per session, from 1, no gaps. */
  seq: number;
}

export interface FeedHello extends Sequenced {
  type: 'hello';
  session: string;
  /** The server process; it changes when the server restarts. */
  serverInstance: string;
  /** True when the messages after the client's `since` follow (nothing missed). */
  resumed: boolean;
  /** Why a reconnecting client got a new session instead (unknown session, outside the replay window). */
  resync?: string;
  inferencePerSecond: number | null;
  timestamp: string;
}

export interface FeedSnapshot extends Sequenced {
  type: 'snapshot';
  nodes: ConsoleNode[];
  /** Newest first. */
  events: FeedSystem[];
  timestamp: string;
  /**
   * The latest `hpc` message of every HPC job not finished, and of those finished in the last 10
   * minutes (at most 200, the most recently updated), oldest update first: a console that connects
   * mid-job sees it at once. Absent from servers before it was added.
   */
  hpcJobs?: Omit<FeedHpc, 'seq'>[];
}

export interface FeedTelemetry extends Sequenced {
  type: 'telemetry';
  node: ConsoleNode;
}

export interface FeedInference extends Sequenced {
  type: 'inference';
  requestId: string;
  /** [lng, lat] of the requester's geozone (seed 001). */
  source: [number, number];
  targetNodeId: string;
  modelId: string;
  priority: Priority;
  status: 'dispatched' | 'processing' | 'completed' | 'failed';
  latencyMs?: number;
  timestamp: string;
  // ArcNet additions.
  requesterGeozone?: string;
  targetGeozone?: string;
  forwarded?: boolean;
}

/** A request no node could take: drawn at its origin. Not a seed 001 type; seed clients ignore it. */
export interface FeedRejection extends Sequenced {
  type: 'rejection';
  requestId: string;
  source: [number, number];
  requesterGeozone: string;
  modelId: string;
  priority: Priority;
  reason: string;
  timestamp: string;
}

export interface FeedHpc extends Sequenced {
  type: 'hpc';
  jobId: string;
  sourceNodeId: string;
  datasetSizeGb: number;
  status: 'pending' | 'transferring' | 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
  progress: number;
  bytesTransferred: number;
  timestamp: string;
  // ArcNet additions (the HpcJob's own optional fields): the requester's zone, Slurm's job id, why it
  // is in this state, the checkpoint a completed job wrote.
  geozone?: string;
  schedulerJobId?: string;
  reason?: string;
  checkpointUri?: string;
}

export interface FeedSystem extends Sequenced {
  type: 'system';
  severity: 'info' | 'warn' | 'error' | 'success';
  message: string;
  details?: Record<string, unknown>;
  timestamp: string;
  // ArcNet additions, for filtering.
  kind?: string;
  geozone?: string;
}

/** What a client with an inference rate did not get in the last interval. */
export interface FeedFolded extends Sequenced {
  type: 'folded';
  inference: { dispatched: number; completed: number; failed: number; rejected: number };
  intervalMs: number;
  timestamp: string;
}

export type FeedMessage = FeedHello | FeedSnapshot | FeedTelemetry | FeedInference | FeedRejection | FeedHpc | FeedSystem | FeedFolded;

/** `GET /api/v1/inference/:id/explain`: what the scheduler saw when it decided, recomputed from node documents as of then. */
export interface PlacementExplanation {
  subject: { kind: 'inference'; id: string; modelId: string; requesterGeozone: string; priority: Priority };
  decidedAt: string;
  /** Which documents the answer was computed from. */
  basis: { asOf: string; nodesSeen: number };
  outcome: 'dispatched' | 'rejected';
  /** In profile order: how many nodes each filter removed (a node counts once, at the first filter it fails). */
  filters: { name: string; removed: number }[];
  /** The best candidates that passed every filter, best first, with each weighted score term. */
  candidates: { nodeId: string; nodeName: string; geozone: string; score: number; terms: Record<string, number>; chosen: boolean }[];
  chosen: { nodeId: string; nodeName: string; geozone: string; score: number; forwarded: boolean } | null;
  /** The node the scheduler actually dispatched to (or null when it rejected), for comparison. */
  recorded: { nodeId: string | null; reason?: string };
  /** True when the recomputation picks the node the scheduler picked. */
  agrees: boolean;
  /** Where the recomputation cannot know what the scheduler knew, said plainly (reservations, late documents). */
  approximations?: string[];
}

/** `GET /api/v1/jobs/:id/explain`: for each execution, why that worker. */
export interface JobExplanation {
  jobId: string;
  executions: {
    executionId: string;
    workerId: string;
    placedAt: string;
    filters: { name: string; removed: number }[];
    candidates: { workerId: string; workerName: string; score: number; terms: Record<string, number>; chosen: boolean }[];
    /** True when the recomputation picks the worker the coordinator picked. */
    agrees?: boolean;
  }[];
  /** Where the recomputation approximates what the coordinator knew (allocations of other jobs' executions). */
  approximations?: string[];
}

/** `GET /api/v1/zones`: one row per geozone, live. */
export interface ZoneView {
  geozone: string;
  nodes: { total: number; online: number; busy: number; offline: number };
  gpuAverage: number | null;
  /** Nodes by energy source, from the zone's latest regional summary or, before the first, the registry. */
  energy: Record<EnergySource, number>;
  requestsPerSecond: number;
  routingMsP50: number | null;
  routingMsP99: number | null;
  rejections: { total: number; byReason: Record<string, number> };
  summaryAt: string | null;
}

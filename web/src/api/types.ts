/**
 * REST answers the console reads that `src/contracts/console.ts` does not type: seed 004's job and
 * worker shapes and the node list's extra fields, as the server presents them. Optional where the
 * server may not send a field (older servers, workers without telemetry), so views read defensively.
 */
import type { ConsoleNode } from '../../../src/contracts/console.ts';
import type { TotalFigures, ZoneFigures } from '../../../src/mesh/global-view.ts';
import type { TrainingRecord } from '../../../src/training/model.ts';

export interface Reservation {
  requestId: string;
  fencingToken: number;
  expiresAt: string;
}

/** `GET /api/v1/nodes` rows: a node (from telemetry, a worker, or both merged). */
export type RestNode = Partial<ConsoleNode> & {
  id: string;
  name: string;
  geozone: string;
  status: string;
  reportedAt?: string;
  reservation?: Reservation | null;
  reputation?: number;
  // Seed 004's worker fields, present when the node is a registered worker.
  worker_status?: string;
  reputation_score?: number;
  total_jobs_run?: number;
  successful_jobs_run?: number;
  failed_jobs?: number;
  credits_earned?: number;
  cpu_cores?: number;
  memory_gb?: number;
  gpu_enabled?: boolean;
  gpu_model?: string | null;
  region?: string | null;
  last_heartbeat?: string;
};

export interface NodeList {
  count: number;
  asOf: string | null;
  knownAt: string | null;
  nodes: RestNode[];
}

export interface HistoryVersion {
  version: number;
  validFrom: string;
  txTime: string;
  status?: string;
  gpuUtilization?: number;
  batteryLevel?: number;
  energySource?: string;
}

export type NodeDetailAnswer = RestNode & { history?: HistoryVersion[] };

/** `GET /api/v1/inference` rows. */
export interface InferenceRecord {
  id: string;
  status: string;
  modelId: string;
  requesterGeozone: string;
  priority: string;
  nodeId: string | null;
  nodeName?: string;
  geozone?: string | null;
  forwarded?: boolean;
  score?: number;
  fencingToken?: number;
  latencyMs?: number;
  reason?: string;
  submittedAt?: string;
  dispatchedAt?: string;
  completedAt?: string;
}

export interface Execution {
  id: string;
  job_id: string;
  node_id: string;
  status: string;
  attempt: number;
  scheduled_at: string;
  started_at: string | null;
  completed_at: string | null;
  result: string | null;
  result_encoding: string | null;
  result_hash: string | null;
  exit_code: number | null;
  duration_ms: number | null;
  error_message: string | null;
  verdict: 'agree' | 'disagree' | null;
}

export interface Job {
  id: string;
  name: string;
  docker_image: string;
  command: string[];
  status: string;
  redundancy: number;
  consensus: number;
  submitted_at: string;
  completed_at: string | null;
  result: string | null;
  result_encoding: string | null;
  result_hash: string | null;
  error_message: string | null;
  execution_counts?: Record<string, number>;
  executions?: Execution[];
}

export interface JobList {
  count: number;
  total: number;
  jobs: Job[];
}

/** `GET /api/v1/training` rows and `POST /api/v1/training`'s answer: the stored record (without the script in the list). */
export type TrainingJobRecord = TrainingRecord;

export interface TrainingList {
  count: number;
  total: number;
  jobs: TrainingJobRecord[];
}

/** An active alert of the central orchestrator, as `GET /api/v1/global` shows it (src/mesh/central.ts AlertView). */
export interface GlobalAlert {
  key: string;
  kind: string;
  geozone: string | null;
  severity: 'warn' | 'error';
  since: string;
  message: string;
  details: Readonly<Record<string, unknown>>;
}

/** `GET /api/v1/global` (src/mesh/central.ts GlobalSnapshot). */
export interface GlobalAnswer {
  at: string;
  leading: boolean;
  summaryIntervalMs: number;
  total: TotalFigures;
  zones: ZoneFigures[];
  alerts: GlobalAlert[];
}

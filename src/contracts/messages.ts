/**
 * Message schemas of seeds 000/001 as TypeBox (JSON Schema) definitions. Field names are the seed's
 * kebab-case names in camelCase (`model-id` becomes `modelId`), the same spelling the console protocol
 * uses. The same schemas validate bus messages and HTTP bodies.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

// A pattern rather than `format: 'uuid'`: one inline regex per check, and Fastify's ajv reads it too.
const Uuid = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' });
const Instant = Type.String({ format: 'date-time', minLength: 20 });
const Fraction = Type.Number({ minimum: 0, maximum: 1 });
const Geozone = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });

/**
 * Bounds on what a node, a worker or a client may claim. TypeBox and Ajv already refuse NaN and
 * Infinity (JSON's `1e400` parses to Infinity); these keep the finite numbers sane, so no claim can
 * win every placement (a worker with 1e308 cores) or overflow a sum. Generous: far above any machine
 * or request there is, far below what breaks arithmetic. The API's bodies use the same ones.
 */
export const MAX_CPU_CORES = 4_096;
export const MAX_MEMORY_GB = 65_536;
export const MAX_GPUS = 1_024;
/** A request's latency budget: ten minutes. */
export const MAX_LATENCY_MS = 600_000;
/** A measured latency or duration: one day. */
export const MAX_MEASURED_MS = 86_400_000;
export const MAX_CONTEXT_TOKENS = 10_000_000;
/** Fencing tokens and byte counts stay exact integers. */
const Counter = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Name = Type.String({ minLength: 1, maxLength: 256 });
const Uri = Type.String({ minLength: 1, maxLength: 4_096 });

export const EnergySource = Type.Union([Type.Literal('cogen'), Type.Literal('grid'), Type.Literal('battery')]);
export type EnergySource = Static<typeof EnergySource>;

export const Priority = Type.Union([Type.Literal('critical'), Type.Literal('normal'), Type.Literal('background')]);
export type Priority = Static<typeof Priority>;

export const NodeCapacity = Type.Object({
  cpuCores: Type.Number({ minimum: 0, maximum: MAX_CPU_CORES }),
  memoryGb: Type.Number({ minimum: 0, maximum: MAX_MEMORY_GB }),
  gpus: Type.Integer({ minimum: 0, maximum: MAX_GPUS }),
  gpuMemoryGb: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_MEMORY_GB })),
});
export type NodeCapacity = Static<typeof NodeCapacity>;

/** NodeTelemetry v2 (seed 000), with ArcNet's optional additions for nodes that report more. */
export const NodeTelemetryV2 = Type.Object({
  schemaVersion: Type.Literal(2),
  id: Uuid,
  geohash: Type.String({ minLength: 6, maxLength: 6, pattern: '^[0-9bcdefghjkmnpqrstuvwxyz]{6}$' }),
  energySource: EnergySource,
  batteryLevel: Fraction,
  gpuUtilization: Fraction,
  gpuMemoryFreeGb: Type.Number({ minimum: 0, maximum: MAX_MEMORY_GB }),
  modelsLoaded: Type.Array(Name, { maxItems: 1_024 }),
  timestamp: Instant,
  // ArcNet additions: optional so a seed-conformant node still validates.
  geozone: Type.Optional(Geozone),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  cpuLoad: Type.Optional(Fraction),
  tags: Type.Optional(Type.Array(Name, { maxItems: 256 })),
  capacity: Type.Optional(NodeCapacity),
  datasetsHot: Type.Optional(Type.Array(Uri, { maxItems: 4_096 })),
});
export type NodeTelemetry = Static<typeof NodeTelemetryV2>;

export const InferenceRequestV1 = Type.Object({
  schemaVersion: Type.Literal(1),
  id: Uuid,
  modelId: Name,
  contextWindowTokens: Type.Integer({ minimum: 1, maximum: MAX_CONTEXT_TOKENS }),
  priority: Priority,
  maxLatencyMs: Type.Integer({ minimum: 1, maximum: MAX_LATENCY_MS }),
  requesterGeozone: Geozone,
});
export type InferenceRequest = Static<typeof InferenceRequestV1>;

export const InferenceDispatchV1 = Type.Object({
  schemaVersion: Type.Literal(1),
  requestId: Uuid,
  nodeId: Uuid,
  modelId: Name,
  contextWindowTokens: Type.Integer({ minimum: 1, maximum: MAX_CONTEXT_TOKENS }),
  dispatchedAt: Instant,
  // ArcNet additions: the reservation's fencing token travels with the dispatch so the node's
  // result can be matched to the lease it was given under.
  fencingToken: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
  geozone: Type.Optional(Geozone),
  requesterGeozone: Type.Optional(Geozone),
  // The scheduler's own figure (weights are configuration); finite, as every TypeBox number is.
  score: Type.Optional(Type.Number()),
  priority: Type.Optional(Priority),
  maxLatencyMs: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LATENCY_MS })),
});
export type InferenceDispatch = Static<typeof InferenceDispatchV1>;

/** InferenceResult v1: named by seed 001 (`{request-id, node-id, latency-ms, status}`), defined here. */
export const InferenceResultV1 = Type.Object({
  schemaVersion: Type.Literal(1),
  requestId: Uuid,
  nodeId: Uuid,
  latencyMs: Type.Number({ minimum: 0, maximum: MAX_MEASURED_MS }),
  status: Type.Union([Type.Literal('completed'), Type.Literal('failed')]),
  completedAt: Instant,
  fencingToken: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
  error: Type.Optional(Type.String({ maxLength: 10_000 })),
  outputTokens: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_CONTEXT_TOKENS })),
  output: Type.Optional(Type.String({ maxLength: 65_536 })),
});
export type InferenceResult = Static<typeof InferenceResultV1>;

export const TrainingJobV1 = Type.Object({
  schemaVersion: Type.Literal(1),
  id: Uuid,
  datasetUri: Uri,
  // A petabyte-scale dataset is 1e6 GB; an exaflop-day is ~1e23 FLOPs.
  datasetSizeGb: Type.Number({ minimum: 0, maximum: 1e9 }),
  estimatedFlops: Type.Number({ minimum: 0, maximum: 1e30 }),
  checkpointUri: Type.Optional(Uri),
  // The seed has both required, yet classifying is the bridge's job after it consumes the submission
  // (seed 001 Pattern 3, step 2): on `arc.job.submission` `target` is the submitter's explicit choice
  // (honoured as given) or absent, and the bridge's decision with its reason is the training
  // document's (src/training/model.ts). Optional, so a seed-shaped message with both still validates.
  target: Type.Optional(Type.Union([Type.Literal('hpc'), Type.Literal('federated')])),
  routingReason: Type.Optional(Type.String({ maxLength: 10_000 })),
  urgency: Type.Optional(Type.Union([Type.Literal('critical'), Type.Literal('normal'), Type.Literal('low')])),
  // ArcNet additions: the node holding the dataset and its geozone, when the submitter knows them (the console's arc, hpc.failed's zone).
  sourceNodeId: Type.Optional(Uuid),
  geozone: Type.Optional(Geozone),
});
export type TrainingJob = Static<typeof TrainingJobV1>;

/** HpcJob v1: named by seed 001 for `arc.bridge.pending` and `ornl.bridge.ingress`, defined here. */
export const HpcJobV1 = Type.Object({
  schemaVersion: Type.Literal(1),
  id: Uuid,
  trainingJobId: Uuid,
  datasetUri: Uri,
  datasetSizeGb: Type.Number({ minimum: 0, maximum: 1e9 }),
  destination: Uri,
  status: Type.Union([
    Type.Literal('pending'),
    Type.Literal('transferring'),
    Type.Literal('queued'),
    Type.Literal('running'),
    Type.Literal('completed'),
    Type.Literal('failed'),
    Type.Literal('cancelled'),
  ]),
  bytesTransferred: Counter,
  submittedAt: Instant,
  sourceNodeId: Type.Optional(Uuid),
  schedulerJobId: Type.Optional(Type.String({ maxLength: 256 })),
  // ArcNet additions (issue 13), optional so earlier HpcJobs still validate: why it is in this state
  // (a failure's or cancel's sentence), the transfer's share done, the checkpoint a completed job
  // wrote, when this state began, and the job's geozone where known.
  reason: Type.Optional(Type.String({ maxLength: 10_000 })),
  progress: Type.Optional(Fraction),
  checkpointUri: Type.Optional(Uri),
  updatedAt: Type.Optional(Instant),
  geozone: Type.Optional(Geozone),
});
export type HpcJob = Static<typeof HpcJobV1>;

/** FederatedTask v1: named by seed 001 for `arc.scheduler.training`, defined here. */
export const FederatedTaskV1 = Type.Object({
  schemaVersion: Type.Literal(1),
  id: Uuid,
  trainingJobId: Uuid,
  round: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  // Absent on round 0, the bridge's announcement of a job classified federated, before any node is picked (issue 13).
  nodeId: Type.Optional(Uuid),
  datasetUri: Uri,
  partition: Type.Object({ index: Type.Integer({ minimum: 0, maximum: 1_000_000 }), count: Type.Integer({ minimum: 1, maximum: 1_000_000 }) }),
  checkpointUri: Type.Optional(Type.String({ maxLength: 4_096 })),
  issuedAt: Instant,
});
export type FederatedTask = Static<typeof FederatedTaskV1>;

export const RegionalSummaryV1 = Type.Object({
  schemaVersion: Type.Literal(1),
  geozoneId: Geozone,
  totalNodes: Type.Integer({ minimum: 0 }),
  activeNodes: Type.Integer({ minimum: 0 }),
  avgGpuUtil: Fraction,
  energyBreakdown: Type.Object({
    cogen: Type.Integer({ minimum: 0 }),
    grid: Type.Integer({ minimum: 0 }),
    battery: Type.Integer({ minimum: 0 }),
  }),
  timestamp: Instant,
});
export type RegionalSummary = Static<typeof RegionalSummaryV1>;

export const Severity = Type.Union([Type.Literal('info'), Type.Literal('warn'), Type.Literal('error'), Type.Literal('success')]);
export type Severity = Static<typeof Severity>;

/** SystemEvent v1: named by seed 001, shaped like the console's system message plus a machine-readable kind. */
export const SystemEventV1 = Type.Object({
  schemaVersion: Type.Literal(1),
  id: Uuid,
  kind: Type.String({ minLength: 1 }),
  severity: Severity,
  message: Type.String(),
  geozone: Type.Optional(Geozone),
  subjectId: Type.Optional(Type.String()),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  timestamp: Instant,
});
export type SystemEvent = Static<typeof SystemEventV1>;

export interface SchemaDefinition {
  readonly name: string;
  readonly version: number;
  readonly schema: TSchema;
}

export const schemas = {
  NodeTelemetry: { name: 'NodeTelemetry', version: 2, schema: NodeTelemetryV2 },
  InferenceRequest: { name: 'InferenceRequest', version: 1, schema: InferenceRequestV1 },
  InferenceDispatch: { name: 'InferenceDispatch', version: 1, schema: InferenceDispatchV1 },
  InferenceResult: { name: 'InferenceResult', version: 1, schema: InferenceResultV1 },
  TrainingJob: { name: 'TrainingJob', version: 1, schema: TrainingJobV1 },
  HpcJob: { name: 'HpcJob', version: 1, schema: HpcJobV1 },
  FederatedTask: { name: 'FederatedTask', version: 1, schema: FederatedTaskV1 },
  RegionalSummary: { name: 'RegionalSummary', version: 1, schema: RegionalSummaryV1 },
  SystemEvent: { name: 'SystemEvent', version: 1, schema: SystemEventV1 },
} as const satisfies Record<string, SchemaDefinition>;

export type SchemaName = keyof typeof schemas;

/** Payload type for each schema name, so typed publish/subscribe check at compile time. */
export interface MessageTypes {
  NodeTelemetry: NodeTelemetry;
  InferenceRequest: InferenceRequest;
  InferenceDispatch: InferenceDispatch;
  InferenceResult: InferenceResult;
  TrainingJob: TrainingJob;
  HpcJob: HpcJob;
  FederatedTask: FederatedTask;
  RegionalSummary: RegionalSummary;
  SystemEvent: SystemEvent;
}

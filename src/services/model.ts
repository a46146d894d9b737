/**
 * The services family's model (seed 003, Aether; seed 002, The Hive): a slice is an artifact
 * `group:artifact:version` that runs as a local process or a container, a blueprint names slices and
 * their instance counts, and three KV prefixes hold the cluster's whole persistent state:
 *
 *   blueprints/{name}                             → Blueprint            (the operator's, via the API)
 *   slices/{node-id}/{group:artifact:version}     → SliceRecord          (the leader's command, the node's progress)
 *   endpoints/{group:artifact:version}/{entry}:{instance} → EndpointRecord (the node's, while ACTIVE)
 *
 * One key per node and artifact, as the seed has it: a node runs at most one instance of a slice, so
 * instances of one slice are always spread over distinct nodes.
 */
import { Type, type Static } from '@sinclair/typebox';
import { MAX_CPU_CORES, MAX_MEMORY_GB } from '../contracts/messages.ts';

/** `group:artifact:version`, Maven's coordinates (seed 003). */
export const ARTIFACT_PATTERN = '^[A-Za-z0-9_.-]{1,100}:[A-Za-z0-9_.-]{1,100}:[A-Za-z0-9_.+-]{1,50}$';
const ARTIFACT_RE = new RegExp(ARTIFACT_PATTERN);
/** A name that is safe in a KV key and a URL path segment. */
const NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
const Name = Type.String({ pattern: NAME_PATTERN, minLength: 1, maxLength: 63 });
const Tag = Type.String({ minLength: 1, maxLength: 256 });
const EnvMap = Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$' }), Type.String({ maxLength: 32_768 }), { maxProperties: 256 });

/** Paths of the ArcNet server a service may not take as its `/{service}/…` prefix. */
export const RESERVED_SERVICE_NAMES: ReadonlySet<string> = new Set(['api', 'assets', 'telemetry', 'health', 'ready', 'metrics', 'stats', 'agent', 'agents', 'worker', 'workers', 'console', 'index.html', 'favicon.ico']);

export const ProcessRun = Type.Object(
  {
    kind: Type.Literal('process'),
    /** argv: the executable and its arguments, never a shell line. The runner sets `PORT` (and `ARCNET_PORTS` for several). */
    command: Type.Array(Type.String({ minLength: 1, maxLength: 4_096 }), { minItems: 1, maxItems: 256 }),
    env: Type.Optional(EnvMap),
  },
  { additionalProperties: false },
);

export const ContainerRun = Type.Object(
  {
    kind: Type.Literal('container'),
    /** Must already be on the node: no registry is assumed reachable. */
    image: Type.String({ minLength: 1, maxLength: 512 }),
    command: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 4_096 }), { minItems: 1, maxItems: 256 })),
    env: Type.Optional(EnvMap),
    /** The ports the container listens on inside; the runner maps each to a host port of its range (default [8080]). */
    containerPorts: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65_535 }), { minItems: 1, maxItems: 16 })),
  },
  { additionalProperties: false },
);

export const SliceRun = Type.Union([ProcessRun, ContainerRun]);
export type SliceRun = Static<typeof SliceRun>;

export const EntryPoint = Type.Object(
  {
    /** The entry point's name, the `{method}` of its endpoint keys (seed 003's method name). */
    name: Name,
    /** The HTTP path prefix it serves inside the service (default `/`). */
    path: Type.Optional(Type.String({ pattern: '^/[^\\s?#]*$', maxLength: 1_024 })),
  },
  { additionalProperties: false },
);
export type EntryPoint = Static<typeof EntryPoint>;

export const HealthCheck = Type.Object(
  {
    /** GET this path on the instance's first port; a 2xx gates ACTIVE. */
    path: Type.String({ pattern: '^/[^\\s#]*$', maxLength: 1_024 }),
    intervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000 })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 50, maximum: 60_000 })),
  },
  { additionalProperties: false },
);
export type HealthCheck = Static<typeof HealthCheck>;

export const SliceSpec = Type.Object(
  {
    artifact: Type.String({ pattern: ARTIFACT_PATTERN, maxLength: 256 }),
    instances: Type.Integer({ minimum: 0, maximum: 10_000 }),
    /** The `/{service}/…` prefix the server's router forwards to it (default the artifact id). */
    service: Type.Optional(Name),
    run: SliceRun,
    entryPoints: Type.Optional(Type.Array(EntryPoint, { maxItems: 64 })),
    resources: Type.Optional(
      Type.Object(
        {
          cpu: Type.Number({ exclusiveMinimum: 0, maximum: MAX_CPU_CORES }),
          memoryMb: Type.Integer({ minimum: 1, maximum: MAX_MEMORY_GB * 1_024 }),
        },
        { additionalProperties: false },
      ),
    ),
    /** A node must carry every one (seed 002: `data_node`, `live_node`, `ram_128gb`, `region_…`). */
    requiredTags: Type.Optional(Type.Array(Tag, { maxItems: 64 })),
    /** Datasets (URIs) the slice wants hot: a node that already holds them is preferred. */
    datasets: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 4_096 }), { maxItems: 64 })),
    health: Type.Optional(HealthCheck),
    /** How many host ports the runner gives a process slice (default 1); a container gets one per container port. */
    ports: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })),
  },
  { additionalProperties: false },
);
export type SliceSpec = Static<typeof SliceSpec>;

export const BlueprintBody = Type.Object(
  {
    name: Name,
    slices: Type.Array(SliceSpec, { minItems: 1, maxItems: 256 }),
  },
  { additionalProperties: false },
);
export type BlueprintBody = Static<typeof BlueprintBody>;

/** A stored blueprint: the body plus seed 003's `timestamp` (ms) and who applied it. */
export interface Blueprint extends BlueprintBody {
  readonly timestamp: number;
  readonly appliedBy?: string;
}

/**
 * Seed 003's slice lifecycle. The leader writes the commands (LOAD, ACTIVATE, DEACTIVATE, UNLOAD);
 * the node writes its progress (LOADING, LOADED, ACTIVATING, ACTIVE, DEACTIVATING, UNLOADING, FAILED)
 * and deletes the key when UNLOADING ends.
 */
export const SLICE_STATES = ['LOAD', 'LOADING', 'LOADED', 'ACTIVATE', 'ACTIVATING', 'ACTIVE', 'DEACTIVATE', 'DEACTIVATING', 'UNLOAD', 'UNLOADING', 'FAILED'] as const;
export type SliceState = (typeof SLICE_STATES)[number];
export const COMMAND_STATES: ReadonlySet<SliceState> = new Set(['LOAD', 'ACTIVATE', 'DEACTIVATE', 'UNLOAD']);

export interface SliceRecord {
  readonly state: SliceState;
  /** When the state was written (ms). */
  readonly timestamp: number;
  /** Seed 003's `version`: +1 on every write of this key, so a reader can tell two writes apart. */
  readonly version: number;
  /** The slice's instance number within its artifact (the `{instance}` of its endpoint keys), from 1. */
  readonly instance: number;
  /** The blueprint that asked for it. */
  readonly blueprint: string;
  /** The leader's fencing token when it placed the instance (seed 002's DeploymentID as an increasing epoch). */
  readonly epoch: number;
  /** When the leader placed it (ms): scale-down removes the newest first. */
  readonly placedAt: number;
  /** Why it is in this state: a placement's reason, a failure's. */
  readonly reason?: string;
  /** Where it listens, once spawned (`host:port`, the first port). */
  readonly address?: string;
  /** Restarts the node made after the process exited. */
  readonly restarts?: number;
}

export interface EndpointRecord {
  readonly nodeId: string;
  readonly instance: number;
  readonly state: 'ACTIVE';
  readonly timestamp: number;
  /** `host:port` the entry point answers on. */
  readonly address: string;
  /** The entry point's path prefix inside the service. */
  readonly path: string;
  readonly epoch: number;
}

/** The lease whose holder runs the cluster deployment manager; its token fences every leader write. */
export const SERVICES_LEASE = 'services';

/**
 * The leader's own record, `{ holder, epoch, since }`, written when it takes the lease. It outlives a
 * dead leader: who leads now is the live lease, the record only adds since when.
 */
export const LEADER_KEY = 'services/leader';
/** The leader's map of what it could not place, artifact → `{ blueprint, wanted, placed, reason, rejectedBy }`; absent means none. */
export const UNPLACED_KEY = 'services/status/unplaced';

export const BLUEPRINTS_PREFIX = 'blueprints/';
export const SLICES_PREFIX = 'slices/';
export const ENDPOINTS_PREFIX = 'endpoints/';

export const blueprintKey = (name: string): string => `${BLUEPRINTS_PREFIX}${name}`;
export const nodeSlicesPrefix = (nodeId: string): string => `${SLICES_PREFIX}${nodeId}/`;
export const sliceKey = (nodeId: string, artifact: string): string => `${SLICES_PREFIX}${nodeId}/${artifact}`;
export const artifactEndpointsPrefix = (artifact: string): string => `${ENDPOINTS_PREFIX}${artifact}/`;
export const endpointKey = (artifact: string, entryPoint: string, instance: number): string => `${ENDPOINTS_PREFIX}${artifact}/${entryPoint}:${instance}`;

/** `slices/{node}/{artifact}` → its parts; undefined for a key that is not a slice key. */
export function parseSliceKey(key: string): { nodeId: string; artifact: string } | undefined {
  if (!key.startsWith(SLICES_PREFIX)) return undefined;
  const rest = key.slice(SLICES_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const artifact = rest.slice(slash + 1);
  return ARTIFACT_RE.test(artifact) ? { nodeId: rest.slice(0, slash), artifact } : undefined;
}

/** `endpoints/{artifact}/{entry}:{instance}` → its parts. */
export function parseEndpointKey(key: string): { artifact: string; entryPoint: string; instance: number } | undefined {
  if (!key.startsWith(ENDPOINTS_PREFIX)) return undefined;
  const rest = key.slice(ENDPOINTS_PREFIX.length);
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (slash <= 0 || colon <= slash) return undefined;
  const instance = Number(rest.slice(colon + 1));
  const artifact = rest.slice(0, slash);
  if (!Number.isSafeInteger(instance) || instance < 1 || !ARTIFACT_RE.test(artifact)) return undefined;
  return { artifact, entryPoint: rest.slice(slash + 1, colon), instance };
}

/** The router's prefix for a slice: its `service`, else the artifact id (`org.example:echo:1.0` → `echo`). */
export function serviceNameOf(slice: Pick<SliceSpec, 'artifact' | 'service'>): string {
  return slice.service ?? slice.artifact.split(':')[1]!.toLowerCase();
}

/** The entry points of a slice: as declared, else one named `http` at `/`. */
export function entryPointsOf(slice: Pick<SliceSpec, 'entryPoints'>): readonly EntryPoint[] {
  return slice.entryPoints && slice.entryPoints.length > 0 ? slice.entryPoints : [{ name: 'http', path: '/' }];
}

/**
 * What the schema cannot say: a blueprint names each artifact once, services are unique across it
 * and free of the server's own paths. Returns the first problem as `body/…: sentence`, or undefined.
 */
export function blueprintProblem(body: BlueprintBody): string | undefined {
  const artifacts = new Map<string, number>();
  const services = new Map<string, number>();
  for (const [i, slice] of body.slices.entries()) {
    const seen = artifacts.get(slice.artifact);
    if (seen !== undefined) return `body/slices/${i}/artifact: ${slice.artifact} is already slice ${seen} of this blueprint`;
    artifacts.set(slice.artifact, i);
    const service = serviceNameOf(slice);
    if (!new RegExp(NAME_PATTERN).test(service)) return `body/slices/${i}/service: "${service}" (from the artifact id) is not a valid service name; set service to lowercase letters, digits and -`;
    if (RESERVED_SERVICE_NAMES.has(service)) return `body/slices/${i}/service: "${service}" is one of the server's own paths (${[...RESERVED_SERVICE_NAMES].join(', ')})`;
    const other = services.get(service);
    if (other !== undefined) return `body/slices/${i}/service: "${service}" is already slice ${other}'s service`;
    services.set(service, i);
    const names = new Set<string>();
    for (const [j, entry] of entryPointsOf(slice).entries()) {
      if (names.has(entry.name)) return `body/slices/${i}/entryPoints/${j}/name: "${entry.name}" is declared twice`;
      names.add(entry.name);
    }
    if (slice.run.kind === 'container' && slice.ports !== undefined) return `body/slices/${i}/ports: a container slice gets one host port per run.containerPorts entry; drop ports`;
  }
  return undefined;
}

const Millis = Type.Integer({ minimum: 0, maximum: 8_640_000_000_000_000 });
const Counter = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Address = Type.String({ pattern: '^[A-Za-z0-9.:\\[\\]-]{1,255}:[0-9]{1,5}$', maxLength: 262 });

/** What a node may write to its own slice key: checked on the server, field by field, before it lands. */
export const SliceRecordSchema = Type.Object(
  {
    state: Type.Union(SLICE_STATES.map((s) => Type.Literal(s))),
    timestamp: Millis,
    version: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    instance: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    blueprint: Name,
    epoch: Counter,
    placedAt: Millis,
    reason: Type.Optional(Type.String({ maxLength: 4_096 })),
    address: Type.Optional(Address),
    restarts: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  },
  { additionalProperties: false },
);

export const EndpointRecordSchema = Type.Object(
  {
    nodeId: Type.String({ minLength: 1, maxLength: 64 }),
    instance: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    state: Type.Literal('ACTIVE'),
    timestamp: Millis,
    address: Address,
    path: Type.String({ pattern: '^/', maxLength: 1_024 }),
    epoch: Counter,
  },
  { additionalProperties: false },
);

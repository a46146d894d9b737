/**
 * The services family's management API (issue 14, seed 003's management API): blueprints in, the
 * cluster's slices and endpoints out. Everything it reads and writes is in the KV store under the
 * keys of `src/services/model.ts`:
 *
 *   blueprints/{name}                  written here (deploy, PUT, scale, DELETE), compare-and-set
 *   slices/{node}/{artifact}           read only: the leader writes commands, the nodes their progress
 *   endpoints/{artifact}/{entry}:{n}   read only: the nodes publish them while ACTIVE
 *   services/status/unplaced           read only: the leader's "could not place" map, when it has one
 *   services/leader                    read only: who leads the cluster deployment manager
 *
 * The API never writes a slice key: a change of what should run is a change of a blueprint, and the
 * leader turns it into slice commands. So a viewer's reads and an operator's writes are all here, and
 * what runs is for the leader and the nodes alone to say.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Clock } from '../core/clock.ts';
import { ArcError } from '../core/errors.ts';
import type { KvEntry, KvStore, LeaseStore } from '../store/ports.ts';
import type { NodeState } from '../mesh/node.ts';
import {
  BLUEPRINTS_PREFIX,
  BlueprintBody,
  LEADER_KEY,
  SERVICES_LEASE,
  SLICES_PREFIX,
  UNPLACED_KEY,
  SLICE_STATES,
  SliceSpec,
  artifactEndpointsPrefix,
  blueprintKey,
  blueprintProblem,
  nodeSlicesPrefix,
  parseEndpointKey,
  parseSliceKey,
  serviceNameOf,
  type Blueprint,
  type EndpointRecord,
  type SliceRecord,
  type SliceState,
} from '../services/model.ts';
import { ACCESS } from '../access/policy.ts';
import { principalOf } from '../access/principal.ts';
import { sendApiError } from './errors.ts';


export interface ServiceRoutesDeps {
  readonly kv: KvStore;
  /** Who leads is the live `services` lease, not the leader's record, which a dead leader leaves behind. */
  readonly leases: Pick<LeaseStore, 'current'>;
  readonly clock: Clock;
  /** The nodes as this process's mesh module sees them (its registry, or a server's read-only view). */
  readonly nodes: () => readonly NodeState[];
}

const BlueprintName = BlueprintBody.properties.name;
const Artifact = SliceSpec.properties.artifact;
/** Node ids become part of a KV key (`slices/{node}/…`): no `/`, nothing a prefix scan could widen. */
const NodeId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' });

const NameParams = Type.Object({ name: BlueprintName }, { additionalProperties: false });
const ArtifactParams = Type.Object({ artifact: Artifact }, { additionalProperties: false });
const NodeParams = Type.Object({ id: NodeId }, { additionalProperties: false });
const SliceQuery = Type.Object({ node: Type.Optional(NodeId), artifact: Type.Optional(Artifact) }, { additionalProperties: false });

export const ScaleBody = Type.Object(
  {
    artifact: Artifact,
    instances: SliceSpec.properties.instances,
    /** Which blueprint's slice, when more than one names the artifact; default the one that does. */
    blueprint: Type.Optional(BlueprintName),
  },
  { additionalProperties: false },
);
export type ScaleBody = Static<typeof ScaleBody>;

const invalid = (message: string): ArcError => new ArcError('INVALID_INPUT', message, { retryable: false });
const notFound = (message: string): ArcError => new ArcError('NOT_FOUND', message, { retryable: false });
/** Two writers of one blueprint at once, twice in a row: the caller's retry reads the newer one. */
const raced = (name: string): ArcError => new ArcError('CONFLICT', `blueprint ${name} was changed by another call while this one was applied, twice; read it again and retry`, { retryable: true });

export interface Instance {
  readonly node: string;
  readonly nodeName?: string;
  readonly instance: number;
  readonly state: SliceState;
  readonly timestamp: number;
  readonly address?: string;
  readonly reason?: string;
  readonly restarts?: number;
}

export interface Unplaced {
  readonly reason: string;
  readonly wanted: number;
  readonly placed: number;
  /** The blueprint whose slice it is, and how many nodes each filter removed, when the leader says. */
  readonly blueprint?: string;
  readonly rejectedBy?: Readonly<Record<string, number>>;
}

export interface LeaderInfo {
  readonly holder: string;
  readonly epoch: number | null;
  readonly since: unknown;
}

export interface SliceStatus {
  readonly artifact: string;
  readonly service: string;
  readonly blueprint: string;
  readonly wanted: number;
  readonly active: number;
  /** Instances per state, the states that have any. */
  readonly states: Partial<Record<SliceState, number>>;
  readonly instances: readonly Instance[];
  readonly unplaced: Unplaced | null;
}

interface SliceRow {
  readonly nodeId: string;
  readonly artifact: string;
  readonly record: SliceRecord;
}

/** Every slice key under the prefix, as rows; a key that is not a slice key (or holds no state) is skipped, not answered as a 500. */
async function readSlices(kv: KvStore, prefix: string = SLICES_PREFIX): Promise<SliceRow[]> {
  const rows: SliceRow[] = [];
  for (const entry of (await kv.list<SliceRecord>(prefix)).entries) {
    const parsed = parseSliceKey(entry.key);
    const state = (entry.value as { state?: unknown } | null)?.state;
    if (parsed && typeof state === 'string' && (SLICE_STATES as readonly string[]).includes(state)) rows.push({ ...parsed, record: entry.value });
  }
  return rows;
}

async function readBlueprints(kv: KvStore): Promise<KvEntry<Blueprint>[]> {
  return (await kv.list<Blueprint>(BLUEPRINTS_PREFIX)).entries.filter((e) => Array.isArray((e.value as { slices?: unknown } | null)?.slices));
}

/** The leader's map, read defensively: it is another component's record, and a bad one must not turn a status read into a 500. */
async function readUnplaced(kv: KvStore): Promise<Map<string, Unplaced>> {
  const value = (await kv.get<unknown>(UNPLACED_KEY))?.value;
  const out = new Map<string, Unplaced>();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const [artifact, entry] of Object.entries(value as Record<string, unknown>)) {
    const e = entry as { reason?: unknown; wanted?: unknown; placed?: unknown; blueprint?: unknown; rejectedBy?: unknown } | null;
    if (e === null || typeof e !== 'object' || typeof e.reason !== 'string') continue;
    out.set(artifact, {
      reason: e.reason,
      wanted: typeof e.wanted === 'number' ? e.wanted : 0,
      placed: typeof e.placed === 'number' ? e.placed : 0,
      ...(typeof e.blueprint === 'string' ? { blueprint: e.blueprint } : {}),
      ...(e.rejectedBy !== null && typeof e.rejectedBy === 'object' && !Array.isArray(e.rejectedBy) ? { rejectedBy: e.rejectedBy as Record<string, number> } : {}),
    });
  }
  return out;
}

/** The live lease's holder and token; `since` from the leader's record when that record is this grant's. */
async function readLeader(kv: KvStore, leases: Pick<LeaseStore, 'current'>): Promise<LeaderInfo | null> {
  const [grant, record] = await Promise.all([leases.current(SERVICES_LEASE), kv.get<{ holder?: unknown; epoch?: unknown; since?: unknown }>(LEADER_KEY)]);
  if (grant === undefined) return null;
  const value = record?.value;
  const same = value !== null && typeof value === 'object' && value.holder === grant.holder && value.epoch === grant.token;
  return { holder: grant.holder, epoch: grant.token, since: same ? (value.since ?? null) : null };
}

/** Counts in lifecycle order (LOAD … FAILED), so every answer lists them alike. */
function countStates(rows: readonly { readonly record: SliceRecord }[]): Partial<Record<SliceState, number>> {
  const counts = new Map<SliceState, number>();
  for (const { record } of rows) counts.set(record.state, (counts.get(record.state) ?? 0) + 1);
  const states: Partial<Record<SliceState, number>> = {};
  for (const state of SLICE_STATES) if (counts.has(state)) states[state] = counts.get(state)!;
  return states;
}

function presentInstance(row: SliceRow, names: ReadonlyMap<string, string>): Instance {
  const { record } = row;
  const name = names.get(row.nodeId);
  return {
    node: row.nodeId,
    ...(name === undefined ? {} : { nodeName: name }),
    instance: record.instance,
    state: record.state,
    timestamp: record.timestamp,
    ...(record.address === undefined ? {} : { address: record.address }),
    ...(record.reason === undefined ? {} : { reason: record.reason }),
    ...(record.restarts === undefined ? {} : { restarts: record.restarts }),
  };
}

const byInstance = (a: Instance, b: Instance): number => a.instance - b.instance || a.node.localeCompare(b.node);

function sliceStatus(blueprint: Blueprint, spec: SliceSpec, rows: readonly SliceRow[], unplaced: ReadonlyMap<string, Unplaced>, names: ReadonlyMap<string, string>): SliceStatus {
  const mine = rows.filter((r) => r.artifact === spec.artifact && r.record.blueprint === blueprint.name);
  return {
    artifact: spec.artifact,
    service: serviceNameOf(spec),
    blueprint: blueprint.name,
    wanted: spec.instances,
    active: mine.filter((r) => r.record.state === 'ACTIVE').length,
    states: countStates(mine),
    instances: mine.map((r) => presentInstance(r, names)).sort(byInstance),
    unplaced: unplaced.get(spec.artifact) ?? null,
  };
}

/** Which blueprint (other than `except`) names each artifact. */
function owners(blueprints: readonly KvEntry<Blueprint>[], except: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const { value } of blueprints) {
    if (value.name === except) continue;
    for (const slice of value.slices) if (!out.has(slice.artifact)) out.set(slice.artifact, value.name);
  }
  return out;
}

/**
 * Runs blueprint writes one at a time in this process. CAS on the blueprint's own key keeps two
 * writes of one blueprint from losing either, but "each artifact in one blueprint only" spans keys:
 * two new blueprints claiming one artifact would each see no owner and both land. Serialising here
 * closes that within a server; across server replicas the window remains (the leader must still
 * tolerate a doubly claimed artifact, and `scale` refuses to guess between them).
 */
function serialised(): <T>(work: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(work: () => Promise<T>): Promise<T> => {
    const run = tail.then(work, work);
    tail = run.catch(() => undefined);
    return run;
  };
}

export function registerServiceRoutes(app: FastifyInstance, deps: ServiceRoutesDeps): void {
  const { kv, clock } = deps;
  const oneWriter = serialised();
  const nodeNames = (): Map<string, string> => new Map(deps.nodes().map((n) => [n.id, n.name]));

  /** Creates or replaces `body.name`; CAS on its key's revision, read again and retried once when another write came between. */
  const apply = (body: BlueprintBody, appliedBy: string): Promise<{ created: boolean; blueprint: Blueprint }> =>
    oneWriter(async () => {
      const problem = blueprintProblem(body);
      if (problem !== undefined) throw invalid(problem);
      for (let attempt = 0; attempt < 2; attempt++) {
        const blueprints = await readBlueprints(kv);
        const taken = owners(blueprints, body.name);
        for (const [i, slice] of body.slices.entries()) {
          const owner = taken.get(slice.artifact);
          if (owner !== undefined) throw new ArcError('CONFLICT', `body/slices/${i}/artifact: ${slice.artifact} belongs to blueprint ${owner}; scale or remove it there, or delete ${owner} first`, { retryable: false });
        }
        const current = await kv.get<Blueprint>(blueprintKey(body.name));
        const blueprint: Blueprint = { ...body, timestamp: clock.now(), appliedBy };
        const written = await kv.put(blueprintKey(body.name), blueprint, { expectedRevision: current?.modRevision ?? 0 });
        if (written.ok) return { created: current === undefined, blueprint };
      }
      throw raced(body.name);
    });

  void app.register(async (scope) => {
    scope.setErrorHandler((error, request, reply) => sendApiError(request, reply, error));

    scope.post<{ Body: BlueprintBody }>('/api/v1/deploy', { schema: { body: BlueprintBody }, config: { access: ACCESS.operator } }, async (request, reply) => {
      const outcome = await apply(request.body, principalOf(request).name);
      return reply.status(outcome.created ? 201 : 200).send(outcome);
    });

    scope.get('/api/v1/blueprints', { config: { access: ACCESS.viewer } }, async () => {
      const blueprints = (await readBlueprints(kv)).map((e) => e.value);
      return { count: blueprints.length, blueprints };
    });

    scope.get<{ Params: Static<typeof NameParams> }>('/api/v1/blueprints/:name', { schema: { params: NameParams }, config: { access: ACCESS.viewer } }, async (request) => {
      const found = await kv.get<Blueprint>(blueprintKey(request.params.name));
      if (!found) throw notFound(`no blueprint ${request.params.name}`);
      return found.value;
    });

    scope.put<{ Params: Static<typeof NameParams>; Body: BlueprintBody }>(
      '/api/v1/blueprints/:name',
      { schema: { params: NameParams, body: BlueprintBody }, config: { access: ACCESS.operator } },
      async (request, reply) => {
        if (request.body.name !== request.params.name) throw invalid(`body/name: "${request.body.name}" is not the blueprint of the path, "${request.params.name}"`);
        const outcome = await apply(request.body, principalOf(request).name);
        return reply.status(outcome.created ? 201 : 200).send(outcome);
      },
    );

    scope.delete<{ Params: Static<typeof NameParams> }>('/api/v1/blueprints/:name', { schema: { params: NameParams }, config: { access: ACCESS.operator } }, async (request) => {
      const { name } = request.params;
      return oneWriter(async () => {
        for (let attempt = 0; attempt < 2; attempt++) {
          const current = await kv.get<Blueprint>(blueprintKey(name));
          if (!current) throw notFound(`no blueprint ${name}`);
          // The leader unloads its slices once the key is gone; the API touches no slice key itself.
          const removed = await kv.delete(blueprintKey(name), { expectedRevision: current.modRevision });
          if (removed.ok) return { deleted: name, blueprint: current.value };
        }
        throw raced(name);
      });
    });

    scope.post<{ Body: ScaleBody }>('/api/v1/scale', { schema: { body: ScaleBody }, config: { access: ACCESS.operator } }, async (request) => {
      const { artifact, instances } = request.body;
      const by = principalOf(request).name;
      return oneWriter(async () => {
        let name = request.body.blueprint ?? artifact;
        for (let attempt = 0; attempt < 2; attempt++) {
          const holders = (await readBlueprints(kv)).filter((e) => (request.body.blueprint === undefined || e.value.name === request.body.blueprint) && e.value.slices.some((s) => s.artifact === artifact));
          if (holders.length === 0) throw notFound(request.body.blueprint === undefined ? `no blueprint has a slice ${artifact}` : `blueprint ${request.body.blueprint} is not known or has no slice ${artifact}`);
          if (holders.length > 1) throw new ArcError('CONFLICT', `body/blueprint: ${artifact} is named by blueprints ${holders.map((h) => h.value.name).join(', ')}; say which`, { retryable: false });
          const entry = holders[0]!;
          name = entry.value.name;
          const previous = entry.value.slices.find((s) => s.artifact === artifact)!.instances;
          const blueprint: Blueprint = { ...entry.value, slices: entry.value.slices.map((s) => (s.artifact === artifact ? { ...s, instances } : s)), timestamp: clock.now(), appliedBy: by };
          const written = await kv.put(entry.key, blueprint, { expectedRevision: entry.modRevision });
          if (written.ok) return { blueprint: blueprint.name, artifact, instances, previous, timestamp: blueprint.timestamp };
        }
        throw raced(name);
      });
    });

    scope.get('/api/v1/status', { config: { access: ACCESS.viewer } }, async () => {
      const [blueprints, rows, unplaced, leader] = await Promise.all([readBlueprints(kv), readSlices(kv), readUnplaced(kv), readLeader(kv, deps.leases)]);
      const names = nodeNames();
      const claimed = new Set<SliceRow>();
      const presented = blueprints.map(({ value: blueprint }) => {
        const slices = blueprint.slices.map((spec) => sliceStatus(blueprint, spec, rows, unplaced, names));
        for (const row of rows) if (row.record.blueprint === blueprint.name && blueprint.slices.some((s) => s.artifact === row.artifact)) claimed.add(row);
        return {
          name: blueprint.name,
          timestamp: blueprint.timestamp,
          ...(blueprint.appliedBy === undefined ? {} : { appliedBy: blueprint.appliedBy }),
          wanted: slices.reduce((sum, s) => sum + s.wanted, 0),
          active: slices.reduce((sum, s) => sum + s.active, 0),
          slices,
        };
      });
      // Keys no current blueprint names: a removed blueprint's or a scaled-away slice's, until the leader has them unloaded.
      const unowned = rows.filter((r) => !claimed.has(r)).map((r) => ({ artifact: r.artifact, blueprint: r.record.blueprint, ...presentInstance(r, names) }));
      return {
        leader,
        blueprints: presented,
        unowned,
        totals: {
          blueprints: presented.length,
          slices: presented.reduce((sum, b) => sum + b.slices.length, 0),
          wanted: presented.reduce((sum, b) => sum + b.wanted, 0),
          instances: rows.length,
          active: rows.filter((r) => r.record.state === 'ACTIVE').length,
          unplaced: unplaced.size,
          states: countStates(rows),
        },
      };
    });

    scope.get<{ Querystring: Static<typeof SliceQuery> }>('/api/v1/slices', { schema: { querystring: SliceQuery }, config: { access: ACCESS.viewer } }, async (request) => {
      const { node, artifact } = request.query;
      const rows = (await readSlices(kv, node === undefined ? SLICES_PREFIX : nodeSlicesPrefix(node)))
        .filter((r) => artifact === undefined || r.artifact === artifact)
        .sort((x, y) => x.artifact.localeCompare(y.artifact) || x.record.instance - y.record.instance || x.nodeId.localeCompare(y.nodeId));
      const names = nodeNames();
      const slices = rows.map((r) => ({ artifact: r.artifact, blueprint: r.record.blueprint, ...presentInstance(r, names), epoch: r.record.epoch, placedAt: r.record.placedAt, version: r.record.version }));
      return { count: slices.length, ...(node === undefined ? {} : { node }), ...(artifact === undefined ? {} : { artifact }), slices };
    });

    scope.get<{ Params: Static<typeof ArtifactParams> }>('/api/v1/slices/:artifact', { schema: { params: ArtifactParams }, config: { access: ACCESS.viewer } }, async (request) => {
      const { artifact } = request.params;
      const [blueprints, rows, unplaced, endpointEntries] = await Promise.all([readBlueprints(kv), readSlices(kv), readUnplaced(kv), kv.list<EndpointRecord>(artifactEndpointsPrefix(artifact))]);
      const mine = rows.filter((r) => r.artifact === artifact);
      const holders = blueprints.filter((e) => e.value.slices.some((s) => s.artifact === artifact));
      const endpoints = endpointEntries.entries.flatMap((e) => {
        const parsed = parseEndpointKey(e.key);
        // A key under the prefix with a further `/` parses as another artifact (the last `/` splits): not this slice's.
        return parsed && parsed.artifact === artifact && typeof e.value === 'object' && e.value !== null ? [{ entryPoint: parsed.entryPoint, ...e.value, instance: parsed.instance }] : [];
      });
      if (holders.length === 0 && mine.length === 0 && endpoints.length === 0) throw notFound(`no blueprint names slice ${artifact} and no node holds it`);
      const names = nodeNames();
      const statuses = holders.map((e) => sliceStatus(e.value, e.value.slices.find((s) => s.artifact === artifact)!, rows, unplaced, names));
      const claimed = new Set(holders.map((e) => e.value.name));
      return {
        artifact,
        blueprints: holders.map((e) => e.value.name),
        wanted: statuses.reduce((sum, s) => sum + s.wanted, 0),
        active: mine.filter((r) => r.record.state === 'ACTIVE').length,
        states: countStates(mine),
        slices: statuses,
        unowned: mine.filter((r) => !claimed.has(r.record.blueprint)).map((r) => ({ blueprint: r.record.blueprint, ...presentInstance(r, names) })),
        endpoints,
        unplaced: unplaced.get(artifact) ?? null,
      };
    });

    scope.get<{ Params: Static<typeof NodeParams> }>('/api/v1/nodes/:id/slices', { schema: { params: NodeParams }, config: { access: ACCESS.viewer } }, async (request) => {
      const { id } = request.params;
      const node = deps.nodes().find((n) => n.id === id);
      const rows = await readSlices(kv, nodeSlicesPrefix(id));
      if (!node && rows.length === 0) throw notFound(`node ${id} is not known and holds no slice`);
      const names = nodeNames();
      return {
        node: id,
        ...(node ? { name: node.name, status: node.status } : { known: false }),
        count: rows.length,
        states: countStates(rows),
        slices: rows.map((r) => ({ artifact: r.artifact, blueprint: r.record.blueprint, ...presentInstance(r, names) })),
      };
    });

    scope.get('/api/v1/cluster/nodes', { config: { access: ACCESS.viewer } }, async () => {
      const rows = await readSlices(kv);
      const perNode = new Map<string, SliceRow[]>();
      for (const row of rows) perNode.set(row.nodeId, [...(perNode.get(row.nodeId) ?? []), row]);
      const known = [...deps.nodes()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
      const nodes = known.map((n) => {
        const held = perNode.get(n.id) ?? [];
        return { id: n.id, name: n.name, geozone: n.geozone, status: n.status, tags: n.tags, cpuLoad: n.cpuLoad, capacity: n.capacity, datasetsHot: n.datasetsHot, slices: held.length, states: countStates(held) };
      });
      const ids = new Set(known.map((n) => n.id));
      // Keys of nodes the mesh does not know (gone, or known to another view): their slices still count somewhere.
      const unknown = [...perNode].filter(([id]) => !ids.has(id)).map(([id, held]) => ({ id, slices: held.length, states: countStates(held) }));
      return { count: nodes.length, nodes, unknown };
    });
  });
}

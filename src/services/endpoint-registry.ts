/**
 * Where the server's router finds a service's instances (issue 14, seed 003's EndpointRegistry): an
 * in-memory view of two KV prefixes, kept by watching them, never by polling.
 *
 *   blueprints/{name}                          → service name → artifact and its entry point (serviceNameOf)
 *   endpoints/{artifact}/{entry}:{instance}    → the ACTIVE endpoints of each artifact
 *
 * `start()` lists both prefixes and then watches each from the revision its list was read at, so no
 * change between the list and the watch is lost or seen twice (the KvStore's watch contract).
 *
 * Fencing (seed 002's DeploymentID): each instance of an artifact carries the leader's epoch when it
 * was placed. Once a record of `{artifact}#{instance}` with epoch N has been seen, a record of the same
 * instance with an epoch below N is ignored, for any entry point and for as long as this registry
 * runs, even after the newer record is deleted: an old instance that comes back from a partition and
 * writes its endpoint again can never receive traffic. After a restart the floor is rebuilt from what
 * the KV holds then.
 *
 * `pick` balances over the instances of a service: the fewest requests in flight (counted here, per
 * address, between a pick and its release), ties in round-robin order.
 */
import type { Logger } from '../core/logging.ts';
import { errorMessage } from '../core/errors.ts';
import type { KvEntry, KvEvent, KvStore, KvWatch } from '../store/ports.ts';
import { ARTIFACT_PATTERN, BLUEPRINTS_PREFIX, ENDPOINTS_PREFIX, RESERVED_SERVICE_NAMES, entryPointsOf, parseEndpointKey, serviceNameOf, type SliceSpec } from './model.ts';

const ARTIFACT_RE = new RegExp(ARTIFACT_PATTERN);
const ADDRESS_RE = /^[A-Za-z0-9.:[\]-]{1,255}:\d{1,5}$/;

/** One ACTIVE, unfenced endpoint of an instance. */
export interface ServiceEndpoint {
  /** Its KV key: names it uniquely (`pick`'s exclude set holds these). */
  readonly key: string;
  readonly artifact: string;
  readonly entryPoint: string;
  readonly instance: number;
  readonly nodeId: string;
  /** `host:port`. */
  readonly address: string;
  /** The entry point's path prefix inside the service (`/` for none). */
  readonly path: string;
  readonly epoch: number;
  readonly timestamp: number;
}

/** A service a blueprint names: what its `/{service}/…` prefix routes to. */
export interface ServiceRoute {
  readonly service: string;
  readonly artifact: string;
  readonly blueprint: string;
  /** The slice's first entry point (`http` when it declares none): the one the router forwards to. */
  readonly entryPoint: string;
}

export type Resolution =
  | { readonly found: true; readonly route: ServiceRoute; readonly endpoints: readonly ServiceEndpoint[] }
  /** `known`: a blueprint names the service, but no instance of it is ACTIVE now. */
  | { readonly found: false; readonly known: boolean; readonly route?: ServiceRoute; readonly missing: string };

export type PickOutcome =
  | { readonly found: true; readonly route: ServiceRoute; readonly endpoint: ServiceEndpoint; /** Ends this request's in-flight count; calling it again does nothing. */ readonly release: () => void }
  | { readonly found: false; readonly known: boolean; readonly route?: ServiceRoute; readonly missing: string };

export interface RegistrySnapshot {
  readonly ready: boolean;
  readonly services: readonly (ServiceRoute & { readonly endpoints: readonly (ServiceEndpoint & { readonly inFlight: number })[] })[];
  /** Services a second blueprint also names: the earlier-applied blueprint keeps the name. */
  readonly conflicts: readonly { readonly service: string; readonly blueprint: string; readonly artifact: string; readonly heldBy: string }[];
  /** Endpoint writes ignored because a newer epoch of the same instance had been seen. */
  readonly fencedWrites: number;
}

export interface EndpointRegistryDeps {
  readonly kv: KvStore;
  /** Malformed records and fenced writes are reported here. */
  readonly logger?: Logger;
}

interface BlueprintServices {
  readonly name: string;
  /** Seed 003's `timestamp`: the earlier blueprint keeps a service name two of them claim. */
  readonly timestamp: number;
  readonly routes: readonly ServiceRoute[];
}

export class EndpointRegistry {
  private readonly kv: KvStore;
  private readonly logger: Logger | undefined;
  private readonly blueprints = new Map<string, BlueprintServices>();
  private services = new Map<string, ServiceRoute>();
  private conflicts: RegistrySnapshot['conflicts'] = [];
  /** artifact → endpoint key → endpoint. */
  private readonly endpoints = new Map<string, Map<string, ServiceEndpoint>>();
  /** `{artifact}#{instance}` → the highest epoch seen for it. */
  private readonly epochFloor = new Map<string, number>();
  private readonly inFlight = new Map<string, number>();
  private readonly cursors = new Map<string, number>();
  private readonly watches: KvWatch[] = [];
  private fenced = 0;
  private started: Promise<void> | undefined;
  private isReady = false;
  private stopped = false;

  constructor(deps: EndpointRegistryDeps) {
    this.kv = deps.kv;
    this.logger = deps.logger;
  }

  /** True once both prefixes were listed and their watches opened. */
  get ready(): boolean {
    return this.isReady;
  }

  /** Lists both prefixes, then watches them; resolves when the view holds the listed state. A failed start may be called again. */
  start(): Promise<void> {
    this.started ??= this.load().catch((error: unknown) => {
      this.started = undefined;
      throw error;
    });
    return this.started;
  }

  stop(): void {
    this.stopped = true;
    for (const watch of this.watches.splice(0)) watch.close();
  }

  /** Whether a blueprint names this service (synchronous: the router asks it while matching a route). */
  knows(service: string): boolean {
    return this.services.has(service);
  }

  resolve(service: string): Resolution {
    const route = this.services.get(service);
    if (route === undefined) return { found: false, known: false, missing: `no blueprint names a service "${service}"` };
    const endpoints = this.endpointsOf(route);
    if (endpoints.length === 0) {
      return { found: false, known: true, route, missing: `no instance has published an ACTIVE endpoint "${route.entryPoint}" (instances may still be starting, or none is placed)` };
    }
    return { found: true, route, endpoints };
  }

  /**
   * An instance to send one request to: the fewest in flight among those not in `exclude` (endpoint
   * keys, the instances a caller already tried), ties in turn. Call `release` when the exchange ends.
   */
  pick(service: string, exclude?: ReadonlySet<string>): PickOutcome {
    const resolution = this.resolve(service);
    if (!resolution.found) return resolution;
    const { route } = resolution;
    const candidates = exclude === undefined || exclude.size === 0 ? resolution.endpoints : resolution.endpoints.filter((e) => !exclude.has(e.key));
    if (candidates.length === 0) return { found: false, known: true, route, missing: `every ACTIVE instance (${resolution.endpoints.length}) was already tried` };
    const start = (this.cursors.get(service) ?? 0) % candidates.length;
    let best = start;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let i = 0; i < candidates.length; i++) {
      const index = (start + i) % candidates.length;
      const load = this.inFlight.get(candidates[index]!.address) ?? 0;
      if (load < bestLoad) {
        best = index;
        bestLoad = load;
      }
    }
    this.cursors.set(service, best + 1);
    const endpoint = candidates[best]!;
    return { found: true, route, endpoint, release: this.begin(endpoint.address) };
  }

  /** Counts a request in flight to `address` until the returned function is called (once). */
  begin(address: string): () => void {
    this.inFlight.set(address, (this.inFlight.get(address) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(address) ?? 1) - 1;
      if (left <= 0) this.inFlight.delete(address);
      else this.inFlight.set(address, left);
    };
  }

  /** How many services the router knows, without building a snapshot (the module's health asks every probe). */
  get serviceCount(): number {
    return this.services.size;
  }

  snapshot(): RegistrySnapshot {
    const services = [...this.services.values()]
      .sort((a, b) => a.service.localeCompare(b.service))
      .map((route) => ({
        ...route,
        endpoints: [...(this.endpoints.get(route.artifact)?.values() ?? [])].sort(byInstance).map((e) => ({ ...e, inFlight: this.inFlight.get(e.address) ?? 0 })),
      }));
    return { ready: this.isReady, services, conflicts: this.conflicts, fencedWrites: this.fenced };
  }

  private endpointsOf(route: ServiceRoute): ServiceEndpoint[] {
    const all = this.endpoints.get(route.artifact);
    if (all === undefined) return [];
    return [...all.values()].filter((e) => e.entryPoint === route.entryPoint).sort(byInstance);
  }

  private async load(): Promise<void> {
    const [blueprints, endpoints] = await Promise.all([this.kv.list<unknown>(BLUEPRINTS_PREFIX), this.kv.list<unknown>(ENDPOINTS_PREFIX)]);
    if (this.stopped) return;
    for (const entry of blueprints.entries) this.putBlueprint(entry.key, entry.value, false);
    this.rebuildServices();
    for (const entry of byEpoch(endpoints.entries)) this.putEndpoint(entry.key, entry.value);
    this.watches.push(this.kv.watch<unknown>(BLUEPRINTS_PREFIX, blueprints.revision, (event) => this.onBlueprint(event)));
    this.watches.push(this.kv.watch<unknown>(ENDPOINTS_PREFIX, endpoints.revision, (event) => this.onEndpoint(event)));
    this.isReady = true;
  }

  private onBlueprint(event: KvEvent<unknown>): void {
    if (this.stopped) return;
    if (event.type === 'delete') this.blueprints.delete(event.key.slice(BLUEPRINTS_PREFIX.length));
    else this.putBlueprint(event.key, event.value, true);
    this.rebuildServices();
  }

  private onEndpoint(event: KvEvent<unknown>): void {
    if (this.stopped) return;
    if (event.type === 'delete') this.removeEndpoint(event.key);
    else this.putEndpoint(event.key, event.value);
  }

  private putBlueprint(key: string, value: unknown, live: boolean): void {
    const name = key.slice(BLUEPRINTS_PREFIX.length);
    const body = value as { slices?: unknown; timestamp?: unknown } | null;
    if (body === null || typeof body !== 'object' || !Array.isArray(body.slices)) {
      this.logger?.warn({ key }, 'endpoint registry: a blueprint record without slices is ignored');
      this.blueprints.delete(name);
      return;
    }
    const routes: ServiceRoute[] = [];
    for (const slice of body.slices as unknown[]) {
      const spec = slice as Partial<SliceSpec> | null;
      if (spec === null || typeof spec !== 'object' || typeof spec.artifact !== 'string' || !ARTIFACT_RE.test(spec.artifact)) continue;
      let service: string;
      let entryPoint: string;
      try {
        service = serviceNameOf({ artifact: spec.artifact, ...(typeof spec.service === 'string' ? { service: spec.service } : {}) });
        entryPoint = entryPointsOf({ ...(Array.isArray(spec.entryPoints) ? { entryPoints: spec.entryPoints } : {}) })[0]!.name;
      } catch (error) {
        this.logger?.warn({ key, artifact: spec.artifact, err: errorMessage(error) }, 'endpoint registry: a slice without a usable service name or entry point is ignored');
        continue;
      }
      // The API refuses these names; a record written past it must still never shadow the server's own paths.
      if (RESERVED_SERVICE_NAMES.has(service)) {
        if (live) this.logger?.warn({ key, service }, 'endpoint registry: a slice whose service is one of the server\'s own paths is not routed');
        continue;
      }
      routes.push({ service, artifact: spec.artifact, blueprint: name, entryPoint });
    }
    this.blueprints.set(name, { name, timestamp: typeof body.timestamp === 'number' ? body.timestamp : Number.POSITIVE_INFINITY, routes });
  }

  /** Service names from every blueprint; two claiming one name: the earlier-applied keeps it (then the name order). */
  private rebuildServices(): void {
    const ordered = [...this.blueprints.values()].sort((a, b) => a.timestamp - b.timestamp || a.name.localeCompare(b.name));
    const services = new Map<string, ServiceRoute>();
    const conflicts: { service: string; blueprint: string; artifact: string; heldBy: string }[] = [];
    for (const blueprint of ordered) {
      for (const route of blueprint.routes) {
        const held = services.get(route.service);
        if (held === undefined) services.set(route.service, route);
        else conflicts.push({ service: route.service, blueprint: route.blueprint, artifact: route.artifact, heldBy: held.blueprint });
      }
    }
    this.services = services;
    this.conflicts = conflicts;
  }

  private putEndpoint(key: string, value: unknown): void {
    const parsed = parseEndpointKey(key);
    if (parsed === undefined) return;
    const record = value as Record<string, unknown> | null;
    const epoch = record !== null && typeof record === 'object' && typeof record['epoch'] === 'number' && Number.isFinite(record['epoch']) ? record['epoch'] : undefined;
    const instanceId = `${parsed.artifact}#${parsed.instance}`;
    const floor = this.epochFloor.get(instanceId);
    if (epoch !== undefined && floor !== undefined && epoch < floor) {
      // The KV now holds the stale write, but the newer instance has not said it stopped: keep routing to it.
      this.fenced++;
      this.logger?.warn({ key, epoch, floor }, 'endpoint registry: an endpoint of an older epoch of this instance is ignored (fenced)');
      return;
    }
    const endpoint = epoch === undefined ? undefined : endpointOf(key, parsed, record!, epoch);
    if (endpoint === undefined) {
      // Whatever the key held before, it no longer says ACTIVE.
      this.removeEndpoint(key);
      if (record === null || typeof record !== 'object' || record['state'] === 'ACTIVE') this.logger?.warn({ key }, 'endpoint registry: a malformed endpoint record is ignored');
      return;
    }
    if (floor === undefined || epoch! > floor) {
      this.epochFloor.set(instanceId, epoch!);
      // A newer epoch of the instance retires every endpoint the older one published, on any entry point.
      for (const [other, known] of this.endpoints.get(parsed.artifact) ?? []) {
        if (known.instance === parsed.instance && known.epoch < epoch!) this.removeEndpoint(other);
      }
    }
    let byKey = this.endpoints.get(parsed.artifact);
    if (byKey === undefined) this.endpoints.set(parsed.artifact, (byKey = new Map()));
    byKey.set(key, endpoint);
  }

  private removeEndpoint(key: string): void {
    const parsed = parseEndpointKey(key);
    if (parsed === undefined) return;
    const byKey = this.endpoints.get(parsed.artifact);
    if (byKey === undefined) return;
    byKey.delete(key);
    if (byKey.size === 0) this.endpoints.delete(parsed.artifact);
  }
}

function endpointOf(key: string, parsed: { artifact: string; entryPoint: string; instance: number }, record: Record<string, unknown>, epoch: number): ServiceEndpoint | undefined {
  const { state, nodeId, address, path, timestamp } = record;
  if (state !== 'ACTIVE' || typeof nodeId !== 'string' || nodeId.length === 0 || typeof address !== 'string' || !ADDRESS_RE.test(address)) return undefined;
  const prefix = typeof path === 'string' && path.startsWith('/') ? path : '/';
  return { key, artifact: parsed.artifact, entryPoint: parsed.entryPoint, instance: parsed.instance, nodeId, address, path: prefix, epoch, timestamp: typeof timestamp === 'number' ? timestamp : 0 };
}

/** Listed entries, lowest epoch first: the newest epoch of an instance then retires the older ones whatever their key order. */
function byEpoch(entries: readonly KvEntry<unknown>[]): KvEntry<unknown>[] {
  const epochOf = (entry: KvEntry<unknown>): number => {
    const epoch = (entry.value as { epoch?: unknown } | null)?.epoch;
    return typeof epoch === 'number' ? epoch : Number.NEGATIVE_INFINITY;
  };
  return [...entries].sort((a, b) => epochOf(a) - epochOf(b));
}

function byInstance(a: ServiceEndpoint, b: ServiceEndpoint): number {
  return a.instance - b.instance || a.entryPoint.localeCompare(b.entryPoint) || a.nodeId.localeCompare(b.nodeId);
}

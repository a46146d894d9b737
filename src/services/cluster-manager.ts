/**
 * The cluster deployment manager (seed 003): runs in every process of the services module and acts
 * only while its replica holds the `services` lease (the one lease-and-fence mechanism,
 * src/leases/leadership.ts). On taking the lease it rebuilds its view from a KV snapshot
 * (`blueprints/`, `slices/`) and reconciles; after that it follows both prefixes with a KV watch and
 * the mesh's node list, and reconciles on every blueprint change, node join, leave or failure and
 * slice failure. Planning is the pure `planServices` (./planner.ts); this shell applies the plan:
 * forgets and stops before places, every write fenced with the lease's token (which also becomes
 * each new instance's epoch), places compare-and-set on the key not existing, stops on the revision
 * planned from. A write refused as stale means another replica leads: this one stops at once.
 *
 * Node changes are noticed by a cheap fingerprint of what placement reads (status, tags, capacity,
 * datasets; CPU load only in coarse steps, so telemetry noise does not replan every second).
 */
import type { Clock } from '../core/clock.ts';
import { errorMessage, StaleFencingTokenError } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import type { Leadership } from '../leases/leadership.ts';
import type { Fence, KvEvent, KvStore, KvWatch } from '../store/ports.ts';
import { BLUEPRINTS_PREFIX, LEADER_KEY, SLICES_PREFIX, UNPLACED_KEY, artifactEndpointsPrefix, parseEndpointKey, parseSliceKey, sliceKey, type Blueprint, type EndpointRecord, type SliceRecord } from './model.ts';
import type { ExistingSlice, Plan, PlanChange, ServiceNode, Unplaced } from './plan.ts';
import { planServices } from './planner.ts';


export interface ClusterManagerDeps {
  readonly kv: KvStore;
  /** The `services` lease: `leading` and the fence every write carries. */
  readonly leadership: Leadership & { readonly leading: boolean };
  /** The mesh's view of the nodes, as placement reads them. */
  readonly nodes: () => readonly ServiceNode[];
  readonly clock: Clock;
  readonly logger: Logger;
  readonly instanceId: string;
  /** How often node changes are looked for and a reconcile retried (default 500 ms). */
  readonly tickMs?: number;
  /** A burst of KV events is planned once, this long after the first (default 25 ms). */
  readonly debounceMs?: number;
}

interface SliceEntry {
  readonly record: SliceRecord;
  readonly revision: number;
}

export interface ClusterManagerStatus {
  readonly leading: boolean;
  readonly epoch: number | null;
  readonly blueprints: number;
  readonly instances: number;
  readonly unplaced: readonly Unplaced[];
  readonly lastPlan: { readonly at: number; readonly changes: number; readonly ms: number } | null;
  readonly reconciles: number;
}

export class ClusterDeploymentManager {
  private readonly deps: ClusterManagerDeps;
  private readonly blueprints = new Map<string, Blueprint>();
  /** key → entry, for every `slices/` key. */
  private readonly slices = new Map<string, SliceEntry>();
  private watches: KvWatch[] = [];
  private leadingEpoch: number | null = null;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private dirty = false;
  private nodeFingerprint = '';
  private unplacedFingerprint = '';
  private stopped = false;
  private unplaced: readonly Unplaced[] = [];
  private lastPlan: ClusterManagerStatus['lastPlan'] = null;
  private reconciles = 0;

  constructor(deps: ClusterManagerDeps) {
    this.deps = deps;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.deps.tickMs ?? 500);
    this.timer.unref();
    this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    this.closeWatches();
    await this.running;
  }

  status(): ClusterManagerStatus {
    let instances = 0;
    for (const entry of this.slices.values()) if (entry.record.state !== 'UNLOAD' && entry.record.state !== 'UNLOADING') instances++;
    return { leading: this.leadingEpoch !== null, epoch: this.leadingEpoch, blueprints: this.blueprints.size, instances, unplaced: this.unplaced, lastPlan: this.lastPlan, reconciles: this.reconciles };
  }

  /** Follows the lease: takes over (snapshot + watch) when it is won, drops the view when it is lost. */
  private tick(): void {
    if (this.stopped) return;
    const fence = this.deps.leadership.leading ? this.deps.leadership.fence() : undefined;
    const epoch = fence?.token ?? null;
    if (epoch !== this.leadingEpoch) {
      this.leadingEpoch = epoch;
      this.closeWatches();
      if (epoch !== null) this.enqueue(() => this.takeOver(epoch));
      return;
    }
    if (epoch === null) return;
    const fingerprint = this.fingerprintNodes();
    if (fingerprint !== this.nodeFingerprint || this.dirty) this.schedule(0);
  }

  private enqueue(work: () => Promise<void>): void {
    this.running = this.running.then(work).catch((error: unknown) => {
      this.deps.logger.warn({ err: errorMessage(error) }, 'services reconcile failed; retrying on the next tick');
      this.dirty = true;
    });
  }

  private schedule(delayMs: number): void {
    if (this.debounce !== undefined) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.enqueue(() => this.reconcile());
    }, delayMs);
    this.debounce.unref();
  }

  private async takeOver(epoch: number): Promise<void> {
    const { kv, logger } = this.deps;
    const [blueprints, slices] = await Promise.all([kv.list<Blueprint>(BLUEPRINTS_PREFIX), kv.list<SliceRecord>(SLICES_PREFIX)]);
    if (this.leadingEpoch !== epoch || this.stopped) return;
    this.blueprints.clear();
    this.slices.clear();
    for (const entry of blueprints.entries) this.blueprints.set(entry.key.slice(BLUEPRINTS_PREFIX.length), entry.value);
    for (const entry of slices.entries) if (parseSliceKey(entry.key)) this.slices.set(entry.key, { record: entry.value, revision: entry.modRevision });
    this.watches = [
      kv.watch<Blueprint>(BLUEPRINTS_PREFIX, blueprints.revision, (event) => this.onBlueprint(event)),
      kv.watch<SliceRecord>(SLICES_PREFIX, slices.revision, (event) => this.onSlice(event)),
    ];
    logger.info({ epoch, blueprints: this.blueprints.size, slices: this.slices.size }, 'leading the services cluster: view rebuilt from the KV, reconciling');
    await this.put(LEADER_KEY, { holder: this.deps.instanceId, epoch, since: this.deps.clock.now() });
    await this.reconcile();
  }

  private onBlueprint(event: KvEvent<Blueprint>): void {
    const name = event.key.slice(BLUEPRINTS_PREFIX.length);
    if (event.type === 'delete' || event.value === undefined) this.blueprints.delete(name);
    else this.blueprints.set(name, event.value);
    this.schedule(this.deps.debounceMs ?? 25);
  }

  private onSlice(event: KvEvent<SliceRecord>): void {
    if (!parseSliceKey(event.key)) return;
    const before = this.slices.get(event.key);
    if (event.type === 'delete' || event.value === undefined) this.slices.delete(event.key);
    else this.slices.set(event.key, { record: event.value, revision: event.revision });
    // Only what changes the plan replans: a failure, a key gone, or a command the leader did not write; progress does not.
    const state = event.value?.state;
    if (event.type === 'delete' || state === 'FAILED' || before === undefined) this.schedule(this.deps.debounceMs ?? 25);
  }

  private fingerprintNodes(): string {
    return this.deps
      .nodes()
      .map((n) => `${n.id}|${n.status}|${n.tags.join(',')}|${n.cpuCores}|${n.memoryGb}|${n.datasetsHot.join(',')}|${Math.round(n.cpuLoad * 4)}`)
      .sort()
      .join(';');
  }

  private async reconcile(): Promise<void> {
    const epoch = this.leadingEpoch;
    if (epoch === null || this.stopped) return;
    this.dirty = false;
    this.nodeFingerprint = this.fingerprintNodes();
    const started = performance.now();
    const existing: ExistingSlice[] = [];
    for (const [key, entry] of this.slices) {
      const parsed = parseSliceKey(key)!;
      existing.push({ nodeId: parsed.nodeId, artifact: parsed.artifact, record: entry.record });
    }
    const plan = planServices({ blueprints: [...this.blueprints.values()], nodes: this.deps.nodes(), slices: existing, now: this.deps.clock.now(), epoch });
    const ms = performance.now() - started;
    this.reconciles++;
    this.lastPlan = { at: this.deps.clock.now(), changes: plan.changes.length, ms: Math.round(ms * 100) / 100 };
    if (plan.changes.length > 0) this.deps.logger.info({ epoch, changes: plan.changes.length, planMs: this.lastPlan.ms }, summarize(plan));
    await this.apply(plan, epoch);
    await this.publishUnplaced(plan.unplaced);
  }

  private async apply(plan: Plan, epoch: number): Promise<void> {
    for (const change of plan.changes) {
      if (this.leadingEpoch !== epoch || this.stopped) return;
      try {
        await this.applyOne(change, epoch);
      } catch (error) {
        if (error instanceof StaleFencingTokenError) {
          this.deps.logger.warn({ epoch }, 'a services write was refused as stale: another replica leads; standing by');
          this.leadingEpoch = null;
          this.closeWatches();
          return;
        }
        throw error;
      }
    }
  }

  private async applyOne(change: PlanChange, epoch: number): Promise<void> {
    const { kv, clock, logger } = this.deps;
    const key = sliceKey(change.nodeId, change.artifact);
    const current = this.slices.get(key);
    if (change.kind === 'forget') {
      if (!current) return;
      const outcome = await kv.delete(key, { expectedRevision: current.revision, ...this.fenced() });
      if (!outcome.ok) this.dirty = true;
      else {
        this.slices.delete(key);
        await this.forgetEndpoints(change.nodeId, change.artifact, change.instance);
      }
      logger.info({ node: change.nodeId, artifact: change.artifact, instance: change.instance }, `forgot: ${change.reason}`);
      return;
    }
    if (change.kind === 'stop') {
      if (!current) return;
      const record: SliceRecord = { ...current.record, state: 'UNLOAD', timestamp: clock.now(), version: current.record.version + 1, reason: change.reason };
      const outcome = await kv.put(key, record, { expectedRevision: current.revision, ...this.fenced() });
      if (outcome.ok) this.slices.set(key, { record, revision: outcome.revision });
      else this.dirty = true;
      logger.info({ node: change.nodeId, artifact: change.artifact, instance: change.instance }, `stop: ${change.reason}`);
      return;
    }
    const now = clock.now();
    const record: SliceRecord = { state: 'LOAD', timestamp: now, version: 1, instance: change.instance, blueprint: change.blueprint, epoch, placedAt: now, reason: change.reason };
    const outcome = await kv.put(key, record, { expectedRevision: 0, ...this.fenced() });
    if (outcome.ok) this.slices.set(key, { record, revision: outcome.revision });
    else this.dirty = true;
    logger.info({ node: change.nodeId, artifact: change.artifact, instance: change.instance }, `place: ${change.reason}`);
  }

  /** A node that cannot act any more cannot unpublish: its instance's endpoints go with its key, so the router stops trying them. */
  private async forgetEndpoints(nodeId: string, artifact: string, instance: number): Promise<void> {
    const { entries } = await this.deps.kv.list<EndpointRecord>(artifactEndpointsPrefix(artifact));
    for (const entry of entries) {
      const parsed = parseEndpointKey(entry.key);
      if (parsed?.instance !== instance || entry.value.nodeId !== nodeId) continue;
      await this.deps.kv.delete(entry.key, { expectedRevision: entry.modRevision, ...this.fenced() });
    }
  }

  private async publishUnplaced(unplaced: readonly Unplaced[]): Promise<void> {
    this.unplaced = unplaced;
    const value = Object.fromEntries(unplaced.map((u) => [u.artifact, { blueprint: u.blueprint, wanted: u.wanted, placed: u.placed, reason: u.reason, rejectedBy: u.rejectedBy }]));
    const fingerprint = JSON.stringify(value);
    if (fingerprint === this.unplacedFingerprint) return;
    await this.put(UNPLACED_KEY, value);
    this.unplacedFingerprint = fingerprint;
  }

  private async put(key: string, value: unknown): Promise<void> {
    await this.deps.kv.put(key, value, this.fenced());
  }

  /** The lease's fence for a write: a deposed leader's write is refused by the store. */
  private fenced(): { fence?: Fence } {
    const fence = this.deps.leadership.fence();
    return fence ? { fence } : {};
  }

  private closeWatches(): void {
    for (const watch of this.watches) watch.close();
    this.watches = [];
    this.unplacedFingerprint = '';
  }
}

function summarize(plan: Plan): string {
  const counts = { place: 0, stop: 0, forget: 0 };
  for (const change of plan.changes) counts[change.kind]++;
  return `services plan: ${counts.place} to place, ${counts.stop} to stop, ${counts.forget} to forget${plan.unplaced.length > 0 ? `, ${plan.unplaced.length} slices short` : ''}`;
}

/**
 * The regional aggregator (seed 001, Pattern 2): consumes telemetry, keeps the node registry and the
 * bitemporal node documents current, marks silent nodes offline (and back online when they report),
 * announces every status change as a SystemEvent and publishes a RegionalSummary per geozone.
 *
 * Every replica keeps the whole registry of its geozones, because marking silence needs every node;
 * only the replica leading (Leadership) writes documents, events and summaries, its document writes
 * fenced. A standby is warm: on takeover it writes from a registry already current.
 */
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logging.ts';
import type { NodeTelemetry, RegionalSummary, SystemEvent } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { Consumer } from '../bus/ports.ts';
import type { DocumentPut, DocumentStore } from '../store/ports.ts';
import { geozoneOf, type NodeState } from './node.ts';
import { NodeRegistry, type StatusChange } from './registry.ts';
import { SOLE_WRITER, type Leadership } from '../leases/leadership.ts';

export const NODES_COLLECTION = 'nodes';

export interface AggregatorConfig {
  /** Geozones this aggregator owns; undefined owns every geozone (embedded mode). */
  readonly geozones?: readonly string[];
  readonly offlineAfterMs: number;
  readonly summaryIntervalMs: number;
  readonly sweepIntervalMs: number;
  readonly flushIntervalMs: number;
}

export const DEFAULT_AGGREGATOR_CONFIG: AggregatorConfig = {
  offlineAfterMs: 30_000,
  summaryIntervalMs: 60_000,
  sweepIntervalMs: 1_000,
  flushIntervalMs: 200,
};

export interface AggregatorDeps {
  readonly bus: MessageBus;
  readonly documents: DocumentStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly config: AggregatorConfig;
  /** Consumer group for telemetry (default `arc-aggregator`); a replica with its own group sees every node. */
  readonly group?: string;
  /** Where a group without committed offsets starts; `latest` after restoring from the documents. */
  readonly startAt?: 'earliest' | 'latest';
  /** Who writes; the sole writer by default (embedded mode). */
  readonly leadership?: Leadership;
  /** Called on every telemetry applied, for live views (console, metrics). */
  readonly onTelemetry?: (node: NodeState, telemetry: NodeTelemetry) => void;
}

export class RegionalAggregator {
  readonly registry = new NodeRegistry();
  private readonly deps: AggregatorDeps;
  private readonly zones: ReadonlySet<string> | undefined;
  /** Node documents waiting for the next batched write, by node id (latest state wins). */
  private pending = new Map<string, DocumentPut<NodeState>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private consumer: Consumer | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly leadership: Leadership;

  constructor(deps: AggregatorDeps) {
    this.deps = deps;
    this.leadership = deps.leadership ?? SOLE_WRITER;
    this.zones = deps.config.geozones ? new Set(deps.config.geozones) : undefined;
  }

  async start(): Promise<void> {
    const known = await this.deps.documents.list<NodeState>(NODES_COLLECTION);
    for (const version of known) {
      if (version.body && this.owns(version.body.geozone)) this.registry.restore(version.body);
    }
    this.consumer = await this.deps.bus.subscribe(this.deps.group ?? 'arc-aggregator', [topics.telemetry], 'NodeTelemetry', (t) => this.onTelemetry(t), { startAt: this.deps.startAt ?? 'earliest' });
    const { sweepIntervalMs, summaryIntervalMs, flushIntervalMs } = this.deps.config;
    this.every(sweepIntervalMs, () => this.sweep());
    this.every(summaryIntervalMs, () => this.publishSummaries());
    this.every(flushIntervalMs, () => this.flush());
  }

  async stop(): Promise<void> {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    await this.consumer?.close();
    await this.flush();
  }

  private every(ms: number, task: () => Promise<void>): void {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      task()
        .catch((error: unknown) => this.deps.logger.error({ err: errorMessage(error) }, 'aggregator task failed'))
        .finally(() => {
          running = false;
        });
    }, ms);
    timer.unref();
    this.timers.push(timer);
  }

  private owns(geozone: string): boolean {
    return this.zones === undefined || this.zones.has(geozone);
  }

  async onTelemetry(telemetry: NodeTelemetry): Promise<void> {
    // Nodes of other geozones never enter this registry, so nothing downstream has to filter them.
    if (!this.owns(geozoneOf(telemetry, this.registry.get(telemetry.id)))) return;
    const now = this.deps.clock.now();
    const { node, change } = this.registry.applyTelemetry(telemetry, now);
    // Valid time is when the node measured it; a node clock ahead of ours cannot make facts from the future.
    this.queue(node, Math.min(node.reportedAt, now));
    this.deps.onTelemetry?.(node, telemetry);
    if (change) await this.announce(change, now);
  }

  async sweep(): Promise<void> {
    const now = this.deps.clock.now();
    for (const change of this.registry.sweep(now, this.deps.config.offlineAfterMs)) {
      this.queue(change.node, now);
      await this.announce(change, now);
    }
  }

  private queue(node: NodeState, validFrom: number): void {
    if (!this.leadership.leading) return;
    this.pending.set(node.id, { collection: NODES_COLLECTION, id: node.id, body: node, options: { validFrom } });
  }

  /** Writes queued node documents in one transaction; on failure they stay queued for the next flush. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const batch = this.pending;
      this.pending = new Map();
      if (!this.leadership.leading) return;
      const fence = this.leadership.fence();
      const puts = fence ? [...batch.values()].map((put) => ({ ...put, options: { ...put.options, fence } })) : [...batch.values()];
      try {
        await this.deps.documents.putMany(puts);
      } catch (error) {
        for (const [id, put] of batch) if (!this.pending.has(id)) this.pending.set(id, put);
        throw error;
      }
    });
    return this.flushing;
  }

  summaries(): RegionalSummary[] {
    const byZone = new Map<string, { total: number; active: number; gpu: number; energy: { cogen: number; grid: number; battery: number } }>();
    for (const node of this.registry.all()) {
      let zone = byZone.get(node.geozone);
      if (!zone) {
        zone = { total: 0, active: 0, gpu: 0, energy: { cogen: 0, grid: 0, battery: 0 } };
        byZone.set(node.geozone, zone);
      }
      zone.total++;
      if (node.status === 'offline') continue;
      zone.active++;
      zone.gpu += node.gpuUtilization;
      zone.energy[node.energySource]++;
    }
    const timestamp = new Date(this.deps.clock.now()).toISOString();
    for (const zone of this.zones ?? []) {
      if (!byZone.has(zone)) byZone.set(zone, { total: 0, active: 0, gpu: 0, energy: { cogen: 0, grid: 0, battery: 0 } });
    }
    return [...byZone].sort(([a], [b]) => a.localeCompare(b)).map(([geozoneId, z]) => ({
      schemaVersion: 1,
      geozoneId,
      totalNodes: z.total,
      activeNodes: z.active,
      avgGpuUtil: z.active === 0 ? 0 : Math.round((z.gpu / z.active) * 10_000) / 10_000,
      energyBreakdown: z.energy,
      timestamp,
    }));
  }

  async publishSummaries(): Promise<void> {
    if (!this.leadership.leading) return;
    for (const summary of this.summaries()) await this.deps.bus.publish(topics.regionalSummary, 'RegionalSummary', summary);
  }

  private async announce(change: StatusChange, now: number): Promise<void> {
    if (!this.leadership.leading) return;
    const { node, from, to } = change;
    const silentS = Math.round((now - node.lastSeen) / 1000);
    const event: SystemEvent = {
      schemaVersion: 1,
      id: newId(),
      kind: from === 'unknown' ? 'node.joined' : `node.${to}`,
      severity: to === 'offline' ? 'warn' : from === 'offline' ? 'success' : 'info',
      message:
        from === 'unknown'
          ? `node ${node.name} joined ${node.geozone}`
          : to === 'offline'
            ? `node ${node.name} (${node.geozone}) went offline: no telemetry for ${silentS} s`
            : `node ${node.name} (${node.geozone}) is ${to} again`,
      geozone: node.geozone,
      subjectId: node.id,
      details: { nodeId: node.id, from, to },
      timestamp: new Date(now).toISOString(),
    };
    await this.deps.bus.publish(topics.systemEvent, 'SystemEvent', event);
  }
}

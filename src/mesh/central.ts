/**
 * The central orchestrator (seed 001 Layer 3, Pattern 2 step 4): consumes `arc.summary.regional`
 * into the global view, stores it as bitemporal history, and turns the anomaly detector's decisions
 * into alerts. The thinking is pure (`global-view.ts`, `anomalies.ts`); this class does the I/O.
 *
 * - Every summary updates the in-memory `GlobalView` (what `GET /api/v1/global` answers) and, on the
 *   writer, the `global_view` documents of its zone and the total, valid from the summary's time.
 * - `arc.event.system` is read for `training.failed` / `hpc.failed` (the training bridge's kinds).
 * - After every input and on a timer (silence and ageing need no input), the detector is evaluated;
 *   each raise or clear is first recorded in the KV (`central/alerts/<key>`, fenced), then published as
 *   a SystemEvent `central.alert.raised` (warn/error) or `central.alert.cleared` (success) with
 *   `subjectId` = the alert key. KV first: a crash between the two loses an event rather than
 *   raising the same alert twice after the restart, which reloads the active alerts from the KV.
 * - One writer (Leadership): in `arcnet up` the sole one; `arcnet central` replicas campaign for the
 *   lease `central`. A standby consumes every summary (its own consumer group), so its view and
 *   windows are current; it reads the active alerts from the KV instead of deciding, and on taking
 *   over starts from them, so nothing already raised is raised again.
 */
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logging.ts';
import type { RegionalSummary, SystemEvent } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { Consumer } from '../bus/ports.ts';
import type { DocumentStore, DocumentVersion, KvStore } from '../store/ports.ts';
import { SOLE_WRITER, type Leadership } from '../leases/leadership.ts';
import { ALERT_CLEARED, ALERT_RAISED, AnomalyDetector, GLOBAL_SCOPE, HPC_FAILED, TRAINING_FAILED, type Alert, type AlertDecision, type AnomalyConfig } from './anomalies.ts';
import { GLOBAL_VIEW_COLLECTION, GlobalView, TOTAL_ID, zoneDocumentId, type GlobalViewDocument, type TotalFigures, type ZoneFigures } from './global-view.ts';

/** Where the active alerts are kept, one key per alert. */
export const ALERTS_PREFIX = 'central/alerts/';

export interface CentralConfig extends AnomalyConfig {
  /** How often silence and ageing are checked without any input. */
  readonly evaluateIntervalMs: number;
}

export interface CentralDeps {
  readonly bus: MessageBus;
  readonly documents: DocumentStore;
  readonly kv: KvStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly config: CentralConfig;
  /** Zones expected to report; every zone a summary names is watched as well. */
  readonly geozones: readonly string[];
  /** Consumer groups are this process's own (`<instanceId>-central-…`): every replica sees everything. */
  readonly instanceId: string;
  readonly leadership?: Leadership;
}

/** An alert as the API shows it. */
export interface AlertView {
  readonly key: string;
  readonly kind: Alert['kind'];
  readonly geozone: string | null;
  readonly severity: Alert['severity'];
  readonly since: string;
  readonly message: string;
  readonly details: Readonly<Record<string, unknown>>;
}

export interface GlobalSnapshot {
  readonly at: string;
  readonly leading: boolean;
  readonly summaryIntervalMs: number;
  readonly total: TotalFigures;
  readonly zones: readonly ZoneFigures[];
  readonly alerts: readonly AlertView[];
}

export interface HistoryQuery {
  readonly from?: number;
  readonly to?: number;
  readonly geozone?: string;
  /** Most points per series; the newest are kept. */
  readonly limit: number;
}

export interface HistoryPoint extends GlobalViewDocument {
  /** The point's valid time: the summary's timestamp. */
  readonly at: string;
}

export interface HistorySeries {
  readonly id: string;
  readonly geozone: string | null;
  readonly truncated: boolean;
  readonly points: readonly HistoryPoint[];
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function alertView(alert: Alert): AlertView {
  return { key: alert.key, kind: alert.kind, geozone: alert.scope === GLOBAL_SCOPE ? null : alert.scope, severity: alert.severity, since: iso(alert.since), message: alert.message, details: alert.details };
}

function summaryOf(doc: GlobalViewDocument): RegionalSummary | undefined {
  if (doc.scope !== 'zone' || doc.geozone === null || doc.lastSummaryAt === null) return undefined;
  return { schemaVersion: 1, geozoneId: doc.geozone, totalNodes: doc.nodes, activeNodes: doc.active, avgGpuUtil: doc.avgGpuUtil, energyBreakdown: { ...doc.energy }, timestamp: doc.lastSummaryAt };
}

/** A zone's history as known now: one version per valid time (the latest stored), oldest first. */
function currentVersions(versions: readonly DocumentVersion<GlobalViewDocument>[]): DocumentVersion<GlobalViewDocument>[] {
  const byValid = new Map<number, DocumentVersion<GlobalViewDocument>>();
  for (const v of versions) {
    const seen = byValid.get(v.validFrom);
    if (!seen || v.txTime > seen.txTime || (v.txTime === seen.txTime && v.version > seen.version)) byValid.set(v.validFrom, v);
  }
  return [...byValid.values()].filter((v) => !v.deleted && v.body !== undefined).sort((a, b) => a.validFrom - b.validFrom);
}

export class CentralOrchestrator {
  readonly view = new GlobalView();
  private readonly deps: CentralDeps;
  private readonly leadership: Leadership;
  private detector!: AnomalyDetector;
  private readonly consumers: Consumer[] = [];
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** Whether the detector's active alerts are the KV's as of this leadership (false: reload first). */
  private synced = false;
  private lastRefresh = -Infinity;
  private raisedCount = 0;
  private clearedCount = 0;

  constructor(deps: CentralDeps) {
    this.deps = deps;
    this.leadership = deps.leadership ?? SOLE_WRITER;
  }

  async start(): Promise<void> {
    const now = this.deps.clock.now();
    this.detector = new AnomalyDetector(this.deps.config, this.deps.geozones, now);
    await this.restoreFromStore(now);
    this.consumers.push(await this.deps.bus.subscribe(`${this.deps.instanceId}-central-summaries`, [topics.regionalSummary], 'RegionalSummary', (s) => this.serial(() => this.onSummary(s)), { startAt: 'latest' }));
    this.consumers.push(await this.deps.bus.subscribe(`${this.deps.instanceId}-central-events`, [topics.systemEvent], 'SystemEvent', (e) => this.onEvent(e), { startAt: 'latest' }));
    this.timer = setInterval(() => {
      void this.serial(() => this.decide());
    }, this.deps.config.evaluateIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(this.consumers.splice(0).map((c) => c.close()));
    await this.chain;
  }

  get leading(): boolean {
    return this.leadership.leading;
  }

  counts(): { raised: number; cleared: number; active: number } {
    return { raised: this.raisedCount, cleared: this.clearedCount, active: this.detector.active().length };
  }

  /** The global view now, from memory, with the active alerts. */
  snapshot(): GlobalSnapshot {
    return {
      at: iso(this.deps.clock.now()),
      leading: this.leadership.leading,
      summaryIntervalMs: this.deps.config.summaryIntervalMs,
      total: this.view.total(),
      zones: this.view.zones(),
      alerts: this.detector.active().map(alertView),
    };
  }

  /** Stored history of a zone (or, without one, of the total and every zone), between the valid times given. */
  async history(query: HistoryQuery): Promise<HistorySeries[] | undefined> {
    const ids = query.geozone !== undefined ? [zoneDocumentId(query.geozone)] : (await this.deps.documents.list<GlobalViewDocument>(GLOBAL_VIEW_COLLECTION)).map((d) => d.id).sort((a, b) => (a === TOTAL_ID ? -1 : b === TOTAL_ID ? 1 : a.localeCompare(b)));
    const series: HistorySeries[] = [];
    for (const id of ids) {
      const versions = await this.deps.documents.history<GlobalViewDocument>(GLOBAL_VIEW_COLLECTION, id);
      if (versions.length === 0) continue;
      const inRange = currentVersions(versions).filter((v) => (query.from === undefined || v.validFrom >= query.from) && (query.to === undefined || v.validFrom <= query.to));
      const kept = inRange.slice(-query.limit);
      series.push({ id, geozone: id === TOTAL_ID ? null : id.slice('zone:'.length), truncated: kept.length < inRange.length, points: kept.map((v) => ({ at: iso(v.validFrom), ...v.body! })) });
    }
    return query.geozone !== undefined && series.length === 0 ? undefined : series;
  }

  /**
   * The view from the stored documents; the detector's windows from the recent history (so a loss
   * or a jump spanning the restart is judged whole); the active alerts from the KV.
   */
  private async restoreFromStore(now: number): Promise<void> {
    const { lossWindowMs, silentPeriods, summaryIntervalMs } = this.deps.config;
    const since = now - Math.max(lossWindowMs, silentPeriods * summaryIntervalMs);
    for (const doc of await this.deps.documents.list<GlobalViewDocument>(GLOBAL_VIEW_COLLECTION)) {
      const latest = doc.body ? summaryOf(doc.body) : undefined;
      if (!latest) continue;
      this.view.apply(latest);
      for (const version of currentVersions(await this.deps.documents.history<GlobalViewDocument>(GLOBAL_VIEW_COLLECTION, doc.id))) {
        const summary = summaryOf(version.body!);
        if (summary && version.validFrom >= since) this.detector.observeSummary(summary, version.validFrom);
      }
    }
    await this.loadAlerts();
  }

  private async loadAlerts(): Promise<void> {
    const { entries } = await this.deps.kv.list<Alert>(ALERTS_PREFIX);
    this.detector.restore(entries.map((e) => e.value));
  }

  /** Inputs and evaluations one at a time: the detector and the documents see one order. */
  private serial(task: () => Promise<void>): Promise<void> {
    const run = this.chain.then(task);
    this.chain = run.catch((error: unknown) => this.deps.logger.error({ err: errorMessage(error) }, 'central orchestrator task failed'));
    return run;
  }

  private async onSummary(summary: RegionalSummary): Promise<void> {
    const now = this.deps.clock.now();
    this.detector.observeSummary(summary, now);
    if (this.view.apply(summary) && this.leadership.leading) {
      const ts = Date.parse(summary.timestamp);
      // Valid from the summary's time, but an aggregator clock ahead of ours cannot write the future.
      const validFrom = Math.min(ts, now);
      const fence = this.leadership.fence();
      await this.deps.documents.putMany(this.view.documentsFor(summary.geozoneId).map(({ id, body }) => ({ collection: GLOBAL_VIEW_COLLECTION, id, body, options: { validFrom, ...(fence ? { fence } : {}) } })));
    }
    await this.decide();
  }

  private async onEvent(event: SystemEvent): Promise<void> {
    if (event.kind !== TRAINING_FAILED && event.kind !== HPC_FAILED) return;
    await this.serial(async () => {
      this.detector.observeEvent(event, this.deps.clock.now());
      await this.decide();
    });
  }

  private async decide(): Promise<void> {
    const now = this.deps.clock.now();
    if (!this.leadership.leading) {
      this.synced = false;
      // A standby shows the writer's alerts; reading them every few seconds is enough for a view.
      if (now - this.lastRefresh >= 5_000) {
        this.lastRefresh = now;
        await this.loadAlerts();
      }
      return;
    }
    if (!this.synced) {
      await this.loadAlerts();
      this.synced = true;
    }
    for (const decision of this.detector.evaluate(now)) {
      try {
        await this.apply(decision, now);
      } catch (error) {
        // The detector moved on without the store: start again from what the KV holds.
        this.synced = false;
        throw error;
      }
    }
  }

  private async apply(decision: AlertDecision, now: number): Promise<void> {
    const { alert } = decision;
    const fence = this.leadership.fence();
    const options = fence ? { fence } : {};
    if (decision.type === 'raise') await this.deps.kv.put(`${ALERTS_PREFIX}${alert.key}`, alert, options);
    else await this.deps.kv.delete(`${ALERTS_PREFIX}${alert.key}`, options);
    const event: SystemEvent = {
      schemaVersion: 1,
      id: newId(),
      kind: decision.type === 'raise' ? ALERT_RAISED : ALERT_CLEARED,
      severity: decision.type === 'raise' ? alert.severity : 'success',
      message: decision.type === 'raise' ? alert.message : decision.message,
      ...(alert.scope === GLOBAL_SCOPE ? {} : { geozone: alert.scope }),
      subjectId: alert.key,
      details: { alert: alert.kind, key: alert.key, since: iso(alert.since), ...(decision.type === 'raise' ? alert.details : decision.details) },
      timestamp: iso(now),
    };
    await this.deps.bus.publish(topics.systemEvent, 'SystemEvent', event);
    if (decision.type === 'raise') this.raisedCount++;
    else this.clearedCount++;
    this.deps.logger[decision.type === 'raise' ? 'warn' : 'info']({ alert: alert.key }, event.message);
  }
}

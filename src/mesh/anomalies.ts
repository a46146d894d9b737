/**
 * The central orchestrator's anomaly detector (seed 001 Layer 3, "detect anomalies, trigger alerts"):
 * pure, no I/O and no clock of its own. It is told what arrived (regional summaries, system events)
 * and what time it is, and answers with raise/clear decisions; the shell (`central.ts`) publishes
 * them as SystemEvents and keeps the active ones in the KV store.
 *
 * Conditions, each keyed by a stable alert key (`<kind>:<geozone>`), so one condition is one alert:
 *
 * - `zone-silent:<zone>` (error): no RegionalSummary from a zone for more than `silentPeriods`
 *   summary periods. Zones are the configured ones and every zone a summary ever named. Silence is
 *   counted from the last summary, but never from before the detector started watching (a restart
 *   does not blame the zones for its own downtime), except for a silence already alerted before the
 *   restart. It clears with the zone's next summary, and only then.
 * - `node-loss:<zone>` (warn): the zone's active nodes fell by more than `lossShare` of the most it
 *   had within `lossWindowMs` (window over the summaries' arrival times, so a zone that then goes
 *   silent keeps its loss alert). It clears when the loss within the window is back to `lossShare`
 *   or less: nodes came back, or the loss is older than the window (the zone settled at its size).
 * - `gpu-jump:<zone>` (warn): the GPU average changed by more than `gpuJump` between two
 *   consecutive summaries (both with active nodes: a zone going from none to some is not a jump).
 *   It clears with the next summary that changes by `gpuJump` or less (the level is steady again).
 * - `training-failures:<zone>` (error; `global` for failures that name no geozone): at least
 *   `failureThreshold` SystemEvents of kind `training.failed` or `hpc.failed` within
 *   `failureWindowMs`. The training bridge emits those kinds, with `geozone` when known and the job
 *   id in `subjectId`. It clears when fewer remain within the window.
 *
 * Every alert says what (`kind`, `message`), where (`geozone`), since when (`since`) and the numbers
 * (`details`). Decisions come in key order, so the same inputs always give the same output.
 */
import type { RegionalSummary, SystemEvent } from '../contracts/messages.ts';

/** SystemEvent kinds the detector counts as training failures (emitted by the training bridge). */
export const TRAINING_FAILED = 'training.failed';
export const HPC_FAILED = 'hpc.failed';
/** SystemEvent kinds the central orchestrator publishes. */
export const ALERT_RAISED = 'central.alert.raised';
export const ALERT_CLEARED = 'central.alert.cleared';

export type AlertKind = 'zone-silent' | 'node-loss' | 'gpu-jump' | 'training-failures';

/** The scope of training failures that name no geozone. */
export const GLOBAL_SCOPE = 'global';

export interface Alert {
  /** `<kind>:<geozone or global>`: the same condition always has the same key. */
  readonly key: string;
  readonly kind: AlertKind;
  /** The zone it concerns; `global` for training failures without one. */
  readonly scope: string;
  readonly severity: 'warn' | 'error';
  /** When the condition began (ms since the epoch). */
  readonly since: number;
  readonly message: string;
  readonly details: Readonly<Record<string, unknown>>;
}

export type AlertDecision =
  | { readonly type: 'raise'; readonly alert: Alert }
  | { readonly type: 'clear'; readonly alert: Alert; readonly at: number; readonly message: string; readonly details: Readonly<Record<string, unknown>> };

export interface AnomalyConfig {
  /** The aggregators' summary period (`--summary-interval`). */
  readonly summaryIntervalMs: number;
  readonly silentPeriods: number;
  readonly lossShare: number;
  readonly lossWindowMs: number;
  readonly gpuJump: number;
  readonly failureThreshold: number;
  readonly failureWindowMs: number;
}

export const DEFAULT_ANOMALY_CONFIG: AnomalyConfig = {
  summaryIntervalMs: 60_000,
  silentPeriods: 2,
  lossShare: 0.3,
  lossWindowMs: 5 * 60_000,
  gpuJump: 0.4,
  failureThreshold: 3,
  failureWindowMs: 10 * 60_000,
};

interface ZoneTrack {
  /** Arrival of the newest summary. */
  heardAt: number | undefined;
  /** Silence is counted from no earlier than this. */
  watchedFrom: number;
  latest: RegionalSummary | undefined;
  latestTs: number;
  previous: RegionalSummary | undefined;
  /** Active nodes per summary within the loss window, oldest first. */
  actives: { at: number; active: number }[];
}

interface Failure {
  readonly id: string;
  readonly at: number;
  readonly kind: string;
  readonly subjectId: string | undefined;
}

/** A condition that holds now, before it is compared with the active alerts. */
interface Condition {
  readonly kind: AlertKind;
  readonly scope: string;
  readonly severity: 'warn' | 'error';
  readonly since: number;
  readonly message: string;
  readonly details: Record<string, unknown>;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const round = (value: number, digits = 4): number => Math.round(value * 10 ** digits) / 10 ** digits;
const seconds = (ms: number): number => Math.round(ms / 1000);
export const alertKey = (kind: AlertKind, scope: string): string => `${kind}:${scope}`;

/** Failures kept per scope in an alert's details, so a restart can restore the window from them. */
const FAILURES_KEPT = 20;

export class AnomalyDetector {
  private readonly config: AnomalyConfig;
  private readonly zones = new Map<string, ZoneTrack>();
  private readonly failures = new Map<string, Failure[]>();
  private readonly activeAlerts = new Map<string, Alert>();
  private readonly startedAt: number;

  constructor(config: AnomalyConfig, geozones: readonly string[], startedAt: number) {
    this.config = config;
    this.startedAt = startedAt;
    for (const zone of geozones) this.track(zone);
  }

  private track(zone: string): ZoneTrack {
    let track = this.zones.get(zone);
    if (!track) {
      track = { heardAt: undefined, watchedFrom: this.startedAt, latest: undefined, latestTs: -Infinity, previous: undefined, actives: [] };
      this.zones.set(zone, track);
    }
    return track;
  }

  /** The zones known, sorted. */
  geozones(): string[] {
    return [...this.zones.keys()].sort();
  }

  /** The alerts raised and not cleared, in key order. */
  active(): Alert[] {
    return [...this.activeAlerts.values()].sort((a, b) => a.key.localeCompare(b.key));
  }

  /**
   * Applies a summary that arrived at `at`. A summary no newer than the zone's newest (a redelivery,
   * or a deposed aggregator's late one) counts as a sign of life only.
   */
  observeSummary(summary: RegionalSummary, at: number): void {
    const track = this.track(summary.geozoneId);
    track.heardAt = Math.max(track.heardAt ?? -Infinity, at);
    const ts = Date.parse(summary.timestamp);
    if (ts <= track.latestTs) return;
    track.previous = track.latest;
    track.latest = summary;
    track.latestTs = ts;
    track.actives.push({ at, active: summary.activeNodes });
    // The window is over summaries: a zone that stops reporting keeps the loss it last showed.
    const from = at - this.config.lossWindowMs;
    while (track.actives.length > 0 && track.actives[0]!.at < from) track.actives.shift();
  }

  /** Counts a training or HPC failure (other kinds are ignored); a redelivered event counts once. */
  observeEvent(event: SystemEvent, at: number): void {
    if (event.kind !== TRAINING_FAILED && event.kind !== HPC_FAILED) return;
    const scope = event.geozone ?? GLOBAL_SCOPE;
    const list = this.failures.get(scope) ?? [];
    if (list.some((f) => f.id === event.id)) return;
    // The event's own time, but never ahead of ours: a fast producer clock cannot keep an alert alive.
    const stamped = Date.parse(event.timestamp);
    list.push({ id: event.id, at: Number.isNaN(stamped) ? at : Math.min(stamped, at), kind: event.kind, subjectId: event.subjectId });
    list.sort((a, b) => a.at - b.at);
    this.failures.set(scope, list);
  }

  /**
   * Takes the active alerts as stored (a restart, or a standby taking over), replacing its own, and
   * restores what the conditions need to carry on: a silence alerted before keeps counting from when
   * it began, and the failures an alert recorded count again.
   */
  restore(alerts: readonly Alert[]): void {
    this.activeAlerts.clear();
    for (const alert of alerts) {
      this.activeAlerts.set(alert.key, alert);
      if (alert.kind === 'zone-silent') {
        const track = this.track(alert.scope);
        track.watchedFrom = Math.min(track.watchedFrom, alert.since);
      } else if (alert.kind === 'training-failures') {
        const recorded = Array.isArray(alert.details['failures']) ? (alert.details['failures'] as unknown[]) : [];
        const list = this.failures.get(alert.scope) ?? [];
        for (const entry of recorded) {
          const f = entry as { id?: unknown; at?: unknown; kind?: unknown; subjectId?: unknown };
          if (typeof f.id !== 'string' || typeof f.at !== 'string' || list.some((x) => x.id === f.id)) continue;
          const at = Date.parse(f.at);
          if (Number.isNaN(at)) continue;
          list.push({ id: f.id, at, kind: typeof f.kind === 'string' ? f.kind : TRAINING_FAILED, subjectId: typeof f.subjectId === 'string' ? f.subjectId : undefined });
        }
        list.sort((a, b) => a.at - b.at);
        this.failures.set(alert.scope, list);
      }
    }
  }

  /** Compares the conditions holding at `now` with the active alerts: raises the new, clears the ended. */
  evaluate(now: number): AlertDecision[] {
    const holding = new Map<string, Condition>();
    for (const condition of this.conditions(now)) holding.set(alertKey(condition.kind, condition.scope), condition);
    const decisions: AlertDecision[] = [];
    const keys = new Set([...holding.keys(), ...this.activeAlerts.keys()]);
    for (const key of [...keys].sort()) {
      const condition = holding.get(key);
      const active = this.activeAlerts.get(key);
      if (condition && !active) {
        const alert: Alert = { key, ...condition };
        this.activeAlerts.set(key, alert);
        decisions.push({ type: 'raise', alert });
      } else if (!condition && active) {
        this.activeAlerts.delete(key);
        decisions.push({ type: 'clear', alert: active, at: now, ...this.ending(active, now) });
      }
    }
    return decisions;
  }

  private conditions(now: number): Condition[] {
    const out: Condition[] = [];
    const { summaryIntervalMs, silentPeriods, lossShare, lossWindowMs, gpuJump, failureThreshold, failureWindowMs } = this.config;
    for (const [zone, track] of this.zones) {
      const reference = Math.max(track.heardAt ?? -Infinity, track.watchedFrom);
      const silentMs = now - reference;
      if (silentMs > silentPeriods * summaryIntervalMs) {
        const last = track.heardAt === undefined ? 'none received yet' : `last at ${iso(track.heardAt)}`;
        out.push({
          kind: 'zone-silent',
          scope: zone,
          severity: 'error',
          since: reference,
          message: `${zone} sent no regional summary for ${seconds(silentMs)} s (${round(silentMs / summaryIntervalMs, 1)} periods of ${seconds(summaryIntervalMs)} s; ${last})`,
          details: { lastSummaryAt: track.heardAt === undefined ? null : iso(track.heardAt), silentMs, periods: round(silentMs / summaryIntervalMs, 1), summaryIntervalMs, silentPeriods },
        });
      }
      const latest = track.latest;
      if (!latest) continue;
      const newest = track.actives.at(-1);
      const peak = track.actives.reduce((best, entry) => (entry.active > best.active ? entry : best), { at: newest?.at ?? now, active: 0 });
      const lost = peak.active - latest.activeNodes;
      if (peak.active > 0 && lost / peak.active > lossShare) {
        out.push({
          kind: 'node-loss',
          scope: zone,
          severity: 'warn',
          since: newest?.at ?? now,
          message: `${zone} lost ${lost} of ${peak.active} active nodes (${Math.round((lost / peak.active) * 100)} %, over ${Math.round(lossShare * 100)} %) within ${seconds(lossWindowMs)} s: ${latest.activeNodes} active now`,
          details: { activeNodes: latest.activeNodes, totalNodes: latest.totalNodes, peakActiveNodes: peak.active, peakAt: iso(peak.at), lost, lostShare: round(lost / peak.active), lossShare, lossWindowMs },
        });
      }
      const previous = track.previous;
      if (previous && previous.activeNodes > 0 && latest.activeNodes > 0) {
        const delta = round(latest.avgGpuUtil - previous.avgGpuUtil);
        if (Math.abs(delta) > gpuJump) {
          out.push({
            kind: 'gpu-jump',
            scope: zone,
            severity: 'warn',
            since: newest?.at ?? now,
            message: `${zone} GPU average ${delta > 0 ? 'jumped' : 'dropped'} from ${previous.avgGpuUtil} to ${latest.avgGpuUtil} (${delta > 0 ? '+' : ''}${delta}, threshold ${gpuJump}) between consecutive summaries`,
            details: { from: previous.avgGpuUtil, to: latest.avgGpuUtil, delta, gpuJump, previousSummaryAt: previous.timestamp, summaryAt: latest.timestamp, activeNodes: latest.activeNodes },
          });
        }
      }
    }
    for (const [scope, list] of this.failures) {
      const from = now - failureWindowMs;
      while (list.length > 0 && list[0]!.at < from) list.shift();
      if (list.length === 0) this.failures.delete(scope);
      if (list.length < failureThreshold) continue;
      const kept = list.slice(-FAILURES_KEPT);
      out.push({
        kind: 'training-failures',
        scope,
        severity: 'error',
        since: list[0]!.at,
        message: `${list.length} training/HPC job failures ${scope === GLOBAL_SCOPE ? '' : `in ${scope} `}within ${seconds(failureWindowMs)} s (threshold ${failureThreshold}); last: ${list.at(-1)!.subjectId ?? list.at(-1)!.id} at ${iso(list.at(-1)!.at)}`,
        details: {
          failures: kept.map((f) => ({ id: f.id, at: iso(f.at), kind: f.kind, ...(f.subjectId === undefined ? {} : { subjectId: f.subjectId }) })),
          count: list.length,
          failureThreshold,
          failureWindowMs,
          firstAt: iso(list[0]!.at),
          lastAt: iso(list.at(-1)!.at),
        },
      });
    }
    return out;
  }

  /** The clearing sentence and numbers: how long the condition lasted and what ended it. */
  private ending(alert: Alert, now: number): { message: string; details: Record<string, unknown> } {
    const lasted = { since: iso(alert.since), durationMs: now - alert.since };
    const track = this.zones.get(alert.scope);
    switch (alert.kind) {
      case 'zone-silent':
        return { message: `${alert.scope} reports again after ${seconds(now - alert.since)} s without a summary`, details: { ...lasted, lastSummaryAt: track?.heardAt === undefined ? null : iso(track.heardAt) } };
      case 'node-loss':
        return { message: `${alert.scope} node loss ended: ${track?.latest?.activeNodes ?? 0} active nodes, within ${Math.round(this.config.lossShare * 100)} % of the most in ${seconds(this.config.lossWindowMs)} s`, details: { ...lasted, activeNodes: track?.latest?.activeNodes ?? 0 } };
      case 'gpu-jump':
        return { message: `${alert.scope} GPU average steady again at ${track?.latest?.avgGpuUtil ?? 0} (within ${this.config.gpuJump} of the previous summary)`, details: { ...lasted, avgGpuUtil: track?.latest?.avgGpuUtil ?? 0 } };
      case 'training-failures': {
        const count = this.failures.get(alert.scope)?.length ?? 0;
        return { message: `training/HPC failures ${alert.scope === GLOBAL_SCOPE ? '' : `in ${alert.scope} `}back under ${this.config.failureThreshold} within ${seconds(this.config.failureWindowMs)} s (${count} now)`, details: { ...lasted, count } };
      }
    }
  }
}

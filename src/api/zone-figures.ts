/**
 * The live figures of each geozone the console's zone table shows (`GET /api/v1/zones`): requests a
 * second by requester zone, routing decision times (where this process runs the scheduler), the
 * rejections since boot by the filter that removed the most nodes, and the zone's latest
 * RegionalSummary (`arc.summary.regional`). Counting is a map lookup and an increment per request,
 * so it can sit on the tracker's listener beside the metrics.
 */
import type { RegionalSummary } from '../contracts/messages.ts';
import type { TrackerListener } from '../inference/tracker.ts';
import { RateMeter, RollingSamples } from '../core/stats.ts';

/** A rejection that names no filter: nothing was known to filter (no node of the model, no node at all). */
export const NO_NODES_KNOWN = 'no-nodes-known';

interface ZoneCounters {
  readonly rate: RateMeter;
  readonly decisions: RollingSamples;
  rejections: number;
  readonly byReason: Map<string, number>;
  summary: RegionalSummary | undefined;
}

export interface ZoneFigureView {
  readonly requestsPerSecond: number;
  /** NaN when no decision was timed here. */
  readonly routingMsP50: number;
  readonly routingMsP99: number;
  readonly rejections: { readonly total: number; readonly byReason: Record<string, number> };
  readonly summary: RegionalSummary | undefined;
}

/** The filter that removed the most nodes (ties: the name first in order), the rejection's main reason. */
export function mainReason(rejectedBy: Readonly<Record<string, number>> | undefined): string {
  let best: string | undefined;
  let most = 0;
  for (const [name, count] of Object.entries(rejectedBy ?? {})) {
    if (count > most || (count === most && best !== undefined && name < best)) {
      best = name;
      most = count;
    }
  }
  return best ?? NO_NODES_KNOWN;
}

export class ZoneFigures {
  private readonly zones = new Map<string, ZoneCounters>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  private zone(geozone: string): ZoneCounters {
    let zone = this.zones.get(geozone);
    if (!zone) {
      zone = { rate: new RateMeter(10, this.now), decisions: new RollingSamples(1_024), rejections: 0, byReason: new Map(), summary: undefined };
      this.zones.set(geozone, zone);
    }
    return zone;
  }

  /** A routing decision for a request from this zone took `ms` (the scheduler module calls this). */
  decided(geozone: string, ms: number): void {
    this.zone(geozone).decisions.add(ms);
  }

  summary(summary: RegionalSummary): void {
    const zone = this.zone(summary.geozoneId);
    // Summaries of one zone can arrive from two aggregators during a handover: keep the newest.
    if (zone.summary === undefined || zone.summary.timestamp <= summary.timestamp) zone.summary = summary;
  }

  /** Counts what the tracker sees, by requester zone. */
  listener(): TrackerListener {
    return {
      dispatched: (record) => this.zone(record.requesterGeozone ?? 'unknown').rate.mark(),
      rejected: (record) => {
        const zone = this.zone(record.requesterGeozone ?? 'unknown');
        zone.rate.mark();
        zone.rejections++;
        const reason = mainReason(record.rejectedBy);
        zone.byReason.set(reason, (zone.byReason.get(reason) ?? 0) + 1);
      },
    };
  }

  view(geozone: string): ZoneFigureView {
    const zone = this.zones.get(geozone);
    if (!zone) return { requestsPerSecond: 0, routingMsP50: Number.NaN, routingMsP99: Number.NaN, rejections: { total: 0, byReason: {} }, summary: undefined };
    const [p50, p99] = zone.decisions.percentiles(50, 99);
    return {
      requestsPerSecond: zone.rate.perSecond(),
      routingMsP50: p50!,
      routingMsP99: p99!,
      rejections: { total: zone.rejections, byReason: Object.fromEntries(zone.byReason) },
      summary: zone.summary,
    };
  }

  /** Zones that have figures (a request or a summary named them), beside the configured ones. */
  known(): string[] {
    return [...this.zones.keys()];
  }
}

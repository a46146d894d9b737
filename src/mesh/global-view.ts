/**
 * The central orchestrator's global view (seed 001 Layer 3, "aggregate regional summaries into a
 * global view"): the newest RegionalSummary of every zone and their total. Pure: summaries in, figures
 * out; the shell (`central.ts`) stores each change as the bitemporal documents of `global_view` (one
 * per zone, id `zone:<geozone>`, and `total`, valid from the summary's timestamp) and serves it.
 *
 * The total is the sum of the zones' figures; its GPU average is the zones' averages weighted by
 * their active nodes (a zone's average is over its active nodes, so this is the mean over every
 * active node of the mesh).
 */
import type { RegionalSummary } from '../contracts/messages.ts';

export const GLOBAL_VIEW_COLLECTION = 'global_view';
export const TOTAL_ID = 'total';
export const zoneDocumentId = (geozone: string): string => `zone:${geozone}`;

export interface EnergyBreakdown {
  readonly cogen: number;
  readonly grid: number;
  readonly battery: number;
}

export interface GlobalFigures {
  readonly nodes: number;
  readonly active: number;
  readonly avgGpuUtil: number;
  readonly energy: EnergyBreakdown;
  /** The newest summary these figures come from (ISO-8601); null before any. */
  readonly lastSummaryAt: string | null;
}

export interface ZoneFigures extends GlobalFigures {
  readonly geozone: string;
}

export interface TotalFigures extends GlobalFigures {
  /** Zones that have reported. */
  readonly zones: number;
}

/** A `global_view` document: a zone's figures (`geozone` set) or the total (`geozone` null). */
export interface GlobalViewDocument extends GlobalFigures {
  readonly scope: 'zone' | 'total';
  readonly geozone: string | null;
  readonly zones?: number;
}

export function figuresOf(summary: RegionalSummary): ZoneFigures {
  return {
    geozone: summary.geozoneId,
    nodes: summary.totalNodes,
    active: summary.activeNodes,
    avgGpuUtil: summary.avgGpuUtil,
    energy: { ...summary.energyBreakdown },
    lastSummaryAt: summary.timestamp,
  };
}

/** The sum of the zones' figures. */
export function totalOf(zones: readonly ZoneFigures[]): TotalFigures {
  let nodes = 0;
  let active = 0;
  let gpuWeighted = 0;
  const energy = { cogen: 0, grid: 0, battery: 0 };
  let last: string | null = null;
  for (const zone of zones) {
    nodes += zone.nodes;
    active += zone.active;
    gpuWeighted += zone.avgGpuUtil * zone.active;
    energy.cogen += zone.energy.cogen;
    energy.grid += zone.energy.grid;
    energy.battery += zone.energy.battery;
    if (zone.lastSummaryAt !== null && (last === null || zone.lastSummaryAt > last)) last = zone.lastSummaryAt;
  }
  return { zones: zones.length, nodes, active, avgGpuUtil: active === 0 ? 0 : Math.round((gpuWeighted / active) * 10_000) / 10_000, energy, lastSummaryAt: last };
}

export class GlobalView {
  private readonly latest = new Map<string, ZoneFigures>();

  /** Takes a zone's summary; false (and no change) when it is no newer than the zone's newest. */
  apply(summary: RegionalSummary): boolean {
    const current = this.latest.get(summary.geozoneId);
    if (current?.lastSummaryAt != null && Date.parse(current.lastSummaryAt) >= Date.parse(summary.timestamp)) return false;
    this.latest.set(summary.geozoneId, figuresOf(summary));
    return true;
  }

  zones(): ZoneFigures[] {
    return [...this.latest.values()].sort((a, b) => a.geozone.localeCompare(b.geozone));
  }

  zone(geozone: string): ZoneFigures | undefined {
    return this.latest.get(geozone);
  }

  total(): TotalFigures {
    return totalOf(this.zones());
  }

  /** The documents a change of `geozone` stores: the zone's and the total's. */
  documentsFor(geozone: string): { id: string; body: GlobalViewDocument }[] {
    const zone = this.latest.get(geozone);
    if (!zone) return [];
    const { geozone: _g, ...figures } = zone;
    const { zones, ...total } = this.total();
    return [
      { id: zoneDocumentId(geozone), body: { scope: 'zone', geozone, ...figures } },
      { id: TOTAL_ID, body: { scope: 'total', geozone: null, zones, ...total } },
    ];
  }
}

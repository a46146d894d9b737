/**
 * `GET /api/v1/zones`: one row per geozone, live (`ZoneView`, src/contracts/console.ts). Node counts
 * and GPU come from this server's node view (and the workers that send no telemetry, counted by their
 * region, as `/stats` counts them, so the rows add up to `/stats`' totals); the energy mix from the
 * zone's latest RegionalSummary, or from the node view before the first one arrives; requests a
 * second, routing times and rejections from `ZoneFigures`. No store read: the console polls it.
 */
import type { FastifyInstance } from 'fastify';
import type { EnergySource } from '../contracts/messages.ts';
import type { ZoneView } from '../contracts/console.ts';
import type { WorkerRecord } from '../jobs/model.ts';
import { ACCESS } from '../access/policy.ts';
import type { NodeView } from './server.ts';
import type { ZoneFigures } from './zone-figures.ts';

export interface ZoneRoutesDeps {
  readonly geozones: readonly string[];
  readonly nodes: NodeView;
  readonly workers?: () => Iterable<WorkerRecord>;
  readonly figures: ZoneFigures;
}

interface Tally {
  total: number;
  online: number;
  busy: number;
  offline: number;
  gpuSum: number;
  gpuCount: number;
  energy: Record<EnergySource, number>;
}

const round = (v: number, digits: number): number | null => (Number.isNaN(v) ? null : Math.round(v * 10 ** digits) / 10 ** digits);

/** The rows, computed from the views (pure over what it is given). */
export function zoneViews(deps: ZoneRoutesDeps): ZoneView[] {
  const tallies = new Map<string, Tally>();
  const tally = (zone: string): Tally => {
    let t = tallies.get(zone);
    if (!t) {
      t = { total: 0, online: 0, busy: 0, offline: 0, gpuSum: 0, gpuCount: 0, energy: { cogen: 0, grid: 0, battery: 0 } };
      tallies.set(zone, t);
    }
    return t;
  };
  for (const zone of deps.geozones) tally(zone);
  const seen = new Set<string>();
  for (const node of deps.nodes.all()) {
    seen.add(node.id);
    const t = tally(node.geozone);
    t.total++;
    // A draining node is in the total but neither online, busy nor offline.
    if (node.status === 'online' || node.status === 'busy' || node.status === 'offline') t[node.status]++;
    if (node.status === 'offline') continue;
    t.gpuSum += node.gpuUtilization;
    t.gpuCount++;
    t.energy[node.energySource]++;
  }
  for (const worker of deps.workers?.() ?? []) {
    if (seen.has(worker.id)) continue;
    const t = tally(worker.region ?? 'UNZONED');
    t.total++;
    t[worker.status]++;
  }
  for (const zone of deps.figures.known()) if (zone !== 'unknown') tally(zone);
  return [...tallies]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([geozone, t]): ZoneView => {
      const figures = deps.figures.view(geozone);
      const summary = figures.summary;
      return {
        geozone,
        nodes: { total: t.total, online: t.online, busy: t.busy, offline: t.offline },
        gpuAverage: t.gpuCount === 0 ? null : round(t.gpuSum / t.gpuCount, 4),
        energy: summary ? { ...summary.energyBreakdown } : t.energy,
        requestsPerSecond: round(figures.requestsPerSecond, 1) ?? 0,
        routingMsP50: round(figures.routingMsP50, 3),
        routingMsP99: round(figures.routingMsP99, 3),
        rejections: figures.rejections,
        summaryAt: summary?.timestamp ?? null,
      };
    });
}

export function registerZoneRoutes(app: FastifyInstance, deps: ZoneRoutesDeps): void {
  app.get('/api/v1/zones', { config: { access: ACCESS.viewer } }, async () => ({ zones: zoneViews(deps) }));
}

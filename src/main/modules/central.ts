/**
 * The central orchestrator module (seed 001 Layer 3): the global view of the regional summaries, its
 * bitemporal history, and the alerts (`CentralOrchestrator`, src/mesh/central.ts), in the form the
 * process needs:
 *
 * - `sole`: the only writer (`arcnet up`, whatever its engines: one `arcnet up` per store);
 * - `lease`: replicas campaign for the lease `central`; the holder writes the history and raises and
 *   clears alerts, fenced; the others stand by warm (`arcnet central`).
 *
 * It contributes `/api/v1/global` and `/api/v1/global/history` to the process's API.
 */
import { Gauge } from 'prom-client';
import { CentralOrchestrator, type CentralConfig } from '../../mesh/central.ts';
import { DEFAULT_ANOMALY_CONFIG } from '../../mesh/anomalies.ts';
import { LeaseLeadership, SOLE_WRITER } from '../../leases/leadership.ts';
import { registerGlobalRoutes } from '../../api/global-routes.ts';
import type { ArcMetrics } from '../../api/metrics.ts';
import type { Engines } from '../engines.ts';
import type { ModuleHandle } from './module.ts';

export const CENTRAL_LEASE = 'central';

export interface CentralOptions {
  readonly writer: 'sole' | 'lease';
  readonly geozones: readonly string[];
  /** The aggregators' summary period: silence is judged in these. */
  readonly summaryIntervalMs?: number;
  /** Detector thresholds other than the defaults (src/mesh/anomalies.ts). */
  readonly thresholds?: Partial<Omit<CentralConfig, 'summaryIntervalMs'>>;
  /** `lease`: how long a dead leader's duties wait before a standby takes them. */
  readonly leaseTtlMs?: number;
  readonly metrics?: ArcMetrics;
}

export interface CentralModule extends ModuleHandle {
  readonly central: CentralOrchestrator;
}

export async function startCentralModule(engines: Engines, options: CentralOptions): Promise<CentralModule> {
  const { bus, stores, clock, logger, instanceId } = engines;
  const summaryIntervalMs = options.summaryIntervalMs ?? DEFAULT_ANOMALY_CONFIG.summaryIntervalMs;
  const config: CentralConfig = {
    ...DEFAULT_ANOMALY_CONFIG,
    // Silence is two periods: checking a few times a period keeps the alert within a quarter of one.
    evaluateIntervalMs: Math.max(50, Math.min(1_000, Math.floor(summaryIntervalMs / 4))),
    ...options.thresholds,
    summaryIntervalMs,
  };
  const leadership =
    options.writer === 'lease'
      ? new LeaseLeadership({ leases: stores.leases, name: CENTRAL_LEASE, holder: instanceId, clock, logger: logger.child({ component: 'leadership', lease: CENTRAL_LEASE }), ...(options.leaseTtlMs ? { ttlMs: options.leaseTtlMs } : {}) })
      : undefined;
  const central = new CentralOrchestrator({
    bus,
    documents: stores.documents,
    kv: stores.kv,
    clock,
    logger: logger.child({ component: 'central' }),
    config,
    geozones: options.geozones,
    instanceId,
    leadership: leadership ?? SOLE_WRITER,
  });
  await central.start();
  await leadership?.start();
  if (options.metrics) {
    new Gauge({
      name: 'arcnet_central_alerts_active',
      help: 'Alerts the central orchestrator has raised and not cleared',
      registers: [options.metrics.registry],
      collect() {
        this.set(central.counts().active);
      },
    });
    if (leadership) {
      new Gauge({
        name: 'arcnet_central_leading',
        help: 'Whether this replica holds the central lease and writes the global history and alerts (1) or stands by (0)',
        registers: [options.metrics.registry],
        collect() {
          this.set(central.leading ? 1 : 0);
        },
      });
    }
  }
  return {
    name: 'central',
    central,
    api: { routes: [(app) => registerGlobalRoutes(app, central)] },
    health: () => {
      const snapshot = central.snapshot();
      // A standby serves the global view from its own consumption: ready either way.
      return {
        ready: true,
        details: {
          writer: options.writer,
          leading: central.leading,
          ...(leadership ? { leaseToken: leadership.fence()?.token ?? null } : {}),
          zones: snapshot.zones.length,
          lastSummaryAt: snapshot.total.lastSummaryAt,
          alerts: { active: snapshot.alerts.length, raised: central.counts().raised, cleared: central.counts().cleared },
        },
      };
    },
    stop: async () => {
      await central.stop();
      await leadership?.stop();
    },
  };
}

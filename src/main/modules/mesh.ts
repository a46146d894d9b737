/**
 * The mesh module: node registry, bitemporal node documents, the offline sweep, status events and
 * regional summaries (`RegionalAggregator`), in the form the process needs:
 *
 * - `sole`: one aggregator for every geozone and the only writer (`arcnet up`);
 * - `lease`: one aggregator per geozone, writing (fenced) only while it holds the lease
 *   `aggregator/<zone>`, a warm standby otherwise (`arcnet aggregator`, any number of replicas);
 * - `view`: a registry fed by telemetry that writes nothing (`arcnet server`: its node list and console).
 *
 * It gives the API server its node view; the console feed listens to its telemetry.
 */
import { Gauge } from 'prom-client';
import type { NodeTelemetry } from '../../contracts/messages.ts';
import type { NodeState } from '../../mesh/node.ts';
import { RegionalAggregator, DEFAULT_AGGREGATOR_CONFIG } from '../../mesh/aggregator.ts';
import { LeaseLeadership, READ_ONLY, SOLE_WRITER, type Leadership } from '../../leases/leadership.ts';
import type { ArcMetrics } from '../../api/metrics.ts';
import type { NodeView } from '../../api/server.ts';
import type { Engines } from '../engines.ts';
import type { ModuleHandle, ModuleHealth } from './module.ts';

export type MeshWriter = 'sole' | 'lease' | 'view';

export interface MeshOptions {
  readonly writer: MeshWriter;
  readonly geozones: readonly string[];
  readonly offlineAfterMs?: number;
  readonly summaryIntervalMs?: number;
  /** `lease`: how long a dead leader's duties wait before a standby takes them. */
  readonly leaseTtlMs?: number;
  /** Node gauges read this module's registry; with `lease`, also whether each zone is led here. */
  readonly metrics?: ArcMetrics;
}

/** One aggregator and the geozones it covers (`lease`: one each, with its leadership). */
export interface ZoneAggregator {
  readonly geozones: readonly string[];
  readonly aggregator: RegionalAggregator;
  readonly leadership?: LeaseLeadership;
}

export type TelemetryListener = (node: NodeState, telemetry: NodeTelemetry) => void;

export interface MeshModule extends ModuleHandle {
  readonly writer: MeshWriter;
  readonly nodes: NodeView;
  readonly aggregators: readonly ZoneAggregator[];
  /** Called with every report applied to the registry (the console feed). */
  onTelemetry(listener: TelemetryListener): void;
}

export async function startMeshModule(engines: Engines, options: MeshOptions): Promise<MeshModule> {
  const { bus, stores, clock, logger, instanceId } = engines;
  const listeners: TelemetryListener[] = [];
  const onTelemetry: TelemetryListener = (node, telemetry) => {
    for (const listener of listeners) listener(node, telemetry);
  };
  const aggregator = (geozones: readonly string[] | undefined, placement: { group?: string; startAt?: 'latest'; leadership: Leadership; component: Record<string, string> }): RegionalAggregator =>
    new RegionalAggregator({
      bus,
      documents: stores.documents,
      clock,
      logger: logger.child(placement.component),
      config: {
        ...DEFAULT_AGGREGATOR_CONFIG,
        ...(geozones ? { geozones } : {}),
        offlineAfterMs: options.offlineAfterMs ?? DEFAULT_AGGREGATOR_CONFIG.offlineAfterMs,
        summaryIntervalMs: options.summaryIntervalMs ?? DEFAULT_AGGREGATOR_CONFIG.summaryIntervalMs,
      },
      ...(placement.group ? { group: placement.group } : {}),
      ...(placement.startAt ? { startAt: placement.startAt } : {}),
      leadership: placement.leadership,
      onTelemetry,
    });

  const zones: ZoneAggregator[] = [];
  if (options.writer === 'lease') {
    for (const zone of options.geozones) {
      const leadership = new LeaseLeadership({
        leases: stores.leases,
        name: `aggregator/${zone}`,
        holder: instanceId,
        clock,
        logger: logger.child({ component: 'leadership', geozone: zone }),
        ...(options.leaseTtlMs ? { ttlMs: options.leaseTtlMs } : {}),
      });
      // Its own group: every replica sees every node of the zone (silence can only be judged whole).
      const zoneAggregator = aggregator([zone], { group: `${instanceId}-aggregator-${zone}`, startAt: 'latest', leadership, component: { component: 'aggregator', geozone: zone } });
      await zoneAggregator.start();
      await leadership.start();
      zones.push({ geozones: [zone], aggregator: zoneAggregator, leadership });
    }
  } else if (options.writer === 'sole') {
    // On Kafka the topic outlives this process and may carry other deployments' zones: start from the
    // stored node documents and the newest telemetry, in a group of this instance's own.
    const kafka = engines.kinds.bus === 'kafka';
    const sole = aggregator(options.geozones, { ...(kafka ? { group: `${instanceId}-aggregator`, startAt: 'latest' as const } : {}), leadership: SOLE_WRITER, component: { component: 'aggregator' } });
    await sole.start();
    zones.push({ geozones: options.geozones, aggregator: sole });
  } else {
    // Every zone's nodes, whatever the geozones this server's agents belong to: the node list shows the whole mesh.
    const view = aggregator(undefined, { group: `${instanceId}-nodes`, startAt: 'latest', leadership: READ_ONLY, component: { component: 'nodes' } });
    await view.start();
    zones.push({ geozones: options.geozones, aggregator: view });
  }

  const nodes: NodeView =
    zones.length === 1
      ? zones[0]!.aggregator.registry
      : {
          get: (id) => {
            for (const zone of zones) {
              const node = zone.aggregator.registry.get(id);
              if (node) return node;
            }
            return undefined;
          },
          all: function* () {
            for (const zone of zones) yield* zone.aggregator.registry.all();
          },
        };
  if (options.metrics) {
    options.metrics.attachNodes(nodes);
    if (options.writer === 'lease') {
      new Gauge({
        name: 'arcnet_aggregator_leading',
        help: 'Whether this replica holds the geozone\'s aggregator lease and writes for it (1) or stands by (0)',
        labelNames: ['geozone'],
        registers: [options.metrics.registry],
        collect() {
          for (const { geozones, leadership } of zones) this.set({ geozone: geozones[0]! }, leadership?.leading ? 1 : 0);
        },
      });
    }
  }

  const health = (): ModuleHealth => {
    if (options.writer === 'lease') {
      return {
        ready: true,
        details: {
          writer: 'lease',
          geozones: Object.fromEntries(zones.map(({ geozones, aggregator: a, leadership }) => [geozones[0], { leading: leadership?.leading ?? false, leaseToken: leadership?.fence()?.token ?? null, nodes: a.registry.size }])),
        },
      };
    }
    return { ready: true, details: { writer: options.writer, geozones: options.geozones, nodes: zones[0]!.aggregator.registry.size } };
  };

  return {
    name: 'mesh',
    writer: options.writer,
    nodes,
    aggregators: zones,
    api: { nodes },
    onTelemetry: (listener) => void listeners.push(listener),
    health,
    stop: async () => {
      for (const { aggregator: a, leadership } of zones) {
        await a.stop();
        await leadership?.stop();
      }
    },
  };
}

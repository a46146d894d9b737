/**
 * The services family's module (issue 14, seeds 002 and 003), in the form the process needs:
 *
 * - `manager`: campaigns for the `services` lease; the holder runs the cluster deployment manager
 *   (src/services/cluster-manager.ts) over the mesh's nodes that run a services runner
 *   (src/services/runner-directory.ts). `arcnet up` and `arcnet services`.
 * - `gateway`: the agent sessions of this process carry the `services.*` frames, answered for each
 *   node only on its own keys (src/api/agent-services.ts). Every process with agent sessions.
 * - `api`: the management API (src/api/service-routes.ts) and the `/{service}/…` router through the
 *   endpoint registry (src/services/endpoint-registry.ts, src/api/service-router.ts).
 */
import { Gauge } from 'prom-client';
import { LeaseLeadership } from '../../leases/leadership.ts';
import type { ArcMetrics } from '../../api/metrics.ts';
import type { NodeView } from '../../api/server.ts';
import type { NodeState } from '../../mesh/node.ts';
import type { AgentGateway } from '../../api/agent-gateway.ts';
import { agentServicesExtension } from '../../api/agent-services.ts';
import { registerServiceRoutes } from '../../api/service-routes.ts';
import { registerServiceRouter } from '../../api/service-router.ts';
import { ClusterDeploymentManager } from '../../services/cluster-manager.ts';
import { SERVICES_LEASE } from '../../services/model.ts';
import { EndpointRegistry } from '../../services/endpoint-registry.ts';
import { KvNodeSliceChannel } from '../../services/kv-node-channel.ts';
import { RunnerDirectory, type MeshNode } from '../../services/runner-directory.ts';
import type { Engines } from '../engines.ts';
import type { ServerContributions } from '../../api/server.ts';
import type { ModuleHandle } from './module.ts';

/**
 * A standby leads at most TTL + a third of it (its next campaign) + one manager tick after the
 * leader dies: 2.4 + 0.8 + 0.5 s, inside the 5 s the issue asks with room for a busy machine.
 */
export const SERVICES_LEASE_TTL_MS = 2_400;

export interface ServicesModuleOptions {
  /** The nodes as this process's mesh module sees them (`MeshModule.nodes`). */
  readonly nodes: Pick<NodeView, 'all'>;
  /** Campaign for the `services` lease and, holding it, plan and place (default false). */
  readonly manager?: boolean;
  /** This process's agent sessions: runners reach their keys through them. */
  readonly gateway?: Pick<AgentGateway, 'extend'>;
  /** The management API and the `/{service}/…` router (default false). */
  readonly api?: boolean;
  /** A dead leader's duties move after at most this long (default SERVICES_LEASE_TTL_MS). */
  readonly leaseTtlMs?: number;
  /** How long a runner whose session closed still counts before its instances are re-placed (default 3 s). */
  readonly runnerGraceMs?: number;
  /** With `manager`: `arcnet_services_leading` and the instance and unplaced counts on this registry. */
  readonly metrics?: ArcMetrics;
}

export interface ServicesModule extends ModuleHandle {
  readonly manager: ClusterDeploymentManager | undefined;
  readonly registry: EndpointRegistry | undefined;
}

const meshNode = (node: NodeState): MeshNode => ({
  id: node.id,
  name: node.name,
  status: node.status,
  tags: node.tags,
  cpuCores: node.capacity.cpuCores,
  memoryGb: node.capacity.memoryGb,
  cpuLoad: node.cpuLoad,
  datasetsHot: node.datasetsHot,
});

export async function startServicesModule(engines: Engines, options: ServicesModuleOptions): Promise<ServicesModule> {
  const { stores, clock, logger, instanceId } = engines;
  const kv = stores.kv;
  const log = logger.child({ component: 'services' });
  const nodes = (): readonly NodeState[] => [...options.nodes.all()];

  options.gateway?.extend(agentServicesExtension({ kv, clock, instanceId, logger: log, channelFor: (nodeId) => new KvNodeSliceChannel(kv, nodeId, log) }));

  let runners: RunnerDirectory | undefined;
  let leadership: LeaseLeadership | undefined;
  let manager: ClusterDeploymentManager | undefined;
  if (options.manager) {
    runners = new RunnerDirectory(kv);
    await runners.start();
    const directory = runners;
    const graceMs = options.runnerGraceMs ?? 3_000;
    leadership = new LeaseLeadership({ leases: stores.leases, name: SERVICES_LEASE, holder: instanceId, clock, logger: log.child({ component: 'leadership', lease: SERVICES_LEASE }), ttlMs: options.leaseTtlMs ?? SERVICES_LEASE_TTL_MS });
    manager = new ClusterDeploymentManager({ kv, leadership, clock, logger: log, instanceId, nodes: () => directory.serviceNodes(nodes().map(meshNode), clock.now(), graceMs) });
    await leadership.start();
    manager.start();
    if (options.metrics) registerManagerGauges(options.metrics, manager);
  }

  let registry: EndpointRegistry | undefined;
  let api: ServerContributions | undefined;
  if (options.api) {
    const routed = new EndpointRegistry({ kv, logger: log });
    await routed.start();
    registry = routed;
    api = { routes: [(app) => registerServiceRoutes(app, { kv, leases: stores.leases, clock, nodes }), (app) => registerServiceRouter(app, { registry: routed, logger: log })] };
  }

  return {
    name: 'services',
    manager,
    registry,
    ...(api ? { api } : {}),
    health: () => {
      const status = manager?.status();
      return {
        ready: registry?.ready ?? true,
        ...(registry && !registry.ready ? { notReady: 'services: the endpoint registry is still reading the KV' } : {}),
        details: {
          ...(status ? { leading: status.leading, epoch: status.epoch, blueprints: status.blueprints, instances: status.instances, unplaced: status.unplaced.length, runners: runners?.size ?? 0, lastPlan: status.lastPlan } : {}),
          ...(registry ? { services: registry.serviceCount } : {}),
        },
      };
    },
    stop: async () => {
      await manager?.stop();
      await leadership?.stop();
      runners?.stop();
      registry?.stop();
    },
  };
}

function registerManagerGauges(metrics: ArcMetrics, manager: ClusterDeploymentManager): void {
  const registers = [metrics.registry];
  new Gauge({
    name: 'arcnet_services_leading',
    help: 'Whether this replica holds the services lease and plans and places (1) or stands by (0)',
    registers,
    collect() {
      this.set(manager.status().leading ? 1 : 0);
    },
  });
  new Gauge({
    name: 'arcnet_services_instances',
    help: 'Slice instances the leader knows of, not on their way out (0 on a standby)',
    registers,
    collect() {
      this.set(manager.status().instances);
    },
  });
  new Gauge({
    name: 'arcnet_services_unplaced_slices',
    help: 'Slices the leader could not place every instance of (0 on a standby)',
    registers,
    collect() {
      this.set(manager.status().unplaced.length);
    },
  });
}

/**
 * The services family's module (issue 14, seeds 002 and 003): for now its management API only
 * (`src/api/service-routes.ts`: blueprints, scale, cluster and slice status, all in the KV store).
 * The cluster deployment manager (the leader that turns blueprints into slice commands) and the
 * endpoint router are added here next; until then blueprints are stored and read back, and the status
 * shows whatever slice keys exist with no leader named.
 */
import type { NodeView } from '../../api/server.ts';
import type { NodeState } from '../../mesh/node.ts';
import { registerServiceRoutes } from '../../api/service-routes.ts';
import type { Engines } from '../engines.ts';
import type { ModuleHandle } from './module.ts';

export interface ServicesModuleOptions {
  /** The nodes as this process's mesh module sees them (`MeshModule.nodes`): the status and node routes read them. */
  readonly nodes: Pick<NodeView, 'all'>;
}

export function startServicesModule(engines: Engines, options: ServicesModuleOptions): Promise<ModuleHandle> {
  const { stores, clock } = engines;
  const nodes = (): readonly NodeState[] => [...options.nodes.all()];
  return Promise.resolve({
    name: 'services',
    api: { routes: [(app) => registerServiceRoutes(app, { kv: stores.kv, clock, nodes })] },
    // Nothing to wait for: the routes read the store on each call.
    health: () => ({ ready: true, details: { routes: '/api/v1/deploy, /api/v1/blueprints, /api/v1/scale, /api/v1/status, /api/v1/slices, /api/v1/cluster/nodes', leader: 'none in this process yet' } }),
    stop: () => Promise.resolve(),
  });
}

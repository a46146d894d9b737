/**
 * Seed 004's dashboard figures from `/stats`, read defensively: the server is adding seed 004's
 * names (nodes total/online/busy, resources, jobs) beside ArcNet's own, so each figure tries the
 * seed's name first and falls back to what older servers send.
 */
export type StatName = 'nodes_total' | 'nodes_online' | 'nodes_busy' | 'cpu_cores' | 'memory_gb' | 'jobs_completed' | 'jobs_running' | 'jobs_failed';

export const STAT_LABELS: Record<StatName, string> = {
  nodes_total: 'Nodes',
  nodes_online: 'Online',
  nodes_busy: 'Busy',
  cpu_cores: 'CPU cores',
  memory_gb: 'Memory (GB)',
  jobs_completed: 'Jobs completed',
  jobs_running: 'Jobs running',
  jobs_failed: 'Jobs failed',
};

type Json = Record<string, unknown>;

function at(root: unknown, path: string): number | undefined {
  let value: unknown = root;
  for (const part of path.split('.')) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Json)[part];
  }
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function first(root: unknown, paths: readonly string[]): number | undefined {
  for (const path of paths) {
    const value = at(root, path);
    if (value !== undefined) return value;
  }
  return undefined;
}

/** Sums one status over `nodes.byGeozone` (ArcNet's per-zone counts). */
function sumZones(stats: unknown, field: string): number | undefined {
  const zones = (stats as { nodes?: { byGeozone?: Record<string, Json> } } | null | undefined)?.nodes?.byGeozone;
  if (!zones) return undefined;
  let sum = 0;
  for (const zone of Object.values(zones)) sum += typeof zone[field] === 'number' ? zone[field] : 0;
  return sum;
}

export function readStats(stats: unknown): Record<StatName, number | undefined> {
  return {
    nodes_total: first(stats, ['nodes.total', 'nodes_total']),
    nodes_online: first(stats, ['nodes.online', 'nodes_online']) ?? sumZones(stats, 'online'),
    nodes_busy: first(stats, ['nodes.busy', 'nodes_busy']) ?? sumZones(stats, 'busy'),
    cpu_cores: first(stats, ['resources.total_cpu_cores', 'resources.cpu_cores', 'resources.cpuCores', 'workers.cpuCores']),
    memory_gb: first(stats, ['resources.total_memory_gb', 'resources.memory_gb', 'resources.memoryGb', 'workers.memoryGb']),
    jobs_completed: first(stats, ['jobs.completed', 'jobs_completed']),
    jobs_running: first(stats, ['jobs.running', 'jobs_running']),
    jobs_failed: first(stats, ['jobs.failed', 'jobs_failed']),
  };
}

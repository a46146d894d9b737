/**
 * Which nodes run a services runner (seed 002: a runner reports itself to the orchestrator). A node
 * of the mesh is not necessarily one: simulated nodes and agents without `--services` run nothing,
 * so the leader places only on nodes whose agent keeps a services session open. The server holding
 * that session writes `runners/{node}` when it opens (with the runtimes the runner has) and marks it
 * disconnected when it closes; this directory follows the prefix with a KV watch.
 *
 * A runner disconnected for less than `graceMs` still counts: a session that drops and comes back
 * (a server restart, a network blip) must not cost every instance on the node. Past the grace, or
 * when the mesh says the node is offline, its instances are re-placed.
 */
import type { KvStore, KvWatch } from '../store/ports.ts';
import type { ServiceNode } from './plan.ts';

export const RUNNERS_PREFIX = 'runners/';
export const runnerKey = (nodeId: string): string => `${RUNNERS_PREFIX}${nodeId}`;

export type RunnerRuntime = 'process' | 'container';

export interface RunnerRecord {
  readonly runtimes: readonly RunnerRuntime[];
  readonly connected: boolean;
  /** When it connected, or when it disconnected (ms). */
  readonly since: number;
  /** The server instance holding its session. */
  readonly server: string;
}

/** What placement needs of a mesh node, before the runner is known. */
export type MeshNode = Omit<ServiceNode, 'runtimes'>;

export class RunnerDirectory {
  private readonly kv: KvStore;
  private readonly runners = new Map<string, RunnerRecord>();
  private watch: KvWatch | undefined;

  constructor(kv: KvStore) {
    this.kv = kv;
  }

  async start(): Promise<void> {
    const listed = await this.kv.list<RunnerRecord>(RUNNERS_PREFIX);
    for (const entry of listed.entries) this.runners.set(entry.key.slice(RUNNERS_PREFIX.length), entry.value);
    this.watch = this.kv.watch<RunnerRecord>(RUNNERS_PREFIX, listed.revision, (event) => {
      const nodeId = event.key.slice(RUNNERS_PREFIX.length);
      if (event.type === 'delete' || event.value === undefined) this.runners.delete(nodeId);
      else this.runners.set(nodeId, event.value);
    });
  }

  stop(): void {
    this.watch?.close();
    this.watch = undefined;
  }

  get size(): number {
    return this.runners.size;
  }

  /**
   * The mesh's nodes that run a runner, as placement sees them: a runner gone past the grace makes
   * its node `offline` (its instances are re-placed); nodes without a runner are left out.
   */
  serviceNodes(nodes: Iterable<MeshNode>, now: number, graceMs: number): ServiceNode[] {
    const out: ServiceNode[] = [];
    const seen = new Set<string>();
    for (const node of nodes) {
      const runner = this.runners.get(node.id);
      if (!runner) continue;
      seen.add(node.id);
      out.push({ ...node, status: this.gone(runner, now, graceMs) ? 'offline' : node.status, runtimes: runner.runtimes });
    }
    // A runner whose session is open proves its node alive even before this process's mesh view has
    // heard from it (a leader just started, its telemetry not in yet): without it the planner would
    // take the node for gone and re-place everything on it.
    for (const [nodeId, runner] of this.runners) {
      if (seen.has(nodeId) || this.gone(runner, now, graceMs)) continue;
      out.push({ id: nodeId, name: nodeId, status: 'unreported', tags: [], cpuCores: 0, memoryGb: 0, cpuLoad: 0, datasetsHot: [], runtimes: runner.runtimes });
    }
    return out;
  }

  private gone(runner: RunnerRecord, now: number, graceMs: number): boolean {
    return !runner.connected && now - runner.since > graceMs;
  }
}

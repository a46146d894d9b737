/**
 * In-memory view of the nodes, kept current by telemetry. Aggregators and schedulers each keep
 * their own, fed from the telemetry topic, so neither needs the other (or a database) to decide.
 */
import type { NodeTelemetry } from '../contracts/messages.ts';
import { nodeFromTelemetry, type NodeState, type NodeStatus } from './node.ts';

export interface StatusChange {
  readonly node: NodeState;
  readonly from: NodeStatus | 'unknown';
  readonly to: NodeStatus;
}

export class NodeRegistry {
  private readonly nodes = new Map<string, NodeState>();

  get size(): number {
    return this.nodes.size;
  }

  get(id: string): NodeState | undefined {
    return this.nodes.get(id);
  }

  all(): IterableIterator<NodeState> {
    return this.nodes.values();
  }

  /** Applies telemetry; returns the new state and the status change it caused, if any. */
  applyTelemetry(telemetry: NodeTelemetry, receivedAt: number): { node: NodeState; change: StatusChange | undefined } {
    const previous = this.nodes.get(telemetry.id);
    const node = nodeFromTelemetry(telemetry, receivedAt, previous);
    this.nodes.set(node.id, node);
    const from = previous?.status ?? 'unknown';
    return { node, change: from === node.status ? undefined : { node, from, to: node.status } };
  }

  /** Restores a node known from the store (on restart), without treating it as fresh. */
  restore(node: NodeState): void {
    if (!this.nodes.has(node.id)) this.nodes.set(node.id, node);
  }

  /** Marks nodes silent for longer than `offlineAfterMs` offline; returns the changes. */
  sweep(now: number, offlineAfterMs: number): StatusChange[] {
    const changes: StatusChange[] = [];
    for (const node of this.nodes.values()) {
      if (node.status !== 'offline' && now - node.lastSeen > offlineAfterMs) {
        const updated: NodeState = { ...node, status: 'offline' };
        this.nodes.set(node.id, updated);
        changes.push({ node: updated, from: node.status, to: 'offline' });
      }
    }
    return changes;
  }
}

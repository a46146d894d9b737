/**
 * "Why this node", recomputed: given a decision record and the node documents as they were at its
 * decision time, run the profile the scheduler runs and say how many nodes each filter removed (a
 * node counts once, at the first filter it fails), the best candidates with each weighted score
 * term, which one the profile picks, and whether that is what the scheduler did. Pure: the route
 * reads the documents; this uses the placement framework's own `firstFailure`, `scoreNode` and
 * `better`, so it cannot drift from `place()` (a property test holds it to it).
 */
import type { PlacementExplanation } from '../contracts/console.ts';
import type { NodeState } from '../mesh/node.ts';
import { better, firstFailure, scoreNode, type PlacementContext, type Profile } from '../placement/framework.ts';
import type { DecisionRecord } from './decision-log.ts';
import type { InferenceAsk } from './profile.ts';

export const TOP_CANDIDATES = 5;

export interface ExplainInput {
  readonly decision: DecisionRecord;
  /** The node documents as of the decision time. */
  readonly nodes: readonly NodeState[];
  readonly profile: Profile<NodeState, InferenceAsk>;
  /** The valid time the documents were read at (the decision time) and when the store was asked. */
  readonly asOf: number;
  readonly top?: number;
}

type Candidate = PlacementExplanation['candidates'][number];

/** Each scorer's weighted term, by plugin name. */
function termsOf(profile: Profile<NodeState, InferenceAsk>, node: NodeState, ask: InferenceAsk, context: PlacementContext): Record<string, number> {
  const terms: Record<string, number> = {};
  for (const { plugin, weight } of profile.scorers) terms[plugin.name] = weight * plugin.score(node, ask, context);
  return terms;
}

export function explainPlacement(input: ExplainInput): PlacementExplanation & { approximations: string[] } {
  const { decision, profile } = input;
  const top = input.top ?? TOP_CANDIDATES;
  const ask: InferenceAsk = { modelId: decision.modelId, requesterGeozone: decision.requesterGeozone };
  const reserved = new Set(decision.reserved);
  // The clock is the decision's: the online filter compares lastSeen with it, as the scheduler did then.
  const context: PlacementContext = { now: decision.decidedAt, isReserved: (id) => id !== decision.nodeId && reserved.has(id) };
  const removed = new Map<string, number>(profile.filters.map((f) => [f.name, 0]));
  const best: { node: NodeState; score: number }[] = [];
  for (const node of input.nodes) {
    const failed = firstFailure(profile, node, ask, context);
    if (failed) {
      removed.set(failed.name, (removed.get(failed.name) ?? 0) + 1);
      continue;
    }
    const score = scoreNode(profile, node, ask, context);
    if (best.length === top && !better(score, node.id, best[top - 1]!.score, best[top - 1]!.node.id)) continue;
    let at = best.length;
    while (at > 0 && better(score, node.id, best[at - 1]!.score, best[at - 1]!.node.id)) at--;
    best.splice(at, 0, { node, score });
    if (best.length > top) best.pop();
  }
  const winner = best[0];
  const candidates: Candidate[] = best.map(({ node, score }, i) => ({ nodeId: node.id, nodeName: node.name, geozone: node.geozone, score, terms: termsOf(profile, node, ask, context), chosen: i === 0 }));
  const chosen = winner ? { nodeId: winner.node.id, nodeName: winner.node.name, geozone: winner.node.geozone, score: winner.score, forwarded: winner.node.geozone !== decision.requesterGeozone } : null;
  const agrees = decision.outcome === 'rejected' ? chosen === null : chosen?.nodeId === decision.nodeId;

  const approximations = [
    `reservations are the nodes this server's tracker saw held by other requests at ${new Date(decision.decidedAt).toISOString()} (${decision.reserved.length}${decision.reservedTruncated === true ? `, the first ${decision.reserved.length} only` : ''}), not the scheduler's own reservation book`,
    'node states are the documents valid at the decision time; the scheduler may not have received the newest of them yet',
  ];
  if (decision.outcome === 'dispatched' && decision.nodeId !== undefined && !input.nodes.some((n) => n.id === decision.nodeId)) {
    approximations.push(`the dispatched node ${decision.nodeId} has no document valid at the decision time (its first report was not stored yet)`);
  }
  return {
    subject: { kind: 'inference', id: decision.id, modelId: decision.modelId, requesterGeozone: decision.requesterGeozone, priority: decision.priority },
    decidedAt: new Date(decision.decidedAt).toISOString(),
    basis: { asOf: new Date(input.asOf).toISOString(), nodesSeen: input.nodes.length },
    outcome: decision.outcome,
    filters: profile.filters.map((f) => ({ name: f.name, removed: removed.get(f.name) ?? 0 })),
    candidates,
    chosen,
    recorded: { nodeId: decision.nodeId ?? null, ...(decision.reason === undefined ? {} : { reason: decision.reason }) },
    agrees,
    approximations,
  };
}

/**
 * Placement as a pipeline of small named plugins (the Kubernetes scheduler framework's shape):
 * filters say whether a node can take the work, with a reason when it cannot; scorers rank the
 * rest; a profile names the plugins and weights for one family of work. `place` is pure: it takes
 * a read-only view and returns a decision, never an exception for an expected outcome.
 */

export type FilterStatus = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export const PASS: FilterStatus = { ok: true };

export interface PlacementContext {
  readonly now: number;
  /** True while another piece of work holds the node. */
  isReserved(nodeId: string): boolean;
}

export interface FilterPlugin<N, R> {
  readonly name: string;
  /** Short phrase for a rejection summary, e.g. "over 85 % GPU". */
  readonly rejects: string;
  filter(node: N, request: R, context: PlacementContext): FilterStatus;
}

export interface ScorePlugin<N, R> {
  readonly name: string;
  /** Raw score; the profile multiplies it by the plugin's weight. */
  score(node: N, request: R, context: PlacementContext): number;
}

export interface WeightedScorer<N, R> {
  readonly plugin: ScorePlugin<N, R>;
  readonly weight: number;
}

export interface Profile<N, R> {
  readonly name: string;
  readonly filters: readonly FilterPlugin<N, R>[];
  readonly scorers: readonly WeightedScorer<N, R>[];
}

export interface Placed<N> {
  readonly kind: 'placed';
  readonly node: N;
  readonly score: number;
  readonly breakdown: Readonly<Record<string, number>>;
}

export interface Unplaceable {
  readonly kind: 'none';
  /** A sentence a person can act on: which filters removed how many nodes. */
  readonly reason: string;
  /** Nodes removed per filter (each node counted once, by the first filter that removed it). */
  readonly rejectedBy: Readonly<Record<string, number>>;
  readonly considered: number;
}

export type Decision<N> = Placed<N> | Unplaceable;

export interface Identified {
  readonly id: string;
}

export function scoreNode<N, R>(profile: Profile<N, R>, node: N, request: R, context: PlacementContext): number {
  let total = 0;
  for (const { plugin, weight } of profile.scorers) total += weight * plugin.score(node, request, context);
  return total;
}

export function firstFailure<N, R>(profile: Profile<N, R>, node: N, request: R, context: PlacementContext): FilterPlugin<N, R> | undefined {
  for (const filter of profile.filters) if (!filter.filter(node, request, context).ok) return filter;
  return undefined;
}

/** Ties go to the lower id so every replica and every run decides the same way. */
export function better(scoreA: number, idA: string, scoreB: number, idB: string): boolean {
  return scoreA > scoreB || (scoreA === scoreB && idA < idB);
}

/** The reference placement: filter every node, score the feasible ones, take the best. */
export function place<N extends Identified, R>(profile: Profile<N, R>, nodes: Iterable<N>, request: R, context: PlacementContext, subject = 'the request'): Decision<N> {
  const { placed, shortfall } = placeMany(profile, nodes, request, context, 1, subject);
  return placed[0] ?? shortfall!;
}

/** Each scorer's weighted contribution, for explaining a placement. */
function breakdownOf<N, R>(profile: Profile<N, R>, node: N, request: R, context: PlacementContext): Record<string, number> {
  const breakdown: Record<string, number> = {};
  for (const { plugin, weight } of profile.scorers) breakdown[plugin.name] = weight * plugin.score(node, request, context);
  return breakdown;
}

export function explainRejection<N, R>(profile: Profile<N, R>, rejectedBy: Readonly<Record<string, number>>, considered: number, subject: string): string {
  if (considered === 0) return `no candidate for ${subject}: no nodes are known`;
  const parts = profile.filters
    .filter((f) => (rejectedBy[f.name] ?? 0) > 0)
    .map((f) => `${rejectedBy[f.name]} ${rejectedBy[f.name] === 1 ? 'node' : 'nodes'} ${f.rejects}`);
  return `no candidate for ${subject} among ${considered} ${considered === 1 ? 'node' : 'nodes'}: ${parts.join(', ')}`;
}

/**
 * The best `count` nodes in one pass, best first: the same nodes, in the same order, as calling
 * `place` `count` times and excluding each winner from the next call, provided choosing a node
 * changes nothing about the others (true when every later pick excludes the earlier ones).
 * `shortfall` explains why fewer than `count` could be placed.
 */
export function placeMany<N extends Identified, R>(
  profile: Profile<N, R>,
  nodes: Iterable<N>,
  request: R,
  context: PlacementContext,
  count: number,
  subject = 'the request',
): { readonly placed: Placed<N>[]; readonly shortfall: Unplaceable | undefined } {
  // Kept sorted best first and cut at `count`: count is small (a job's redundancy), so insertion is cheapest.
  const best: { node: N; score: number }[] = [];
  const rejectedBy: Record<string, number> = {};
  let considered = 0;
  for (const node of nodes) {
    considered++;
    const failed = firstFailure(profile, node, request, context);
    if (failed) {
      rejectedBy[failed.name] = (rejectedBy[failed.name] ?? 0) + 1;
      continue;
    }
    if (count <= 0) continue;
    const score = scoreNode(profile, node, request, context);
    if (best.length === count && !better(score, node.id, best[count - 1]!.score, best[count - 1]!.node.id)) continue;
    let at = best.length;
    while (at > 0 && better(score, node.id, best[at - 1]!.score, best[at - 1]!.node.id)) at--;
    best.splice(at, 0, { node, score });
    if (best.length > count) best.pop();
  }
  const placed = best.map(({ node, score }): Placed<N> => ({ kind: 'placed', node, score, breakdown: breakdownOf(profile, node, request, context) }));
  if (placed.length >= count) return { placed, shortfall: undefined };
  // The nodes taken count as removed for the next slot, as the sequential calls would have seen them.
  const reason = explainRejection(profile, rejectedBy, considered - placed.length, subject);
  return { placed, shortfall: { kind: 'none', reason: placed.length > 0 ? `${reason} (after placing ${placed.length})` : reason, rejectedBy, considered } };
}

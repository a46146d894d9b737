/**
 * The inference candidate index: routing decisions in O(1) + O(log n) instead of a scan.
 *
 * For every (geozone, model) a max-heap holds the nodes that pass every filter that does not depend
 * on time, ordered by their score for a requester in the same geozone. Within one geozone the
 * same-geozone term is the same for every node, so that order is also the right order for a
 * requester anywhere else: a decision rescores only the top of each geozone's heap. Reserved nodes leave the heaps (lazily) until released or expired; nodes found silent
 * at the top are dropped until their next telemetry. `place()` over all nodes is the reference the
 * property tests hold this index to. It is sound for any profile assembled from the inference
 * registry because of the property documented on `inferencePlugins` (`src/inference/profile.ts`).
 */
import type { NodeState } from '../mesh/node.ts';
import { better, firstFailure, place, scoreNode, type PlacementContext, type Profile, type Unplaceable } from './framework.ts';
import { IndexedMaxHeap, type HeapMember } from './indexed-heap.ts';
import type { InferenceAsk } from '../inference/profile.ts';

export interface Reservation {
  readonly nodeId: string;
  readonly holder: string;
  readonly token: number;
  readonly expiresAt: number;
}

export interface Candidate {
  readonly node: NodeState;
  readonly score: number;
  /** True when the node is outside the requester's geozone (cross-region forwarding). */
  readonly forwarded: boolean;
}

interface Membership {
  readonly node: NodeState;
  readonly heaps: readonly IndexedMaxHeap[];
  /** The node's handle in each of `heaps`, at the score computed from `node`. */
  readonly members: readonly HeapMember[];
}

export class InferenceCandidateIndex {
  private readonly profile: Profile<NodeState, InferenceAsk>;
  private readonly offlineAfterMs: number;
  private readonly nodes = new Map<string, NodeState>();
  private readonly heaps = new Map<string, Map<string, IndexedMaxHeap>>();
  /** The heaps each node belongs in, with its handle (and score) in each, as computed from `node`'s state. */
  private readonly memberOf = new Map<string, Membership>();
  private readonly reservations = new Map<string, Reservation>();
  /** Reservation expiry order: a min-heap on expiry, kept as a max-heap on its negation. */
  private readonly expiries = new IndexedMaxHeap();
  private readonly neverReserved = (): boolean => false;
  /** Reservations ended by expiry that `expire()` has not handed out yet. */
  private expiredUnreported: Reservation[] = [];

  constructor(profile: Profile<NodeState, InferenceAsk>, offlineAfterMs: number) {
    this.profile = profile;
    this.offlineAfterMs = offlineAfterMs;
  }

  get size(): number {
    return this.nodes.size;
  }

  node(id: string): NodeState | undefined {
    return this.nodes.get(id);
  }

  allNodes(): IterableIterator<NodeState> {
    return this.nodes.values();
  }

  reservation(nodeId: string): Reservation | undefined {
    return this.reservations.get(nodeId);
  }

  reservationCount(): number {
    return this.reservations.size;
  }

  /** Telemetry arrived: the node's place in the heaps follows; a reservation it holds is kept. */
  upsert(node: NodeState): void {
    this.nodes.set(node.id, node);
    if (this.reservations.has(node.id)) return;
    this.insert(node);
  }

  remove(nodeId: string): void {
    this.nodes.delete(nodeId);
    this.unlink(nodeId);
  }

  /**
   * The node stays in its heaps: it is dropped from each lazily when it surfaces at the top of one,
   * so a reservation costs one heap operation on the hot path instead of one per model loaded.
   */
  reserve(reservation: Reservation): void {
    this.reservations.set(reservation.nodeId, reservation);
    this.expiries.upsert(reservation.nodeId, -reservation.expiresAt);
  }

  /** Ends a reservation if `token` is the one held (any token when omitted); the node becomes a candidate again. */
  release(nodeId: string, token?: number): Reservation | undefined {
    const held = this.reservations.get(nodeId);
    if (!held || (token !== undefined && held.token !== token)) return undefined;
    this.reservations.delete(nodeId);
    this.expiries.remove(nodeId);
    const node = this.nodes.get(nodeId);
    if (node) this.restore(node);
    return held;
  }

  /**
   * Ends reservations whose lease has run out and returns every one ended since the last call,
   * including those a decision ended on its way, so the caller can report all the lost work.
   */
  expire(now: number): Reservation[] {
    this.endExpired(now);
    const expired = this.expiredUnreported;
    this.expiredUnreported = [];
    return expired;
  }

  private endExpired(now: number): void {
    for (;;) {
      const id = this.expiries.peekId();
      if (id === undefined || -this.expiries.peekScore() > now) break;
      const released = this.release(id);
      if (released) this.expiredUnreported.push(released);
      else this.expiries.remove(id);
    }
  }

  isReserved(nodeId: string, now: number): boolean {
    const held = this.reservations.get(nodeId);
    return held !== undefined && held.expiresAt > now;
  }

  /**
   * The best feasible node for the ask: the top of each geozone's heap, rescored for this requester.
   * With the seed's weights the requester's own geozone always wins when it has a candidate (100 for
   * the zone outweighs everything else together); other weights may prefer a node elsewhere.
   */
  best(ask: InferenceAsk, now: number): Candidate | undefined {
    this.endExpired(now);
    let bestNode: NodeState | undefined;
    let bestScore = -Infinity;
    const context = this.context(now);
    for (const zone of this.heaps.keys()) {
      const top = this.top(zone, ask.modelId, now);
      if (!top) continue;
      const score = zone === ask.requesterGeozone ? top.score : scoreNode(this.profile, top.node, ask, context);
      if (bestNode === undefined || better(score, top.node.id, bestScore, bestNode.id)) {
        bestNode = top.node;
        bestScore = score;
      }
    }
    return bestNode ? { node: bestNode, score: bestScore, forwarded: bestNode.geozone !== ask.requesterGeozone } : undefined;
  }

  /** Why nothing fits: the full filter pipeline over every node (the slow path, only on rejection). */
  explain(ask: InferenceAsk, now: number): Unplaceable {
    const decision = place(this.profile, this.nodes.values(), ask, this.context(now), `${ask.modelId} (requested from ${ask.requesterGeozone})`);
    if (decision.kind === 'none') return decision;
    return { kind: 'none', reason: `no candidate could be reserved for ${ask.modelId}: every feasible node was taken first`, rejectedBy: {}, considered: this.nodes.size };
  }

  context(now: number): PlacementContext {
    return { now, isReserved: (id) => this.isReserved(id, now) };
  }

  private top(zone: string, modelId: string, now: number): { node: NodeState; score: number } | undefined {
    const heap = this.heaps.get(zone)?.get(modelId);
    if (!heap) return undefined;
    for (;;) {
      const id = heap.peekId();
      if (id === undefined) return undefined;
      if (this.reservations.has(id)) {
        // Reserved (expired ones were ended first, so the reservation is live): back in every heap on release.
        heap.setAsideTop();
        continue;
      }
      const node = this.nodes.get(id)!;
      if (now - node.lastSeen <= this.offlineAfterMs) return { node, score: heap.peekScore() };
      // Silent past the limit: out of every heap until it reports again.
      this.unlink(id);
    }
  }

  /**
   * A released node back in its heaps. Its state is most often the one its heaps were computed from
   * (telemetry that came meanwhile waits for the release), and then the filters and scores are not
   * run again: it goes back, with its score, into the heaps it was set aside from on its way to the top.
   */
  private restore(node: NodeState): void {
    const membership = this.memberOf.get(node.id);
    if (membership?.node !== node) {
      this.insert(node);
      return;
    }
    const { heaps, members } = membership;
    for (let k = 0; k < heaps.length; k++) heaps[k]!.putBack(members[k]!);
  }

  private insert(node: NodeState): void {
    this.unlink(node.id);
    const heaps: IndexedMaxHeap[] = [];
    const members: HeapMember[] = [];
    const context: PlacementContext = { now: node.lastSeen, isReserved: this.neverReserved };
    let zoneHeaps = this.heaps.get(node.geozone);
    if (!zoneHeaps) {
      zoneHeaps = new Map();
      this.heaps.set(node.geozone, zoneHeaps);
    }
    for (const modelId of node.modelsLoaded) {
      const ask: InferenceAsk = { modelId, requesterGeozone: node.geozone };
      if (firstFailure(this.profile, node, ask, context)) continue;
      let heap = zoneHeaps.get(modelId);
      if (!heap) {
        heap = new IndexedMaxHeap();
        zoneHeaps.set(modelId, heap);
      }
      heaps.push(heap);
      members.push(heap.upsert(node.id, scoreNode(this.profile, node, ask, context)));
    }
    if (heaps.length > 0) this.memberOf.set(node.id, { node, heaps, members });
  }

  private unlink(nodeId: string): void {
    const membership = this.memberOf.get(nodeId);
    if (!membership) return;
    for (const heap of membership.heaps) heap.remove(nodeId);
    this.memberOf.delete(nodeId);
  }
}

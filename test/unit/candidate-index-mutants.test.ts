/**
 * The inference candidate index's bookkeeping, one operation at a time: what the accessors report,
 * that a removed node is gone, that a reservation is released only by its own token (or by anyone
 * when no token is given), that a lease ends at its expiry instant and is reported once by
 * `expire()` (also when a decision ended it first), and what `explain` says when a node is free.
 */
import { describe, expect, it } from 'vitest';
import { InferenceCandidateIndex, type Reservation } from '../../src/placement/candidate-index.ts';
import { DEFAULT_INFERENCE_PROFILE, inferenceProfile, type InferenceAsk } from '../../src/inference/profile.ts';
import { place, scoreNode } from '../../src/placement/framework.ts';
import { NOW, nodeState } from './node-fixture.ts';

const ask: InferenceAsk = { modelId: 'm', requesterGeozone: 'CAISO' };
const OFFLINE_AFTER_MS = DEFAULT_INFERENCE_PROFILE.offlineAfterMs;

/** Three feasible nodes, best first: a (idle), b (half busy), c (busier). */
function threeNodes(): InferenceCandidateIndex {
  const index = new InferenceCandidateIndex(inferenceProfile(), OFFLINE_AFTER_MS);
  index.upsert(nodeState('a', { gpuUtilization: 0 }));
  index.upsert(nodeState('b', { gpuUtilization: 0.5 }));
  index.upsert(nodeState('c', { gpuUtilization: 0.7 }));
  return index;
}

const lease = (nodeId: string, token: number, expiresAt = NOW + 10_000): Reservation => ({ nodeId, holder: `request-${token}`, token, expiresAt });

describe('InferenceCandidateIndex bookkeeping', () => {
  it('reports the nodes it knows and the reservations it holds', () => {
    const index = threeNodes();
    expect(index.size).toBe(3);
    expect(index.node('b')?.gpuUtilization).toBe(0.5);
    expect(index.node('zz')).toBeUndefined();
    expect([...index.allNodes()].map((n) => n.id).sort()).toEqual(['a', 'b', 'c']);
    expect(index.reservationCount()).toBe(0);
    index.reserve(lease('a', 1));
    expect(index.reservation('a')).toEqual(lease('a', 1));
    expect(index.reservation('b')).toBeUndefined();
    expect(index.reservationCount()).toBe(1);
  });

  it('forgets a removed node: not counted, not found, never chosen', () => {
    const index = threeNodes();
    index.remove('a');
    expect(index.size).toBe(2);
    expect(index.node('a')).toBeUndefined();
    expect(index.best(ask, NOW)?.node.id).toBe('b');
    index.remove('b');
    index.remove('c');
    expect(index.best(ask, NOW)).toBeUndefined();
  });

  it('releases a reservation only for its own token, or for any token when none is given', () => {
    const index = threeNodes();
    index.reserve(lease('a', 7));
    expect(index.best(ask, NOW)?.node.id).toBe('b');
    expect(index.release('a', 8)).toBeUndefined();
    expect(index.isReserved('a', NOW)).toBe(true);
    expect(index.best(ask, NOW)?.node.id).toBe('b');
    expect(index.release('a', 7)).toEqual(lease('a', 7));
    expect(index.isReserved('a', NOW)).toBe(false);
    expect(index.best(ask, NOW)?.node.id).toBe('a');
    expect(index.release('a', 7)).toBeUndefined();
    index.reserve(lease('b', 9));
    expect(index.release('b')).toEqual(lease('b', 9));
    expect(index.release('never-held')).toBeUndefined();
  });

  it('releases the reservation of a node removed meanwhile without bringing the node back', () => {
    const index = threeNodes();
    index.reserve(lease('a', 1));
    index.remove('a');
    expect(index.release('a', 1)).toEqual(lease('a', 1));
    expect(index.node('a')).toBeUndefined();
    expect(index.best(ask, NOW)?.node.id).toBe('b');
  });

  it('holds a lease until its expiry instant and not at it', () => {
    const index = threeNodes();
    const expiresAt = NOW + 5_000;
    index.reserve(lease('a', 1, expiresAt));
    expect(index.isReserved('a', expiresAt - 1)).toBe(true);
    expect(index.isReserved('a', expiresAt)).toBe(false);
    expect(index.isReserved('b', NOW)).toBe(false);
  });

  it('expire() reports each ended lease once, including leases a decision ended on its way', () => {
    const index = threeNodes();
    expect(index.expire(NOW)).toEqual([]);
    index.reserve(lease('a', 1, NOW + 1_000));
    index.reserve(lease('b', 2, NOW + 2_000));
    index.reserve(lease('c', 3, NOW + 60_000));
    expect(index.expire(NOW + 999)).toEqual([]);
    expect(index.expire(NOW + 1_000)).toEqual([lease('a', 1, NOW + 1_000)]);
    expect(index.expire(NOW + 1_000)).toEqual([]);
    // A decision at a later time ends b's lease first; the next expire() still reports it.
    const later = NOW + 2_000;
    index.upsert(nodeState('a', { gpuUtilization: 0.9, lastSeen: later }));
    expect(index.best(ask, later)?.node.id).toBe('b');
    expect(index.reservationCount()).toBe(1);
    expect(index.expire(later)).toEqual([lease('b', 2, NOW + 2_000)]);
    expect(index.expire(later)).toEqual([]);
  });

  it('keeps a reserved node out of the choice when it reports telemetry, and brings it back on release', () => {
    const index = threeNodes();
    index.reserve(lease('a', 1));
    index.upsert(nodeState('a', { gpuUtilization: 0, lastSeen: NOW + 1 }));
    expect(index.best(ask, NOW + 1)?.node.id).toBe('b');
    index.release('a', 1);
    expect(index.best(ask, NOW + 1)?.node.id).toBe('a');
  });

  it('still offers a node silent for exactly the offline limit', () => {
    const index = threeNodes();
    expect(index.best(ask, NOW + OFFLINE_AFTER_MS)?.node.id).toBe('a');
    expect(index.best(ask, NOW + OFFLINE_AFTER_MS + 1)).toBeUndefined();
  });

  it('never offers a node that fails a filter, however well it would score', () => {
    const index = new InferenceCandidateIndex(inferenceProfile(), OFFLINE_AFTER_MS);
    index.upsert(nodeState('draining', { status: 'draining', energySource: 'cogen' }));
    index.upsert(nodeState('hot', { gpuUtilization: 0.95, energySource: 'cogen' }));
    index.upsert(nodeState('flat', { energySource: 'battery', batteryLevel: 0.1 }));
    index.upsert(nodeState('other-model', { modelsLoaded: ['x'], energySource: 'cogen' }));
    index.upsert(nodeState('ok', { gpuUtilization: 0.8 }));
    expect(index.best(ask, NOW)?.node.id).toBe('ok');
  });

  it('drops a node that fell silent and takes it back at its next telemetry', () => {
    const index = threeNodes();
    const silent = NOW + OFFLINE_AFTER_MS + 1;
    index.upsert(nodeState('b', { gpuUtilization: 0.5, lastSeen: silent }));
    index.upsert(nodeState('c', { gpuUtilization: 0.7, lastSeen: silent }));
    expect(index.best(ask, silent)?.node.id).toBe('b');
    expect(index.best(ask, silent)?.node.id).toBe('b');
    index.upsert(nodeState('a', { gpuUtilization: 0, lastSeen: silent }));
    expect(index.best(ask, silent)?.node.id).toBe('a');
  });

  it('with the seed weights prefers the requester\'s zone, scored for that requester, and flags a node elsewhere as forwarded', () => {
    const profile = inferenceProfile();
    const index = new InferenceCandidateIndex(profile, OFFLINE_AFTER_MS);
    // PJM's node would win on everything but the zone; ERCOT knows the model only on a node that lacks it.
    index.upsert(nodeState('pjm', { geozone: 'PJM', energySource: 'cogen', gpuUtilization: 0 }));
    index.upsert(nodeState('caiso', { geozone: 'CAISO', gpuUtilization: 0.5 }));
    index.upsert(nodeState('ercot', { geozone: 'ERCOT', modelsLoaded: ['x'] }));
    const context = index.context(NOW);
    for (const requesterGeozone of ['CAISO', 'PJM']) {
      const forZone = { modelId: 'm', requesterGeozone };
      const chosen = index.best(forZone, NOW);
      const reference = place(profile, index.allNodes(), forZone, context);
      expect(reference.kind).toBe('placed');
      if (reference.kind !== 'placed') return;
      expect(chosen?.node.id).toBe(reference.node.id);
      expect(chosen?.node.geozone).toBe(requesterGeozone);
      expect(chosen?.score).toBeCloseTo(scoreNode(profile, reference.node, forZone, context), 9);
      expect(chosen?.forwarded).toBe(false);
    }
    // From a zone with no candidate of its own, the best node anywhere is chosen, rescored for the requester and forwarded.
    const fromErcot = { modelId: 'm', requesterGeozone: 'ERCOT' };
    const chosen = index.best(fromErcot, NOW);
    expect(chosen?.node.id).toBe('pjm');
    expect(chosen?.forwarded).toBe(true);
    expect(chosen?.score).toBeCloseTo(scoreNode(profile, index.node('pjm')!, fromErcot, context), 9);
  });

  it('finds the best zone whatever order the zones became known in', () => {
    const profile = inferenceProfile();
    const nodes = [nodeState('good', { geozone: 'PJM', energySource: 'cogen' }), nodeState('fair', { geozone: 'ERCOT', gpuUtilization: 0.3 }), nodeState('poor', { geozone: 'MISO', gpuUtilization: 0.6 })];
    for (const order of [[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]]) {
      const index = new InferenceCandidateIndex(profile, OFFLINE_AFTER_MS);
      for (const i of order) index.upsert(nodes[i]!);
      expect(index.best(ask, NOW)).toMatchObject({ node: { id: 'good' }, forwarded: true });
    }
  });

  it('says every feasible node was taken first when the pipeline still finds one', () => {
    const index = threeNodes();
    const why = index.explain(ask, NOW);
    expect(why).toEqual({ kind: 'none', reason: 'no candidate could be reserved for m: every feasible node was taken first', rejectedBy: {}, considered: 3 });
  });

  it('explains with the pipeline when no node is feasible, naming the model and the requester', () => {
    const index = threeNodes();
    for (const [id, token] of [['a', 1], ['b', 2], ['c', 3]] as const) index.reserve(lease(id, token));
    expect(index.best(ask, NOW)).toBeUndefined();
    const why = index.explain(ask, NOW);
    expect(why).toMatchObject({ kind: 'none', rejectedBy: { 'not-reserved': 3 }, considered: 3 });
    expect(why.reason).toBe('no candidate for m (requested from CAISO) among 3 nodes: 3 nodes already reserved');
  });
});

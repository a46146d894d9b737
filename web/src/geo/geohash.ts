/**
 * A node's place for the map: the feed and the node list give it only as a geohash (seed 001). The
 * server's decoder (src/core/geohash.ts, pure) is the one used here; a malformed hash from an old or
 * foreign node is no place rather than an exception in the render loop.
 */
import { decodeGeohash as decodeCell, isGeohash } from '../../../src/core/geohash.ts';

export function decodeGeohash(hash: string): [number, number] | null {
  const lower = hash.toLowerCase();
  return lower.length > 0 && isGeohash(lower) ? decodeCell(lower) : null;
}

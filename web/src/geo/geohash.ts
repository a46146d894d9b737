/**
 * Geohash to [longitude, latitude], in the browser: the feed and the node list give a node's place
 * only as its geohash (seed 001). Decodes to the centre of the cell.
 */
const BASE32 = '0123456789bcdefghjkmnpqrstuvwxyz';

export function decodeGeohash(hash: string): [number, number] | null {
  let latMin = -90;
  let latMax = 90;
  let lngMin = -180;
  let lngMax = 180;
  let even = true;
  if (hash.length === 0) return null;
  for (const char of hash.toLowerCase()) {
    const value = BASE32.indexOf(char);
    if (value < 0) return null;
    for (let bit = 4; bit >= 0; bit--) {
      const on = (value >> bit) & 1;
      if (even) {
        const mid = (lngMin + lngMax) / 2;
        if (on) lngMin = mid;
        else lngMax = mid;
      } else {
        const mid = (latMin + latMax) / 2;
        if (on) latMin = mid;
        else latMax = mid;
      }
      even = !even;
    }
  }
  return [(lngMin + lngMax) / 2, (latMin + latMax) / 2];
}

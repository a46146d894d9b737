const BASE32 = '0123456789bcdefghjkmnpqrstuvwxyz';

/** Decodes a geohash to the centre of its cell as [longitude, latitude] (the console's order). */
export function decodeGeohash(hash: string): [number, number] {
  let lat: [number, number] = [-90, 90];
  let lng: [number, number] = [-180, 180];
  let even = true;
  for (const char of hash.toLowerCase()) {
    const value = BASE32.indexOf(char);
    if (value < 0) throw new RangeError(`"${hash}" is not a geohash: "${char}" is not a base-32 geohash digit`);
    for (let bit = 4; bit >= 0; bit--) {
      const on = (value >> bit) & 1;
      const range = even ? lng : lat;
      const mid = (range[0] + range[1]) / 2;
      if (on) range[0] = mid;
      else range[1] = mid;
      even = !even;
    }
  }
  return [(lng[0] + lng[1]) / 2, (lat[0] + lat[1]) / 2];
}

export function isGeohash(value: string): boolean {
  return /^[0-9bcdefghjkmnpqrstuvwxyz]+$/.test(value);
}

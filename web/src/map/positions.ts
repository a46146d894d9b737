/**
 * Where each node sits on the frame: its geohash's cell centre, projected, then nudged by a small
 * offset derived from its id. Nodes of one city share a geohash; without the nudge they would be
 * one dot. The offset is stable, so a node never jumps between frames or reloads.
 */
import { project } from '../geo/basemap.ts';
import { decodeGeohash } from '../geo/geohash.ts';

export interface Point {
  x: number;
  y: number;
}

const SPREAD = 11;

function hashOf(id: string): number {
  // FNV-1a: cheap, and spreads ids that differ in one character.
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

export class PositionCache {
  private readonly cells = new Map<string, [number, number] | null>();
  private readonly nodes = new Map<string, { geohash: string; point: Point | null }>();

  /** The node's point in frame units, or null when its geohash is not on the map. */
  of(id: string, geohash: string): Point | null {
    const cached = this.nodes.get(id);
    if (cached !== undefined && cached.geohash === geohash) return cached.point;
    let cell = this.cells.get(geohash);
    if (cell === undefined) {
      const lngLat = decodeGeohash(geohash);
      cell = lngLat === null ? null : project(lngLat);
      this.cells.set(geohash, cell);
    }
    let point: Point | null = null;
    if (cell !== null) {
      const hash = hashOf(id);
      // Sunflower-like spread: uniform over a disc of radius SPREAD.
      const radius = SPREAD * Math.sqrt((hash & 0xffff) / 0xffff);
      const angle = ((hash >>> 16) / 0xffff) * Math.PI * 2;
      point = { x: cell[0] + radius * Math.cos(angle), y: cell[1] + radius * Math.sin(angle) };
    }
    this.nodes.set(id, { geohash, point });
    return point;
  }

  /** A [lng, lat] (an inference's origin) in frame units. */
  ofLngLat(lngLat: readonly [number, number]): Point | null {
    const point = project(lngLat);
    return point === null ? null : { x: point[0], y: point[1] };
  }
}

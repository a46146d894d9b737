/**
 * Zoom as a transform of the 960×600 frame (`point * k + [x, y]`), shared by the SVG layers (as a
 * `transform` attribute) and the canvas (as its matrix), so every layer zooms the same way.
 */
import { FRAME_HEIGHT, FRAME_WIDTH } from '../geo/basemap.ts';
import type { Point } from './positions.ts';

export interface Viewport {
  k: number;
  x: number;
  y: number;
}

export const WHOLE_MAP: Viewport = { k: 1, x: 0, y: 0 };

const PADDING = 60;
const MAX_ZOOM = 6;

/** The viewport that shows every point, centred, with room around it. */
export function fitPoints(points: readonly Point[]): Viewport {
  if (points.length === 0) return WHOLE_MAP;
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (const p of points) {
    minX = Math.min(minX, p.x);
    minY = Math.min(minY, p.y);
    maxX = Math.max(maxX, p.x);
    maxY = Math.max(maxY, p.y);
  }
  const width = Math.max(maxX - minX, 40) + PADDING * 2;
  const height = Math.max(maxY - minY, 40) + PADDING * 2;
  const k = Math.min(MAX_ZOOM, FRAME_WIDTH / width, FRAME_HEIGHT / height);
  const cx = (minX + maxX) / 2;
  const cy = (minY + maxY) / 2;
  return { k, x: FRAME_WIDTH / 2 - cx * k, y: FRAME_HEIGHT / 2 - cy * k };
}

export const svgTransform = (v: Viewport): string => `translate(${v.x.toFixed(2)} ${v.y.toFixed(2)}) scale(${v.k.toFixed(4)})`;

/** How the frame maps onto an element of the given CSS size (as SVG's `xMidYMid meet` does). */
export function fitFrame(width: number, height: number): { scale: number; offsetX: number; offsetY: number } {
  const scale = Math.min(width / FRAME_WIDTH, height / FRAME_HEIGHT);
  return { scale, offsetX: (width - FRAME_WIDTH * scale) / 2, offsetY: (height - FRAME_HEIGHT * scale) / 2 };
}

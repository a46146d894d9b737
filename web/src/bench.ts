/**
 * Hooks for the console bench (bench/): how long an inference event takes to reach the screen, how
 * many frames the map drew, and when the first map with nodes was painted. Cheap enough to stay on.
 */
export interface ConsoleBench {
  /** Per inference message drawn: Date.now() in the frame after it was drawn, minus its timestamp. */
  eventToScreenMs: number[];
  framesDrawn: number;
  /** performance.now() when the first map with nodes was painted. */
  firstMapAt: number | null;
}

declare global {
  interface Window {
    __arcnetConsole?: ConsoleBench;
  }
}

const RING = 20_000;

export const bench: ConsoleBench = { eventToScreenMs: [], framesDrawn: 0, firstMapAt: null };
window.__arcnetConsole = bench;

export function recordEventToScreen(paintedAt: number, timestamps: readonly number[]): void {
  const ring = bench.eventToScreenMs;
  for (const at of timestamps) if (!Number.isNaN(at)) ring.push(paintedAt - at);
  if (ring.length > RING) ring.splice(0, ring.length - RING);
}

export function recordFrame(nodesDrawn: number): void {
  bench.framesDrawn++;
  if (bench.firstMapAt === null && nodesDrawn > 0) {
    bench.firstMapAt = performance.now();
    performance.mark('arc:first-map');
  }
}

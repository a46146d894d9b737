/**
 * The map's canvas: nodes, inference arcs, completion pulses and rejections, drawn by one
 * requestAnimationFrame loop. The DOM could not keep up with 5,000 nodes and 500 events a second;
 * a canvas does. Nodes are drawn to a cached layer at most four times a second (telemetry moves
 * slowly), arcs on every frame over it. Each inference message drawn is timed for the bench: the
 * frame after the one that drew it is when it reached the screen.
 */
import { recordEventToScreen, recordFrame } from '../bench.ts';
import type { TrafficMessage } from '../feed/store.ts';
import type { MeshNode } from '../feed/state.ts';
import type { Point, PositionCache } from './positions.ts';
import { fitFrame, WHOLE_MAP, type Viewport } from './viewport.ts';

const HEAD_MS = 600;
const ARC_MS = 1500;
const PULSE_MS = 700;
const REJECTION_MS = 3000;
const NODE_LAYER_MS = 250;
const MAX_LIVE = 3000;
const SEEN_KEPT = 4000;

interface Arc {
  kind: 'arc';
  from: Point;
  to: Point;
  control: Point;
  color: string;
  forwarded: boolean;
  bornAt: number;
}

interface Pulse {
  kind: 'pulse';
  at: Point;
  color: string;
  bornAt: number;
}

interface Rejection {
  kind: 'rejection';
  at: Point;
  bornAt: number;
}

type Mark = Arc | Pulse | Rejection;

interface Palette {
  cogen: string;
  grid: string;
  battery: string;
  offline: string;
  busy: string;
  gpu: string;
  critical: string;
  normal: string;
  background: string;
  rejected: string;
  failed: string;
}

function readPalette(): Palette {
  const style = getComputedStyle(document.documentElement);
  const v = (name: string, fallback: string) => style.getPropertyValue(name).trim() || fallback;
  return {
    cogen: v('--energy-cogen', '#3fb950'),
    grid: v('--energy-grid', '#58a6ff'),
    battery: v('--energy-battery', '#bc8cff'),
    offline: v('--status-offline', '#6e7681'),
    busy: v('--status-busy', '#f0883e'),
    gpu: v('--gpu-ring', '#e6edf3'),
    critical: v('--priority-critical', '#ff5c5c'),
    normal: v('--priority-normal', '#39c5cf'),
    background: v('--priority-background', '#8b949e'),
    rejected: v('--rejected', '#ff5c5c'),
    failed: v('--failed', '#ff5c5c'),
  };
}

/** The control point of an arc: the chord's midpoint lifted by a third of its length. */
function controlOf(from: Point, to: Point): Point {
  const mx = (from.x + to.x) / 2;
  const my = (from.y + to.y) / 2;
  const dx = to.x - from.x;
  const dy = to.y - from.y;
  const length = Math.hypot(dx, dy);
  if (length === 0) return { x: mx, y: my };
  // The perpendicular that points up the screen, so arcs bow northwards.
  let nx = -dy / length;
  let ny = dx / length;
  if (ny > 0) {
    nx = -nx;
    ny = -ny;
  }
  const lift = Math.max(8, length * 0.3);
  return { x: mx + nx * lift, y: my + ny * lift };
}

export class MapRenderer {
  private readonly canvas: HTMLCanvasElement;
  private readonly positions: PositionCache;
  private readonly nodeLayer = document.createElement('canvas');
  private readNodes: () => ReadonlyMap<string, MeshNode>;
  private viewport: Viewport = WHOLE_MAP;
  private live = true;
  private marks: Mark[] = [];
  /** Timestamps of marks added since the last frame: timed once the frame that draws them is on screen. */
  private added: number[] = [];
  private drawnLastFrame: number[] = [];
  private readonly seen = new Set<string>();
  private frame: number | null = null;
  private palette: Palette = readPalette();
  private layerNodes: ReadonlyMap<string, MeshNode> | null = null;
  private layerAt = -Infinity;
  private layerKey = '';
  private nodesDrawn = 0;

  constructor(canvas: HTMLCanvasElement, positions: PositionCache, readNodes: () => ReadonlyMap<string, MeshNode>) {
    this.canvas = canvas;
    this.positions = positions;
    this.readNodes = readNodes;
  }

  setNodeSource(readNodes: () => ReadonlyMap<string, MeshNode>): void {
    this.readNodes = readNodes;
    this.layerNodes = null;
  }

  setViewport(viewport: Viewport): void {
    this.viewport = viewport;
  }

  /** Arcs are live traffic: a map of the past shows none. */
  setLive(live: boolean): void {
    this.live = live;
    if (!live) this.marks = [];
  }

  /** Re-reads the theme's colours (after a theme switch). */
  refreshPalette(): void {
    this.palette = readPalette();
    this.layerNodes = null;
  }

  start(): void {
    if (this.frame === null) this.frame = requestAnimationFrame(this.draw);
  }

  stop(): void {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    // Marks would be timed late when the map shows again: they are dropped instead.
    this.marks = [];
    this.added = [];
    this.drawnLastFrame = [];
  }

  addTraffic(messages: readonly TrafficMessage[]): void {
    if (!this.live || this.frame === null) return;
    const nodes = this.readNodes();
    const now = performance.now();
    for (const message of messages) {
      const origin = this.positions.ofLngLat(message.source);
      if (message.type === 'rejection') {
        if (origin === null) continue;
        this.push({ kind: 'rejection', at: origin, bornAt: now }, message.timestamp);
        continue;
      }
      const target = nodes.get(message.targetNodeId);
      const to = target === undefined ? null : this.positions.of(target.id, target.geohash);
      if (to === null) continue;
      // One arc per request, when it is first seen; later statuses pulse at the node.
      if (!this.seen.has(message.requestId) && origin !== null) {
        this.remember(message.requestId);
        const color = this.palette[message.priority];
        this.push({ kind: 'arc', from: origin, to, control: controlOf(origin, to), color, forwarded: message.forwarded === true, bornAt: now }, message.timestamp);
      } else {
        this.push({ kind: 'pulse', at: to, color: message.status === 'failed' ? this.palette.failed : this.palette[message.priority], bornAt: now }, message.timestamp);
      }
    }
    if (this.marks.length > MAX_LIVE) this.marks.splice(0, this.marks.length - MAX_LIVE);
  }

  private push(mark: Mark, timestamp: string): void {
    this.marks.push(mark);
    this.added.push(Date.parse(timestamp));
  }

  private remember(requestId: string): void {
    this.seen.add(requestId);
    if (this.seen.size > SEEN_KEPT) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  private readonly draw = (): void => {
    this.frame = requestAnimationFrame(this.draw);
    // The frame that drew these is on screen now.
    if (this.drawnLastFrame.length > 0) {
      recordEventToScreen(Date.now(), this.drawnLastFrame);
      this.drawnLastFrame = [];
    }
    const { canvas } = this;
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (width === 0 || height === 0) return;
    const pixelWidth = Math.round(width * dpr);
    const pixelHeight = Math.round(height * dpr);
    if (canvas.width !== pixelWidth || canvas.height !== pixelHeight) {
      canvas.width = pixelWidth;
      canvas.height = pixelHeight;
    }
    const fit = fitFrame(width, height);
    const v = this.viewport;
    // Frame units to device pixels: zoom, then fit, then the pixel ratio.
    const a = dpr * fit.scale * v.k;
    const e = dpr * (fit.offsetX + fit.scale * v.x);
    const f = dpr * (fit.offsetY + fit.scale * v.y);
    /** One CSS pixel in frame units, at this zoom. */
    const px = 1 / (fit.scale * v.k);

    const now = performance.now();
    this.drawNodeLayer(now, pixelWidth, pixelHeight, a, e, f, px, v.k);
    const ctx = canvas.getContext('2d');
    if (ctx === null) return;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, pixelWidth, pixelHeight);
    ctx.drawImage(this.nodeLayer, 0, 0);
    ctx.setTransform(a, 0, 0, a, e, f);
    this.drawMarks(ctx, now, px);
    this.drawnLastFrame = this.added;
    this.added = [];
    recordFrame(this.nodesDrawn);
  };

  private drawNodeLayer(now: number, pixelWidth: number, pixelHeight: number, a: number, e: number, f: number, px: number, k: number): void {
    const nodes = this.readNodes();
    const key = `${pixelWidth}x${pixelHeight}:${a}:${e}:${f}`;
    const geometryChanged = key !== this.layerKey;
    const nodesChanged = nodes !== this.layerNodes;
    if (!geometryChanged && !(nodesChanged && now - this.layerAt >= NODE_LAYER_MS)) return;
    this.layerKey = key;
    this.layerNodes = nodes;
    this.layerAt = now;
    const layer = this.nodeLayer;
    if (layer.width !== pixelWidth || layer.height !== pixelHeight) {
      layer.width = pixelWidth;
      layer.height = pixelHeight;
    }
    const ctx = layer.getContext('2d');
    if (ctx === null) return;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, pixelWidth, pixelHeight);
    ctx.setTransform(a, 0, 0, a, e, f);
    const p = this.palette;
    // Dots grow a little when zoomed in, less than the map does.
    const r = (2.4 + 1.1 * Math.sqrt(k)) * px;
    const fills: Record<string, Path2D> = { cogen: new Path2D(), grid: new Path2D(), battery: new Path2D(), offline: new Path2D() };
    const gpuRings = new Path2D();
    const busyRings = new Path2D();
    const drainingRings = new Path2D();
    let drawn = 0;
    for (const node of nodes.values()) {
      const at = this.positions.of(node.id, node.geohash);
      if (at === null) continue;
      drawn++;
      const offline = node.status === 'offline';
      const fill = fills[offline ? 'offline' : node.energySource] ?? fills['grid']!;
      fill.moveTo(at.x + r, at.y);
      fill.arc(at.x, at.y, r, 0, Math.PI * 2);
      if (offline) continue;
      const util = Math.max(0, Math.min(1, node.gpuUtilization));
      if (util > 0.01) {
        const start = -Math.PI / 2;
        const ringR = r + 1.8 * px;
        gpuRings.moveTo(at.x + ringR * Math.cos(start), at.y + ringR * Math.sin(start));
        gpuRings.arc(at.x, at.y, ringR, start, start + util * Math.PI * 2);
      }
      if (node.status === 'busy' || node.status === 'draining') {
        const ring = node.status === 'busy' ? busyRings : drainingRings;
        const outer = r + 3.8 * px;
        ring.moveTo(at.x + outer, at.y);
        ring.arc(at.x, at.y, outer, 0, Math.PI * 2);
      }
    }
    ctx.globalAlpha = 0.5;
    ctx.fillStyle = p.offline;
    ctx.fill(fills['offline']!);
    ctx.globalAlpha = 0.95;
    for (const energy of ['grid', 'battery', 'cogen'] as const) {
      ctx.fillStyle = p[energy];
      ctx.fill(fills[energy]!);
    }
    ctx.globalAlpha = 0.85;
    ctx.lineWidth = 1.3 * px;
    ctx.strokeStyle = p.gpu;
    ctx.stroke(gpuRings);
    ctx.globalAlpha = 1;
    ctx.lineWidth = 1.6 * px;
    ctx.strokeStyle = p.busy;
    ctx.stroke(busyRings);
    ctx.setLineDash([2 * px, 2 * px]);
    ctx.stroke(drainingRings);
    ctx.setLineDash([]);
    this.nodesDrawn = drawn;
  }

  private drawMarks(ctx: CanvasRenderingContext2D, now: number, px: number): void {
    let keep = 0;
    ctx.lineCap = 'round';
    for (const mark of this.marks) {
      const age = now - mark.bornAt;
      const life = mark.kind === 'arc' ? ARC_MS : mark.kind === 'pulse' ? PULSE_MS : REJECTION_MS;
      if (age > life) continue;
      this.marks[keep++] = mark;
      if (mark.kind === 'arc') this.drawArc(ctx, mark, age, px);
      else if (mark.kind === 'pulse') {
        ctx.globalAlpha = 1 - age / PULSE_MS;
        ctx.strokeStyle = mark.color;
        ctx.lineWidth = 1.5 * px;
        ctx.beginPath();
        ctx.arc(mark.at.x, mark.at.y, (4 + (age / PULSE_MS) * 8) * px, 0, Math.PI * 2);
        ctx.stroke();
      } else {
        const size = 5 * px;
        ctx.globalAlpha = 1 - age / REJECTION_MS;
        ctx.strokeStyle = this.palette.rejected;
        ctx.lineWidth = 2.2 * px;
        ctx.beginPath();
        ctx.moveTo(mark.at.x - size, mark.at.y - size);
        ctx.lineTo(mark.at.x + size, mark.at.y + size);
        ctx.moveTo(mark.at.x + size, mark.at.y - size);
        ctx.lineTo(mark.at.x - size, mark.at.y + size);
        ctx.stroke();
      }
    }
    this.marks.length = keep;
    ctx.globalAlpha = 1;
    ctx.setLineDash([]);
  }

  private drawArc(ctx: CanvasRenderingContext2D, arc: Arc, age: number, px: number): void {
    // The head travels for HEAD_MS, then the whole arc fades out.
    const t = Math.min(1, age / HEAD_MS);
    ctx.globalAlpha = age < HEAD_MS ? 0.9 : 0.9 * (1 - (age - HEAD_MS) / (ARC_MS - HEAD_MS));
    ctx.strokeStyle = arc.color;
    ctx.lineWidth = (arc.forwarded ? 2.4 : 1.4) * px;
    if (arc.forwarded) ctx.setLineDash([5 * px, 3 * px]);
    // The part of the quadratic curve from 0 to t (de Casteljau).
    const c1x = arc.from.x + (arc.control.x - arc.from.x) * t;
    const c1y = arc.from.y + (arc.control.y - arc.from.y) * t;
    const mx = arc.control.x + (arc.to.x - arc.control.x) * t;
    const my = arc.control.y + (arc.to.y - arc.control.y) * t;
    const hx = c1x + (mx - c1x) * t;
    const hy = c1y + (my - c1y) * t;
    ctx.beginPath();
    ctx.moveTo(arc.from.x, arc.from.y);
    ctx.quadraticCurveTo(c1x, c1y, hx, hy);
    ctx.stroke();
    if (arc.forwarded) ctx.setLineDash([]);
    if (t < 1) {
      ctx.fillStyle = arc.color;
      ctx.beginPath();
      ctx.arc(hx, hy, 2.2 * px, 0, Math.PI * 2);
      ctx.fill();
    }
  }
}

/** The same curve as the canvas draws, as SVG path data (for the DOM's arc elements). */
export function arcPathData(from: Point, to: Point): string {
  const c = controlOf(from, to);
  return `M${from.x.toFixed(1)},${from.y.toFixed(1)}Q${c.x.toFixed(1)},${c.y.toFixed(1)} ${to.x.toFixed(1)},${to.y.toFixed(1)}`;
}

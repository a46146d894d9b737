/**
 * The DOM side of the traffic: `[data-testid="arc"]` paths for the last 200 requests and
 * `[data-testid="rejection"]` marks for the last 50 rejections, so a test or a screen reader can
 * find a request on the map. The canvas draws every arc; these carry the attributes. Elements are
 * added as requests arrive and the oldest removed: nothing is touched per frame.
 */
import type { TrafficMessage } from '../feed/store.ts';
import type { MeshNode } from '../feed/state.ts';
import { arcPathData } from './renderer.ts';
import type { PositionCache } from './positions.ts';

const SVG = 'http://www.w3.org/2000/svg';
const ARCS_KEPT = 200;
const REJECTIONS_KEPT = 50;

export class ArcLayer {
  private readonly arcs: SVGGElement;
  private readonly rejections: SVGGElement;
  private readonly positions: PositionCache;
  private readonly arcById = new Map<string, SVGPathElement>();
  private readonly rejectionById = new Map<string, SVGGElement>();

  constructor(arcs: SVGGElement, rejections: SVGGElement, positions: PositionCache) {
    this.arcs = arcs;
    this.rejections = rejections;
    this.positions = positions;
  }

  add(messages: readonly TrafficMessage[], nodes: ReadonlyMap<string, MeshNode>): void {
    for (const message of messages) {
      if (message.type === 'rejection') this.addRejection(message.requestId, message.source, message.reason);
      else {
        const known = this.arcById.get(message.requestId);
        if (known !== undefined) {
          known.setAttribute('data-status', message.status);
          continue;
        }
        const target = nodes.get(message.targetNodeId);
        const from = this.positions.ofLngLat(message.source);
        const to = target === undefined ? null : this.positions.of(target.id, target.geohash);
        const path = document.createElementNS(SVG, 'path');
        path.setAttribute('data-testid', 'arc');
        path.setAttribute('data-request-id', message.requestId);
        path.setAttribute('data-priority', message.priority);
        path.setAttribute('data-forwarded', String(message.forwarded === true));
        path.setAttribute('data-status', message.status);
        path.setAttribute('data-target-node-id', message.targetNodeId);
        path.setAttribute('class', 'arc');
        if (from !== null && to !== null) path.setAttribute('d', arcPathData(from, to));
        this.arcs.append(path);
        this.arcById.set(message.requestId, path);
      }
    }
    trim(this.arcById, ARCS_KEPT);
    trim(this.rejectionById, REJECTIONS_KEPT);
  }

  private addRejection(requestId: string, source: readonly [number, number], reason: string): void {
    if (this.rejectionById.has(requestId)) return;
    const at = this.positions.ofLngLat(source);
    const mark = document.createElementNS(SVG, 'g');
    mark.setAttribute('data-testid', 'rejection');
    mark.setAttribute('data-request-id', requestId);
    mark.setAttribute('class', 'rejection');
    if (at !== null) mark.setAttribute('transform', `translate(${at.x.toFixed(1)} ${at.y.toFixed(1)})`);
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `rejected: ${reason}`;
    const hit = document.createElementNS(SVG, 'circle');
    hit.setAttribute('r', '6');
    mark.append(title, hit);
    this.rejections.append(mark);
    this.rejectionById.set(requestId, mark);
  }

  clear(): void {
    this.arcs.replaceChildren();
    this.rejections.replaceChildren();
    this.arcById.clear();
    this.rejectionById.clear();
  }
}

/** Removes the oldest elements (insertion order) beyond `keep`. */
function trim(elements: Map<string, Element>, keep: number): void {
  for (const [id, element] of elements) {
    if (elements.size <= keep) break;
    element.remove();
    elements.delete(id);
  }
}

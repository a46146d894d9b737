/**
 * One SVG circle per node, kept in step with the node map without React: the canvas paints the
 * nodes, these invisible circles carry the DOM contract (`[data-testid="node-marker"]` with id,
 * status, energy and zone), the name for assistive tech and hover, and the click target. An
 * attribute is written only when its value changes, so 5,000 markers cost nothing per frame.
 */
import type { MeshNode } from '../feed/state.ts';
import type { PositionCache } from './positions.ts';

const SVG = 'http://www.w3.org/2000/svg';

interface Marker {
  element: SVGCircleElement;
  node: MeshNode;
  values: Record<string, string>;
}

export class MarkerLayer {
  private readonly group: SVGGElement;
  private readonly positions: PositionCache;
  private readonly markers = new Map<string, Marker>();

  constructor(group: SVGGElement, positions: PositionCache) {
    this.group = group;
    this.positions = positions;
  }

  update(nodes: ReadonlyMap<string, MeshNode>): void {
    for (const [id, marker] of this.markers) {
      if (!nodes.has(id)) {
        marker.element.remove();
        this.markers.delete(id);
      }
    }
    let fresh: DocumentFragment | null = null;
    for (const node of nodes.values()) {
      let marker = this.markers.get(node.id);
      if (marker === undefined) {
        const element = document.createElementNS(SVG, 'circle');
        element.setAttribute('data-testid', 'node-marker');
        element.setAttribute('data-node-id', node.id);
        element.setAttribute('r', '5');
        element.setAttribute('class', 'node-marker');
        marker = { element, node, values: {} };
        this.markers.set(node.id, marker);
        this.write(marker, node);
        (fresh ??= document.createDocumentFragment()).append(element);
      } else if (marker.node !== node) {
        this.write(marker, node);
      }
    }
    if (fresh !== null) this.group.append(fresh);
  }

  private write(marker: Marker, node: MeshNode): void {
    marker.node = node;
    const at = this.positions.of(node.id, node.geohash);
    const name = node.name || node.id;
    this.set(marker, 'cx', at === null ? '-50' : at.x.toFixed(1));
    this.set(marker, 'cy', at === null ? '-50' : at.y.toFixed(1));
    this.set(marker, 'data-status', node.status);
    this.set(marker, 'data-energy', node.energySource);
    this.set(marker, 'data-geozone', node.geozone);
    // No GPU figure here: it changes with every report, and the label should change only with the node's state.
    this.set(marker, 'aria-label', `${name}, ${node.status}, ${node.energySource}`);
  }

  private set(marker: Marker, name: string, value: string): void {
    if (marker.values[name] === value) return;
    marker.values[name] = value;
    marker.element.setAttribute(name, value);
  }

  clear(): void {
    this.group.replaceChildren();
    this.markers.clear();
  }
}

/**
 * The mesh map: the basemap (SVG), the canvas that paints nodes and traffic, and the SVG overlay
 * that carries the DOM contract (markers, arcs, rejections). React renders the frame once; the
 * layers inside are driven imperatively (MarkerLayer, ArcLayer, MapRenderer), because re-rendering
 * thousands of elements four times a second is what would make the map stutter.
 */
import { useEffect, useRef, useState, type MouseEvent } from 'react';
import { useFeedStore } from '../feed/context.ts';
import type { HpcMessage, MeshNode } from '../feed/state.ts';
import { basemap, FRAME_HEIGHT, FRAME_WIDTH } from '../geo/basemap.ts';
import { navigate, nodeHref } from '../shell/route.ts';
import { ArcLayer } from './ArcLayer.ts';
import { HpcLayer } from './HpcLayer.tsx';
import { MarkerLayer } from './MarkerLayer.ts';
import type { Point, PositionCache } from './positions.ts';
import { MapRenderer } from './renderer.ts';
import { svgTransform, type Viewport } from './viewport.ts';

export interface ZoneLabel {
  geozone: string;
  x: number;
  y: number;
}

interface MeshMapProps {
  nodes: ReadonlyMap<string, MeshNode>;
  positions: PositionCache;
  /** Live: nodes and traffic from the feed. Otherwise `nodes` is the mesh at a past moment. */
  live: boolean;
  /** False while another view shows: the frame loop stops. */
  active: boolean;
  viewport: Viewport;
  zoneLabels: readonly ZoneLabel[];
  asOf: string | null;
  knownAt: string | null;
  /** The feed's HPC jobs: their transfers are drawn to the HPC marker (live only). */
  hpc: ReadonlyMap<string, HpcMessage>;
  zoneCentre: (geozone: string) => Point | null;
}

interface Hover {
  label: string;
  x: number;
  y: number;
}

export function MeshMap({ nodes, positions, live, active, viewport, zoneLabels, asOf, knownAt, hpc, zoneCentre }: MeshMapProps) {
  const store = useFeedStore();
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const markersRef = useRef<SVGGElement>(null);
  const arcsRef = useRef<SVGGElement>(null);
  const rejectionsRef = useRef<SVGGElement>(null);
  const layers = useRef<{ renderer: MapRenderer; markers: MarkerLayer; arcs: ArcLayer } | null>(null);
  const liveRef = useRef(live);
  const nodesRef = useRef(nodes);
  nodesRef.current = nodes;
  const [hover, setHover] = useState<Hover | null>(null);

  useEffect(() => {
    const renderer = new MapRenderer(canvasRef.current!, positions, () => store.currentNodes());
    const markers = new MarkerLayer(markersRef.current!, positions);
    const arcs = new ArcLayer(arcsRef.current!, rejectionsRef.current!, positions);
    layers.current = { renderer, markers, arcs };
    const unsubscribe = store.onTraffic((messages) => {
      if (!liveRef.current) return;
      renderer.addTraffic(messages);
      arcs.add(messages, store.currentNodes());
    });
    // A theme switch changes the CSS variables the canvas paints with.
    const themeWatch = new MutationObserver(() => renderer.refreshPalette());
    themeWatch.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
    return () => {
      unsubscribe();
      themeWatch.disconnect();
      renderer.stop();
      markers.clear();
      arcs.clear();
      layers.current = null;
    };
  }, [store, positions]);

  useEffect(() => {
    const current = layers.current;
    if (current === null) return;
    liveRef.current = live;
    current.renderer.setLive(live);
    // Live, the canvas reads the store's latest nodes each frame; in the past, the fetched ones.
    current.renderer.setNodeSource(live ? () => store.currentNodes() : () => nodesRef.current);
    if (live) current.renderer.setLive(true);
    else current.arcs.clear();
  }, [live, store]);

  useEffect(() => {
    layers.current?.markers.update(nodes);
  }, [nodes]);

  useEffect(() => {
    layers.current?.renderer.setViewport(viewport);
  }, [viewport]);

  useEffect(() => {
    const renderer = layers.current?.renderer;
    if (!renderer) return;
    if (active) renderer.start();
    else renderer.stop();
  }, [active]);

  const onClick = (event: MouseEvent<SVGSVGElement>) => {
    const marker = (event.target as Element).closest('[data-node-id]');
    const id = marker?.getAttribute('data-node-id');
    if (id) navigate(nodeHref(id));
  };
  const onMove = (event: MouseEvent<SVGSVGElement>) => {
    const marker = (event.target as Element).closest('[data-testid="node-marker"]');
    const label = marker?.getAttribute('aria-label');
    if (!label) {
      if (hover !== null) setHover(null);
      return;
    }
    const box = event.currentTarget.getBoundingClientRect();
    setHover({ label, x: event.clientX - box.left, y: event.clientY - box.top });
  };

  const transform = svgTransform(viewport);
  const viewBox = `0 0 ${FRAME_WIDTH} ${FRAME_HEIGHT}`;
  return (
    <div className="map-stage">
      <svg className="basemap" viewBox={viewBox} preserveAspectRatio="xMidYMid meet" aria-hidden="true">
        <g transform={transform}>
          <path className="land" d={basemap.land} />
          <path className="borders" d={basemap.borders} style={{ strokeWidth: 0.6 / viewport.k }} />
        </g>
      </svg>
      <canvas ref={canvasRef} className="map-canvas" aria-hidden="true" />
      <svg
        className="mesh-overlay"
        data-testid="mesh-map"
        data-node-count={nodes.size}
        data-live={String(live)}
        {...(asOf !== null ? { 'data-as-of': asOf } : {})}
        {...(knownAt !== null ? { 'data-known-at': knownAt } : {})}
        viewBox={viewBox}
        preserveAspectRatio="xMidYMid meet"
        role="img"
        aria-label={`Mesh map: ${nodes.size} nodes${live ? ', live' : asOf ? `, as of ${asOf}` : knownAt ? `, as known at ${knownAt}` : ''}`}
        onClick={onClick}
        onMouseMove={onMove}
        onMouseLeave={() => setHover(null)}
      >
        <g transform={transform}>
          <g className="zone-labels">
            {zoneLabels.map((zone) => (
              <text key={zone.geozone} x={zone.x} y={zone.y} style={{ fontSize: 13 / viewport.k }}>{zone.geozone}</text>
            ))}
          </g>
          {live && <HpcLayer jobs={hpc} nodes={nodes} positions={positions} zoneCentre={zoneCentre} k={viewport.k} />}
          <g ref={arcsRef} className="arcs" />
          <g ref={rejectionsRef} className="rejections" style={{ ['--k' as string]: viewport.k }} />
          <g ref={markersRef} className="markers" style={{ ['--k' as string]: viewport.k }} />
        </g>
      </svg>
      {hover && (
        <div className="map-hover" style={{ left: hover.x + 12, top: hover.y + 12 }}>{hover.label}</div>
      )}
    </div>
  );
}

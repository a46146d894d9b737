/**
 * The map view: toolbar (zoom, time travel, table toggle), the map, the request log beside it, and
 * the node table under it. Live it shows the feed's nodes; in time travel, the fetched past mesh.
 */
import { useCallback, useMemo, useState } from 'react';
import { useFeed } from '../feed/context.ts';
import type { MeshNode } from '../feed/state.ts';
import { useApiKey } from '../shell/api-key.ts';
import { useNow } from '../lib/useNow.ts';
import { usePastMesh, type TimeMode } from './history.ts';
import { InferenceLog } from './InferenceLog.tsx';
import { Legend } from './Legend.tsx';
import { MeshMap, type ZoneLabel } from './MeshMap.tsx';
import { NodeTable } from './NodeTable.tsx';
import { PositionCache, type Point } from './positions.ts';
import { TimeTravel } from './TimeTravel.tsx';
import { fitPoints, WHOLE_MAP } from './viewport.ts';
import { ZoomBar } from './ZoomBar.tsx';

const HOUR_MS = 3_600_000;

/** Each zone's nodes' points: for zoom bounds and the zone's label. */
function zonePoints(nodes: ReadonlyMap<string, MeshNode>, positions: PositionCache): Map<string, Point[]> {
  const byZone = new Map<string, Point[]>();
  for (const node of nodes.values()) {
    if (!node.geozone) continue;
    const at = positions.of(node.id, node.geohash);
    if (at === null) continue;
    let list = byZone.get(node.geozone);
    if (list === undefined) byZone.set(node.geozone, (list = []));
    list.push(at);
  }
  return byZone;
}

function centreOf(points: readonly Point[]): Point {
  let x = 0;
  let y = 0;
  for (const p of points) {
    x += p.x;
    y += p.y;
  }
  return { x: x / points.length, y: y / points.length };
}

function labelsOf(byZone: Map<string, Point[]>): ZoneLabel[] {
  return [...byZone].map(([geozone, points]) => {
    let minY = Infinity;
    let sumX = 0;
    for (const p of points) {
      sumX += p.x;
      minY = Math.min(minY, p.y);
    }
    return { geozone, x: sumX / points.length, y: minY - 16 };
  });
}

export function MapView({ active }: { active: boolean }) {
  const key = useApiKey();
  const { state } = useFeed();
  const [positions] = useState(() => new PositionCache());
  const [zoom, setZoom] = useState('all');
  const [tableVisible, setTableVisible] = useState(false);
  const [mode, setMode] = useState<TimeMode>('live');
  // The slider spans the hour before the moment time travel started, so it does not drift while dragged.
  const now = useNow(30_000, mode === 'live');
  const [anchor, setAnchor] = useState(now);
  const [at, setAt] = useState(now);
  const past = usePastMesh(key, mode, at);

  const showingPast = mode !== 'live' && past.nodes !== null;
  const nodes = showingPast ? past.nodes! : state.nodes;
  const byZone = useMemo(() => zonePoints(nodes, positions), [nodes, positions]);
  const zones = useMemo(() => [...byZone.keys()].sort(), [byZone]);
  const labels = useMemo(() => labelsOf(byZone), [byZone]);
  const centres = useMemo(() => new Map([...byZone].map(([zone, points]) => [zone, centreOf(points)])), [byZone]);
  const zoneCentre = useCallback((geozone: string) => centres.get(geozone) ?? null, [centres]);
  const viewport = useMemo(() => (zoom === 'all' ? WHOLE_MAP : fitPoints(byZone.get(zoom) ?? [])), [zoom, byZone]);

  const changeMode = (next: TimeMode) => {
    if (mode === 'live' && next !== 'live') {
      const start = Date.now();
      setAnchor(start);
      // A minute back: recent enough to exist on a server that just started, far enough to differ.
      setAt(start - 60_000);
    }
    setMode(next);
  };

  const nodeName = (id: string) => state.nodes.get(id)?.name || id.slice(0, 8);
  return (
    <section className="map-view" hidden={!active} aria-label="Mesh map">
      <div className="toolbar">
        <ZoomBar zones={zones} current={zoom} onZoom={setZoom} />
        <TimeTravel
          mode={mode}
          at={at}
          min={anchor - HOUR_MS}
          max={anchor}
          loading={past.loading}
          error={past.error}
          onMode={changeMode}
          onAt={setAt}
        />
        <button type="button" data-testid="table-toggle" aria-expanded={tableVisible} aria-controls="node-table" onClick={() => setTableVisible((v) => !v)}>
          {tableVisible ? 'Hide table' : 'Show table'}
        </button>
      </div>
      <div className="map-body">
        <div className="map-column">
          <MeshMap
            nodes={nodes}
            positions={positions}
            live={!showingPast}
            active={active}
            viewport={viewport}
            zoneLabels={labels}
            asOf={showingPast && mode === 'asOf' ? past.at : null}
            knownAt={showingPast && mode === 'knownAt' ? past.at : null}
            hpc={state.hpc}
            zoneCentre={zoneCentre}
          />
          <Legend />
        </div>
        <InferenceLog entries={state.inference} nodeName={nodeName} />
      </div>
      <NodeTable nodes={nodes} visible={tableVisible} />
    </section>
  );
}

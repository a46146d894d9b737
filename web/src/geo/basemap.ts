/**
 * The basemap: US states from us-atlas (TopoJSON, bundled, so the map works offline) in an
 * Albers USA projection fitted to a fixed 960×600 frame. Every layer (SVG and canvas) draws in
 * these frame units; the view scales the frame to the screen.
 */
import { geoAlbersUsa, geoPath, type GeoProjection } from 'd3-geo';
import { feature, mesh } from 'topojson-client';
import type { GeometryCollection, Topology } from 'topojson-specification';
import statesTopology from 'us-atlas/states-10m.json';

export const FRAME_WIDTH = 960;
export const FRAME_HEIGHT = 600;

const topology = statesTopology as unknown as Topology<{ states: GeometryCollection<{ name: string }>; nation: GeometryCollection }>;
const states = feature(topology, topology.objects.states);

const projection: GeoProjection = geoAlbersUsa().fitExtent([[10, 10], [FRAME_WIDTH - 10, FRAME_HEIGHT - 10]], states);
const path = geoPath(projection);

/** SVG path data of the states' fill and of their shared borders, computed once. */
export const basemap = {
  land: path(states) ?? '',
  borders: path(mesh(topology, topology.objects.states, (a, b) => a !== b)) ?? '',
};

/** A [lng, lat] in frame units, or null outside the projection (Albers USA covers the US only). */
export function project(lngLat: readonly [number, number]): [number, number] | null {
  const point = projection([lngLat[0], lngLat[1]]);
  return point === null ? null : [point[0], point[1]];
}

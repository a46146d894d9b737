/**
 * HPC transfers on the map (seed 001's "HPC transfers"): the HPC centre as a fixed marker off the
 * east coast, and for each HPC job still moving its dataset (pending or transferring, from the
 * feed's `hpc` messages) a line from where the data comes from to it, drawn solid as far as the
 * transfer has got. The source is the job's source node where the map knows it, else the centre of
 * the requester's zone. At most a few hundred jobs: plain React SVG, re-rendered with the feed.
 */
import type { HpcMessage, MeshNode } from '../feed/state.ts';
import type { Point, PositionCache } from './positions.ts';

/** Off the Outer Banks, in frame units: the frame's east edge is at 960. */
export const HPC_AT: Point = { x: 918, y: 318 };
export const HPC_LABEL = 'HPC (ORNL)';
const MOVING: ReadonlySet<string> = new Set(['pending', 'transferring']);

interface HpcLayerProps {
  jobs: ReadonlyMap<string, HpcMessage>;
  nodes: ReadonlyMap<string, MeshNode>;
  positions: PositionCache;
  zoneCentre: (geozone: string) => Point | null;
  /** The viewport's zoom: labels keep their size on screen. */
  k: number;
}

function sourceOf(job: HpcMessage, nodes: ReadonlyMap<string, MeshNode>, positions: PositionCache, zoneCentre: (geozone: string) => Point | null): Point | null {
  const node = job.sourceNodeId === '' ? undefined : nodes.get(job.sourceNodeId);
  const at = node === undefined ? null : positions.of(node.id, node.geohash);
  if (at !== null) return at;
  return job.geozone === undefined ? null : zoneCentre(job.geozone);
}

export function HpcLayer({ jobs, nodes, positions, zoneCentre, k }: HpcLayerProps) {
  const moving: HpcMessage[] = [];
  let atHpc = 0;
  for (const job of jobs.values()) {
    if (MOVING.has(job.status)) moving.push(job);
    else if (job.status === 'queued' || job.status === 'running') atHpc++;
  }
  const s = 1 / k;
  return (
    <g className="hpc-layer">
      {moving.map((job) => {
        const from = sourceOf(job, nodes, positions, zoneCentre);
        const progress = Math.max(0, Math.min(1, job.progress));
        const head = from === null ? null : { x: from.x + (HPC_AT.x - from.x) * progress, y: from.y + (HPC_AT.y - from.y) * progress };
        return (
          <g key={job.jobId} className="hpc-transfer" data-testid="hpc-transfer" data-job-id={job.jobId} data-progress={progress.toFixed(4)} data-status={job.status} data-placed={String(from !== null)}>
            <title>{`HPC job ${job.jobId.slice(0, 8)}: ${job.status}, ${Math.round(progress * 100)} % of ${job.datasetSizeGb} GB${from === null ? ' (source not on the map)' : ''}`}</title>
            {from !== null && head !== null && (
              <>
                <line className="hpc-line" x1={from.x} y1={from.y} x2={HPC_AT.x} y2={HPC_AT.y} vectorEffect="non-scaling-stroke" />
                <line className="hpc-done" x1={from.x} y1={from.y} x2={head.x} y2={head.y} vectorEffect="non-scaling-stroke" />
                <circle className="hpc-head" cx={head.x} cy={head.y} r={3 * s} />
              </>
            )}
          </g>
        );
      })}
      <g className="hpc-marker" data-testid="hpc-marker" transform={`translate(${HPC_AT.x} ${HPC_AT.y}) scale(${s})`} aria-label={`${HPC_LABEL}: ${moving.length} transfers, ${atHpc} at the HPC centre`}>
        <rect x={-7} y={-7} width={14} height={14} rx={2} />
        {/* Right-aligned to the marker: the frame ends a few units east of it. */}
        <text x={8} y={22}>{HPC_LABEL}</text>
        {(moving.length > 0 || atHpc > 0) && <text className="hpc-counts" x={8} y={35}>{`${moving.length} moving · ${atHpc} queued/running`}</text>}
      </g>
    </g>
  );
}

/**
 * Every node as a table row: the accessible view of the map (and the keyboard's way to a node).
 * Always in the DOM, shown on demand (the toggle). Rows are memoised on the node object, so a telemetry update
 * re-renders one row, not five thousand.
 */
import { memo, useMemo } from 'react';
import type { MeshNode } from '../feed/state.ts';
import { percent } from '../lib/format.ts';
import { nodeHref } from '../shell/route.ts';

interface NodeTableProps {
  nodes: ReadonlyMap<string, MeshNode>;
  visible: boolean;
}

const Row = memo(function Row({ node }: { node: MeshNode }) {
  return (
    <tr data-node-id={node.id} data-status={node.status}>
      <td><a href={nodeHref(node.id)}>{node.name || node.id}</a></td>
      <td>{node.geozone}</td>
      <td><span className={`badge status-${node.status}`}>{node.status}</span></td>
      <td><span className={`badge energy-${node.energySource}`}>{node.energySource}</span></td>
      <td className="num">{percent(node.gpuUtilization)}</td>
      <td className="num">{percent(node.batteryLevel)}</td>
      <td>{node.modelsLoaded.join(', ')}</td>
    </tr>
  );
});

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Zone, then name: the order an operator scans in. Code-point order, not localeCompare: sorting 5,000 rows four times a second must stay cheap. */
function byZoneAndName(a: MeshNode, b: MeshNode): number {
  return compare(a.geozone, b.geozone) || compare(a.name || a.id, b.name || b.id);
}

export function NodeTable({ nodes, visible }: NodeTableProps) {
  const sorted = useMemo(() => [...nodes.values()].sort(byZoneAndName), [nodes]);
  return (
    // Hidden, the table is `display: none`: its rows stay in the DOM (and current) but cost no layout,
    // which for thousands of rows changing four times a second is most of the page's work.
    <div className="node-table-wrap" id="node-table" hidden={!visible}>
      <table data-testid="node-table" className="data">
        <caption>{nodes.size} nodes</caption>
        <thead>
          <tr><th>Name</th><th>Zone</th><th>Status</th><th>Energy</th><th>GPU</th><th>Battery</th><th>Models</th></tr>
        </thead>
        <tbody>
          {sorted.map((node) => <Row key={node.id} node={node} />)}
        </tbody>
      </table>
    </div>
  );
}

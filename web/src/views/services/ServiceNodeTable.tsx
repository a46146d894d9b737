/**
 * The nodes running services: those holding at least one slice key (GET /api/v1/cluster/nodes), with
 * their status, tags, capacity, CPU load and instances per state. Keys on nodes the mesh no longer
 * knows are listed too, as their instances still count until the leader forgets them.
 */
import type { ClusterNodes } from '../../api/services.ts';
import { integer, percent } from '../../lib/format.ts';
import { nodeHref } from '../../shell/route.ts';
import { stateSummary } from './lifecycle.ts';

export function ServiceNodeTable({ nodes }: { nodes: ClusterNodes }) {
  const holding = nodes.nodes.filter((n) => n.slices > 0);
  if (holding.length === 0 && nodes.unknown.length === 0) {
    return <p className="muted" data-testid="no-service-nodes">No node holds a slice yet ({integer(nodes.count)} mesh nodes known; only nodes whose agent runs with <code>--services</code> are placed on).</p>;
  }
  return (
    <table className="data compact" data-testid="service-nodes" aria-label="nodes running services">
      <caption>{integer(holding.length)} of {integer(nodes.count)} mesh nodes hold slices</caption>
      <thead>
        <tr><th>Node</th><th>Status</th><th>Zone</th><th>Tags</th><th className="num">Cores / memory</th><th className="num">CPU load</th><th className="num">Slices</th><th>States</th></tr>
      </thead>
      <tbody>
        {holding.map((node) => (
          <tr key={node.id} data-testid="service-node" data-node-id={node.id} data-status={node.status} data-slices={node.slices}>
            <td><a href={nodeHref(node.id)} title={node.id}>{node.name}</a></td>
            <td><span className={`badge status-${node.status}`}>{node.status}</span></td>
            <td>{node.geozone}</td>
            <td>{node.tags.length > 0 ? <ul className="chips">{node.tags.map((tag) => <li key={tag}>{tag}</li>)}</ul> : <span className="muted">none</span>}</td>
            <td className="num">{integer(node.capacity.cpuCores)} / {integer(node.capacity.memoryGb)} GB</td>
            <td className="num">{percent(node.cpuLoad)}</td>
            <td className="num">{integer(node.slices)}</td>
            <td>{stateSummary(node.states)}</td>
          </tr>
        ))}
        {nodes.unknown.map((node) => (
          <tr key={node.id} data-testid="service-node" data-node-id={node.id} data-status="unknown" data-slices={node.slices}>
            <td><code>{node.id}</code></td>
            <td><span className="badge status-offline">not in the mesh</span></td>
            <td colSpan={4} className="muted">gone, or known to another server's view</td>
            <td className="num">{integer(node.slices)}</td>
            <td>{stateSummary(node.states)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

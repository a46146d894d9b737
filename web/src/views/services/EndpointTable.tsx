/**
 * Where the services answer: every entry point an ACTIVE instance published (its node's address for
 * it), next to the router path the server forwards there, `/{service}/…` (onto the entry point's own
 * path inside the service when that is not `/`). Requests through the router pick among these.
 */
import type { SliceAnswer, SliceEndpoint, SliceStatus } from '../../api/services.ts';
import { nodeHref } from '../../shell/route.ts';

export interface EndpointRow {
  readonly artifact: string;
  readonly service: string;
  readonly endpoint: SliceEndpoint;
}

/** The endpoints of every slice shown, by service, then instance, then entry point. */
export function endpointRows(slices: readonly SliceStatus[], details: ReadonlyMap<string, SliceAnswer>): EndpointRow[] {
  const services = new Map(slices.map((s) => [s.artifact, s.service]));
  const rows = [...services].flatMap(([artifact, service]) => (details.get(artifact)?.endpoints ?? []).map((endpoint) => ({ artifact, service, endpoint })));
  return rows.sort((a, b) => a.service.localeCompare(b.service) || a.endpoint.instance - b.endpoint.instance || a.endpoint.entryPoint.localeCompare(b.endpoint.entryPoint));
}

export function EndpointTable({ rows, nodeNames }: { rows: readonly EndpointRow[]; nodeNames: ReadonlyMap<string, string> }) {
  if (rows.length === 0) return <p className="muted" data-testid="no-endpoints">No ACTIVE instance has published an endpoint yet.</p>;
  return (
    <table className="data compact" data-testid="endpoints" aria-label="endpoints">
      <thead>
        <tr><th>Router path</th><th>Slice</th><th>Entry point</th><th>Address</th><th>Node</th><th className="num">Instance</th></tr>
      </thead>
      <tbody>
        {rows.map(({ artifact, service, endpoint }) => (
          <tr
            key={`${artifact}/${endpoint.entryPoint}:${endpoint.instance}`}
            data-testid="endpoint"
            data-artifact={artifact}
            data-route={`/${service}/`}
            data-entry-point={endpoint.entryPoint}
            data-node-id={endpoint.nodeId}
            data-instance={endpoint.instance}
            data-address={endpoint.address}
          >
            <td><code>/{service}/…</code>{endpoint.path !== '/' && <span className="muted"> → <code>{endpoint.path}…</code></span>}</td>
            <td>{artifact}</td>
            <td>{endpoint.entryPoint}</td>
            <td><code>{endpoint.address}</code></td>
            <td><a href={nodeHref(endpoint.nodeId)} title={endpoint.nodeId}>{nodeNames.get(endpoint.nodeId) ?? endpoint.nodeId}</a></td>
            <td className="num">{endpoint.instance}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

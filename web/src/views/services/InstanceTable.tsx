/**
 * A slice's instances, one row per node: the instance number, its lifecycle state since when, the
 * address it listens on once spawned, restarts, and why it is in that state (the leader's placement
 * reason, a failure's). The node links to its detail on the map.
 */
import type { ServiceInstance } from '../../api/services.ts';
import { clock, integer } from '../../lib/format.ts';
import { nodeHref } from '../../shell/route.ts';
import { StateBadge } from './StateBadge.tsx';

const since = (ms: number): string => clock(new Date(ms).toISOString());

export function InstanceTable({ instances, label }: { instances: readonly ServiceInstance[]; label: string }) {
  return (
    <table className="data compact service-instances" aria-label={label}>
      <thead>
        <tr><th>Node</th><th className="num">#</th><th>State</th><th>Since</th><th>Address</th><th className="num">Restarts</th><th>Reason</th></tr>
      </thead>
      <tbody>
        {instances.map((row) => (
          <tr key={`${row.node}/${row.instance}`} data-testid="service-instance" data-node-id={row.node} data-instance={row.instance} data-state={row.state} data-address={row.address ?? ''}>
            <td><a href={nodeHref(row.node)} title={row.node}>{row.nodeName ?? row.node}</a></td>
            <td className="num">{row.instance}</td>
            <td><StateBadge state={row.state} /></td>
            <td className="muted">{since(row.timestamp)}</td>
            <td>{row.address ? <code>{row.address}</code> : <span className="muted">–</span>}</td>
            <td className="num">{integer(row.restarts ?? 0)}</td>
            <td className={row.state === 'FAILED' ? 'error-text instance-reason' : 'muted instance-reason'} data-testid="instance-reason">{row.reason ?? ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

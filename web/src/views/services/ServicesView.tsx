/**
 * Services (seeds 002 and 003): the deployed blueprints and their slices, each slice's instances per
 * node with their lifecycle state and reason, what the leader could not place and why, the endpoints
 * ACTIVE instances answer on behind the router's `/{service}/…`, and the nodes running them. Polled
 * every second while the view is open and the tab visible (useServices); the last good answer stays
 * on screen through a failed poll, under the error.
 */
import type { ServiceInstance, UnownedInstance } from '../../api/services.ts';
import { BlueprintCard } from './BlueprintCard.tsx';
import { EndpointTable, endpointRows } from './EndpointTable.tsx';
import { InstanceTable } from './InstanceTable.tsx';
import { ServiceNodeTable } from './ServiceNodeTable.tsx';
import { useServices } from './useServices.ts';

function byArtifact(rows: readonly UnownedInstance[]): Map<string, ServiceInstance[]> {
  const out = new Map<string, ServiceInstance[]>();
  for (const row of rows) out.set(row.artifact, [...(out.get(row.artifact) ?? []), row]);
  return out;
}

export function ServicesView() {
  const poll = useServices();
  const data = poll.data;
  const status = data?.status;
  const slices = status?.blueprints.flatMap((b) => b.slices) ?? [];
  const nodeNames = new Map((data?.nodes.nodes ?? []).map((n) => [n.id, n.name]));

  return (
    <section className="page services-page" aria-labelledby="services-title" data-testid="services" data-state={data === null ? 'loading' : 'ready'}>
      <h1 id="services-title">
        Services
        {status && (
          <span className="muted heading-note" data-testid="services-leader">
            {' '}{status.leader ? `led by ${status.leader.holder}${status.leader.epoch === null ? '' : ` (epoch ${status.leader.epoch})`}` : 'no leader holds the services lease'}
            {` · ${status.totals.active} of ${status.totals.wanted} instances ACTIVE`}
            {status.totals.unplaced > 0 ? ` · ${status.totals.unplaced} ${status.totals.unplaced === 1 ? 'slice' : 'slices'} short` : ''}
          </span>
        )}
      </h1>
      {poll.missing && <p className="notice" data-testid="not-available">The services API is not available on this server (<code>GET /api/v1/status</code> answered 404).</p>}
      {poll.error && !poll.missing && <p role="alert" className="alert">Services: {poll.error.message}</p>}
      {data === null && poll.loading && <p className="muted">Loading…</p>}
      {status && status.blueprints.length === 0 && (
        <div className="card services-empty" data-testid="services-empty">
          <p>No blueprint is deployed.</p>
          <p className="muted">Apply one with <code>arcnet blueprint apply FILE</code> (a JSON blueprint: its name and slices), or <code>POST /api/v1/deploy</code> with an operator key.</p>
        </div>
      )}
      {status && status.blueprints.length > 0 && (
        <ul className="jobs blueprints" data-testid="blueprints">
          {status.blueprints.map((blueprint) => (
            <BlueprintCard key={blueprint.name} blueprint={blueprint} applied={data.blueprints.get(blueprint.name)} sliceErrors={data.sliceErrors} />
          ))}
        </ul>
      )}
      {status && status.unowned.length > 0 && (
        <section aria-labelledby="services-unowned-title" data-testid="services-unowned">
          <h3 id="services-unowned-title">Being removed</h3>
          <p className="muted">Instances no current blueprint names (a removed blueprint's, a scaled-away slice's), until their nodes have unloaded them.</p>
          {[...byArtifact(status.unowned)].map(([artifact, rows]) => (
            <div key={artifact}>
              <h4>{artifact}</h4>
              <InstanceTable instances={rows} label={`instances of ${artifact} being removed`} />
            </div>
          ))}
        </section>
      )}
      {data && (
        <>
          <h3>Endpoints</h3>
          <EndpointTable rows={endpointRows(slices, data.slices)} nodeNames={nodeNames} />
          <h3>Nodes running services</h3>
          <ServiceNodeTable nodes={data.nodes} />
        </>
      )}
    </section>
  );
}

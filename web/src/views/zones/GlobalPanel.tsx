/**
 * The central orchestrator's global view on top of the zones (seed 001 Layer 3): per zone and in
 * total the nodes, active nodes, GPU average, energy breakdown and last summary, from the regional
 * summaries, and the active alerts with what, where, since when and their numbers. `GET
 * /api/v1/global` is polled every 5 s while the view is open, and at once when the feed carries a
 * `central.alert.raised` / `.cleared` event.
 */
import { useEffect, useRef } from 'react';
import { apiGet } from '../../api/client.ts';
import type { GlobalAlert, GlobalAnswer } from '../../api/types.ts';
import { useFeed } from '../../feed/context.ts';
import { clock, dateTime, integer, percent } from '../../lib/format.ts';
import { useNow } from '../../lib/useNow.ts';
import { usePoll } from '../../lib/usePoll.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { EnergyBar } from './EnergyBar.tsx';

function age(iso: string | null, now: number): string {
  if (iso === null) return 'never';
  const ms = now - Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

/** An alert's numbers: the plain values of its details (lists are counted, not spelled out). */
function numbers(details: GlobalAlert['details']): string[] {
  return Object.entries(details).map(([name, value]) => {
    if (Array.isArray(value)) return `${name}: ${value.length}`;
    if (value !== null && typeof value === 'object') return `${name}: …`;
    return `${name}: ${typeof value === 'number' ? String(Math.round(value * 10_000) / 10_000) : String(value)}`;
  });
}

export function GlobalPanel() {
  const key = useApiKey();
  const { state } = useFeed();
  const now = useNow(5_000);
  const poll = usePoll((signal) => apiGet<GlobalAnswer>('/api/v1/global', key, signal), 5000, [key]);
  // A raised or cleared alert on the feed: ask again now rather than up to 5 s later.
  const lastAlertEvent = state.events.find((e) => e.kind === 'central.alert.raised' || e.kind === 'central.alert.cleared');
  const alertMark = lastAlertEvent === undefined ? '' : `${lastAlertEvent.timestamp}|${lastAlertEvent.message}`;
  // refresh is a new function each render: the effect follows the mark only.
  const refresh = useRef(poll.refresh);
  refresh.current = poll.refresh;
  const seenMark = useRef(alertMark);
  useEffect(() => {
    if (alertMark === seenMark.current) return;
    seenMark.current = alertMark;
    refresh.current();
  }, [alertMark]);

  const global = poll.data;
  return (
    <section className="card global-panel" data-testid="global-panel" aria-labelledby="global-title">
      <h2 id="global-title">
        Global
        {global && <span className="muted heading-note">as of {clock(global.at)} · summaries every {Math.round(global.summaryIntervalMs / 1000)} s · {global.leading ? 'writer' : 'standby (alerts from the writer)'}</span>}
      </h2>
      {poll.missing && <p className="notice" data-testid="global-not-available">The global view is not available on this server (<code>GET /api/v1/global</code> answered 404).</p>}
      {poll.error && !poll.missing && <p role="alert" className="alert">Global view: {poll.error.message}</p>}
      {global && (
        <>
          <div className="global-totals" data-testid="global-total" data-nodes={global.total.nodes} data-active={global.total.active} data-zones={global.total.zones}>
            <div className="stat-card"><span className="stat-value">{integer(global.total.nodes)}</span><span className="stat-label">nodes</span></div>
            <div className="stat-card"><span className="stat-value">{integer(global.total.active)}</span><span className="stat-label">active</span></div>
            <div className="stat-card"><span className="stat-value">{percent(global.total.avgGpuUtil)}</span><span className="stat-label">GPU average (active)</span></div>
            <div className="stat-card"><span className="stat-value">{integer(global.total.zones)}</span><span className="stat-label">zones reporting</span></div>
            <div className="stat-card energy-card"><EnergyBar energy={{ ...global.total.energy }} /><span className="stat-label">energy</span></div>
            <div className="stat-card"><span className="stat-value">{clock(global.total.lastSummaryAt)}</span><span className="stat-label">last summary, {age(global.total.lastSummaryAt, now)}</span></div>
          </div>
          {global.zones.length > 0 && (
            <table className="data compact" data-testid="global-zones">
              <thead><tr><th>Zone</th><th className="num">Nodes</th><th className="num">Active</th><th className="num">GPU avg</th><th>Energy</th><th>Last summary</th></tr></thead>
              <tbody>
                {[...global.zones].sort((a, b) => a.geozone.localeCompare(b.geozone)).map((zone) => (
                  <tr key={zone.geozone} data-geozone={zone.geozone} data-nodes={zone.nodes} data-active={zone.active}>
                    <th scope="row">{zone.geozone}</th>
                    <td className="num">{integer(zone.nodes)}</td>
                    <td className="num">{integer(zone.active)}</td>
                    <td className="num">{percent(zone.avgGpuUtil)}</td>
                    <td><EnergyBar energy={{ ...zone.energy }} /></td>
                    <td>{clock(zone.lastSummaryAt)} <span className="muted">({age(zone.lastSummaryAt, now)})</span></td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {global.zones.length === 0 && <p className="muted">No regional summary yet.</p>}
          <h3>Active alerts ({global.alerts.length})</h3>
          {global.alerts.length === 0 && <p className="muted" data-testid="no-alerts">No active alerts.</p>}
          <ul className="alerts">
            {global.alerts.map((alert) => (
              <li key={alert.key} className={`severity-${alert.severity}`} data-testid="alert" data-alert-key={alert.key} data-severity={alert.severity}>
                <span className={`badge severity-${alert.severity}`}>{alert.severity}</span>
                <strong>{alert.message}</strong>
                <span>{alert.geozone ?? 'global'}</span>
                <span className="muted" title={alert.since}>since {dateTime(alert.since)} ({age(alert.since, now)})</span>
                <span className="alert-numbers">{numbers(alert.details).join(' · ')}</span>
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

/**
 * The central orchestrator's global view and its alerts (GlobalPanel), then per geozone, live: nodes online/total, GPU average, energy breakdown, requests/s, routing
 * p50/p99 and rejections with their reasons. `GET /api/v1/zones` is polled every 2 s while the view
 * is open; between polls, node counts come from the feed and rejections seen on the feed since the
 * last poll are added, so the table moves with the mesh rather than in 2 s steps.
 */
import { useRef } from 'react';
import type { ZoneView } from '../../../../src/contracts/console.ts';
import { apiGet } from '../../api/client.ts';
import { useFeed, useFeedStore } from '../../feed/context.ts';
import type { FeedState, ZoneCounters } from '../../feed/state.ts';
import { fixed, integer, ms, percent } from '../../lib/format.ts';
import { usePoll } from '../../lib/usePoll.ts';
import { useRates } from '../../lib/useRate.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { NotAvailable } from '../NotAvailable.tsx';
import { EnergyBar } from './EnergyBar.tsx';
import { GlobalPanel } from './GlobalPanel.tsx';

interface FeedZone {
  total: number;
  online: number;
  gpuSum: number;
  energy: Record<string, number>;
}

function zonesFromFeed(state: FeedState): Map<string, FeedZone> {
  const zones = new Map<string, FeedZone>();
  for (const node of state.nodes.values()) {
    if (!node.geozone) continue;
    let zone = zones.get(node.geozone);
    if (zone === undefined) zones.set(node.geozone, (zone = { total: 0, online: 0, gpuSum: 0, energy: {} }));
    zone.total++;
    if (node.status !== 'offline') {
      zone.online++;
      zone.gpuSum += node.gpuUtilization;
    }
    zone.energy[node.energySource] = (zone.energy[node.energySource] ?? 0) + 1;
  }
  return zones;
}

function reasonsAdded(rest: Record<string, number>, now: ZoneCounters | undefined, atPoll: ZoneCounters | undefined): Record<string, number> {
  const merged = { ...rest };
  for (const [reason, count] of Object.entries(now?.byReason ?? {})) {
    const added = count - (atPoll?.byReason[reason] ?? 0);
    if (added > 0) merged[reason] = (merged[reason] ?? 0) + added;
  }
  return merged;
}

export function ZonesView() {
  const key = useApiKey();
  const store = useFeedStore();
  const { state } = useFeed();
  // The feed's counters when the last poll answered: what the feed saw since is added to it.
  const atPoll = useRef<Readonly<Record<string, ZoneCounters>>>({});
  const poll = usePoll(async (signal) => {
    const answer = await apiGet<{ zones: ZoneView[] }>('/api/v1/zones', key, signal);
    atPoll.current = store.getSnapshot().state.zones;
    return answer.zones;
  }, 2000, [key]);
  const feedRates = useRates(() => Object.fromEntries(Object.entries(store.getSnapshot().state.zones).map(([zone, c]) => [zone, c.requests])));

  const feedZones = zonesFromFeed(state);
  const restZones = new Map((poll.data ?? []).map((zone) => [zone.geozone, zone]));
  const names = [...new Set([...restZones.keys(), ...feedZones.keys()])].sort();
  const baseline = poll.data === null ? {} : atPoll.current;

  return (
    <section className="page" aria-labelledby="zones-title">
      <h1 id="zones-title">Zones</h1>
      <GlobalPanel />
      {poll.missing && <NotAvailable what="The zones summary" route="GET /api/v1/zones" />}
      {poll.error && !poll.missing && <p role="alert" className="alert">Zones: {poll.error.message}</p>}
      <table data-testid="zones" className="data zones">
        <thead>
          <tr>
            <th>Zone</th><th className="num">Online / total</th><th className="num">GPU avg</th><th>Energy</th>
            <th className="num">Requests/s</th><th className="num">Routing p50 / p99</th><th>Rejections</th>
          </tr>
        </thead>
        <tbody>
          {names.map((name) => {
            const rest = restZones.get(name);
            const live = feedZones.get(name);
            const online = live?.online ?? rest?.nodes.online ?? 0;
            const total = live?.total ?? rest?.nodes.total ?? 0;
            const gpu = live && live.online > 0 ? live.gpuSum / live.online : (rest?.gpuAverage ?? null);
            const energy = rest?.energy ?? live?.energy ?? {};
            const feedZone = state.zones[name];
            const seenSincePoll = (feedZone?.rejections ?? 0) - (baseline[name]?.rejections ?? 0);
            const rejections = (rest?.rejections.total ?? 0) + Math.max(0, seenSincePoll);
            const reasons = reasonsAdded(rest?.rejections.byReason ?? {}, feedZone, baseline[name]);
            return (
              <tr key={name} data-geozone={name}>
                <th scope="row">{name}</th>
                <td className="num" data-cell="online">{integer(online)} / {integer(total)}</td>
                <td className="num" data-cell="gpu">{percent(gpu)}</td>
                <td data-cell="energy"><EnergyBar energy={energy} /></td>
                <td className="num" data-cell="requests">{fixed(rest?.requestsPerSecond ?? feedRates[name] ?? 0)}</td>
                <td className="num" data-cell="routing">{ms(rest?.routingMsP50)} / {ms(rest?.routingMsP99)}</td>
                <td data-cell="rejections">
                  <strong>{integer(rejections)}</strong>
                  {Object.keys(reasons).length > 0 && (
                    <ul className="reasons">
                      {Object.entries(reasons).sort((a, b) => b[1] - a[1]).map(([reason, count]) => <li key={reason}>{count} × {reason}</li>)}
                    </ul>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {names.length === 0 && <p className="muted">No zones yet: waiting for the first nodes.</p>}
    </section>
  );
}

/**
 * System events and alerts, newest first: the server's recent ones (`GET /api/v1/events`), then
 * what the feed brings (its snapshot's events and live `system` messages). Filtered by severity
 * and zone and searched in the browser, so typing never waits for the network.
 */
import { useMemo, useState } from 'react';
import { apiGet, query } from '../../api/client.ts';
import { useFeed } from '../../feed/context.ts';
import type { FeedEvent } from '../../feed/state.ts';
import { dateTime } from '../../lib/format.ts';
import { usePoll } from '../../lib/usePoll.ts';
import { useApiKey } from '../../shell/api-key.ts';
import { EVENTS_SEARCH_ID } from '../../shell/keyboard.ts';
import { NotAvailable } from '../NotAvailable.tsx';

const SEVERITIES = ['error', 'warn', 'success', 'info'] as const;

/** Two copies of an event (REST and feed) are the same event. */
const identity = (event: FeedEvent): string => `${event.timestamp}|${event.severity}|${event.message}`;

function merge(feed: readonly FeedEvent[], rest: readonly FeedEvent[]): FeedEvent[] {
  const seen = new Set<string>();
  const all: FeedEvent[] = [];
  for (const event of [...feed, ...rest]) {
    const id = identity(event);
    if (seen.has(id)) continue;
    seen.add(id);
    all.push(event);
  }
  // ISO instants sort as strings.
  return all.sort((a, b) => (a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : 0));
}

function matches(event: FeedEvent, text: string): boolean {
  if (text === '') return true;
  const haystack = `${event.message} ${event.kind ?? ''} ${event.geozone ?? ''} ${event.details ? JSON.stringify(event.details) : ''}`.toLowerCase();
  return text.toLowerCase().split(/\s+/).every((word) => haystack.includes(word));
}

export function EventsView() {
  const key = useApiKey();
  const { state } = useFeed();
  const [severity, setSeverity] = useState('');
  const [geozone, setGeozone] = useState('');
  const [search, setSearch] = useState('');
  const initial = usePoll((signal) => apiGet<{ events: FeedEvent[] }>(`/api/v1/events${query({ limit: 500 })}`, key, signal).then((a) => a.events), 0, [key]);

  const events = useMemo(() => merge(state.events, initial.data ?? []), [state.events, initial.data]);
  const zones = useMemo(() => {
    const names = new Set<string>();
    for (const event of events) if (event.geozone) names.add(event.geozone);
    for (const node of state.nodes.values()) if (node.geozone) names.add(node.geozone);
    return [...names].sort();
  }, [events, state.nodes]);
  const shown = events.filter((e) => (severity === '' || e.severity === severity) && (geozone === '' || e.geozone === geozone) && matches(e, search));

  return (
    <section className="page" aria-labelledby="events-title">
      <h1 id="events-title">Events</h1>
      {initial.missing && <NotAvailable what="The event history" route="GET /api/v1/events" />}
      {initial.error && !initial.missing && <p role="alert" className="alert">Events: {initial.error.message}</p>}
      <div className="filters" role="search">
        <label>
          Severity
          <select name="severity" value={severity} onChange={(e) => setSeverity(e.target.value)}>
            <option value="">all</option>
            {SEVERITIES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </label>
        <label>
          Zone
          <select name="geozone" value={geozone} onChange={(e) => setGeozone(e.target.value)}>
            <option value="">all</option>
            {zones.map((z) => <option key={z} value={z}>{z}</option>)}
          </select>
        </label>
        <label className="grow">
          Search
          <input id={EVENTS_SEARCH_ID} name="search" type="search" placeholder="words in the message or details (press / to come here)" value={search} onChange={(e) => setSearch(e.target.value)} />
        </label>
        <span className="muted">{shown.length} of {events.length}</span>
      </div>
      <ol data-testid="events" className="events">
        {shown.map((event) => (
          <li key={identity(event)} data-severity={event.severity} data-geozone={event.geozone ?? ''} className={`event severity-${event.severity}`}>
            <span className={`badge severity-${event.severity}`}>{event.severity}</span>
            <time dateTime={event.timestamp}>{dateTime(event.timestamp)}</time>
            {event.geozone && <span className="badge">{event.geozone}</span>}
            {event.kind && <span className="muted">{event.kind}</span>}
            <span className="event-message">{event.message}</span>
            {event.details && Object.keys(event.details).length > 0 && (
              <details>
                <summary>details</summary>
                <pre>{JSON.stringify(event.details, null, 2)}</pre>
              </details>
            )}
          </li>
        ))}
      </ol>
      {shown.length === 0 && <p className="muted">No events{events.length > 0 ? ' match the filters' : ' yet'}.</p>}
    </section>
  );
}

/**
 * Routing by the URL's hash, so every view is a link and none needs a page load:
 * #/map (default), #/zones, #/nodes/<id>, #/explain/<requestId>, #/jobs, #/events, #/training, #/services.
 */
import { useEffect, useState } from 'react';

export type Route =
  | { view: 'map' }
  | { view: 'zones' }
  | { view: 'jobs' }
  | { view: 'events' }
  | { view: 'training' }
  | { view: 'services' }
  | { view: 'node'; id: string }
  | { view: 'explain'; id: string };

export type TopView = 'map' | 'zones' | 'jobs' | 'events' | 'training' | 'services';
/** In the order of their keys, 1 to 6. */
export const TOP_VIEWS: readonly TopView[] = ['map', 'zones', 'jobs', 'events', 'training', 'services'];

export function parseRoute(hash: string): Route {
  const [, first = '', second] = hash.replace(/^#/, '').split('/');
  if (first === 'zones' || first === 'jobs' || first === 'events' || first === 'training' || first === 'services') return { view: first };
  if (first === 'nodes' && second) return { view: 'node', id: decodeURIComponent(second) };
  if (first === 'explain' && second) return { view: 'explain', id: decodeURIComponent(second) };
  return { view: 'map' };
}

export function navigate(hash: string): void {
  if (window.location.hash !== hash) window.location.hash = hash;
}

export const nodeHref = (id: string): string => `#/nodes/${encodeURIComponent(id)}`;
export const explainHref = (requestId: string): string => `#/explain/${encodeURIComponent(requestId)}`;

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return route;
}

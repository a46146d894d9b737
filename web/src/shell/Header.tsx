/** The top bar: navigation between the six views, who is signed in, theme and sign-out. */
import type { Identity } from '../auth/whoami.ts';
import { TOP_VIEWS, type Route, type TopView } from './route.ts';

const LABELS: Record<TopView, string> = { map: 'Mesh map', zones: 'Zones', jobs: 'Jobs', events: 'Events', training: 'Training', services: 'Services' };

interface HeaderProps {
  route: Route;
  identity: Identity | null;
  theme: string;
  onToggleTheme: () => void;
  onSignOut: () => void;
}

function activeView(route: Route): TopView {
  return route.view === 'node' || route.view === 'explain' ? 'map' : route.view;
}

export function Header({ route, identity, theme, onToggleTheme, onSignOut }: HeaderProps) {
  const active = activeView(route);
  return (
    <header className="top-bar">
      <span className="brand">ArcNet</span>
      <nav aria-label="Views">
        {TOP_VIEWS.map((view, index) => (
          <a key={view} href={`#/${view}`} data-view={view} aria-current={active === view ? 'page' : undefined} title={`key ${index + 1}`}>
            {LABELS[view]}
          </a>
        ))}
      </nav>
      <span className="spacer" />
      {identity && <span className="muted identity" title={`key ${identity.keyId}`}>{identity.name} · {identity.role}</span>}
      <button type="button" data-testid="theme-toggle" onClick={onToggleTheme} aria-label={`switch to ${theme === 'dark' ? 'light' : 'dark'} theme (t)`}>
        {theme === 'dark' ? '☀ Light' : '☾ Dark'}
      </button>
      <button type="button" data-testid="sign-out" onClick={onSignOut}>Sign out</button>
    </header>
  );
}

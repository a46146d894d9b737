/**
 * The signed-in console: one feed connection for every view, the header, the current view and the
 * status bar. The map stays mounted while another view shows (hidden, its frame loop paused), so
 * coming back to it costs nothing and its arcs and markers are where they were.
 */
import { lazy, Suspense, useCallback, useEffect, useState } from 'react';
import { checkKey, type Identity } from '../auth/whoami.ts';
import { FeedContext } from '../feed/context.ts';
import { FeedStore } from '../feed/store.ts';
import { useRestNodes } from '../feed/useRestNodes.ts';
import { MapView } from '../map/MapView.tsx';
import { EventsView } from '../views/events/EventsView.tsx';
import { JobsView } from '../views/jobs/JobsView.tsx';
import { ServicesView } from '../views/services/ServicesView.tsx';
import { TrainingView } from '../views/training/TrainingView.tsx';
import { ViewBoundary } from '../views/ViewBoundary.tsx';
import { ZonesView } from '../views/zones/ZonesView.tsx';
import { ApiKeyContext } from './api-key.ts';
import { Header } from './Header.tsx';
import { useKeyboard } from './keyboard.ts';
import { navigate, useRoute } from './route.ts';
import { StatusBar } from './StatusBar.tsx';
import { useTheme } from './theme.ts';

// uPlot is only needed once a node is opened: its own chunk.
const NodeDetail = lazy(() => import('../views/node/NodeDetail.tsx').then((m) => ({ default: m.NodeDetail })));
const ExplainPanel = lazy(() => import('../views/explain/ExplainPanel.tsx').then((m) => ({ default: m.ExplainPanel })));

interface ConsoleProps {
  apiKey: string;
  identity: Identity;
  onSignOut: (reason: string | null) => void;
}

export function Console({ apiKey, identity, onSignOut }: ConsoleProps) {
  const [store] = useState(() => new FeedStore());
  const route = useRoute();
  const { theme, toggle } = useTheme();

  useEffect(() => {
    store.connect(apiKey, () => {
      // The feed keeps failing to open: if the key was revoked, say so instead of retrying forever.
      void checkKey(apiKey).then((check) => {
        if (!check.ok && check.refused) onSignOut(check.message);
      });
    });
    return () => store.disconnect();
  }, [store, apiKey, onSignOut]);
  useRestNodes(store, apiKey);

  const closePanel = useCallback(() => {
    if (route.view === 'node' || route.view === 'explain') navigate('#/map');
  }, [route.view]);
  useKeyboard({ toggleTheme: toggle, closePanel });

  const onMap = route.view === 'map' || route.view === 'node' || route.view === 'explain';
  return (
    <ApiKeyContext.Provider value={apiKey}>
      <FeedContext.Provider value={store}>
        <div className="console">
          <Header route={route} identity={identity} theme={theme} onToggleTheme={toggle} onSignOut={() => onSignOut(null)} />
          <main className="view">
            <ViewBoundary name="map"><MapView active={onMap} /></ViewBoundary>
            {route.view === 'zones' && <ViewBoundary name="zones"><ZonesView /></ViewBoundary>}
            {route.view === 'jobs' && <ViewBoundary name="jobs"><JobsView /></ViewBoundary>}
            {route.view === 'events' && <ViewBoundary name="events"><EventsView /></ViewBoundary>}
            {route.view === 'training' && <ViewBoundary name="training"><TrainingView identity={identity} /></ViewBoundary>}
            {route.view === 'services' && <ViewBoundary name="services"><ServicesView /></ViewBoundary>}
            <Suspense fallback={<aside className="panel"><p className="muted">Loading…</p></aside>}>
              {route.view === 'node' && <ViewBoundary key={route.id} name="node"><NodeDetail nodeId={route.id} onClose={closePanel} /></ViewBoundary>}
              {route.view === 'explain' && <ViewBoundary key={route.id} name="explain"><ExplainPanel requestId={route.id} onClose={closePanel} /></ViewBoundary>}
            </Suspense>
          </main>
          <StatusBar />
        </div>
      </FeedContext.Provider>
    </ApiKeyContext.Provider>
  );
}

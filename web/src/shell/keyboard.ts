/**
 * The console's keys: 1–6 switch views, `/` goes to the events search, `t` toggles the theme, Esc
 * closes the open panel. Letters and digits are left alone while the operator types in a field.
 */
import { useEffect } from 'react';
import { TOP_VIEWS, navigate } from './route.ts';

export const EVENTS_SEARCH_ID = 'events-search';

function typing(target: EventTarget | null): boolean {
  return target instanceof HTMLElement && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
}

export function useKeyboard(handlers: { toggleTheme: () => void; closePanel: () => void }): void {
  const { toggleTheme, closePanel } = handlers;
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === 'Escape') {
        if (typing(event.target)) (event.target as HTMLElement).blur();
        closePanel();
        return;
      }
      if (typing(event.target)) return;
      const index = TOP_VIEWS.findIndex((_view, i) => event.key === String(i + 1));
      if (index >= 0) {
        navigate(`#/${TOP_VIEWS[index]}`);
        event.preventDefault();
      } else if (event.key === '/') {
        event.preventDefault();
        navigate('#/events');
        // The events view may mount on this navigation: focus once it has rendered.
        requestAnimationFrame(() => requestAnimationFrame(() => document.getElementById(EVENTS_SEARCH_ID)?.focus()));
      } else if (event.key === 't') {
        toggleTheme();
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [toggleTheme, closePanel]);
}

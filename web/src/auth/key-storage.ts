/**
 * Where the operator's API key lives: sessionStorage (gone with the tab, never in localStorage),
 * and, once, a `#key=<key>` fragment so a link from `arcnet up` signs in directly. The fragment is
 * removed from the address bar at once, so it is not left in history or on screen.
 */
const STORAGE_KEY = 'arcnet.apiKey';

export function takeKeyFromFragment(): string | null {
  const match = /^#key=([^&]+)/.exec(window.location.hash);
  if (match === null) return null;
  const key = decodeURIComponent(match[1]!);
  window.history.replaceState(null, '', `${window.location.pathname}${window.location.search}#/map`);
  return key;
}

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function storeKey(key: string | null): void {
  try {
    if (key === null) sessionStorage.removeItem(STORAGE_KEY);
    else sessionStorage.setItem(STORAGE_KEY, key);
  } catch {
    // Storage refused (private mode): the key lasts as long as the page.
  }
}

/** The signed-in console's feed store, shared by every view through context. */
import { createContext, useContext, useSyncExternalStore } from 'react';
import type { FeedSnapshot, FeedStore } from './store.ts';

export const FeedContext = createContext<FeedStore | null>(null);

export function useFeedStore(): FeedStore {
  const store = useContext(FeedContext);
  if (store === null) throw new Error('useFeedStore outside a FeedContext provider');
  return store;
}

/** The feed's state and connection status, re-rendering at most four times a second. */
export function useFeed(): FeedSnapshot {
  const store = useFeedStore();
  return useSyncExternalStore(store.subscribe, store.getSnapshot);
}

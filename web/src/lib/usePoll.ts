/**
 * Polls a REST endpoint while the view that needs it is open: at once, then every `everyMs` after
 * the previous answer (never two in flight). Keeps the last good answer through a failed poll, so
 * a blip shows as an error line and not as an empty view. While `enabled` is false (a hidden tab)
 * nothing is asked; turning it true again asks at once.
 */
import { useEffect, useRef, useState } from 'react';
import { ApiError } from '../api/client.ts';

export interface Poll<T> {
  data: T | null;
  error: ApiError | null;
  /** The route is not on this server (404 without a domain code). */
  missing: boolean;
  loading: boolean;
  refresh: () => void;
}

export function usePoll<T>(load: (signal: AbortSignal) => Promise<T>, everyMs: number, deps: readonly unknown[], enabled = true): Poll<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    if (!enabled) return;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | null = null;
    const run = async () => {
      let missing = false;
      try {
        const answer = await loadRef.current(controller.signal);
        if (controller.signal.aborted) return;
        setData(answer);
        setError(null);
      } catch (caught) {
        if (controller.signal.aborted) return;
        const failure = caught instanceof ApiError ? caught : new ApiError(0, caught instanceof Error ? caught.message : String(caught), undefined);
        missing = failure.routeMissing;
        setError(failure);
      }
      setLoading(false);
      // A route that does not exist will not appear by asking again.
      if (!controller.signal.aborted && !missing && everyMs > 0) timer = setTimeout(() => void run(), everyMs);
    };
    void run();
    return () => {
      controller.abort();
      if (timer !== null) clearTimeout(timer);
    };
  }, [...deps, everyMs, tick, enabled]);

  return { data, error, missing: error?.routeMissing === true, loading, refresh: () => setTick((t) => t + 1) };
}

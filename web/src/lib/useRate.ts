/**
 * A per-second rate from an ever-growing counter (requests seen): the counter sampled every second,
 * the rate over the last five samples, so a burst does not make the figure jump.
 */
import { useEffect, useRef, useState } from 'react';

const WINDOW = 5;

export function useRate(read: () => number): number {
  const [rate, setRate] = useState(0);
  const readRef = useRef(read);
  readRef.current = read;
  useEffect(() => {
    const samples: { at: number; value: number }[] = [{ at: performance.now(), value: readRef.current() }];
    const timer = setInterval(() => {
      samples.push({ at: performance.now(), value: readRef.current() });
      if (samples.length > WINDOW + 1) samples.shift();
      const first = samples[0]!;
      const last = samples[samples.length - 1]!;
      const seconds = (last.at - first.at) / 1000;
      setRate(seconds > 0 ? Math.max(0, (last.value - first.value) / seconds) : 0);
    }, 1000);
    return () => clearInterval(timer);
  }, []);
  return rate;
}

/** Per-key rates from a record of counters (requests per zone), sampled like `useRate`. */
export function useRates(read: () => Readonly<Record<string, number>>): Record<string, number> {
  const [rates, setRates] = useState<Record<string, number>>({});
  const readRef = useRef(read);
  readRef.current = read;
  useEffect(() => {
    const samples: { at: number; values: Readonly<Record<string, number>> }[] = [{ at: performance.now(), values: readRef.current() }];
    const timer = setInterval(() => {
      samples.push({ at: performance.now(), values: readRef.current() });
      if (samples.length > WINDOW + 1) samples.shift();
      const first = samples[0]!;
      const last = samples[samples.length - 1]!;
      const seconds = (last.at - first.at) / 1000;
      const next: Record<string, number> = {};
      for (const [name, value] of Object.entries(last.values)) next[name] = seconds > 0 ? Math.max(0, (value - (first.values[name] ?? 0)) / seconds) : 0;
      setRates(next);
    }, 1000);
    return () => clearInterval(timer);
  }, []);
  return rates;
}

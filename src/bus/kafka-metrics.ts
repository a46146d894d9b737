/**
 * `arcnet_kafka_produce_duration_ms{topic}` (seed 000): how long a produce took from the call to the
 * broker's acknowledgement (or to the error), retries included; a transaction counts once for each
 * topic it appends to. Registered on the registry the composition root passes (the process's
 * metrics), so the adapter never imports the API layer; with none, nothing is timed.
 */
import { Histogram, type Registry } from 'prom-client';

export const KAFKA_PRODUCE_DURATION = 'arcnet_kafka_produce_duration_ms';

/** Milliseconds: an acknowledged batch takes a few, a transaction a few more, an outage up to the operation timeout. */
const BUCKETS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000];

export type ProduceTimer = (topics: readonly string[], startedAt: number) => void;

export const UNTIMED: ProduceTimer = () => undefined;

/** The timer on `registry`; the histogram is created once per registry and shared by every bus on it. */
export function produceTimer(registry: Registry | undefined): ProduceTimer {
  if (registry === undefined) return UNTIMED;
  const existing = registry.getSingleMetric(KAFKA_PRODUCE_DURATION);
  const histogram =
    existing instanceof Histogram
      ? (existing as Histogram<'topic'>)
      : new Histogram({ name: KAFKA_PRODUCE_DURATION, help: 'Kafka produce latency, call to acknowledgement, by topic (ms)', labelNames: ['topic'], buckets: BUCKETS, registers: [registry] });
  return (topics, startedAt) => {
    const ms = performance.now() - startedAt;
    for (const topic of topics) histogram.observe({ topic }, ms);
  };
}

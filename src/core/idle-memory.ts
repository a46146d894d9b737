/**
 * Lets V8 hand memory back to the system once a long-running process goes idle after a burst.
 *
 * V8's memory reducer is what returns it: a few seconds after a major GC it checks whether the
 * process still allocates, and if not it runs memory-reducing GCs that compact the heap and release
 * the pages freed during the burst (pooled until then, and counted in RSS). On Node 24 (V8 13.6) the
 * check never passes in a process like ours: it also asks the embedder heap (cppgc) for its
 * allocation rate, that rate is exactly 0 when nothing is allocated there, and 0 is read as "high"
 * (`--trace-memory-reducer --trace-mutator-utilization` on an idle Node 24.21 process prints
 * "Embedder mutator utilization = 0.000 (mutator_speed=0, gc_speed=1)" and "high alloc" on every
 * 8 s tick; V8 13.x replaced an allocation rate floored at 1 B/ms by a decaying one without a floor).
 * Only the reducer's watchdog is left, 100 s after the last major GC, and any ordinary major GC in
 * the meantime postpones it. Measured with `arcnet up` as bin/arcnet runs it, two 20 s loads of
 * 1,500 req/s through the API: RSS 200 MB after warm-up, 376 MB after the loads, 379 MB after 30 s
 * idle, with a heap of 216 MB committed for 86 MB used and the rest in V8's page pool.
 *
 * The remedy is small: compiling a trivial `vm.Script` allocates its wrapper on the cppgc heap, so
 * the rate is a small positive number that decays between ticks instead of exactly 0, and the
 * reducer runs as V8 meant it to (about 10 to 20 s after the load stops). It only runs GCs when the
 * process hardly allocates, so under load it does nothing. Nothing else in V8's or Node's public API
 * reaches this (no memory-pressure call from JavaScript, `--memory-saver-mode` makes every major GC
 * a reducing one under load too).
 */
import { Script } from 'node:vm';

/** Often enough that the decaying rate never reaches 0 between the reducer's 8 s ticks (it underflows after about 100 s). */
export const IDLE_MEMORY_NUDGE_MS = 10_000;

/** Starts the nudge for this process (an unref'd timer: it never keeps the process alive); returns how to stop it. */
export function releaseMemoryWhenIdle(intervalMs = IDLE_MEMORY_NUDGE_MS): () => void {
  const nudge = (): void => {
    new Script('0');
  };
  nudge();
  const timer = setInterval(nudge, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

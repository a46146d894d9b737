/**
 * Part (c) of section 5: a group member catching up on a backlog. The library parses a fetch
 * response whole before the event loop runs again, at a cost per record read that grows with the
 * response's size, and its default bounds (50 MB, per partition too) let a member behind a backlog
 * take responses that size: its process stopped for seconds at a time (leases lost, heartbeats late).
 * KafkaBus bounds responses (fetchMaxBytes, 2 MiB; 1 MiB per partition). Same backlog, same run:
 * drained with the adapter's bounds, then with the library's; drain time and the longest stall of
 * the event loop (perf_hooks), and their ratios.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { KafkaBus } from '../src/bus/kafka.ts';
import type { OutgoingRecord } from '../src/bus/ports.ts';
import { kafkaServers, ScratchTopics } from '../test/support/kafka.ts';

const LIBRARY_DEFAULT_BYTES = 50 * 1_048_576;

interface Drain {
  readonly seconds: number;
  readonly maxStallMs: number;
}

async function drain(topic: string, total: number, bounds: { fetchMaxBytes?: number; fetchMaxBytesPerPartition?: number }, runTag: string, label: string): Promise<Drain> {
  const bus = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: `arcnet-bench-catch-up-${label}-${runTag}`, ...bounds });
  const stalls = monitorEventLoopDelay({ resolution: 10 });
  let seen = 0;
  let allSeen: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allSeen = resolve));
  const started = performance.now();
  stalls.enable();
  const consumer = await bus.consume({
    group: `bench-catch-up-${label}-${runTag}`,
    topics: [topic],
    startAt: 'earliest',
    handler: () => {
      if (++seen === total) allSeen();
    },
  });
  try {
    await done;
    stalls.disable();
    return { seconds: (performance.now() - started) / 1000, maxStallMs: stalls.max / 1e6 };
  } finally {
    await consumer.close();
    await bus.close();
  }
}

export async function catchUp(quick: boolean): Promise<void> {
  const runTag = randomBytes(4).toString('hex');
  const total = quick ? 50_000 : 200_000;
  const scratch = new ScratchTopics('bench.catch-up');
  const topic = scratch.name('backlog');
  const producer = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: `arcnet-bench-catch-up-${runTag}` });
  try {
    await producer.ensureTopics([{ topic, partitions: 1, retentionMs: 3_600_000 }]);
    // Request-sized records with the screen headers, as a zone's request partition holds.
    const value = Buffer.alloc(300);
    for (let i = 0; i < total; i += 20_000) {
      const records: OutgoingRecord[] = Array.from({ length: Math.min(20_000, total - i) }, (_, k) => ({ key: 'CAISO', value, headers: { 'arc-request-id': `catch-up-${i + k}`, 'arc-priority': 'normal', 'arc-model': 'llama-3-8b' } }));
      await producer.produce(topic, records);
    }
    const ours = await drain(topic, total, {}, runTag, 'bounded');
    const library = await drain(topic, total, { fetchMaxBytes: LIBRARY_DEFAULT_BYTES, fetchMaxBytesPerPartition: LIBRARY_DEFAULT_BYTES }, runTag, 'library');
    const line = (what: string, d: Drain): string => `${what} ${d.seconds.toFixed(1)} s, longest event-loop stall ${d.maxStallMs.toFixed(0)} ms`;
    console.log(`   ${total.toLocaleString('en')} records of a backlog (one partition, ~${Math.round((total * 360) / 1e6)} MB) drained by one member: ${line('fetches bounded at 2 MiB (1 MiB a partition)', ours)}; ${line("the library's 50 MB", library)}`);
    console.log(`   bounded / library: drain ${(ours.seconds / library.seconds).toFixed(2)}x the time, longest stall ${(ours.maxStallMs / library.maxStallMs).toFixed(2)}x (goal: both below 1, so a member behind a backlog keeps its leases and heartbeats)`);
  } finally {
    await scratch.deleteAll().catch(() => undefined);
    await producer.close();
  }
}

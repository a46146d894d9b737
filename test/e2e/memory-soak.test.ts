/**
 * Memory that comes back (issue 15): a real `arcnet up` process, run as `bin/arcnet` runs it, takes
 * two bursts of inference requests through the API and then idles; its heap used and RSS must come
 * back near where they were after warm-up.
 *
 * Timeline (about 2 min 15 s): warm-up (3 s of load), settle 25 s, two loads of 20 s at 1,500 req/s
 * (keep-alive, from this process; the issue's report was two 20 s loads), idle 60 s. Heap used comes
 * from the server's own /metrics (prom-client's default metrics), RSS from the kernel
 * (/proc/<pid>/status). The level of a quiet window is its lowest reading in the window's second
 * half: heap used is a sawtooth between collections, and its lowest reading is the one nearest what
 * is live; RSS only steps down, when V8's memory reducer runs (10-20 s into the quiet).
 *
 * Margins, against the level after warm-up: heap used at most 1.3x, RSS at most 1.5x. Not 1.0x,
 * because some memory is meant to stay: the scheduler's 20,000 remembered decisions, the event log's
 * 5,000 events, the in-process bus's tail of records per partition (each pinning the pooled buffer
 * it was cut from) and the JIT's code fill during the loads and stay full by design; the tracker
 * keeps its newest 1,000 requests; V8 keeps the pages that still hold live objects, and glibc's main
 * arena does not shrink below its highest live block (about 20 MB of it stays). The level after
 * warm-up itself varies by 30 MB of RSS between runs, with whether the memory reducer has run before
 * the settle ends. Measured on the shared 2-core host with the fix, four runs: heap used 1.06x-1.18x,
 * RSS 1.05x-1.28x (175 MB after warm-up, 407 MB after the loads, 214 MB after the idle minute); on
 * the code before it (the tracker holding up to 200,000 requests with no age limit, V8's memory
 * reducer never running: src/core/idle-memory.ts), two runs: heap used 1.47x-1.58x, RSS 1.86x-1.99x
 * (201, 374, 374 MB).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, freePort, untilUp } from '../support/processes.ts';
import { keyed, operatorKeyIn } from '../support/api-key.ts';
import { RECENT_RING } from '../../src/inference/tracker.ts';

const RATE = 1_500;
const WARM_UP_MS = 3_000;
const SETTLE_MS = 25_000;
const LOAD_MS = 20_000;
const IDLE_MS = 60_000;
const SAMPLE_MS = 2_500;
const HEAP_MARGIN = 1.3;
const RSS_MARGIN = 1.5;

interface Sample {
  readonly at: number;
  readonly rssMb: number;
  readonly heapUsedMb: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('memory after load, on a real arcnet up', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'arcnet-soak-'));
  let server: ChildProcess | undefined;
  let output = '';
  afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((resolve) => server!.once('exit', resolve));
      server.kill('SIGTERM');
      const timer = setTimeout(() => server!.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('gives heap and RSS back after two bursts of API load and a minute idle', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    // As bin/arcnet runs it: small semi-spaces (ADR 0006) change how much a burst promotes.
    server = spawn(process.execPath, ['--max-semi-space-size=2', CLI, 'up', '--port', String(port), '--data-dir', dataDir, '--nodes', '200', '--rate', '0', '--no-status', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const pid = server.pid!;
    await untilUp(async () => (await fetch(`${url}/health`)).ok, 'arcnet up to answer /health', 60_000);
    const key = operatorKeyIn(dataDir);
    const api = keyed(key);

    const sample = async (): Promise<Sample> => {
      const text = await (await api(`${url}/metrics`)).text();
      const heapUsed = Number(/^arcnet_nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1]);
      const rssKb = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      return { at: Date.now(), rssMb: rssKb / 1024, heapUsedMb: heapUsed / 1e6 };
    };
    /** Samples through a quiet window; its level is the lowest reading of each figure in its second half. */
    const quiet = async (ms: number): Promise<{ rssMb: number; heapUsedMb: number; samples: Sample[] }> => {
      const samples: Sample[] = [];
      const end = Date.now() + ms;
      while (Date.now() < end) {
        await sleep(Math.min(SAMPLE_MS, Math.max(0, end - Date.now())));
        samples.push(await sample());
      }
      const last = samples.filter((s) => s.at >= end - ms / 2);
      return { rssMb: Math.min(...last.map((s) => s.rssMb)), heapUsedMb: Math.min(...last.map((s) => s.heapUsedMb)), samples };
    };

    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const body = JSON.stringify({ modelId: 'llama-3-8b', contextWindowTokens: 512, requesterGeozone: 'CAISO' });
    /** Requests at a steady rate for `ms` (at most 512 in flight); resolves with the count of each status once all are answered. */
    const load = async (ms: number): Promise<Record<string, number>> => {
      const counts: Record<string, number> = {};
      let inFlight = 0;
      let sent = 0;
      const send = (): void => {
        inFlight++;
        sent++;
        const done = (status: string): void => {
          inFlight--;
          counts[status] = (counts[status] ?? 0) + 1;
        };
        const req = request(`${url}/api/v1/inference`, { method: 'POST', agent, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
          res.resume();
          res.on('end', () => done(String(res.statusCode)));
        });
        req.on('error', () => done('error'));
        req.end(body);
      };
      const started = Date.now();
      while (Date.now() - started < ms) {
        const due = Math.floor(((Date.now() - started) / 1000) * RATE) - sent;
        for (let i = 0; i < due && inFlight < 512; i++) send();
        await sleep(5);
      }
      while (inFlight > 0) await sleep(20);
      return { sent, ...counts };
    };

    const warmUp = await load(WARM_UP_MS);
    const base = await quiet(SETTLE_MS);
    const loads = [await load(LOAD_MS)];
    await sleep(2_000);
    loads.push(await load(LOAD_MS));
    const tracked = async (): Promise<number> => ((await (await fetch(`${url}/health`)).json()) as { modules: { inference: { requestsTracked: number } } }).modules.inference.requestsTracked;
    const trackedAfterLoads = await tracked();
    const peak = await sample();
    const after = await quiet(IDLE_MS);
    const trackedAfterIdle = await tracked();
    agent.destroy();

    const mb = (n: number): string => n.toFixed(0);
    console.log(
      `memory soak: warm-up ${JSON.stringify(warmUp)}, loads ${loads.map((l) => JSON.stringify(l)).join(' ')}\n` +
        `  after warm-up: heap used ${mb(base.heapUsedMb)} MB, RSS ${mb(base.rssMb)} MB\n` +
        `  after the loads: heap used ${mb(peak.heapUsedMb)} MB, RSS ${mb(peak.rssMb)} MB, ${trackedAfterLoads} requests tracked\n` +
        `  after ${IDLE_MS / 1000} s idle: heap used ${mb(after.heapUsedMb)} MB (${(after.heapUsedMb / base.heapUsedMb).toFixed(2)}x), RSS ${mb(after.rssMb)} MB (${(after.rssMb / base.rssMb).toFixed(2)}x), ${trackedAfterIdle} requests tracked\n` +
        `  settle samples (s, heap used MB / RSS MB): ${base.samples.map((s) => `${Math.round((s.at - base.samples[0]!.at) / 1000)}:${mb(s.heapUsedMb)}/${mb(s.rssMb)}`).join(' ')}\n` +
        `  idle samples: ${after.samples.map((s) => `${Math.round((s.at - peak.at) / 1000)}:${mb(s.heapUsedMb)}/${mb(s.rssMb)}`).join(' ')}`,
    );
    // The loads went through: every request answered (dispatched, or turned away when every node was busy).
    for (const answered of loads) {
      expect(answered['error'] ?? 0, output).toBe(0);
      expect((answered['201'] ?? 0) + (answered['503'] ?? 0)).toBe(answered['sent']);
      expect(answered['201'] ?? 0).toBeGreaterThan(0);
    }
    // The loads took memory, so coming back means something.
    expect(peak.rssMb).toBeGreaterThan(base.rssMb * RSS_MARGIN);
    expect(after.heapUsedMb).toBeLessThanOrEqual(base.heapUsedMb * HEAP_MARGIN);
    expect(after.rssMb).toBeLessThanOrEqual(base.rssMb * RSS_MARGIN);
    // The tracker let the loads' requests go: what is left is at most the newest RECENT_RING it always keeps.
    expect(trackedAfterLoads).toBeGreaterThan(RECENT_RING);
    expect(trackedAfterIdle).toBeLessThanOrEqual(RECENT_RING);
  }, 240_000);
});

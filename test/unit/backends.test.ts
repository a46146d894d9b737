import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { InferenceDispatch } from '../../src/contracts/messages.ts';
import { SimulatedBackend, modelLatencyMs } from '../../src/agent/simulated-backend.ts';
import { OpenAiBackend } from '../../src/agent/openai-backend.ts';
import { seededRandom } from '../../src/sim/random.ts';

function dispatch(overrides: Partial<InferenceDispatch> = {}): InferenceDispatch {
  return {
    schemaVersion: 1,
    requestId: '11111111-1111-4111-a111-111111111111',
    nodeId: '22222222-2222-4222-a222-222222222222',
    modelId: 'llama-3-70b',
    contextWindowTokens: 1024,
    dispatchedAt: new Date().toISOString(),
    fencingToken: 7,
    ...overrides,
  };
}

describe('SimulatedBackend', () => {
  // random() = 0.5 means no jitter; failureRate 0 means no failures: the model is exact.
  const exact = (options: { slots?: number } = {}): SimulatedBackend => new SimulatedBackend({ speed: 0.01, failureRate: 0, random: () => 0.5, ...options });

  it('reports the modelled latency and really waits for it (scaled by speed)', async () => {
    const backend = exact();
    const started = performance.now();
    const run = await backend.run(dispatch({ contextWindowTokens: 8192 }));
    const waited = performance.now() - started;
    expect(run).toMatchObject({ ok: true, latencyMs: 700 });
    expect(waited).toBeGreaterThanOrEqual(6);
    if (run.ok) expect(run.outputTokens).toBe(512);
    expect(backend.active).toBe(0);
  });

  it('latency grows with the context window', async () => {
    const backend = exact();
    const latencies: number[] = [];
    for (const context of [128, 2048, 8192, 32_768]) latencies.push((await backend.run(dispatch({ contextWindowTokens: context }))).latencyMs);
    expect(latencies).toEqual([...latencies].sort((a, b) => a - b));
    expect(new Set(latencies).size).toBe(4);
    expect(latencies[3]! / latencies[0]!).toBeGreaterThan(4);
  });

  it('latency grows with load, and active counts the requests in flight', async () => {
    const backend = exact({ slots: 4 });
    const runs = [0, 1, 2, 3].map(() => backend.run(dispatch({ modelId: 'mistral-7b' })));
    expect(backend.active).toBe(4);
    const latencies = (await Promise.all(runs)).map((r) => r.latencyMs);
    expect(latencies).toEqual([0, 0.25, 0.5, 0.75].map((load) => Math.round(modelLatencyMs('mistral-7b', 1024, load))));
    expect(backend.active).toBe(0);
  });

  it('applies ±15 % jitter from the injected random source, reproducibly', async () => {
    const run = async (seed: number): Promise<number[]> => {
      const backend = new SimulatedBackend({ speed: 0.001, failureRate: 0, random: seededRandom(seed) });
      const out: number[] = [];
      for (let i = 0; i < 20; i++) out.push((await backend.run(dispatch({ modelId: 'unknown-model', contextWindowTokens: 8192 }))).latencyMs);
      return out;
    };
    const a = await run(1);
    expect(await run(1)).toEqual(a);
    for (const latency of a) {
      expect(latency).toBeGreaterThanOrEqual(Math.floor(300 * 0.85));
      expect(latency).toBeLessThanOrEqual(Math.ceil(300 * 1.15));
    }
    expect(new Set(a).size).toBeGreaterThan(5);
  });

  it('fails at the configured rate with a reason', async () => {
    const backend = new SimulatedBackend({ speed: 0.0001, failureRate: 1, random: seededRandom(9) });
    const run = await backend.run(dispatch());
    expect(run.ok).toBe(false);
    if (!run.ok) expect(run.error).toMatch(/simulated llama-3-70b failure: /);
  });

  it('stops waiting when the signal aborts', async () => {
    const backend = new SimulatedBackend({ speed: 1, failureRate: 0 });
    const controller = new AbortController();
    const pending = backend.run(dispatch({ contextWindowTokens: 32_768 }), controller.signal);
    setTimeout(() => controller.abort(), 10);
    const started = performance.now();
    const run = await pending;
    expect(performance.now() - started).toBeLessThan(500);
    expect(run.ok).toBe(false);
    expect(backend.active).toBe(0);
  });
});

describe('OpenAiBackend', () => {
  let server: Server;
  let baseUrl: string;
  const seen: { url?: string; body: Record<string, unknown>; auth?: string }[] = [];
  let mode: 'ok' | 'error' | 'slow' | 'no-usage' = 'ok';

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as Record<string, unknown>;
        seen.push({ url: req.url, body, auth: req.headers.authorization });
        if (req.method !== 'POST' || req.url !== '/v1/completions') {
          res.writeHead(404).end();
          return;
        }
        if (mode === 'error') {
          res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"model not loaded"}');
          return;
        }
        const reply = (): void => {
          const text = ' The quick brown fox jumps over the lazy dog.';
          const usage = mode === 'no-usage' ? undefined : { prompt_tokens: 30, completion_tokens: 11, total_tokens: 41 };
          res.writeHead(200, { 'content-type': 'application/json' }).end(
            JSON.stringify({ id: 'cmpl-1', object: 'text_completion', model: body['model'], choices: [{ index: 0, text, finish_reason: 'stop' }], usage }),
          );
        };
        setTimeout(reply, mode === 'slow' ? 500 : 25);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('POSTs the model and max_tokens to /v1/completions and reports latency and tokens', async () => {
    mode = 'ok';
    seen.length = 0;
    const backend = new OpenAiBackend({ baseUrl: `${baseUrl}/`, apiKey: 'sk-test', maxTokens: 32 });
    const pending = backend.run(dispatch({ modelId: 'llama-3-8b', contextWindowTokens: 4096 }));
    expect(backend.active).toBe(1);
    const run = await pending;
    expect(run.ok).toBe(true);
    if (!run.ok) return;
    expect(run.outputTokens).toBe(11);
    expect(run.output).toBe(' The quick brown fox jumps over the lazy dog.');
    expect(run.latencyMs).toBeGreaterThanOrEqual(20);
    expect(run.latencyMs).toBeLessThan(2000);
    expect(backend.active).toBe(0);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.url).toBe('/v1/completions');
    expect(seen[0]!.body).toMatchObject({ model: 'llama-3-8b', max_tokens: 32 });
    expect(seen[0]!.body['prompt']).toEqual(expect.stringContaining('4096'));
    expect(seen[0]!.auth).toBe('Bearer sk-test');
  });

  it('defaults max_tokens to 64 and estimates tokens from the text without usage', async () => {
    mode = 'no-usage';
    seen.length = 0;
    const run = await new OpenAiBackend({ baseUrl }).run(dispatch());
    expect(seen[0]!.body['max_tokens']).toBe(64);
    expect(seen[0]!.auth).toBeUndefined();
    expect(run).toMatchObject({ ok: true, outputTokens: Math.ceil(' The quick brown fox jumps over the lazy dog.'.length / 4) });
  });

  it('turns a 500 into ok:false naming the URL and status', async () => {
    mode = 'error';
    const run = await new OpenAiBackend({ baseUrl }).run(dispatch());
    expect(run.ok).toBe(false);
    if (!run.ok) {
      expect(run.error).toContain(`${baseUrl}/v1/completions`);
      expect(run.error).toContain('500');
      expect(run.error).toContain('model not loaded');
    }
  });

  it('times out at maxLatencyMs × 4', async () => {
    mode = 'slow';
    const started = performance.now();
    const run = await new OpenAiBackend({ baseUrl }).run(dispatch({ maxLatencyMs: 25 }));
    expect(performance.now() - started).toBeLessThan(400);
    expect(run.ok).toBe(false);
    if (!run.ok) expect(run.error).toMatch(/timed out after 100 ms/);
  });

  it('turns a refused connection into ok:false naming the URL', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const run = await new OpenAiBackend({ baseUrl: `http://127.0.0.1:${port}` }).run(dispatch());
    expect(run.ok).toBe(false);
    if (!run.ok) {
      expect(run.error).toContain(`http://127.0.0.1:${port}/v1/completions`);
      expect(run.error).toMatch(/ECONNREFUSED/);
    }
  });

  it('truncates long output to 4 KiB', async () => {
    const long = 'é'.repeat(5000);
    const fakeFetch: typeof fetch = async () =>
      new Response(JSON.stringify({ choices: [{ text: long }], usage: { completion_tokens: 5000 } }), { status: 200 });
    const run = await new OpenAiBackend({ baseUrl: 'http://unused', fetch: fakeFetch }).run(dispatch());
    expect(run.ok).toBe(true);
    if (run.ok) {
      expect(Buffer.byteLength(run.output ?? '', 'utf8')).toBeLessThanOrEqual(4096);
      expect(run.output).toBe('é'.repeat(2048));
    }
  });
});

/**
 * An inference backend that runs nothing but takes as long as a real GPU would: the simulator's
 * nodes and the agent's `--backend simulated` mode use it so routing, reservations and latency
 * accounting behave as they would against vLLM, without any model weights.
 */
import type { InferenceDispatch } from '../contracts/messages.ts';
import type { InferenceBackend, InferenceRun } from './ports.ts';

/** Rough single-request latencies on one datacentre GPU at a small context, in ms. */
export const BASE_LATENCY_MS: Readonly<Record<string, number>> = {
  'llama-3-70b': 350,
  'qwen2.5-32b': 220,
  'mistral-7b': 80,
  'llama-3-8b': 90,
  'stable-diffusion-xl': 900,
  'whisper-large-v3': 300,
};
export const DEFAULT_BASE_LATENCY_MS = 150;

const FAILURE_REASONS = [
  'CUDA out of memory while allocating KV cache',
  'model worker crashed (NCCL timeout)',
  'generation aborted: NaN in logits',
] as const;

export interface SimulatedBackendOptions {
  /** Wall-time multiplier for the wait; the reported latency stays the model's. Tests use e.g. 0.01. */
  readonly speed?: number;
  /** Probability that a run fails (default 0.002). */
  readonly failureRate?: number;
  /** Concurrent requests the node serves before it is saturated (load = active / slots). */
  readonly slots?: number;
  readonly random?: () => number;
  readonly baseLatencyMs?: Readonly<Record<string, number>>;
}

/** The latency model without jitter: base × (1 + context/8192) × (1 + 0.8·load). */
export function modelLatencyMs(
  modelId: string,
  contextWindowTokens: number,
  load: number,
  baseLatencyMs: Readonly<Record<string, number>> = BASE_LATENCY_MS,
): number {
  const base = baseLatencyMs[modelId] ?? DEFAULT_BASE_LATENCY_MS;
  return base * (1 + contextWindowTokens / 8192) * (1 + 0.8 * Math.max(0, load));
}

export class SimulatedBackend implements InferenceBackend {
  readonly kind = 'simulated';
  private running = 0;
  private readonly speed: number;
  private readonly failureRate: number;
  private readonly slots: number;
  private readonly random: () => number;
  private readonly baseLatencyMs: Readonly<Record<string, number>>;

  constructor(options: SimulatedBackendOptions = {}) {
    this.speed = options.speed ?? 1;
    this.failureRate = options.failureRate ?? 0.002;
    this.slots = Math.max(1, options.slots ?? 4);
    this.random = options.random ?? Math.random;
    this.baseLatencyMs = options.baseLatencyMs ?? BASE_LATENCY_MS;
    if (!(this.speed > 0)) throw new RangeError(`speed must be > 0, got ${this.speed}`);
  }

  get active(): number {
    return this.running;
  }

  async run(dispatch: InferenceDispatch, signal?: AbortSignal): Promise<InferenceRun> {
    // Load is what the GPU is already doing when this request joins, so a lone request is unloaded.
    const load = this.running / this.slots;
    const jitter = 1 + 0.15 * (2 * this.random() - 1);
    const latencyMs = Math.round(modelLatencyMs(dispatch.modelId, dispatch.contextWindowTokens, load, this.baseLatencyMs) * jitter);
    const fails = this.random() < this.failureRate;
    const reason = FAILURE_REASONS[Math.floor(this.random() * FAILURE_REASONS.length)] ?? FAILURE_REASONS[0];

    this.running++;
    try {
      // A failing run dies part-way through, as a crashed worker would.
      const modelledMs = fails ? Math.round(latencyMs * 0.4) : latencyMs;
      const waited = await wait(modelledMs * this.speed, signal);
      if (!waited) return { ok: false, latencyMs: 0, error: `simulated ${dispatch.modelId} run cancelled` };
      if (fails) return { ok: false, latencyMs: modelledMs, error: `simulated ${dispatch.modelId} failure: ${reason}` };
      return { ok: true, latencyMs, outputTokens: Math.max(1, Math.min(512, Math.round(dispatch.contextWindowTokens / 4))) };
    } finally {
      this.running--;
    }
  }
}

/** Resolves true after `ms`, or false as soon as the signal aborts. */
function wait(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

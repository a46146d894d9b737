/**
 * Synthetic inference demand: a seeded stream of requests with a realistic model, priority and
 * context mix arriving as a Poisson process, and a generator that submits them at a target rate.
 */
import type { InferenceRequest, Priority } from '../contracts/messages.ts';
import type { Logger } from '../core/logging.ts';
import { silentLogger } from '../core/logging.ts';
import { errorMessage } from '../core/errors.ts';
import { exponential, randomUuid, weightedPick } from './random.ts';

export const REQUEST_MODEL_MIX: readonly (readonly [string, number])[] = [
  ['llama-3-8b', 0.3],
  ['llama-3-70b', 0.25],
  ['mistral-7b', 0.2],
  ['qwen2.5-32b', 0.12],
  ['stable-diffusion-xl', 0.08],
  ['whisper-large-v3', 0.05],
];

export const PRIORITY_MIX: readonly (readonly [Priority, number])[] = [
  ['critical', 0.1],
  ['normal', 0.7],
  ['background', 0.2],
];

export const MAX_LATENCY_BY_PRIORITY: Readonly<Record<Priority, number>> = {
  critical: 500,
  normal: 2000,
  background: 10_000,
};

export const MIN_CONTEXT_TOKENS = 128;
export const MAX_CONTEXT_TOKENS = 32_768;

export interface RequestStreamOptions {
  /** Mean arrivals per second. */
  readonly rate: number;
  readonly geozones: readonly string[];
  readonly random: () => number;
}

export interface RequestStream {
  next(): InferenceRequest;
  /** Milliseconds until the next arrival: exponential with mean 1000 / rate. */
  nextDelayMs(): number;
}

export function createRequestStream(options: RequestStreamOptions): RequestStream {
  const { rate, geozones, random } = options;
  if (!(rate > 0)) throw new RangeError(`rate must be > 0 requests/s, got ${rate}`);
  if (geozones.length === 0) throw new RangeError('a request stream needs at least one geozone');
  const logMin = Math.log(MIN_CONTEXT_TOKENS);
  const logMax = Math.log(MAX_CONTEXT_TOKENS);
  return {
    next(): InferenceRequest {
      const id = randomUuid(random);
      const modelId = weightedPick(REQUEST_MODEL_MIX, random);
      const priority = weightedPick(PRIORITY_MIX, random);
      // Log-uniform: short prompts are common, long ones rare but present, as in real traffic.
      const context = Math.round(Math.exp(logMin + random() * (logMax - logMin)));
      const zone = geozones[Math.floor(random() * geozones.length)] ?? geozones[0] ?? 'UNZONED';
      return {
        schemaVersion: 1,
        id,
        modelId,
        contextWindowTokens: Math.min(MAX_CONTEXT_TOKENS, Math.max(MIN_CONTEXT_TOKENS, context)),
        priority,
        maxLatencyMs: MAX_LATENCY_BY_PRIORITY[priority],
        requesterGeozone: zone,
      };
    },
    nextDelayMs(): number {
      return exponential(1000 / rate, random);
    },
  };
}

export interface LoadGeneratorOptions {
  readonly rate: number;
  readonly geozones: readonly string[];
  readonly random: () => number;
  readonly submit: (request: InferenceRequest) => Promise<unknown>;
  /** Timer period (default 50 ms); arrivals due within a tick are submitted together. */
  readonly tickMs?: number;
  readonly now?: () => number;
  readonly logger?: Logger;
}

/** Arrivals further behind than this are dropped rather than burst out after a stall (GC, debugger). */
const MAX_BACKLOG_MS = 1000;

export class LoadGenerator {
  private stream: RequestStream;
  private currentRate: number;
  private readonly options: LoadGeneratorOptions;
  private readonly now: () => number;
  private readonly logger: Logger;
  private timer: NodeJS.Timeout | undefined;
  private nextArrival = 0;
  private readonly pending = new Set<Promise<void>>();
  private submittedCount = 0;
  private failedCount = 0;
  private skippedCount = 0;

  constructor(options: LoadGeneratorOptions) {
    this.options = options;
    this.currentRate = options.rate;
    this.stream = createRequestStream(options);
    this.now = options.now ?? (() => performance.now());
    this.logger = options.logger ?? silentLogger;
  }

  get rate(): number {
    return this.currentRate;
  }

  get submitted(): number {
    return this.submittedCount;
  }

  /** Submissions whose promise rejected. */
  get failed(): number {
    return this.failedCount;
  }

  /** Arrivals dropped because the timer fell more than a second behind. */
  get skipped(): number {
    return this.skippedCount;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Changes the target rate; the random sequence carries on, so a seeded run stays reproducible. */
  setRate(rate: number): void {
    this.stream = createRequestStream({ rate, geozones: this.options.geozones, random: this.options.random });
    this.currentRate = rate;
  }

  start(): void {
    if (this.timer) return;
    this.nextArrival = this.now() + this.stream.nextDelayMs();
    this.timer = setInterval(() => this.tick(), this.options.tickMs ?? 50);
  }

  /** Stops submitting and waits for submissions already made to settle. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.pending]);
  }

  private tick(): void {
    const now = this.now();
    if (now - this.nextArrival > MAX_BACKLOG_MS) {
      while (this.nextArrival < now - MAX_BACKLOG_MS) {
        this.nextArrival += this.stream.nextDelayMs();
        this.skippedCount++;
      }
    }
    while (this.nextArrival <= now) {
      this.fire(this.stream.next());
      this.nextArrival += this.stream.nextDelayMs();
    }
  }

  private fire(request: InferenceRequest): void {
    this.submittedCount++;
    let settled: Promise<void>;
    try {
      settled = this.options.submit(request).then(
        () => undefined,
        (error: unknown) => this.failure(request, error),
      );
    } catch (error) {
      this.failure(request, error);
      return;
    }
    this.pending.add(settled);
    void settled.finally(() => this.pending.delete(settled));
  }

  private failure(request: InferenceRequest, error: unknown): void {
    this.failedCount++;
    this.logger.debug({ requestId: request.id, err: errorMessage(error) }, 'load generator submit failed');
  }
}

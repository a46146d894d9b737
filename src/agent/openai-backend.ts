/**
 * An inference backend for any OpenAI-compatible completions server (vLLM, llama.cpp server,
 * Ollama): a node operator points the agent at what already serves models on the box.
 */
import type { InferenceDispatch } from '../contracts/messages.ts';
import { errorMessage } from '../core/errors.ts';
import type { InferenceBackend, InferenceRun } from './ports.ts';

export interface OpenAiBackendOptions {
  /** e.g. `http://127.0.0.1:8000`; `/v1/completions` is appended. */
  readonly baseUrl: string;
  readonly apiKey?: string;
  /** Completion length asked for (default 64): enough to measure real decoding, short enough to be cheap. */
  readonly maxTokens?: number;
  /** Overrides the per-dispatch timeout (maxLatencyMs × 4, or 30 s when the dispatch has none). */
  readonly timeoutMs?: number;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_OUTPUT_BYTES = 4096;

interface CompletionBody {
  choices?: { text?: unknown }[];
  usage?: { completion_tokens?: unknown };
}

export class OpenAiBackend implements InferenceBackend {
  readonly kind = 'openai';
  readonly url: string;
  private running = 0;
  private readonly options: OpenAiBackendOptions;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;

  constructor(options: OpenAiBackendOptions) {
    this.options = options;
    this.url = `${options.baseUrl.replace(/\/+$/, '')}/v1/completions`;
    this.fetchImpl = options.fetch ?? fetch;
    this.now = options.now ?? (() => performance.now());
  }

  get active(): number {
    return this.running;
  }

  async run(dispatch: InferenceDispatch, signal?: AbortSignal): Promise<InferenceRun> {
    const timeoutMs = this.options.timeoutMs ?? (dispatch.maxLatencyMs === undefined ? DEFAULT_TIMEOUT_MS : dispatch.maxLatencyMs * 4);
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.options.apiKey) headers['authorization'] = `Bearer ${this.options.apiKey}`;
    const body = JSON.stringify({
      model: dispatch.modelId,
      // The dispatch carries a context size, not text: the prompt stands in for it so the server does real work.
      prompt: `ArcNet synthetic request ${dispatch.requestId}: the caller's context window is ${dispatch.contextWindowTokens} tokens. Reply with one short sentence.`,
      max_tokens: this.options.maxTokens ?? 64,
    });

    this.running++;
    const started = this.now();
    const elapsed = (): number => Math.max(0, Math.round(this.now() - started));
    try {
      const response = await this.fetchImpl(this.url, { method: 'POST', headers, body, signal: combined });
      const text = await response.text();
      if (!response.ok) {
        const detail = text.trim().slice(0, 200);
        return { ok: false, latencyMs: elapsed(), error: `POST ${this.url} returned HTTP ${response.status} ${response.statusText}${detail ? `: ${detail}` : ''}` };
      }
      const latencyMs = elapsed();
      let parsed: CompletionBody;
      try {
        parsed = JSON.parse(text) as CompletionBody;
      } catch {
        return { ok: false, latencyMs, error: `POST ${this.url} returned HTTP ${response.status} with a body that is not JSON` };
      }
      const output = typeof parsed.choices?.[0]?.text === 'string' ? parsed.choices[0].text : '';
      const reported = parsed.usage?.completion_tokens;
      // Without usage, ~4 characters per token is the usual English estimate.
      const outputTokens = typeof reported === 'number' && Number.isInteger(reported) && reported >= 0 ? reported : Math.ceil(output.length / 4);
      return { ok: true, latencyMs, outputTokens, output: truncateUtf8(output, MAX_OUTPUT_BYTES) };
    } catch (error) {
      const latencyMs = elapsed();
      if (timeout.aborted) return { ok: false, latencyMs, error: `POST ${this.url} timed out after ${timeoutMs} ms` };
      if (signal?.aborted) return { ok: false, latencyMs, error: `POST ${this.url} cancelled` };
      return { ok: false, latencyMs, error: `POST ${this.url} failed: ${describeFetchError(error)}` };
    } finally {
      this.running--;
    }
  }
}

/** fetch wraps the socket error ("ECONNREFUSED") in a bare "fetch failed"; the cause is what helps. */
function describeFetchError(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  if (cause instanceof AggregateError && cause.errors.length > 0) return errorMessage(cause.errors[0]);
  return cause === undefined ? errorMessage(error) : errorMessage(cause);
}

function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  // Cutting bytes can split a character; drop the replacement character that leaves.
  return Buffer.from(text, 'utf8').subarray(0, maxBytes).toString('utf8').replace(/\uFFFD+$/, '');
}

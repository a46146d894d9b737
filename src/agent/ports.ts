/**
 * The executor port of the node agent, for inference: run one dispatched request on this node.
 * Adapters: simulated (latency model), OpenAI-compatible HTTP (vLLM, llama.cpp, Ollama).
 */
import type { InferenceDispatch } from '../contracts/messages.ts';

export type InferenceRun =
  | { readonly ok: true; readonly latencyMs: number; readonly outputTokens: number; readonly output?: string }
  | { readonly ok: false; readonly latencyMs: number; readonly error: string };

export interface InferenceBackend {
  readonly kind: string;
  /** Never rejects for an expected failure (timeout, server error): returns `ok: false` with the reason. */
  run(dispatch: InferenceDispatch, signal?: AbortSignal): Promise<InferenceRun>;
  /** Requests running now, for the GPU utilization the agent reports. */
  readonly active: number;
  close?(): Promise<void>;
}

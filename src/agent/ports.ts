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

/**
 * The executor port of the node agent, for verified batch jobs: run one command in an isolated
 * container and hand back what it printed. Adapter: the Docker Engine API (Docker, or Podman's
 * compatible service) through dockerode.
 */
export interface ContainerSpec {
  /** Must already be present on the worker: no registry is assumed reachable. */
  readonly image: string;
  readonly command: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Written to `/arcnet/input` in the container before it starts; `ARCNET_INPUT` names that path. */
  readonly input?: Uint8Array;
  readonly memoryBytes: number;
  /** CPU cores, fractions allowed. */
  readonly cpus: number;
  /** False runs the container without a network (NetworkMode none). */
  readonly network: boolean;
  readonly timeoutMs: number;
  /** Attached to the container, so an operator can tell which execution a container belongs to. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Aborting kills the container (a superseded execution). */
  readonly signal?: AbortSignal;
}

export type ContainerOutcome =
  | {
      readonly kind: 'exited';
      readonly exitCode: number;
      /**
       * The kernel killed it for exceeding its memory limit, as the engine reports it. Docker does;
       * Podman 4.3 with conmon 2.1.6 (Debian 12) does not (conmon writes its OOM marker to its working
       * directory, Podman looks in the bundle): there an OOM shows only as exitCode 137, this false.
       */
      readonly oomKilled: boolean;
      readonly stdout: Uint8Array;
      readonly stderr: Uint8Array;
      readonly durationMs: number;
    }
  | { readonly kind: 'timed-out'; readonly stdout: Uint8Array; readonly stderr: Uint8Array; readonly durationMs: number }
  | { readonly kind: 'cancelled'; readonly durationMs: number }
  /** The container never ran: image missing, engine unreachable, bad spec. `retryable` says whether trying again later can help. */
  | { readonly kind: 'not-started'; readonly reason: string; readonly retryable: boolean };

export interface ContainerRuntime {
  readonly kind: string;
  /** Never rejects for an expected outcome (non-zero exit, OOM, timeout, missing image): the outcome says so. */
  run(spec: ContainerSpec): Promise<ContainerOutcome>;
  /** Resolves when the engine answers; rejects with a message naming the endpoint when it does not. */
  ping(): Promise<void>;
  /** Removes containers a crashed agent left behind, found by their labels; returns how many. */
  removeLeftovers?(labels: Readonly<Record<string, string>>): Promise<number>;
  close?(): Promise<void>;
}

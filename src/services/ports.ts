/**
 * The services family's ports. The runner protocol of seed 002 as typed contracts: a `SpawnRequest`
 * goes to a runtime on the node, a `SpawnResponse` says what runs and the actual addresses it listens
 * on. Two adapters sit beside this file, chosen by the agent's composition, never imported by domain
 * code: local processes (`process-runtime.ts`) and containers through the Docker Engine API
 * (`container-runtime.ts`, over the jobs executor's connection). One contract suite runs against both
 * (`test/contract/slice-runtime.contract.ts`).
 */
import type { EndpointRecord, SliceRecord, SliceRun, SliceSpec } from './model.ts';

export interface SpawnRequest {
  /** Unique on the node for this spawn: `{artifact}#{instance}@{epoch}`; names the process group or container. */
  readonly instanceId: string;
  readonly artifact: string;
  readonly run: SliceRun;
  /** Added to the run's own env (the runtime adds `PORT`, `ARCNET_PORTS`, `ARCNET_INSTANCE_ID`). */
  readonly env: Readonly<Record<string, string>>;
  /** Limits the runtime applies where the host allows (cgroups for processes, the engine's for containers). */
  readonly resources: { readonly cpu: number; readonly memoryMb: number };
  /** Host ports wanted for a process; a container gets one per `run.containerPorts` entry. */
  readonly portsWanted: number;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface SpawnResponse {
  readonly instanceId: string;
  /** The process's pid (process runtime). */
  readonly pid?: number;
  /** The container's id (container runtime). */
  readonly containerId?: string;
  /** The host addresses it listens on, in order: the first is the one entry points and health checks use. */
  readonly addresses: readonly ListenAddress[];
  /** Whether the runtime could apply the resource limits here, and if not why (a host without cgroup delegation). */
  readonly limits: { readonly applied: boolean; readonly note?: string };
}

/** How a spawned instance ended. */
export interface InstanceExit {
  readonly instanceId: string;
  /** Null when killed by a signal. */
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** True when `stop` asked for it. */
  readonly requested: boolean;
  /** The last lines it wrote to stderr, for the FAILED reason. */
  readonly stderrTail: string;
}

export type SpawnOutcome =
  | {
      readonly ok: true;
      readonly response: SpawnResponse;
      /** Resolves once, when the instance ends for any reason. */
      readonly exited: Promise<InstanceExit>;
    }
  /** Nothing runs: a missing executable or image, no free port, an engine that does not answer. */
  | { readonly ok: false; readonly reason: string; readonly retryable: boolean };

export interface SliceRuntime {
  readonly kind: 'process' | 'container';
  /** Never rejects for an expected failure: the outcome says why. */
  spawn(request: SpawnRequest): Promise<SpawnOutcome>;
  /** SIGTERM (or the engine's stop), SIGKILL after `graceMs`; resolves when it has ended. Unknown ids resolve at once. */
  stop(instanceId: string, graceMs: number): Promise<void>;
  /** Instance ids it runs now. */
  running(): readonly string[];
  /** Removes what a killed agent left behind (containers by label, processes by the pid file); returns how many. */
  removeLeftovers(): Promise<number>;
  /** Stops every instance. */
  close(): Promise<void>;
}

/** A slice key of this node as its deployment manager sees it. */
export interface NodeSliceEntry {
  readonly record: SliceRecord;
  /** The key's modRevision: the node's writes are compare-and-set on it, so a newer leader command always wins. */
  readonly revision: number;
}

export type ChannelWrite = { readonly ok: true; readonly revision: number } | { readonly ok: false; readonly reason: 'conflict' | 'gone' };

/**
 * How a node's deployment manager reads and writes its own keys: `slices/{node}/…` and the
 * endpoints of its instances. In one process the adapter is the KV itself (`kv-node-channel.ts`);
 * an agent's goes through its authenticated session with the server, which lets a node touch its
 * own keys and nothing else.
 */
export interface NodeSliceChannel {
  readonly nodeId: string;
  /** Every current key of this node first, then each change in order; `undefined` means deleted. */
  watch(onChange: (artifact: string, entry: NodeSliceEntry | undefined) => void): { close(): void };
  /** The node's progress, compare-and-set on `expectedRevision`. */
  write(artifact: string, record: SliceRecord, expectedRevision: number): Promise<ChannelWrite>;
  /** Deletes the key once UNLOADING ends, compare-and-set. */
  remove(artifact: string, expectedRevision: number): Promise<ChannelWrite>;
  /** The slice's spec from the blueprint that placed it; undefined when that blueprint no longer names it. */
  spec(blueprint: string, artifact: string): Promise<SliceSpec | undefined>;
  publishEndpoint(artifact: string, entryPoint: string, record: EndpointRecord): Promise<void>;
  unpublishEndpoint(artifact: string, entryPoint: string, instance: number): Promise<void>;
}

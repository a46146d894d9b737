/**
 * The node's deployment manager (seed 003's NodeDeploymentManager): follows this node's slice keys
 * through its `NodeSliceChannel` and runs what they ask for on its slice runtimes. The decisions are
 * the pure lifecycle's (./lifecycle.ts); this file is the edge: it performs the actions a step asks
 * for and feeds their outcomes back as events, like the training bridge does for its workflow.
 *
 * - Events of one key are applied one at a time (a queue per artifact); keys run in parallel.
 * - A step's write goes out compare-and-set on the revision last seen, after the step's teardown
 *   actions and before anything else is done for the key; its outcome is the next event.
 * - Resolving the spec, spawning, health probes and stops run outside the queue, so a timeout or a
 *   leader's UNLOAD is acted on while a runtime is slow; their outcomes are queued as events.
 * - One timer per key wakes it when the step's `wakeAt` comes (a timeout, a probe, a backoff).
 *
 * LOADING resolves the spec from the blueprint that placed the slice and checks this node can run it:
 * a runtime of its `run.kind`, and for a process slice an executable `command[0]` (on the slice's
 * PATH, else the agent's). A container image cannot be looked for through the runtime port: a missing
 * image fails the spawn in ACTIVATING instead, with the engine's reason.
 *
 * `start()` first removes what a killed agent left (every runtime's `removeLeftovers`), then follows
 * the keys: the lifecycle re-drives what claims to run but does not run here.
 *
 * `stop()` stops every instance this manager runs and closes the watch, and writes nothing: neither
 * states nor endpoints. An agent shutting down is treated like one dying, so there is one recovery
 * path: the leader sees the node offline and re-places its instances, or the next manager on this node
 * finds ACTIVE keys, writes ACTIVATING and spawns them again. The runtimes are the caller's to close.
 */
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import {
  DEFAULT_POLICY,
  DEFAULT_RESTART,
  DEFAULT_TIMEOUTS,
  initialLocal,
  isSettledGone,
  step,
  type LifecycleAction,
  type LifecycleEvent,
  type LifecyclePolicy,
  type LifecycleWrite,
  type Resolution,
  type RestartPolicy,
  type SliceLocal,
  type SliceTimeouts,
} from './lifecycle.ts';
import { executableProblem } from './executables.ts';
import type { SliceState } from './model.ts';
import type { NodeSliceChannel, SliceRuntime } from './ports.ts';

export interface NodeManagerDeps {
  readonly channel: NodeSliceChannel;
  /** The runtimes of this node, by the `run.kind` they run; a slice of a kind without one fails in LOADING. */
  readonly runtimes: { readonly process?: SliceRuntime; readonly container?: SliceRuntime };
  readonly clock: Clock;
  readonly logger: Logger;
  /** Per-state limits, merged over DEFAULT_TIMEOUTS (loading 10 s, activating 30 s incl. health, deactivating 15 s, unloading 15 s). */
  readonly timeouts?: Partial<SliceTimeouts>;
  /** Merged over DEFAULT_RESTART (3 restarts within 5 min, 0.5 s doubling to 8 s). */
  readonly restart?: Partial<RestartPolicy>;
  /** SIGTERM to SIGKILL on a stop (default 5 s). */
  readonly stopGraceMs?: number;
  /** After a write, resolve or publish that failed (default 1 s). */
  readonly retryMs?: number;
  /** Health probes; default the global fetch. */
  readonly fetch?: typeof globalThis.fetch;
}

/** One key as `status()` reports it, for the node's health and details. */
export interface SliceStatus {
  readonly artifact: string;
  /** The record's state; undefined once the key is gone (while its instance still stops). */
  readonly state: SliceState | undefined;
  readonly instance: number | undefined;
  readonly epoch: number | undefined;
  /** Where its instance listens, while one runs here. */
  readonly address: string | undefined;
  readonly pid: number | undefined;
  readonly restarts: number;
  readonly reason: string | undefined;
  /** An instance runs here now (healthy or not). */
  readonly running: boolean;
}

interface Slot {
  local: SliceLocal;
  queue: Promise<void>;
  timer: NodeJS.Timeout | undefined;
}

type Kind = 'process' | 'container';

export class NodeDeploymentManager {
  private readonly deps: NodeManagerDeps;
  private readonly policy: LifecyclePolicy;
  private readonly fetch: typeof globalThis.fetch;
  private readonly slots = new Map<string, Slot>();
  /** Instances this manager started and that have not ended, by id: what `stop()` stops. */
  private readonly live = new Map<string, Kind>();
  /** Spawns under way: `stop()` waits for them and stops what they started. */
  private readonly spawning = new Set<Promise<void>>();
  private watch: { close(): void } | undefined;
  private stopped = false;

  constructor(deps: NodeManagerDeps) {
    this.deps = deps;
    this.policy = {
      ...DEFAULT_POLICY,
      timeouts: { ...DEFAULT_TIMEOUTS, ...deps.timeouts },
      restart: { ...DEFAULT_RESTART, ...deps.restart },
      ...(deps.stopGraceMs === undefined ? {} : { stopGraceMs: deps.stopGraceMs }),
      ...(deps.retryMs === undefined ? {} : { retryMs: deps.retryMs }),
    };
    this.fetch = deps.fetch ?? globalThis.fetch;
  }

  get nodeId(): string {
    return this.deps.channel.nodeId;
  }

  async start(): Promise<void> {
    const { runtimes, logger } = this.deps;
    for (const runtime of [runtimes.process, runtimes.container]) {
      if (runtime === undefined) continue;
      // Before any key is looked at: a killed agent's instances hold ports and would answer as this one's.
      const removed = await runtime.removeLeftovers();
      if (removed > 0) logger.info({ node: this.nodeId, runtime: runtime.kind, removed }, 'removed instances a previous agent left running');
    }
    if (this.stopped) return;
    this.watch = this.deps.channel.watch((artifact, entry) => this.enqueue(artifact, { type: 'changed', entry }, true));
  }

  /** Stops every instance it runs and the watch; writes nothing (see the file's comment). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watch?.close();
    this.watch = undefined;
    for (const slot of this.slots.values()) clearTimeout(slot.timer);
    await Promise.allSettled([...this.spawning]);
    await Promise.all(
      [...this.live].map(async ([instanceId, kind]) => {
        await this.deps.runtimes[kind]?.stop(instanceId, this.policy.stopGraceMs).catch((error: unknown) => this.deps.logger.warn({ instance: instanceId, err: errorMessage(error) }, 'could not stop a slice instance'));
      }),
    );
    this.live.clear();
  }

  status(): SliceStatus[] {
    return [...this.slots.values()]
      .map(({ local }): SliceStatus => {
        const record = local.entry?.record;
        return {
          artifact: local.artifact,
          state: record?.state,
          instance: record?.instance,
          epoch: record?.epoch,
          address: local.instance?.address,
          pid: local.instance?.pid,
          restarts: local.restarts,
          reason: record?.reason,
          running: local.instance !== undefined,
        };
      })
      .sort((a, b) => a.artifact.localeCompare(b.artifact));
  }

  // ------------------------------------------------------------------ the queue per key

  /** `create`: only the watch opens a key; an outcome for a key already forgotten is dropped. */
  private enqueue(artifact: string, event: LifecycleEvent, create = false): void {
    if (this.stopped) return;
    let slot = this.slots.get(artifact);
    if (slot === undefined) {
      if (!create) return;
      slot = { local: initialLocal(artifact), queue: Promise.resolve(), timer: undefined };
      this.slots.set(artifact, slot);
    }
    const target = slot;
    target.queue = target.queue
      .then(() => this.apply(target, event))
      .catch((error: unknown) => this.deps.logger.error({ node: this.nodeId, artifact, event: event.type, err: errorMessage(error) }, 'slice lifecycle step failed'));
  }

  private async apply(slot: Slot, first: LifecycleEvent): Promise<void> {
    let event = first;
    for (;;) {
      if (this.stopped) return;
      const before = slot.local.entry?.record.state;
      const next = step(slot.local, event, this.deps.clock.now(), this.policy);
      slot.local = next.local;
      for (const action of next.actions) await this.act(slot, action);
      if (next.write === undefined) {
        this.schedule(slot, next.wakeAt);
        if (isSettledGone(slot.local) && this.slots.get(slot.local.artifact) === slot) {
          clearTimeout(slot.timer);
          this.slots.delete(slot.local.artifact);
        }
        return;
      }
      if (this.stopped) return;
      event = await this.write(slot, next.write, before);
    }
  }

  private async write(slot: Slot, write: LifecycleWrite, before: SliceState | undefined): Promise<LifecycleEvent> {
    const { channel, logger } = this.deps;
    const artifact = slot.local.artifact;
    try {
      const outcome = write.kind === 'put' ? await channel.write(artifact, write.record, write.expectedRevision) : await channel.remove(artifact, write.expectedRevision);
      if (outcome.ok) {
        const state = write.kind === 'put' ? write.record.state : 'removed';
        const reason = write.kind === 'put' ? write.record.reason : undefined;
        const log = state === 'FAILED' ? logger.warn.bind(logger) : logger.info.bind(logger);
        log({ node: this.nodeId, artifact, from: before, state, ...(reason === undefined ? {} : { reason }) }, 'slice state written');
        return { type: 'written', revision: outcome.revision };
      }
      logger.info({ node: this.nodeId, artifact, reason: outcome.reason }, 'slice write lost its compare-and-set');
      return { type: 'writeFailed', reason: outcome.reason };
    } catch (error) {
      logger.warn({ node: this.nodeId, artifact, err: errorMessage(error) }, 'slice write failed; retried');
      return { type: 'writeFailed', reason: 'error', message: errorMessage(error) };
    }
  }

  private schedule(slot: Slot, wakeAt: number | undefined): void {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    if (wakeAt === undefined || this.stopped) return;
    const artifact = slot.local.artifact;
    slot.timer = setTimeout(() => this.enqueue(artifact, { type: 'tick' }), Math.max(1, wakeAt - this.deps.clock.now()));
    slot.timer.unref();
  }

  // ------------------------------------------------------------------ actions

  private async act(slot: Slot, action: LifecycleAction): Promise<void> {
    const { channel, logger } = this.deps;
    const artifact = slot.local.artifact;
    switch (action.type) {
      case 'resolve':
        void this.resolve(action.blueprint, artifact).then(
          (resolution) => this.enqueue(artifact, { type: 'resolved', seq: action.seq, resolution }),
          (error: unknown) => this.enqueue(artifact, { type: 'resolveFailed', seq: action.seq, message: errorMessage(error) }),
        );
        return;
      case 'spawn':
        this.spawn(artifact, action.kind, action);
        return;
      case 'probe':
        void this.probe(action.url, action.timeoutMs).then(({ ok, detail }) => this.enqueue(artifact, { type: 'probed', instanceId: action.instanceId, ok, detail }));
        return;
      case 'stop': {
        const runtime = this.deps.runtimes[action.kind];
        void (runtime?.stop(action.instanceId, action.graceMs) ?? Promise.resolve())
          .catch((error: unknown) => logger.warn({ node: this.nodeId, instance: action.instanceId, err: errorMessage(error) }, 'stopping a slice instance failed'))
          .then(() => this.enqueue(artifact, { type: 'stopped', instanceId: action.instanceId }));
        return;
      }
      case 'publish':
        try {
          await channel.publishEndpoint(artifact, action.entryPoint, { nodeId: this.nodeId, ...action.endpoint });
        } catch (error) {
          logger.warn({ node: this.nodeId, artifact, entryPoint: action.entryPoint, err: errorMessage(error) }, 'publishing an endpoint failed; retried');
          this.enqueue(artifact, { type: 'publishFailed', message: errorMessage(error) });
        }
        return;
      case 'unpublish':
        // Not retried: an endpoint left behind names an instance that no longer answers, and the next publish of its key replaces it.
        await channel.unpublishEndpoint(artifact, action.entryPoint, action.instance).catch((error: unknown) => logger.warn({ node: this.nodeId, artifact, entryPoint: action.entryPoint, err: errorMessage(error) }, 'unpublishing an endpoint failed'));
        return;
    }
  }

  /** The spec from the blueprint, and whether this node can run it. */
  private async resolve(blueprint: string, artifact: string): Promise<Resolution> {
    const spec = await this.deps.channel.spec(blueprint, artifact);
    if (spec === undefined) return { spec };
    const kind = spec.run.kind;
    if (this.deps.runtimes[kind] === undefined) return { spec, problem: `this node has no ${kind} runtime` };
    if (spec.run.kind === 'process') {
      const problem = await executableProblem(spec.run.command[0]!, spec.run.env?.['PATH'] ?? process.env['PATH'] ?? '');
      if (problem !== undefined) return { spec, problem };
    }
    return { spec };
  }

  private spawn(artifact: string, kind: Kind, action: Extract<LifecycleAction, { type: 'spawn' }>): void {
    const runtime = this.deps.runtimes[kind];
    const { instanceId } = action.request;
    if (runtime === undefined) {
      this.enqueue(artifact, { type: 'spawned', instanceId, outcome: { ok: false, reason: `this node has no ${kind} runtime`, retryable: false } });
      return;
    }
    const pending = (async () => {
      try {
        const outcome = await runtime.spawn(action.request);
        if (!outcome.ok) {
          this.enqueue(artifact, { type: 'spawned', instanceId, outcome: { ok: false, reason: outcome.reason, retryable: outcome.retryable } });
          return;
        }
        this.live.set(instanceId, kind);
        if (this.stopped) {
          // Started while the manager stopped: stop() stops it with the others (it waits for this spawn).
          return;
        }
        this.enqueue(artifact, { type: 'spawned', instanceId, outcome: { ok: true, response: outcome.response } });
        void outcome.exited.then((exit) => {
          if (this.live.get(instanceId) === kind) this.live.delete(instanceId);
          this.enqueue(artifact, { type: 'exited', exit });
        });
      } catch (error) {
        // The port says spawn never rejects for an expected failure: an unexpected one may pass with time.
        this.enqueue(artifact, { type: 'spawned', instanceId, outcome: { ok: false, reason: errorMessage(error), retryable: true } });
      }
    })();
    this.spawning.add(pending);
    void pending.finally(() => this.spawning.delete(pending));
  }

  /** One health probe: a 2xx answer within the timeout passes. */
  private async probe(url: string, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
    try {
      const response = await this.fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
      await response.body?.cancel().catch(() => undefined);
      return { ok: response.status >= 200 && response.status < 300, detail: `answered ${response.status}` };
    } catch (error) {
      const cause = (error as { cause?: unknown }).cause;
      return { ok: false, detail: cause === undefined ? errorMessage(error) : errorMessage(cause) };
    }
  }
}

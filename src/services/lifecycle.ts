/**
 * Seed 003's slice lifecycle as the node drives it, for one key `slices/{node}/{artifact}`:
 *
 *   LOAD → LOADING → LOADED → ACTIVATING → ACTIVE          (the leader places an instance)
 *   ACTIVATE → ACTIVATING → ACTIVE                         (the leader asks again after a DEACTIVATE)
 *   DEACTIVATE → DEACTIVATING → LOADED                     (stopped, stays LOADED until ACTIVATE)
 *   UNLOAD → UNLOADING → (key deleted)
 *   any step → FAILED                                      (a timeout, a failed spawn, too many exits)
 *
 * `step(local, event, now, policy)` returns the next local view, the record to write (if any) and the
 * actions the shell (./node-manager.ts) performs; no I/O and nothing read but its arguments. It is a
 * reconciler rather than a script: every event updates what the node knows (the key's record and
 * revision, what runs, what is in flight), then `decide` derives the one next move from that. So a
 * fresh manager after an agent restart, a leader's command in the middle of a spawn and a lost
 * compare-and-set all go through the same rules: "ACTIVE but nothing runs here" writes ACTIVATING and
 * spawns again whether the process exited, the agent was killed or the record was written by another
 * incarnation.
 *
 * Why the moves are cut where they are:
 * - Write first, act second: the record says LOADING before the spec is resolved, ACTIVATING before a
 *   spawn, ACTIVE before endpoints are published, so a reader never sees less than what happens. A
 *   step that writes carries only actions that are right whether or not the write lands (unpublish,
 *   stop, resolve: a read); whatever needs the write (spawn, publish, remove) is decided after `written`.
 * - A write that loses its compare-and-set (`conflict`) changes nothing here: the leader wrote since,
 *   and the watch brings that record, which is decided on afresh. Nothing is written until it comes.
 * - LOADED after a LOAD goes on to ACTIVATING by itself: a placed instance is meant to serve, and the
 *   leader writes LOAD only. LOADED after a DEACTIVATE stays, until ACTIVATE. The two are told apart by
 *   the reason the node writes with LOADED (`DEACTIVATED_REASON`), so the choice survives an agent
 *   restart between writing LOADED and writing ACTIVATING: a LOADED record with any other reason is
 *   driven on to ACTIVATING.
 * - A timeout is per progress state (and per restart attempt for ACTIVATING): it fails the key with a
 *   reason naming the state and the limit. A health check's probes and the restart backoff are
 *   deadlines too; `wakeAt` says when the shell should feed a `tick`.
 * - An instance that exits unasked while the record says ACTIVATING or ACTIVE is restarted after a
 *   backoff (0.5 s, 1 s, 2 s… capped), the record saying ACTIVATING with its restart count; one exit
 *   more than `maxRestarts` within `windowMs` fails the key with the exit and the stderr tail, for the
 *   leader to place it elsewhere. The window's memory is this process's: a restarted agent starts it
 *   afresh (the count in the record carries over).
 */
import { entryPointsOf, type EndpointRecord, type SliceRecord, type SliceSpec, type SliceState } from './model.ts';
import type { InstanceExit, NodeSliceEntry, SpawnRequest, SpawnResponse } from './ports.ts';

export interface SliceTimeouts {
  /** Resolving the spec and checking the runtime can run it. */
  readonly loadingMs: number;
  /** Spawning and passing the health check, per attempt. */
  readonly activatingMs: number;
  readonly deactivatingMs: number;
  readonly unloadingMs: number;
}

export interface RestartPolicy {
  /** Restarts allowed within `windowMs`; the exit after them fails the key. */
  readonly maxRestarts: number;
  readonly windowMs: number;
  /** Delay before restart n is `min(maxDelayMs, baseDelayMs · 2^(n-1))`. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export interface LifecyclePolicy {
  readonly timeouts: SliceTimeouts;
  readonly restart: RestartPolicy;
  /** What `stop` gives an instance between SIGTERM and SIGKILL. */
  readonly stopGraceMs: number;
  /** How long after a write or publish that failed (the store unreachable) it is tried again. */
  readonly retryMs: number;
  /** Per-probe request timeout when the spec's health check names none. */
  readonly probeTimeoutMs: number;
  /** Limits for a slice whose spec names no `resources`. */
  readonly defaultResources: { readonly cpu: number; readonly memoryMb: number };
}

export const DEFAULT_TIMEOUTS: SliceTimeouts = { loadingMs: 10_000, activatingMs: 30_000, deactivatingMs: 15_000, unloadingMs: 15_000 };
export const DEFAULT_RESTART: RestartPolicy = { maxRestarts: 3, windowMs: 300_000, baseDelayMs: 500, maxDelayMs: 8_000 };
export const DEFAULT_HEALTH_INTERVAL_MS = 500;
export const DEFAULT_POLICY: LifecyclePolicy = {
  timeouts: DEFAULT_TIMEOUTS,
  restart: DEFAULT_RESTART,
  stopGraceMs: 5_000,
  retryMs: 1_000,
  probeTimeoutMs: 2_000,
  defaultResources: { cpu: 1, memoryMb: 512 },
};

/** The reason written with LOADED at the end of a DEACTIVATE: such a LOADED stays until ACTIVATE. */
export const DEACTIVATED_REASON = 'deactivated (DEACTIVATE): stays LOADED until ACTIVATE';
/** The reason written with LOADED on the way from LOAD: the node goes on to ACTIVATING by itself. */
export const LOADED_REASON = 'loaded (LOAD): activating next, a placed instance is meant to serve';

/** The id a spawn of this record's instance gets (`ports.ts`: `{artifact}#{instance}@{epoch}`). */
export const instanceIdOf = (artifact: string, record: Pick<SliceRecord, 'instance' | 'epoch'>): string => `${artifact}#${record.instance}@${record.epoch}`;

/** What runs here for the key. */
export interface RunningInstance {
  readonly instanceId: string;
  readonly kind: 'process' | 'container';
  /** `host:port` of the first address: what the record and the endpoints carry. */
  readonly address: string;
  /** `http://host:port`, the health check's base. */
  readonly baseUrl: string;
  readonly pid?: number;
  readonly containerId?: string;
  readonly startedAt: number;
  /** Passed its health check (or has none). */
  readonly healthy: boolean;
  /** A stop was asked for; its end is awaited. */
  readonly stopping: boolean;
}

/** Everything the node knows about one key: the shell keeps one per artifact and replaces it with each step's. */
export interface SliceLocal {
  readonly artifact: string;
  /** The key as last seen (watch or own write); undefined once deleted or never seen. */
  readonly entry: NodeSliceEntry | undefined;
  /** A record has been seen for this key in this process (the first sight decides what to clean up). */
  readonly seen: boolean;
  /**
   * A write of ours lost its compare-and-set against this revision: nothing is written until a newer
   * one comes, or until `retryAt` (an agent's channel reports a write whose answer was lost with the
   * session as a conflict, and its watch does not repeat an unchanged key, so the write is tried again).
   */
  readonly lostAt: number | undefined;
  /** A write, resolve or publish failed (or lost): none is tried again before this time. */
  readonly retryAt: number | undefined;
  /** A failure decided here, to be written as FAILED (kept until written, so a failed write is retried). */
  readonly failure: string | undefined;
  /** The slice's spec, resolved in LOADING (or again after a restart of the agent). */
  readonly spec: SliceSpec | undefined;
  /** The sequence number of the resolve in flight; results of others are ignored. */
  readonly resolving: number | undefined;
  readonly resolveSeq: number;
  /** The spawn in flight. */
  readonly spawning: { readonly instanceId: string; readonly kind: 'process' | 'container' } | undefined;
  readonly instance: RunningInstance | undefined;
  readonly probing: boolean;
  readonly nextProbeAt: number | undefined;
  /** What went wrong last on the way to ACTIVE (a probe's answer, a failed spawn or resolve), for the timeout's reason. */
  readonly lastSetback: string | undefined;
  /** The endpoints this process published for the key. */
  readonly published: { readonly instance: number; readonly entryPoints: readonly string[] } | undefined;
  /** Endpoints a previous incarnation may have left published: unpublished once the spec names them. */
  readonly staleEndpoints: boolean;
  readonly deadline: { readonly state: SliceState; readonly restarts: number; readonly at: number; readonly ms: number } | undefined;
  /** Restarts after unrequested exits since the last LOAD or ACTIVATE (the record's `restarts`). */
  readonly restarts: number;
  /** When restarts were made, for the window. */
  readonly restartTimes: readonly number[];
  /** No spawn before this time (restart backoff, a retryable spawn failure). */
  readonly notBefore: number | undefined;
  readonly spawnFailures: number;
  readonly lastExit: InstanceExit | undefined;
  /** The write the last step asked for, until its result comes: `written` records what landed (undefined record: the removal). */
  readonly writing: { readonly record: SliceRecord | undefined } | undefined;
}

export function initialLocal(artifact: string): SliceLocal {
  return {
    artifact,
    entry: undefined,
    seen: false,
    lostAt: undefined,
    retryAt: undefined,
    failure: undefined,
    spec: undefined,
    resolving: undefined,
    resolveSeq: 0,
    spawning: undefined,
    instance: undefined,
    probing: false,
    nextProbeAt: undefined,
    lastSetback: undefined,
    published: undefined,
    staleEndpoints: false,
    deadline: undefined,
    restarts: 0,
    restartTimes: [],
    notBefore: undefined,
    spawnFailures: 0,
    lastExit: undefined,
    writing: undefined,
  };
}

/** What resolving found: the spec (undefined when the blueprint no longer names the slice) and, if it cannot run here, why. */
export interface Resolution {
  readonly spec: SliceSpec | undefined;
  readonly problem?: string;
}

/** A spawn's outcome as the core sees it (the runtime's, without the exit promise the shell keeps). */
export type SpawnResult = { readonly ok: true; readonly response: SpawnResponse } | { readonly ok: false; readonly reason: string; readonly retryable: boolean };

export type LifecycleEvent =
  /** The watch: the key's record (with its revision) or undefined when deleted. */
  | { readonly type: 'changed'; readonly entry: NodeSliceEntry | undefined }
  /** The step's write (or remove) landed at this revision. */
  | { readonly type: 'written'; readonly revision: number }
  | { readonly type: 'writeFailed'; readonly reason: 'conflict' | 'gone' | 'error'; readonly message?: string }
  | { readonly type: 'resolved'; readonly seq: number; readonly resolution: Resolution }
  /** Resolving threw (the channel could not answer): tried again after retryMs, within the state's timeout. */
  | { readonly type: 'resolveFailed'; readonly seq: number; readonly message: string }
  | { readonly type: 'spawned'; readonly instanceId: string; readonly outcome: SpawnResult }
  | { readonly type: 'probed'; readonly instanceId: string; readonly ok: boolean; readonly detail: string }
  | { readonly type: 'stopped'; readonly instanceId: string }
  | { readonly type: 'exited'; readonly exit: InstanceExit }
  | { readonly type: 'publishFailed'; readonly message: string }
  /** A deadline `wakeAt` asked for has come (or any time: a tick only re-decides). */
  | { readonly type: 'tick' };

export type LifecycleAction =
  | { readonly type: 'resolve'; readonly seq: number; readonly blueprint: string }
  | { readonly type: 'spawn'; readonly kind: 'process' | 'container'; readonly request: SpawnRequest }
  | { readonly type: 'probe'; readonly instanceId: string; readonly url: string; readonly timeoutMs: number }
  | { readonly type: 'stop'; readonly kind: 'process' | 'container'; readonly instanceId: string; readonly graceMs: number }
  /** The shell adds its node id. */
  | { readonly type: 'publish'; readonly entryPoint: string; readonly endpoint: Omit<EndpointRecord, 'nodeId'> }
  | { readonly type: 'unpublish'; readonly entryPoint: string; readonly instance: number };

/** What to write: a record compare-and-set on the revision last seen, or the key's removal once UNLOADING ends. */
export type LifecycleWrite =
  | { readonly kind: 'put'; readonly record: SliceRecord; readonly expectedRevision: number }
  | { readonly kind: 'remove'; readonly expectedRevision: number };

export interface LifecycleStep {
  readonly local: SliceLocal;
  /** In order; when a write comes with them they are only unpublish, stop and resolve, started before it. */
  readonly actions: readonly LifecycleAction[];
  readonly write: LifecycleWrite | undefined;
  /** When to feed the next `tick` (a timeout, a probe, a backoff); undefined for none. */
  readonly wakeAt: number | undefined;
}

const TIMED: Partial<Record<SliceState, keyof SliceTimeouts>> = { LOADING: 'loadingMs', ACTIVATING: 'activatingMs', DEACTIVATING: 'deactivatingMs', UNLOADING: 'unloadingMs' };

/** What a record asks the node for. */
type Mode = 'serve' | 'loaded' | 'unload' | 'failed';

function modeOf(record: SliceRecord): Mode {
  switch (record.state) {
    case 'UNLOAD':
    case 'UNLOADING':
      return 'unload';
    case 'DEACTIVATE':
    case 'DEACTIVATING':
      return 'loaded';
    case 'LOADED':
      return record.reason === DEACTIVATED_REASON ? 'loaded' : 'serve';
    case 'FAILED':
      return 'failed';
    default:
      return 'serve';
  }
}

/** The delay before restart `n` (1-based). */
export function restartDelay(n: number, policy: RestartPolicy): number {
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, n - 1));
}

/** Nothing runs, nothing is in flight that would run, and the key is gone: the shell may forget it. */
export function isSettledGone(local: SliceLocal): boolean {
  return local.entry === undefined && local.instance === undefined && local.spawning === undefined;
}

export function step(local: SliceLocal, event: LifecycleEvent, now: number, policy: LifecyclePolicy = DEFAULT_POLICY): LifecycleStep {
  const observed = observe(local, event, now, policy);
  if (observed === undefined) return { local, actions: [], write: undefined, wakeAt: wakeOf(local, now) };
  return decide(observed, now, policy);
}

/** Folds the event into what the node knows; undefined when it changes nothing (a stale or foreign event). */
function observe(l: SliceLocal, event: LifecycleEvent, now: number, policy: LifecyclePolicy): SliceLocal | undefined {
  switch (event.type) {
    case 'changed': {
      const entry = event.entry;
      if (entry === undefined) {
        return l.entry === undefined ? (l.lostAt === undefined ? undefined : { ...l, lostAt: undefined }) : { ...l, entry: undefined, lostAt: undefined, failure: undefined };
      }
      // Our own writes come back through the watch after `written` recorded them; older revisions are history.
      if (l.entry !== undefined && entry.revision <= l.entry.revision) return undefined;
      let next: SliceLocal = { ...l, entry, lostAt: undefined, retryAt: undefined, failure: undefined };
      if (!l.seen) {
        // First sight in this process: the count carries over, and what claims to have served may have left endpoints.
        next = { ...next, seen: true, restarts: entry.record.restarts ?? 0, staleEndpoints: !['LOAD', 'LOADING', 'LOADED'].includes(entry.record.state) };
      }
      if (entry.record.state === 'LOAD' || entry.record.state === 'ACTIVATE') {
        // A fresh command: a new placement (LOAD) resolves its spec again; both start the restart count over.
        next = { ...next, restarts: 0, restartTimes: [], notBefore: undefined, spawnFailures: 0, lastExit: undefined, lastSetback: undefined };
        if (entry.record.state === 'LOAD') next = { ...next, spec: undefined, resolving: undefined };
      }
      return next;
    }
    case 'written': {
      const write = l.writing;
      if (write === undefined) return undefined;
      const record = write.record;
      return { ...l, writing: undefined, entry: record === undefined ? undefined : { record, revision: event.revision }, retryAt: undefined, failure: record?.state === 'FAILED' ? undefined : l.failure };
    }
    case 'writeFailed':
      if (l.writing === undefined) return undefined;
      switch (event.reason) {
        case 'conflict':
          return { ...l, writing: undefined, lostAt: l.entry?.revision, retryAt: now + policy.retryMs };
        case 'gone':
          // Deleted under us: whatever runs stops (the watch's delete, when it comes, finds nothing to do).
          return { ...l, writing: undefined, entry: undefined, failure: undefined };
        case 'error':
          return { ...l, writing: undefined, retryAt: now + policy.retryMs };
      }
      break;
    case 'resolved': {
      if (event.seq !== l.resolving) return undefined;
      const { spec, problem } = event.resolution;
      const record = l.entry?.record;
      const needed = record !== undefined && modeOf(record) === 'serve' && (record.state === 'LOADING' || record.state === 'ACTIVATING');
      let next: SliceLocal = { ...l, resolving: undefined, spec: spec ?? l.spec };
      if (spec === undefined) {
        // Nothing names the slice's entry points any more: stale endpoints cannot be found from here.
        next = { ...next, staleEndpoints: false };
        if (needed) next = { ...next, failure: `${record.state}: blueprint "${record.blueprint}" no longer names ${l.artifact}` };
      } else if (problem !== undefined && needed) {
        next = { ...next, failure: `${record.state}: ${problem}` };
      }
      return next;
    }
    case 'resolveFailed': {
      if (event.seq !== l.resolving) return undefined;
      const record = l.entry?.record;
      const needed = record !== undefined && modeOf(record) === 'serve' && (record.state === 'LOADING' || record.state === 'ACTIVATING');
      // Only looking for stale endpoints: not worth retrying against a channel that refuses.
      if (!needed) return { ...l, resolving: undefined, staleEndpoints: false };
      return { ...l, resolving: undefined, retryAt: now + policy.retryMs, lastSetback: `resolving the spec failed: ${event.message}` };
    }
    case 'spawned': {
      const spawning = l.spawning;
      if (spawning === undefined || event.instanceId !== spawning.instanceId) return undefined;
      const outcome = event.outcome;
      if (!outcome.ok) {
        const record = l.entry?.record;
        const serving = record !== undefined && modeOf(record) === 'serve';
        if (!serving) return { ...l, spawning: undefined };
        if (outcome.retryable) {
          const failures = l.spawnFailures + 1;
          return { ...l, spawning: undefined, spawnFailures: failures, notBefore: now + restartDelay(failures, policy.restart), lastSetback: `the last spawn failed: ${outcome.reason}` };
        }
        return { ...l, spawning: undefined, failure: `ACTIVATING: spawn failed: ${outcome.reason}` };
      }
      const first = outcome.response.addresses[0];
      const host = first === undefined ? '127.0.0.1' : first.host;
      const port = first === undefined ? 0 : first.port;
      const hostPart = host.includes(':') ? `[${host}]` : host;
      const instance: RunningInstance = {
        instanceId: event.instanceId,
        kind: spawning.kind,
        address: `${hostPart}:${port}`,
        baseUrl: `http://${hostPart}:${port}`,
        ...(outcome.response.pid === undefined ? {} : { pid: outcome.response.pid }),
        ...(outcome.response.containerId === undefined ? {} : { containerId: outcome.response.containerId }),
        startedAt: now,
        healthy: l.spec?.health === undefined,
        stopping: false,
      };
      return { ...l, spawning: undefined, instance, spawnFailures: 0, probing: false, nextProbeAt: undefined, lastSetback: undefined };
    }
    case 'probed': {
      if (l.instance?.instanceId !== event.instanceId || !l.probing) return undefined;
      if (event.ok) return { ...l, probing: false, nextProbeAt: undefined, lastSetback: undefined, instance: { ...l.instance, healthy: true } };
      return { ...l, probing: false, nextProbeAt: now + (l.spec?.health?.intervalMs ?? DEFAULT_HEALTH_INTERVAL_MS), lastSetback: event.detail };
    }
    case 'stopped':
      if (l.instance?.instanceId !== event.instanceId) return undefined;
      return { ...l, instance: undefined, probing: false, nextProbeAt: undefined };
    case 'exited': {
      const { exit } = event;
      if (l.instance?.instanceId !== exit.instanceId) return undefined;
      const gone: SliceLocal = { ...l, instance: undefined, probing: false, nextProbeAt: undefined, lastExit: exit };
      if (exit.requested || l.instance.stopping) return gone;
      const record = l.entry?.record;
      if (record === undefined || modeOf(record) !== 'serve' || (record.state !== 'ACTIVE' && record.state !== 'ACTIVATING')) return gone;
      const recent = l.restartTimes.filter((at) => now - at < policy.restart.windowMs);
      if (recent.length >= policy.restart.maxRestarts) {
        return { ...gone, restartTimes: recent, failure: `${record.state}: ${describeExit(exit)} after ${recent.length} restarts within ${policy.restart.windowMs} ms${tailOf(exit)}` };
      }
      const restarts = l.restarts + 1;
      return { ...gone, restarts, restartTimes: [...recent, now], notBefore: now + restartDelay(recent.length + 1, policy.restart) };
    }
    case 'publishFailed':
      // The endpoints are published again after retryMs; what did land is overwritten with the same record.
      return { ...l, retryAt: now + policy.retryMs, published: undefined };
    case 'tick':
      return l;
  }
  return undefined;
}

function describeExit(exit: InstanceExit): string {
  return exit.exitCode !== null ? `exited with code ${exit.exitCode}` : `was killed by ${exit.signal ?? 'a signal'}`;
}

function tailOf(exit: InstanceExit): string {
  const tail = exit.stderrTail.trim();
  return tail === '' ? '' : `; stderr: ${tail.slice(-1_000)}`;
}

/** The next time a tick can change a decision; a time already passed was decided on (or waits for an event, not a tick). */
function wakeOf(l: SliceLocal, now: number): number | undefined {
  const times = [l.deadline?.at, l.retryAt, l.probing ? undefined : l.nextProbeAt, l.spawning === undefined && l.instance === undefined ? l.notBefore : undefined].filter(
    (t): t is number => t !== undefined && t > now,
  );
  return times.length === 0 ? undefined : Math.min(...times);
}

/** The progress record after `from`: the placement's fields kept, version +1, stamped now. */
function progress(from: SliceRecord, state: SliceState, now: number, extra: { reason?: string | undefined; address?: string | undefined; restarts: number }): SliceRecord {
  return {
    state,
    timestamp: now,
    version: from.version + 1,
    instance: from.instance,
    blueprint: from.blueprint,
    epoch: from.epoch,
    placedAt: from.placedAt,
    ...(extra.reason === undefined ? {} : { reason: extra.reason }),
    ...(extra.address === undefined ? {} : { address: extra.address }),
    restarts: extra.restarts,
  };
}

function decide(input: SliceLocal, now: number, policy: LifecyclePolicy): LifecycleStep {
  let l = input;
  const actions: LifecycleAction[] = [];
  let write: LifecycleWrite | undefined;
  // What the write puts: a record, or undefined for the removal.
  let written: SliceRecord | undefined;

  const finish = (): LifecycleStep => {
    const local: SliceLocal = write === undefined ? l : { ...l, writing: { record: written } };
    return { local, actions, write, wakeAt: wakeOf(local, now) };
  };
  const canWrite = (): boolean => l.entry !== undefined && l.writing === undefined && l.lostAt === undefined && l.retryAt === undefined;
  const put = (record: SliceRecord): void => {
    write = { kind: 'put', record, expectedRevision: l.entry!.revision };
    written = record;
  };
  /** Unpublishes what this process published and stops what runs; true once nothing runs or is being spawned. */
  const teardown = (): boolean => {
    if (l.published !== undefined) {
      for (const entryPoint of l.published.entryPoints) actions.push({ type: 'unpublish', entryPoint, instance: l.published.instance });
      l = { ...l, published: undefined };
    }
    if (l.instance !== undefined && !l.instance.stopping) {
      actions.push({ type: 'stop', kind: l.instance.kind, instanceId: l.instance.instanceId, graceMs: policy.stopGraceMs });
      l = { ...l, instance: { ...l.instance, stopping: true }, probing: false, nextProbeAt: undefined };
    }
    return l.instance === undefined && l.spawning === undefined;
  };
  const resolve = (record: SliceRecord): void => {
    if (l.resolving !== undefined || l.retryAt !== undefined) return;
    const seq = l.resolveSeq + 1;
    actions.push({ type: 'resolve', seq, blueprint: record.blueprint });
    l = { ...l, resolving: seq, resolveSeq: seq };
  };

  if (l.retryAt !== undefined && now >= l.retryAt) l = { ...l, retryAt: undefined, lostAt: undefined };
  const entry = l.entry;
  if (entry === undefined) {
    // Deleted (forgotten by the leader, or removed at the end of UNLOADING): nothing of it may run.
    teardown();
    return finish();
  }
  const record = entry.record;
  const mode = modeOf(record);

  // The deadline of the progress state the record is in (a restart attempt of ACTIVATING has its own).
  const timed = TIMED[record.state];
  if (timed === undefined) {
    l = { ...l, deadline: undefined };
  } else if (l.deadline === undefined || l.deadline.state !== record.state || l.deadline.restarts !== (record.restarts ?? 0)) {
    const ms = policy.timeouts[timed];
    const from = record.state === 'ACTIVATING' && l.notBefore !== undefined ? Math.max(now, l.notBefore) : now;
    l = { ...l, deadline: { state: record.state, restarts: record.restarts ?? 0, at: from + ms, ms } };
  }
  if (timed !== undefined && l.deadline !== undefined && now >= l.deadline.at && l.failure === undefined) {
    l = { ...l, failure: `${record.state} took longer than ${l.deadline.ms} ms (timeouts.${timed})${timeoutDetail(l, record.state)}` };
  }

  // Endpoints a previous incarnation may have left: found through the spec, whatever the state.
  if (l.staleEndpoints) {
    if (l.spec !== undefined) {
      for (const entryPoint of entryPointsOf(l.spec)) actions.push({ type: 'unpublish', entryPoint: entryPoint.name, instance: record.instance });
      l = { ...l, staleEndpoints: false };
    } else {
      resolve(record);
    }
  }

  if (l.failure !== undefined && record.state !== 'FAILED') {
    teardown();
    if (canWrite()) put(progress(record, 'FAILED', now, { reason: l.failure, restarts: l.restarts }));
    return finish();
  }

  switch (mode) {
    case 'failed':
      // FAILED stays FAILED: the leader re-places it elsewhere and forgets this key.
      teardown();
      return finish();
    case 'unload': {
      if (record.state === 'UNLOAD') {
        if (canWrite()) put(progress(record, 'UNLOADING', now, { reason: record.reason, restarts: l.restarts }));
        return finish();
      }
      const quiet = teardown();
      if (quiet && !l.staleEndpoints && canWrite()) {
        write = { kind: 'remove', expectedRevision: entry.revision };
        written = undefined;
      }
      return finish();
    }
    case 'loaded': {
      if (record.state === 'DEACTIVATE') {
        if (canWrite()) put(progress(record, 'DEACTIVATING', now, { reason: record.reason, restarts: l.restarts }));
        return finish();
      }
      const quiet = teardown();
      if (record.state === 'DEACTIVATING' && quiet && !l.staleEndpoints && canWrite()) put(progress(record, 'LOADED', now, { reason: DEACTIVATED_REASON, restarts: l.restarts }));
      return finish();
    }
    case 'serve':
      serve(record);
      return finish();
  }

  function serve(record: SliceRecord): void {
    const wanted = instanceIdOf(l.artifact, record);
    switch (record.state) {
      case 'LOAD':
        if (canWrite()) put(progress(record, 'LOADING', now, { reason: record.reason, restarts: 0 }));
        return;
      case 'LOADING': {
        // Loading reserves nothing long-running: an instance of an earlier placement stops first.
        const quiet = teardown();
        if (l.spec === undefined) resolve(record);
        else if (quiet && canWrite()) put(progress(record, 'LOADED', now, { reason: LOADED_REASON, restarts: l.restarts }));
        return;
      }
      case 'LOADED':
        if (canWrite()) put(progress(record, 'ACTIVATING', now, { reason: undefined, restarts: l.restarts }));
        return;
      case 'ACTIVATE':
        if (canWrite()) put(progress(record, 'ACTIVATING', now, { reason: record.reason, restarts: 0 }));
        return;
      case 'ACTIVATING':
        activating(record, wanted);
        return;
      case 'ACTIVE':
        active(record, wanted);
        return;
      default:
        return;
    }
  }

  function activating(record: SliceRecord, wanted: string): void {
    if (l.instance !== undefined && l.instance.instanceId !== wanted) {
      teardown();
      return;
    }
    if ((record.restarts ?? 0) !== l.restarts) {
      // An exit was counted: the record says which attempt this is before the instance is spawned again.
      teardown();
      if (canWrite()) put(progress(record, 'ACTIVATING', now, { reason: l.lastExit === undefined ? undefined : `restart ${l.restarts}: the instance ${describeExit(l.lastExit)}`, restarts: l.restarts }));
      return;
    }
    if (l.spec === undefined) {
      resolve(record);
      return;
    }
    const spec = l.spec;
    const instance = l.instance;
    if (instance !== undefined) {
      if (instance.stopping) return;
      const health = spec.health;
      if (!instance.healthy && health !== undefined) {
        if (!l.probing && (l.nextProbeAt === undefined || now >= l.nextProbeAt)) {
          actions.push({ type: 'probe', instanceId: instance.instanceId, url: `${instance.baseUrl}${health.path}`, timeoutMs: health.timeoutMs ?? policy.probeTimeoutMs });
          l = { ...l, probing: true, nextProbeAt: undefined };
        }
        return;
      }
      // Healthy, or nothing to check: a spec without a health check is ACTIVE once it runs.
      if (!instance.healthy) l = { ...l, instance: { ...instance, healthy: true } };
      if (canWrite()) put(progress(record, 'ACTIVE', now, { reason: undefined, address: instance.address, restarts: l.restarts }));
      return;
    }
    if (l.spawning !== undefined || (l.notBefore !== undefined && now < l.notBefore)) return;
    actions.push({
      type: 'spawn',
      kind: spec.run.kind,
      request: { instanceId: wanted, artifact: l.artifact, run: spec.run, env: {}, resources: spec.resources ?? policy.defaultResources, portsWanted: spec.ports ?? 1 },
    });
    l = { ...l, spawning: { instanceId: wanted, kind: spec.run.kind }, notBefore: undefined };
  }

  function active(record: SliceRecord, wanted: string): void {
    if (l.instance !== undefined && l.instance.instanceId !== wanted) {
      teardown();
      return;
    }
    if (l.instance === undefined || !l.instance.healthy || l.instance.stopping) {
      if (l.spawning !== undefined || l.instance?.stopping) return;
      // ACTIVE claims an instance this process does not run: it exited, or a killed agent's was removed.
      teardown();
      const reason = l.lastExit !== undefined ? `restart ${l.restarts}: the instance ${describeExit(l.lastExit)}` : 'ACTIVE but not running on this node (the agent restarted): spawning it again';
      if (canWrite()) put(progress(record, 'ACTIVATING', now, { reason, restarts: l.restarts }));
      return;
    }
    if (l.published === undefined && l.spec !== undefined && l.retryAt === undefined) {
      const entryPoints = entryPointsOf(l.spec);
      for (const entryPoint of entryPoints) {
        actions.push({
          type: 'publish',
          entryPoint: entryPoint.name,
          endpoint: { instance: record.instance, state: 'ACTIVE', timestamp: now, address: l.instance.address, path: entryPoint.path ?? '/', epoch: record.epoch },
        });
      }
      l = { ...l, published: { instance: record.instance, entryPoints: entryPoints.map((e) => e.name) } };
    }
  }
}

function timeoutDetail(l: SliceLocal, state: SliceState): string {
  if (state === 'LOADING') return l.lastSetback === undefined ? '; the slice spec was not resolved in time' : `; ${l.lastSetback}`;
  if (state !== 'ACTIVATING') return '';
  if (l.spawning !== undefined) return '; the runtime had not answered the spawn';
  if (l.instance !== undefined && !l.instance.healthy && l.spec?.health !== undefined) {
    return `; health check GET ${l.instance.baseUrl}${l.spec.health.path} never answered 2xx${l.lastSetback === undefined ? '' : ` (last: ${l.lastSetback})`}`;
  }
  return l.lastSetback === undefined ? '' : `; ${l.lastSetback}`;
}

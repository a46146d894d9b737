/**
 * The node's slice lifecycle (`src/services/lifecycle.ts`) walked through seed 003's diagram: every
 * transition, FAILED from each step, the per-state timeouts, restart backoff and the FAILED-after-N
 * rule, lost compare-and-sets and deleted keys, and what a fresh manager does with each state a
 * killed agent left. A small in-memory stand-in for the KV key (revision counter, compare-and-set)
 * plays the shell's part; nothing else is simulated.
 */
import { describe, expect, it } from 'vitest';
import {
  DEACTIVATED_REASON,
  DEFAULT_POLICY,
  LOADED_REASON,
  initialLocal,
  instanceIdOf,
  isSettledGone,
  restartDelay,
  step,
  type LifecycleAction,
  type LifecycleEvent,
  type LifecyclePolicy,
  type LifecycleStep,
  type SliceLocal,
} from '../../src/services/lifecycle.ts';
import type { SliceRecord, SliceSpec, SliceState } from '../../src/services/model.ts';
import type { InstanceExit } from '../../src/services/ports.ts';

const ART = 'org.example:echo:1.0';
const T0 = Date.UTC(2026, 0, 1);
const ID = instanceIdOf(ART, { instance: 2, epoch: 7 });
const SPEC: SliceSpec = {
  artifact: ART,
  instances: 1,
  run: { kind: 'process', command: ['/usr/bin/node', 'echo.js'] },
  health: { path: '/health', intervalMs: 200 },
  entryPoints: [{ name: 'http', path: '/' }, { name: 'admin', path: '/admin' }],
};

const placement = (state: SliceState, extra: Partial<SliceRecord> = {}): SliceRecord => ({ state, timestamp: T0, version: 1, instance: 2, blueprint: 'bp', epoch: 7, placedAt: T0, ...extra });
const exit = (extra: Partial<InstanceExit> = {}): InstanceExit => ({ instanceId: ID, exitCode: 1, signal: null, requested: false, stderrTail: 'boom\n', ...extra });
const spawned = (port = 4100, instanceId = ID): LifecycleEvent => ({ type: 'spawned', instanceId, outcome: { ok: true, response: { instanceId, pid: 99, addresses: [{ host: '127.0.0.1', port }], limits: { applied: false } } } });

/** The key in a store of its own, and the shell's loop: write, feed the outcome back, collect actions. */
class Key {
  local: SliceLocal = initialLocal(ART);
  record: SliceRecord | undefined;
  revision = 0;
  now = T0;
  readonly actions: LifecycleAction[] = [];
  /** Every record the node wrote, in order; 'removed' for the removal. */
  readonly written: (SliceRecord | 'removed')[] = [];
  last: LifecycleStep | undefined;
  /** Runs between a step's decision and its write landing (another writer's turn). */
  beforeWrite: (() => void) | undefined;
  failWrites = false;
  /** Every write tried, with the revision it expected. */
  readonly attempts: number[] = [];
  readonly policy: LifecyclePolicy;

  constructor(policy: LifecyclePolicy = DEFAULT_POLICY) {
    this.policy = policy;
  }

  /** The leader writes the key (or deletes it) and the watch delivers that. */
  leader(record: SliceRecord | undefined): LifecycleStep {
    this.store(record);
    return this.feed({ type: 'changed', entry: record === undefined ? undefined : { record, revision: this.revision } });
  }

  /** A write of the store without the watch having delivered it yet. */
  store(record: SliceRecord | undefined): void {
    this.revision++;
    this.record = record;
  }

  feed(event: LifecycleEvent): LifecycleStep {
    let next = step(this.local, event, this.now, this.policy);
    for (;;) {
      this.local = next.local;
      this.last = next;
      this.actions.push(...next.actions);
      const write = next.write;
      if (write === undefined) return next;
      this.attempts.push(write.expectedRevision);
      const hook = this.beforeWrite;
      this.beforeWrite = undefined;
      hook?.();
      let outcome: LifecycleEvent;
      if (this.failWrites) outcome = { type: 'writeFailed', reason: 'error', message: 'store unreachable' };
      else if (this.record === undefined) outcome = { type: 'writeFailed', reason: 'gone' };
      else if (write.expectedRevision !== this.revision) outcome = { type: 'writeFailed', reason: 'conflict' };
      else {
        this.revision++;
        if (write.kind === 'put') {
          this.record = write.record;
          this.written.push(write.record);
        } else {
          this.record = undefined;
          this.written.push('removed');
        }
        outcome = { type: 'written', revision: this.revision };
      }
      next = step(this.local, outcome, this.now, this.policy);
    }
  }

  tick(ms: number): LifecycleStep {
    this.now += ms;
    return this.feed({ type: 'tick' });
  }

  states(): string[] {
    return this.written.map((w) => (w === 'removed' ? 'removed' : w.state));
  }

  /** Actions since the last call, as short strings. */
  take(): string[] {
    return this.actions.splice(0).map(show);
  }

  /** The seq of the last resolve asked for. */
  resolveSeq(): number {
    return this.local.resolveSeq;
  }

  /** `null`: the blueprint no longer names the slice. */
  resolve(spec: SliceSpec | null = SPEC, problem?: string): LifecycleStep {
    return this.feed({ type: 'resolved', seq: this.resolveSeq(), resolution: { spec: spec ?? undefined, ...(problem === undefined ? {} : { problem }) } });
  }

  /** LOAD → … → ACTIVE with a health check that passes at the first probe. */
  toActive(spec: SliceSpec = SPEC): void {
    this.leader(placement('LOAD'));
    this.resolve(spec);
    this.feed(spawned());
    if (spec.health) this.feed({ type: 'probed', instanceId: ID, ok: true, detail: '200' });
    expect(this.record?.state).toBe('ACTIVE');
    this.take();
    this.written.length = 0;
  }
}

function show(action: LifecycleAction): string {
  switch (action.type) {
    case 'resolve':
      return `resolve ${action.blueprint}`;
    case 'spawn':
      return `spawn ${action.kind} ${action.request.instanceId}`;
    case 'probe':
      return `probe ${action.url}`;
    case 'stop':
      return `stop ${action.instanceId}`;
    case 'publish':
      return `publish ${action.entryPoint}`;
    case 'unpublish':
      return `unpublish ${action.entryPoint}:${action.instance}`;
  }
}

describe('slice lifecycle: the seed 003 diagram', () => {
  it('drives LOAD → LOADING → LOADED → ACTIVATING → ACTIVE, health-gated, then publishes every entry point', () => {
    const key = new Key();
    key.leader(placement('LOAD', { reason: 'placed: most free memory' }));
    expect(key.states()).toEqual(['LOADING']);
    expect(key.take()).toEqual(['resolve bp']);
    key.now += 5;
    key.resolve();
    expect(key.states()).toEqual(['LOADING', 'LOADED', 'ACTIVATING']);
    expect(key.written[1]).toMatchObject({ reason: LOADED_REASON });
    expect(key.take()).toEqual([`spawn process ${ID}`]);
    const spawn = key.last!.actions[0];
    expect(spawn).toMatchObject({ type: 'spawn', request: { artifact: ART, run: SPEC.run, portsWanted: 1, resources: DEFAULT_POLICY.defaultResources } });

    key.feed(spawned(4100));
    expect(key.take()).toEqual(['probe http://127.0.0.1:4100/health']);
    expect(key.record?.state).toBe('ACTIVATING');
    key.feed({ type: 'probed', instanceId: ID, ok: false, detail: 'answered 503' });
    expect(key.last!.wakeAt).toBe(key.now + 200);
    expect(key.tick(100).actions).toEqual([]);
    expect(key.tick(100).actions).toMatchObject([{ type: 'probe' }]);
    key.feed({ type: 'probed', instanceId: ID, ok: true, detail: 'answered 200' });

    expect(key.states()).toEqual(['LOADING', 'LOADED', 'ACTIVATING', 'ACTIVE']);
    expect(key.record).toMatchObject({ state: 'ACTIVE', address: '127.0.0.1:4100', instance: 2, epoch: 7, blueprint: 'bp', placedAt: T0, restarts: 0, timestamp: key.now });
    expect(key.written.map((w) => (w === 'removed' ? 0 : w.version))).toEqual([2, 3, 4, 5]);
    expect(key.take()).toEqual(['probe http://127.0.0.1:4100/health', 'publish http', 'publish admin']);
    expect(key.last!.actions).toEqual([
      { type: 'publish', entryPoint: 'http', endpoint: { instance: 2, state: 'ACTIVE', timestamp: key.now, address: '127.0.0.1:4100', path: '/', epoch: 7 } },
      { type: 'publish', entryPoint: 'admin', endpoint: { instance: 2, state: 'ACTIVE', timestamp: key.now, address: '127.0.0.1:4100', path: '/admin', epoch: 7 } },
    ]);
    // Steady: a tick or the echo of its own write does nothing.
    expect(key.tick(1_000)).toMatchObject({ actions: [], write: undefined, wakeAt: undefined });
    expect(key.feed({ type: 'changed', entry: { record: key.record!, revision: key.revision } })).toMatchObject({ actions: [], write: undefined });
  });

  it('is ACTIVE as soon as it runs when the spec has no health check, with one `http` endpoint at /', () => {
    const key = new Key();
    const { health: _h, entryPoints: _e, ...bare } = SPEC;
    key.toActive(bare);
    const fresh = new Key();
    fresh.leader(placement('LOAD'));
    fresh.resolve(bare);
    fresh.feed(spawned(4200));
    expect(fresh.states()).toEqual(['LOADING', 'LOADED', 'ACTIVATING', 'ACTIVE']);
    expect(fresh.take()).toEqual(['resolve bp', `spawn process ${ID}`, 'publish http']);
  });

  it('DEACTIVATE → DEACTIVATING (unpublish, stop) → LOADED, which stays until ACTIVATE → ACTIVATING → ACTIVE', () => {
    const key = new Key();
    key.toActive();
    key.leader(placement('DEACTIVATE', { version: 9 }));
    expect(key.states()).toEqual(['DEACTIVATING']);
    expect(key.written[0]).toMatchObject({ version: 10 });
    expect(key.take()).toEqual(['unpublish http:2', 'unpublish admin:2', `stop ${ID}`]);
    key.feed({ type: 'exited', exit: exit({ requested: true, exitCode: 0 }) });
    expect(key.states()).toEqual(['DEACTIVATING', 'LOADED']);
    expect(key.record).toMatchObject({ state: 'LOADED', reason: DEACTIVATED_REASON });
    expect(key.record?.address).toBeUndefined();
    // The stop's own resolution after the exit changes nothing; LOADED stays.
    expect(key.feed({ type: 'stopped', instanceId: ID }).actions).toEqual([]);
    expect(key.tick(60_000)).toMatchObject({ actions: [], write: undefined });
    expect(key.take()).toEqual([]);

    key.leader(placement('ACTIVATE', { version: 20 }));
    expect(key.states()).toEqual(['DEACTIVATING', 'LOADED', 'ACTIVATING']);
    expect(key.take()).toEqual([`spawn process ${ID}`]); // the spec resolved in LOADING is kept
    key.feed(spawned(4300));
    key.feed({ type: 'probed', instanceId: ID, ok: true, detail: '200' });
    expect(key.record).toMatchObject({ state: 'ACTIVE', address: '127.0.0.1:4300', version: 22, restarts: 0 });
    expect(key.take()).toEqual(['probe http://127.0.0.1:4300/health', 'publish http', 'publish admin']);
  });

  it('UNLOAD → UNLOADING (unpublish, stop) → key removed, and the manager may forget it', () => {
    const key = new Key();
    key.toActive();
    key.leader(placement('UNLOAD', { reason: 'scaled down' }));
    expect(key.states()).toEqual(['UNLOADING']);
    expect(key.written[0]).toMatchObject({ reason: 'scaled down' });
    expect(key.take()).toEqual(['unpublish http:2', 'unpublish admin:2', `stop ${ID}`]);
    expect(key.record?.state).toBe('UNLOADING');
    key.feed({ type: 'stopped', instanceId: ID });
    expect(key.states()).toEqual(['UNLOADING', 'removed']);
    expect(key.record).toBeUndefined();
    expect(isSettledGone(key.local)).toBe(true);
    // The watch's delete afterwards is nothing new.
    expect(key.feed({ type: 'changed', entry: undefined })).toMatchObject({ actions: [], write: undefined });
  });

  it('UNLOAD of a LOADED key removes it at once; UNLOAD during a spawn stops what the spawn started first', () => {
    const loaded = new Key();
    loaded.toActive();
    loaded.leader(placement('DEACTIVATE'));
    loaded.feed({ type: 'stopped', instanceId: ID });
    loaded.leader(placement('UNLOAD'));
    expect(loaded.states()).toEqual(['DEACTIVATING', 'LOADED', 'UNLOADING', 'removed']);

    const key = new Key();
    key.leader(placement('LOAD'));
    key.resolve();
    expect(key.take()).toEqual(['resolve bp', `spawn process ${ID}`]);
    key.leader(placement('UNLOAD'));
    expect(key.states().at(-1)).toBe('UNLOADING');
    expect(key.take()).toEqual([]);
    key.feed(spawned());
    expect(key.take()).toEqual([`stop ${ID}`]);
    expect(key.record?.state).toBe('UNLOADING');
    key.feed({ type: 'stopped', instanceId: ID });
    expect(key.states().at(-1)).toBe('removed');
  });

  it('ACTIVATE of an ACTIVE instance goes through ACTIVATING without spawning it again', () => {
    const key = new Key();
    key.toActive();
    key.leader(placement('ACTIVATE'));
    expect(key.states()).toEqual(['ACTIVATING', 'ACTIVE']);
    expect(key.take()).toEqual([]);
  });

  it('a new LOAD over a running instance stops it before LOADED, then spawns the new placement', () => {
    const key = new Key();
    key.toActive();
    key.leader(placement('LOAD', { epoch: 8 }));
    expect(key.states()).toEqual(['LOADING']);
    expect(key.take()).toEqual(['unpublish http:2', 'unpublish admin:2', `stop ${ID}`, 'resolve bp']);
    key.resolve();
    expect(key.states()).toEqual(['LOADING']); // the old instance still stops
    key.feed({ type: 'stopped', instanceId: ID });
    expect(key.states()).toEqual(['LOADING', 'LOADED', 'ACTIVATING']);
    expect(key.take()).toEqual([`spawn process ${instanceIdOf(ART, { instance: 2, epoch: 8 })}`]);
  });
});

describe('slice lifecycle: FAILED from each step', () => {
  it('LOADING: the blueprint no longer names the slice, the runtime cannot run it, or resolving takes too long', () => {
    const gone = new Key();
    gone.leader(placement('LOAD'));
    gone.resolve(null);
    expect(gone.record).toMatchObject({ state: 'FAILED', reason: `LOADING: blueprint "bp" no longer names ${ART}` });

    const missing = new Key();
    missing.leader(placement('LOAD'));
    missing.resolve(SPEC, 'executable "/nope/echo" not found');
    expect(missing.states()).toEqual(['LOADING', 'FAILED']);
    expect(missing.record?.reason).toBe('LOADING: executable "/nope/echo" not found');
    expect(missing.take()).toEqual(['resolve bp']); // nothing was spawned

    const slow = new Key();
    slow.leader(placement('LOAD'));
    expect(slow.last!.wakeAt).toBe(T0 + 10_000);
    slow.tick(9_999);
    expect(slow.record?.state).toBe('LOADING');
    slow.tick(1);
    expect(slow.record).toMatchObject({ state: 'FAILED', reason: 'LOADING took longer than 10000 ms (timeouts.loadingMs); the slice spec was not resolved in time' });
    // A late answer changes nothing: FAILED stays FAILED.
    expect(slow.resolve().write).toBeUndefined();
    expect(slow.tick(60_000)).toMatchObject({ actions: [], write: undefined, wakeAt: undefined });
  });

  it('LOADING: a channel that cannot answer the spec is asked again after retryMs, and the timeout names what it said', () => {
    const key = new Key();
    key.leader(placement('LOAD'));
    key.feed({ type: 'resolveFailed', seq: key.resolveSeq(), message: 'no answer from the server within 15000 ms to spec' });
    expect(key.take()).toEqual(['resolve bp']);
    key.tick(1_000);
    expect(key.take()).toEqual(['resolve bp']);
    key.feed({ type: 'resolveFailed', seq: key.resolveSeq(), message: 'no answer from the server within 15000 ms to spec' });
    key.tick(9_000);
    expect(key.record).toMatchObject({ state: 'FAILED', reason: 'LOADING took longer than 10000 ms (timeouts.loadingMs); resolving the spec failed: no answer from the server within 15000 ms to spec' });
  });

  it('ACTIVATING: a spawn that fails for good fails the key; a retryable one is tried again with backoff until the timeout', () => {
    const key = new Key();
    key.leader(placement('LOAD'));
    key.resolve();
    key.feed({ type: 'spawned', instanceId: ID, outcome: { ok: false, reason: 'executable "echo" not found (ENOENT)', retryable: false } });
    expect(key.record).toMatchObject({ state: 'FAILED', reason: 'ACTIVATING: spawn failed: executable "echo" not found (ENOENT)' });

    const retry = new Key(policyWith({ timeouts: { ...DEFAULT_POLICY.timeouts, activatingMs: 2_000 } }));
    retry.leader(placement('LOAD'));
    retry.resolve();
    retry.take();
    retry.feed({ type: 'spawned', instanceId: ID, outcome: { ok: false, reason: 'no free port', retryable: true } });
    expect(retry.record?.state).toBe('ACTIVATING');
    expect(retry.last!.wakeAt).toBe(retry.now + 500);
    retry.tick(500);
    expect(retry.take()).toEqual([`spawn process ${ID}`]);
    retry.feed({ type: 'spawned', instanceId: ID, outcome: { ok: false, reason: 'no free port', retryable: true } });
    expect(retry.last!.wakeAt).toBe(retry.now + 1_000);
    retry.tick(1_000);
    retry.feed({ type: 'spawned', instanceId: ID, outcome: { ok: false, reason: 'no free port', retryable: true } });
    retry.tick(500);
    expect(retry.record).toMatchObject({ state: 'FAILED', reason: 'ACTIVATING took longer than 2000 ms (timeouts.activatingMs); the last spawn failed: no free port' });
  });

  it('ACTIVATING: a health check that never passes fails the key after the activating timeout and stops the instance', () => {
    const key = new Key(policyWith({ timeouts: { ...DEFAULT_POLICY.timeouts, activatingMs: 1_000 } }));
    key.leader(placement('LOAD'));
    key.resolve();
    key.feed(spawned(4100));
    for (let i = 0; i < 4; i++) {
      key.feed({ type: 'probed', instanceId: ID, ok: false, detail: 'answered 503' });
      key.tick(200);
    }
    expect(key.record?.state).toBe('ACTIVATING');
    key.feed({ type: 'probed', instanceId: ID, ok: false, detail: 'connect ECONNREFUSED' });
    key.tick(200);
    expect(key.record).toMatchObject({ state: 'FAILED', reason: 'ACTIVATING took longer than 1000 ms (timeouts.activatingMs); health check GET http://127.0.0.1:4100/health never answered 2xx (last: connect ECONNREFUSED)' });
    expect(key.take().at(-1)).toBe(`stop ${ID}`);
    // A probe answering late does not bring it back.
    expect(key.feed({ type: 'probed', instanceId: ID, ok: true, detail: '200' }).write).toBeUndefined();
    key.feed({ type: 'stopped', instanceId: ID });
    expect(key.record?.state).toBe('FAILED');
    expect(key.states()).toEqual(['LOADING', 'LOADED', 'ACTIVATING', 'FAILED']);
  });

  it('ACTIVATING: a runtime that never answers the spawn fails the key, and what the spawn started after is stopped', () => {
    const key = new Key(policyWith({ timeouts: { ...DEFAULT_POLICY.timeouts, activatingMs: 1_000 } }));
    key.leader(placement('LOAD'));
    key.resolve();
    key.tick(1_000);
    expect(key.record).toMatchObject({ state: 'FAILED', reason: 'ACTIVATING took longer than 1000 ms (timeouts.activatingMs); the runtime had not answered the spawn' });
    key.take();
    key.feed(spawned());
    expect(key.take()).toEqual([`stop ${ID}`]);
    expect(key.local.spawning).toBeUndefined();
  });

  it('DEACTIVATING and UNLOADING: a stop that never ends fails the key after its timeout', () => {
    const deact = new Key();
    deact.toActive();
    deact.leader(placement('DEACTIVATE'));
    deact.tick(15_000);
    expect(deact.record).toMatchObject({ state: 'FAILED', reason: 'DEACTIVATING took longer than 15000 ms (timeouts.deactivatingMs)' });

    const unload = new Key(policyWith({ timeouts: { ...DEFAULT_POLICY.timeouts, unloadingMs: 3_000 } }));
    unload.toActive();
    unload.leader(placement('UNLOAD'));
    expect(unload.last!.wakeAt).toBe(unload.now + 3_000);
    unload.tick(3_000);
    expect(unload.record).toMatchObject({ state: 'FAILED', reason: 'UNLOADING took longer than 3000 ms (timeouts.unloadingMs)' });
    // FAILED stays FAILED, and no stop is asked twice.
    unload.take();
    expect(unload.tick(60_000).actions).toEqual([]);
  });
});

describe('slice lifecycle: restarts', () => {
  it('an unrequested exit while ACTIVE unpublishes, writes ACTIVATING with the count, and restarts after 0.5 s, 1 s, 2 s', () => {
    const key = new Key();
    key.toActive();
    const delays: number[] = [];
    for (let n = 1; n <= 3; n++) {
      key.feed({ type: 'exited', exit: exit({ exitCode: null, signal: 'SIGKILL', stderrTail: '' }) });
      expect(key.take()).toEqual(['unpublish http:2', 'unpublish admin:2']);
      expect(key.record).toMatchObject({ state: 'ACTIVATING', restarts: n, reason: `restart ${n}: the instance was killed by SIGKILL` });
      expect(key.record?.address).toBeUndefined();
      const wake = key.last!.wakeAt!;
      delays.push(wake - key.now);
      expect(key.tick(wake - key.now - 1).actions).toEqual([]);
      key.tick(1);
      expect(key.take()).toEqual([`spawn process ${ID}`]);
      key.feed(spawned(4100 + n));
      key.feed({ type: 'probed', instanceId: ID, ok: true, detail: '200' });
      expect(key.record).toMatchObject({ state: 'ACTIVE', restarts: n, address: `127.0.0.1:${4100 + n}` });
      expect(key.take()).toEqual([`probe http://127.0.0.1:${4100 + n}/health`, 'publish http', 'publish admin']);
    }
    expect(delays).toEqual([500, 1_000, 2_000]);
  });

  it('fails the key on the exit after N restarts within the window, with the exit code and the stderr tail', () => {
    const key = new Key();
    key.toActive();
    for (let n = 1; n <= 3; n++) {
      key.feed({ type: 'exited', exit: exit() });
      key.tick(key.last!.wakeAt! - key.now);
      key.feed(spawned());
      // Exits before its health check passes count too.
      if (n === 3) break;
      key.feed({ type: 'probed', instanceId: ID, ok: true, detail: '200' });
    }
    key.take();
    key.feed({ type: 'exited', exit: exit({ exitCode: 3, stderrTail: 'line 1\nEADDRINUSE\n' }) });
    expect(key.record).toMatchObject({ state: 'FAILED', restarts: 3, reason: 'ACTIVATING: exited with code 3 after 3 restarts within 300000 ms; stderr: line 1\nEADDRINUSE' });
    expect(key.take()).toEqual([]); // nothing runs, nothing was published
    expect(key.tick(60_000)).toMatchObject({ actions: [], write: undefined });
  });

  it('counts only restarts within the window; the backoff is capped', () => {
    const key = new Key(policyWith({ restart: { maxRestarts: 2, windowMs: 10_000, baseDelayMs: 500, maxDelayMs: 8_000 } }));
    key.toActive();
    for (let n = 1; n <= 5; n++) {
      key.feed({ type: 'exited', exit: exit() });
      expect(key.record?.state).toBe('ACTIVATING');
      key.tick(key.last!.wakeAt! - key.now);
      key.feed(spawned());
      key.feed({ type: 'probed', instanceId: ID, ok: true, detail: '200' });
      key.tick(6_000); // two exits never fall within one 10 s window
    }
    expect(key.record).toMatchObject({ state: 'ACTIVE', restarts: 5 });
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => restartDelay(n, DEFAULT_POLICY.restart))).toEqual([500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
  });

  it('an exit it asked for, or of an instance it no longer tracks, is no restart', () => {
    const key = new Key();
    key.toActive();
    expect(key.feed({ type: 'exited', exit: exit({ instanceId: `${ART}#2@6` }) })).toMatchObject({ actions: [], write: undefined });
    key.leader(placement('DEACTIVATE'));
    key.feed({ type: 'exited', exit: exit({ requested: false }) }); // it died while being stopped
    expect(key.record).toMatchObject({ state: 'LOADED', reason: DEACTIVATED_REASON, restarts: 0 });
  });
});

describe('slice lifecycle: compare-and-set and deleted keys', () => {
  it('a write that loses to the leader writes nothing more until the watch brings the newer record, then acts on it', () => {
    const key = new Key();
    key.toActive();
    key.beforeWrite = () => key.store(placement('UNLOAD', { version: 30 }));
    key.feed({ type: 'exited', exit: exit() }); // decides ACTIVATING; the leader's UNLOAD lands first
    expect(key.written).toEqual([]);
    expect(key.record?.state).toBe('UNLOAD');
    const lostAt = key.revision - 1;
    expect(key.local.lostAt).toBe(lostAt);
    expect(key.tick(999).write).toBeUndefined();
    // Past retryMs it is tried once more on the same revision (an agent's channel may have lost only the answer), and loses again.
    key.tick(1);
    expect(key.attempts.slice(-2)).toEqual([lostAt, lostAt]);
    expect(key.local.lostAt).toBe(lostAt);
    key.feed({ type: 'changed', entry: { record: key.record!, revision: key.revision } });
    expect(key.states()).toEqual(['UNLOADING', 'removed']);
    expect(key.written[0]).toMatchObject({ version: 31 });
  });

  it('a key deleted under it (the leader forgot it) stops and unpublishes, whether seen by the watch or by a write', () => {
    const watched = new Key();
    watched.toActive();
    watched.leader(undefined);
    expect(watched.take()).toEqual(['unpublish http:2', 'unpublish admin:2', `stop ${ID}`]);
    expect(isSettledGone(watched.local)).toBe(false);
    watched.feed({ type: 'stopped', instanceId: ID });
    expect(isSettledGone(watched.local)).toBe(true);
    expect(watched.written).toEqual([]);

    const writing = new Key();
    writing.leader(placement('LOAD'));
    writing.resolve();
    writing.feed(spawned());
    writing.take();
    writing.beforeWrite = () => writing.store(undefined);
    writing.feed({ type: 'probed', instanceId: ID, ok: true, detail: '200' }); // decides ACTIVE; the key is gone
    expect(writing.take()).toEqual([`stop ${ID}`]);
    expect(writing.local.entry).toBeUndefined();
  });

  it('a write the store refuses for another reason is tried again after retryMs', () => {
    const key = new Key();
    key.failWrites = true;
    key.leader(placement('LOAD'));
    expect(key.written).toEqual([]);
    expect(key.last!.wakeAt).toBe(T0 + 1_000);
    key.failWrites = false;
    key.tick(999);
    expect(key.written).toEqual([]);
    key.tick(1);
    expect(key.states()).toEqual(['LOADING']);
  });

  it('a publish that failed is made again after retryMs', () => {
    const key = new Key();
    key.toActive();
    key.feed({ type: 'publishFailed', message: 'store unreachable' });
    expect(key.take()).toEqual([]);
    key.tick(1_000);
    expect(key.take()).toEqual(['publish http', 'publish admin']);
  });
});

describe('slice lifecycle: a fresh manager over what a killed agent left', () => {
  /** A new process sees the key for the first time, in the state the old one wrote. */
  function restarted(record: SliceRecord): Key {
    const key = new Key();
    key.leader(record);
    return key;
  }

  it('ACTIVE: writes ACTIVATING first, unpublishes the stale endpoints once the spec names them, and spawns again', () => {
    const key = restarted(placement('ACTIVE', { address: '127.0.0.1:4100', restarts: 2, version: 12 }));
    expect(key.states()).toEqual(['ACTIVATING']);
    expect(key.record).toMatchObject({ restarts: 2, version: 13, reason: 'ACTIVE but not running on this node (the agent restarted): spawning it again' });
    expect(key.take()).toEqual(['resolve bp']);
    key.resolve();
    expect(key.take()).toEqual(['unpublish http:2', 'unpublish admin:2', `spawn process ${ID}`]);
    key.feed(spawned(4500));
    key.feed({ type: 'probed', instanceId: ID, ok: true, detail: '200' });
    expect(key.record).toMatchObject({ state: 'ACTIVE', restarts: 2, address: '127.0.0.1:4500' });
  });

  it('ACTIVATING and LOADING are driven again from where they were', () => {
    const activating = restarted(placement('ACTIVATING', { restarts: 1 }));
    expect(activating.take()).toEqual(['resolve bp']);
    activating.resolve();
    expect(activating.take()).toEqual(['unpublish http:2', 'unpublish admin:2', `spawn process ${ID}`]);
    expect(activating.written).toEqual([]);

    const loading = restarted(placement('LOADING'));
    expect(loading.take()).toEqual(['resolve bp']);
    loading.resolve();
    expect(loading.states()).toEqual(['LOADED', 'ACTIVATING']);
  });

  it('LOADED after a LOAD goes on to ACTIVATING; LOADED after a DEACTIVATE stays', () => {
    const placed = restarted(placement('LOADED', { reason: LOADED_REASON }));
    expect(placed.states()).toEqual(['ACTIVATING']);
    const deactivated = restarted(placement('LOADED', { reason: DEACTIVATED_REASON }));
    expect(deactivated.written).toEqual([]);
    expect(deactivated.take()).toEqual([]);
  });

  it('DEACTIVATING ends in LOADED and UNLOADING in the removal, after the stale endpoints are unpublished', () => {
    const deact = restarted(placement('DEACTIVATING'));
    expect(deact.written).toEqual([]);
    deact.resolve();
    expect(deact.take()).toEqual(['resolve bp', 'unpublish http:2', 'unpublish admin:2']);
    expect(deact.record).toMatchObject({ state: 'LOADED', reason: DEACTIVATED_REASON });

    const unload = restarted(placement('UNLOADING'));
    unload.resolve(null); // the blueprint is gone: nothing names its endpoints any more
    expect(unload.states()).toEqual(['removed']);
  });

  it('FAILED stays FAILED', () => {
    const key = restarted(placement('FAILED', { reason: 'ACTIVE: exited with code 1 after 3 restarts' }));
    key.resolve();
    expect(key.written).toEqual([]);
    expect(key.take()).toEqual(['resolve bp', 'unpublish http:2', 'unpublish admin:2']);
    expect(key.tick(60_000)).toMatchObject({ actions: [], write: undefined, wakeAt: undefined });
  });

  it('commands are acted on as they come', () => {
    const key = restarted(placement('UNLOAD'));
    key.resolve();
    expect(key.states()).toEqual(['UNLOADING', 'removed']);
  });
});

describe('slice lifecycle: determinism', () => {
  it('the same events give the same records and actions', () => {
    const run = (): unknown => {
      const key = new Key();
      key.toActive();
      key.feed({ type: 'exited', exit: exit() });
      key.tick(500);
      return { written: key.written, actions: key.take(), local: key.local };
    };
    expect(run()).toEqual(run());
  });
});

function policyWith(changes: Partial<LifecyclePolicy>): LifecyclePolicy {
  return { ...DEFAULT_POLICY, ...changes };
}

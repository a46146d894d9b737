/**
 * Behaviour every SliceRuntime adapter must show against the real thing (processes on this host,
 * containers on a real engine): addresses that answer HTTP, distinct ports, the env delivered, stops
 * that end the instance and free its port, exits reported with their code and stderr, nothing started
 * for a missing executable or image, and a fresh runtime cleaning up what a killed agent left.
 *
 * The fixture's `service` requests must answer `GET /health` with 200 and `GET /whoami` with JSON
 * holding `instance` (its ARCNET_INSTANCE_ID) and `env.CONTRACT_MARK` (that variable of its env).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PortRange } from '../../src/services/port-range.ts';
import type { InstanceExit, ListenAddress, SliceRuntime, SpawnOutcome, SpawnRequest } from '../../src/services/ports.ts';
import { until } from '../support/until.ts';

export interface RuntimeUnderTest {
  readonly runtime: SliceRuntime;
  /** The range its host ports come from. */
  readonly ports: PortRange;
}

export type RequestShape =
  /** Answers /health and /whoami until stopped. */
  | { readonly kind: 'service' }
  /** Writes `message` to stderr and exits with `code` by itself, soon after it starts. */
  | { readonly kind: 'exits'; readonly code: number; readonly message: string }
  /** Names an executable (process) or image (container) that is not on this node. */
  | { readonly kind: 'missing' };

/**
 * Each call of `makeRuntime` is a new runtime over the same node state (pid-file directory, labels) and
 * the same port range, as an agent restarted on the same node would be.
 */
export type MakeRuntime = () => Promise<RuntimeUnderTest>;
export type MakeRequest = (instanceId: string, shape: RequestShape) => SpawnRequest;

type Started = Extract<SpawnOutcome, { ok: true }>;

const HEALTH_WITHIN_MS = 8_000;
const GRACE_MS = 3_000;

function started(outcome: SpawnOutcome): Started {
  if (!outcome.ok) throw new Error(`expected the instance to start, got ${JSON.stringify(outcome)}`);
  return outcome;
}

const url = (address: ListenAddress, path: string): string => `http://${address.host}:${address.port}${path}`;

async function get(address: ListenAddress, path: string): Promise<Response> {
  return fetch(url(address, path), { signal: AbortSignal.timeout(1_000) });
}

/** Polls /health until it answers 200: a process or container listens a little after it starts. */
async function healthy(address: ListenAddress): Promise<void> {
  await until(async () => (await get(address, '/health')).status === 200, `GET ${url(address, '/health')} → 200`, HEALTH_WITHIN_MS, {
    intervalMs: 50,
    retryOnError: true,
  });
}

/** True once nothing accepts a request at the address any more. */
async function silent(address: ListenAddress): Promise<boolean> {
  try {
    await (await get(address, '/health')).text();
    return false;
  } catch {
    return true;
  }
}

/** Resolves `promise`, or fails the test naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export function sliceRuntimeContract(name: string, makeRuntime: MakeRuntime, makeRequest: MakeRequest): void {
  describe(`SliceRuntime contract: ${name}`, () => {
    let subject: RuntimeUnderTest;
    let sequence = 0;
    /** Unique per test run, so two runs on one host never share an instance id (or a container name). */
    const id = (label: string): string => `org.arcnet.test:${label}:1.0#${++sequence}@${process.pid}${Date.now() % 100_000}`;
    const service = (label: string, env: Record<string, string> = {}): SpawnRequest => {
      const request = makeRequest(id(label), { kind: 'service' });
      return { ...request, env: { ...request.env, ...env } };
    };

    beforeAll(async () => {
      subject = await makeRuntime();
    });

    afterAll(async () => {
      await subject?.runtime.close();
    });

    it('spawns an instance whose first address answers HTTP, and tracks it in running()', async () => {
      const request = service('health');
      const outcome = started(await subject.runtime.spawn(request));
      try {
        expect(outcome.response.instanceId).toBe(request.instanceId);
        expect(outcome.response.addresses.length).toBeGreaterThanOrEqual(1);
        expect(typeof outcome.response.limits.applied).toBe('boolean');
        if (!outcome.response.limits.applied) expect(outcome.response.limits.note).toMatch(/\S/);
        expect(subject.runtime.running()).toContain(request.instanceId);
        await healthy(outcome.response.addresses[0]!);
      } finally {
        await subject.runtime.stop(request.instanceId, GRACE_MS);
      }
      expect(subject.runtime.running()).not.toContain(request.instanceId);
    });

    it('gives two instances distinct ports, each answering as itself with the env it was given', async () => {
      const requests = [service('twin-a', { CONTRACT_MARK: 'two words; ü=1 $HOME' }), service('twin-b', { CONTRACT_MARK: 'b' })];
      const outcomes = (await Promise.all(requests.map((request) => subject.runtime.spawn(request)))).map(started);
      try {
        const first = outcomes.map((outcome) => outcome.response.addresses[0]!);
        expect(new Set(first.map((address) => address.port)).size).toBe(2);
        for (const address of first) expect(subject.ports.isHeld(address.port)).toBe(true);
        for (const [i, address] of first.entries()) {
          await healthy(address);
          const whoami = (await (await get(address, '/whoami')).json()) as { instance?: unknown; env?: Record<string, unknown> };
          expect(whoami.instance).toBe(requests[i]!.instanceId);
          expect(whoami.env?.['CONTRACT_MARK']).toBe(requests[i]!.env['CONTRACT_MARK']);
        }
        expect([...subject.runtime.running()].sort()).toEqual(expect.arrayContaining(requests.map((request) => request.instanceId)));
      } finally {
        await Promise.all(requests.map((request) => subject.runtime.stop(request.instanceId, GRACE_MS)));
      }
    });

    it('stops an instance: exited says requested, its port is released and answers no more', async () => {
      const request = service('stop');
      const outcome = started(await subject.runtime.spawn(request));
      const address = outcome.response.addresses[0]!;
      await healthy(address);
      const began = performance.now();
      await subject.runtime.stop(request.instanceId, GRACE_MS);
      const exit = await within(outcome.exited, 1_000, 'exited after stop resolved');
      expect(exit).toMatchObject({ instanceId: request.instanceId, requested: true });
      expect(performance.now() - began).toBeLessThan(GRACE_MS + 5_000);
      expect(subject.runtime.running()).not.toContain(request.instanceId);
      for (const { port } of outcome.response.addresses) expect(subject.ports.isHeld(port)).toBe(false);
      await until(() => silent(address), `${url(address, '/health')} to stop answering`, 5_000, { intervalMs: 50 });
    });

    it('resolves at once a stop of an instance it does not run', async () => {
      await within(subject.runtime.stop('org.arcnet.test:nobody:1.0#1@1', GRACE_MS), 500, 'stop of an unknown id');
    });

    it('reports an instance that exits by itself with its exit code and the tail of its stderr', async () => {
      const request = makeRequest(id('exits'), { kind: 'exits', code: 3, message: 'contract: giving up on purpose' });
      const outcome = started(await subject.runtime.spawn(request));
      const exit: InstanceExit = await within(outcome.exited, 15_000, 'the self-exiting instance to end');
      expect(exit).toMatchObject({ instanceId: request.instanceId, exitCode: 3, requested: false });
      expect(exit.stderrTail).toContain('contract: giving up on purpose');
      expect(subject.runtime.running()).not.toContain(request.instanceId);
      for (const { port } of outcome.response.addresses) expect(subject.ports.isHeld(port)).toBe(false);
      // Stopping what has already ended is harmless.
      await within(subject.runtime.stop(request.instanceId, GRACE_MS), 500, 'stop after the exit');
    });

    it('starts nothing for a missing executable or image, says why naming it, and that retrying will not help', async () => {
      const request = makeRequest(id('missing'), { kind: 'missing' });
      const missing = request.run.kind === 'process' ? request.run.command[0]! : request.run.image;
      const heldBefore = subject.ports.heldPorts();
      const outcome = await subject.runtime.spawn(request);
      expect(outcome).toMatchObject({ ok: false, retryable: false });
      if (!outcome.ok) expect(outcome.reason).toContain(missing);
      expect(subject.runtime.running()).not.toContain(request.instanceId);
      expect(subject.ports.heldPorts()).toEqual(heldBefore);
    });

    it('refuses a second spawn of an instance id it already runs', async () => {
      const request = service('twice');
      started(await subject.runtime.spawn(request));
      try {
        expect(await subject.runtime.spawn(request)).toMatchObject({ ok: false, retryable: false });
        expect(subject.runtime.running().filter((running) => running === request.instanceId)).toHaveLength(1);
      } finally {
        await subject.runtime.stop(request.instanceId, GRACE_MS);
      }
    });

    it('removes what a killed agent left: a new runtime on the same node ends its instances', async () => {
      const killed = await makeRuntime();
      const request = service('leftover');
      const outcome = started(await killed.runtime.spawn(request));
      const address = outcome.response.addresses[0]!;
      await healthy(address);
      // The first runtime is dropped without a stop, as a killed agent would be; the next one cleans up.
      const next = await makeRuntime();
      try {
        expect(await next.runtime.removeLeftovers()).toBeGreaterThanOrEqual(1);
        await until(() => silent(address), `the leftover at ${url(address, '/health')} to stop answering`, 10_000, { intervalMs: 50 });
        const exit = await within(outcome.exited, 10_000, "the dropped runtime's instance to end");
        expect(exit.requested).toBe(false);
        expect(await next.runtime.removeLeftovers()).toBe(0);
        expect(next.runtime.running()).toEqual([]);
      } finally {
        await killed.runtime.close();
        await next.runtime.close();
      }
    });

    it('close stops every instance and spawns nothing afterwards', async () => {
      const own = await makeRuntime();
      try {
        const requests = [service('close-a'), service('close-b')];
        const outcomes = (await Promise.all(requests.map((request) => own.runtime.spawn(request)))).map(started);
        for (const outcome of outcomes) await healthy(outcome.response.addresses[0]!);
        await own.runtime.close();
        for (const outcome of outcomes) {
          expect(await within(outcome.exited, 1_000, 'exited after close')).toMatchObject({ requested: true });
          const address = outcome.response.addresses[0]!;
          await until(() => silent(address), `${url(address, '/health')} to stop answering`, 5_000, { intervalMs: 50 });
        }
        expect(own.runtime.running()).toEqual([]);
        expect(own.ports.heldPorts()).toEqual([]);
        expect(await own.runtime.spawn(service('after-close'))).toMatchObject({ ok: false });
      } finally {
        // Closing twice is harmless; this one is for a failure above.
        await own.runtime.close();
      }
    });

    // Last on purpose (tests in a file run in order): everything above has run by now.
    it('runs nothing once every test has stopped its instances', () => {
      expect(subject.runtime.running()).toEqual([]);
      expect(subject.ports.heldPorts()).toEqual([]);
    });
  });
}

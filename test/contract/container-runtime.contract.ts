/**
 * Behaviour every ContainerRuntime adapter must show, against a real engine: output and exit codes as
 * the command produced them, input bytes delivered intact, limits enforced, timeouts and cancellation
 * that end the container promptly, and nothing left behind.
 *
 * The image must hold a POSIX shell with busybox-like applets (sh, cat, head, tail, sleep, ls, sha256sum).
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerOutcome, ContainerRuntime, ContainerSpec } from '../../src/agent/ports.ts';
import { until } from '../support/until.ts';

export interface ContainerRuntimeFixture {
  readonly runtime: ContainerRuntime;
  /** Image to run; must be present on the engine. */
  readonly image: string;
  /** Containers that still exist carrying all of `labels`, whatever their state. */
  leftovers(labels: Readonly<Record<string, string>>): Promise<readonly string[]>;
  close(): Promise<void>;
}

const MiB = 1024 * 1024;
const HELLO_SHA256 = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03';
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

type Exited = Extract<ContainerOutcome, { kind: 'exited' }>;

function exited(outcome: ContainerOutcome): Exited {
  if (outcome.kind !== 'exited') throw new Error(`expected the container to exit, got ${JSON.stringify(summary(outcome))}`);
  return outcome;
}

/** Readable in a failure message: bytes as text, cut short. */
function summary(outcome: ContainerOutcome): Record<string, unknown> {
  const shown: Record<string, unknown> = { ...outcome };
  for (const key of ['stdout', 'stderr'] as const) {
    if (key in outcome) shown[key] = text((outcome as Exited)[key]).slice(0, 400);
  }
  return shown;
}

export function containerRuntimeContract(name: string, open: () => Promise<ContainerRuntimeFixture>): void {
  describe(`ContainerRuntime contract: ${name}`, () => {
    let fixture: ContainerRuntimeFixture;
    // Every container of this suite carries it, so the leftover check sees this suite's containers only.
    const suiteLabel = { 'arcnet.test-suite': `contract-${process.pid}-${Date.now()}` };

    beforeAll(async () => {
      fixture = await open();
    });

    afterAll(async () => {
      await fixture?.close();
    });

    function spec(command: readonly string[], overrides: Partial<ContainerSpec> = {}): ContainerSpec {
      return {
        image: fixture.image,
        command,
        env: {},
        memoryBytes: 64 * MiB,
        cpus: 1,
        network: false,
        timeoutMs: 10_000,
        ...overrides,
        labels: { ...overrides.labels, ...suiteLabel },
      };
    }

    const run = (command: readonly string[], overrides?: Partial<ContainerSpec>): Promise<ContainerOutcome> =>
      fixture.runtime.run(spec(command, overrides));

    it('answers a ping', async () => {
      await expect(fixture.runtime.ping()).resolves.toBeUndefined();
    });

    it('runs a command and returns what it printed', async () => {
      const outcome = exited(await run(['sh', '-c', 'echo hello | sha256sum']));
      expect(outcome.exitCode).toBe(0);
      expect(outcome.oomKilled).toBe(false);
      expect(text(outcome.stdout).startsWith(HELLO_SHA256)).toBe(true);
      expect(outcome.stderr.length).toBe(0);
      expect(outcome.durationMs).toBeGreaterThanOrEqual(0);
    });

    it('passes the environment, and sets ARCNET_INPUT only when there is input', async () => {
      const outcome = exited(
        await run(['sh', '-c', 'printf "%s|%s|%s" "$ARCNET_A" "$ARCNET_B" "${ARCNET_INPUT-unset}"'], {
          env: { ARCNET_A: 'two words', ARCNET_B: 'ü=1;$HOME' },
        }),
      );
      expect(text(outcome.stdout)).toBe('two words|ü=1;$HOME|unset');
    });

    it('keeps stderr apart from stdout', async () => {
      const outcome = exited(await run(['sh', '-c', 'echo out; echo err >&2; printf out2; printf err2 >&2']));
      expect(text(outcome.stdout)).toBe('out\nout2');
      expect(text(outcome.stderr)).toBe('err\nerr2');
    });

    it('reports a non-zero exit code as an exit, not a failure to run', async () => {
      const outcome = exited(await run(['sh', '-c', 'echo partial; exit 42']));
      expect(outcome.exitCode).toBe(42);
      expect(outcome.oomKilled).toBe(false);
      expect(text(outcome.stdout)).toBe('partial\n');
    });

    it('delivers the input bytes intact at $ARCNET_INPUT, and hands binary output back intact', async () => {
      const input = Uint8Array.from({ length: 256 }, (_, i) => i);
      const outcome = exited(await run(['sh', '-c', 'printf %s "$ARCNET_INPUT" >&2; cat "$ARCNET_INPUT"'], { input }));
      expect(outcome.exitCode).toBe(0);
      expect(text(outcome.stderr)).toBe('/arcnet/input');
      expect(outcome.stdout).toEqual(input);
    });

    it('delivers a large input whose size is not a multiple of the tar block', async () => {
      const input = Uint8Array.from({ length: 3 * MiB + 7 }, (_, i) => (i * 2654435761) >>> 24);
      const outcome = exited(await run(['sh', '-c', 'sha256sum < "$ARCNET_INPUT"'], { input }));
      expect(text(outcome.stdout).slice(0, 64)).toBe(createHash('sha256').update(input).digest('hex'));
    });

    it('enforces the memory limit: going past it kills the process', async () => {
      // tail keeps the whole newline-free 64 MiB in memory: harmless without a limit, fatal under 32 MiB.
      const outcome = exited(await run(['sh', '-c', 'head -c 64m /dev/zero | tail > /dev/null'], { memoryBytes: 32 * MiB }));
      // Docker sets OOMKilled; Podman 4.3 on cgroup v1 leaves it false and only the SIGKILL status shows (137).
      expect(outcome.oomKilled || outcome.exitCode === 137, JSON.stringify(summary(outcome))).toBe(true);
    });

    it('applies the memory and CPU limits to the container cgroup', async () => {
      // cgroup v2 files first, then the v1 equivalents.
      const script = [
        'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes',
        'cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"',
      ].join('; ');
      const outcome = exited(await run(['sh', '-c', script], { memoryBytes: 48 * MiB, cpus: 0.5 }));
      const [memory, cpu] = text(outcome.stdout).trim().split('\n');
      expect(Number(memory)).toBe(48 * MiB);
      const [quota, period] = (cpu ?? '').split(' ').map(Number);
      expect(quota! / period!).toBe(0.5);
    });

    it('gives no network but loopback when network is off, and one when it is on', async () => {
      const interfaces = async (network: boolean): Promise<string[]> =>
        text(exited(await run(['ls', '/sys/class/net'], { network })).stdout).split(/\s+/).filter(Boolean);
      expect(await interfaces(false)).toEqual(['lo']);
      expect((await interfaces(true)).filter((name) => name !== 'lo').length).toBeGreaterThan(0);
    });

    it('kills a container that outlives its timeout and returns what it printed so far', async () => {
      const began = performance.now();
      const outcome = await run(['sh', '-c', 'echo started; echo warn >&2; sleep 30'], { timeoutMs: 1500 });
      const elapsed = performance.now() - began;
      expect(outcome.kind, JSON.stringify(summary(outcome))).toBe('timed-out');
      if (outcome.kind !== 'timed-out') return;
      expect(text(outcome.stdout)).toBe('started\n');
      expect(text(outcome.stderr)).toBe('warn\n');
      expect(outcome.durationMs).toBeGreaterThanOrEqual(1500);
      expect(elapsed).toBeLessThan(6000);
    });

    it('labels the running container, and kills and removes it when the signal aborts', async () => {
      const marker = { 'arcnet.test-case': `abort-${Date.now()}` };
      const controller = new AbortController();
      const began = performance.now();
      const pending = run(['sleep', '30'], { signal: controller.signal, timeoutMs: 20_000, labels: marker });
      await until(async () => (await fixture.leftovers({ ...suiteLabel, ...marker })).length === 1, 'the labelled container', 8000, {
        intervalMs: 50,
      });
      controller.abort();
      const outcome = await pending;
      expect(outcome.kind).toBe('cancelled');
      expect(performance.now() - began).toBeLessThan(10_000);
      expect(await fixture.leftovers({ ...suiteLabel, ...marker })).toEqual([]);
    });

    it('does not start anything for an already aborted signal', async () => {
      const outcome = await run(['sh', '-c', 'echo should not run'], { signal: AbortSignal.abort() });
      expect(outcome.kind).toBe('cancelled');
    });

    it('does not start a missing image, and says retrying will not help', async () => {
      const outcome = await run(['true'], { image: 'arcnet/no-such-image:never' });
      expect(outcome).toMatchObject({ kind: 'not-started', retryable: false });
      if (outcome.kind === 'not-started') expect(outcome.reason).toContain('arcnet/no-such-image:never');
    });

    it('does not start a command that does not exist, and says retrying will not help', async () => {
      const outcome = await run(['/no/such/command']);
      expect(outcome, JSON.stringify(summary(outcome))).toMatchObject({ kind: 'not-started', retryable: false });
    });

    it('runs several containers at once without mixing their output', async () => {
      const outcomes = await Promise.all(
        [1, 2, 3].map((n) => run(['sh', '-c', `echo out-$N; echo err-$N >&2; exit $N`], { env: { N: String(n) } })),
      );
      expect(outcomes.map((outcome) => [exited(outcome).exitCode, text(exited(outcome).stdout), text(exited(outcome).stderr)])).toEqual([
        [1, 'out-1\n', 'err-1\n'],
        [2, 'out-2\n', 'err-2\n'],
        [3, 'out-3\n', 'err-3\n'],
      ]);
    });

    // Last on purpose (tests in a file run in order): everything above has run by now.
    it('leaves no container behind', async () => {
      expect(await fixture.leftovers(suiteLabel)).toEqual([]);
    });
  });
}

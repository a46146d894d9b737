/**
 * DataMover contract: the POSIX mover and the Globus mover (against the local Transfer API server,
 * test/support/globus-transfer-server.ts) must both pass these, with real files on both sides.
 * A harness names where sources and destinations live for its adapter and how its faults are
 * injected; the expectations are the same for both. What a failed transfer leaves at the destination
 * is not: the POSIX mover writes `<dest>.partial` (its own tests hold that no `<dest>` appears),
 * Globus writes the destination path in place.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { DataMover, TransferOutcome, TransferProgress, TransferSpec } from '../../src/training/ports.ts';

export interface Place {
  /** What the spec names (`file:///…` or `globus://<endpoint>/…`). */
  readonly uri: string;
  /** The same file on this machine's disk. */
  readonly path: string;
}

export interface MoverHarness {
  /** The chunk size the adapter's resume granularity is (POSIX: its chunk; Globus: the server's). */
  readonly chunkBytes: number;
  /** A new mover over the same journal and files: a restarted bridge. `bytesPerSecond` slows it (or the service). */
  mover(options?: { readonly bytesPerSecond?: number }): DataMover;
  /** Writes a source file and names it. */
  source(name: string, bytes: Uint8Array): Promise<Place>;
  /** Names a source that does not exist. */
  missingSource(name: string): Place;
  destination(name: string): Place;
  /** A destination in a directory the mover may not write, or why this machine cannot make one. */
  deniedDestination(name: string): Promise<{ readonly place: Place; readonly restore: () => Promise<void> } | string>;
  /** A source the mover may not read, or why this machine cannot make one; `during` runs the transfer with the credentials the modes bind (root reads anything). */
  unreadableSource(name: string, bytes: Uint8Array): Promise<{ readonly place: Place; readonly restore: () => Promise<void>; readonly during?: <T>(run: () => Promise<T>) => Promise<T> } | string>;
  /** The next transfer's bytes arrive changed (one byte flipped in its second chunk). */
  corruptNext(): void;
  /** The next transfer meets an error a retry cures, mid-way. */
  transientFaultNext(): void;
  /** Runs `spec` in a child process at `bytesPerSecond` and SIGKILLs it once about `fraction` of it has moved. */
  runAndKill(spec: TransferSpec, fraction: number, bytesPerSecond: number): Promise<void>;
  /** How many transfers the service accepted (Globus: tasks); undefined where there is no service. */
  tasksSubmitted?(): number;
  close(): Promise<void>;
}

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

async function timed(run: () => Promise<TransferOutcome>): Promise<{ outcome: TransferOutcome; ms: number }> {
  const started = Date.now();
  const outcome = await run();
  return { outcome, ms: Date.now() - started };
}

function expectFailed(outcome: TransferOutcome, code: string): asserts outcome is Extract<TransferOutcome, { status: 'failed' }> {
  expect(outcome, JSON.stringify(outcome)).toMatchObject({ status: 'failed', code });
}

export function dataMoverContract(name: string, open: () => Promise<MoverHarness>): void {
  describe(`DataMover contract: ${name}`, () => {
    let harness: MoverHarness;
    let id: string;
    beforeEach(async () => {
      harness = await open();
      id = `t-${randomUUID().slice(0, 8)}`;
    });
    afterEach(async () => {
      await harness.close();
    });

    it('moves a file of several chunks byte-identical with its SHA-256, progress rising to 1 at least once a second', async () => {
      const bytes = randomBytes(Math.round(harness.chunkBytes * 5.5));
      const source = await harness.source(`${id}.bin`, bytes);
      const destination = harness.destination(`out/${id}.bin`);
      const events: { at: number; progress: TransferProgress }[] = [];
      // Slow enough to last over two seconds, so the progress rate is seen.
      const mover = harness.mover({ bytesPerSecond: Math.round(bytes.length / 2.5) });
      const started = Date.now();
      const outcome = await mover.transfer(
        { transferId: id, source: source.uri, destination: destination.uri, sha256: sha(bytes) },
        { onProgress: (progress) => events.push({ at: Date.now(), progress }) },
      );
      const ended = Date.now();
      expect(outcome).toMatchObject({ status: 'completed', bytesTransferred: bytes.length, sha256: sha(bytes), bytesResent: 0 });
      expect(Buffer.compare(await readFile(destination.path), bytes)).toBe(0);
      expect(ended - started).toBeGreaterThan(2_000);
      const instants = [started, ...events.map((e) => e.at), ended];
      const longestGap = Math.max(...instants.slice(1).map((at, i) => at - instants[i]!));
      expect(longestGap).toBeLessThanOrEqual(1_100);
      const values = events.map((e) => e.progress.progress);
      expect(values.every((v, i) => i === 0 || v >= values[i - 1]!)).toBe(true);
      expect(values.at(-1)).toBe(1);
      expect(values.some((v) => v > 0 && v < 1)).toBe(true);
      expect(events.at(-1)!.progress).toMatchObject({ bytesTransferred: bytes.length, totalBytes: bytes.length });
    });

    it('fails SOURCE_MISSING within 3 s, naming the path', async () => {
      const source = harness.missingSource(`${id}-missing.bin`);
      const { outcome, ms } = await timed(() => harness.mover().transfer({ transferId: id, source: source.uri, destination: harness.destination(`${id}.bin`).uri }));
      expectFailed(outcome, 'SOURCE_MISSING');
      expect(outcome.reason).toContain(`${id}-missing.bin`);
      expect(ms).toBeLessThan(3_000);
    });

    it('fails PERMISSION within 3 s on a destination it may not write', async (context) => {
      const source = await harness.source(`${id}.bin`, randomBytes(harness.chunkBytes * 2));
      const denied = await harness.deniedDestination(`${id}.bin`);
      if (typeof denied === 'string') return context.skip(denied);
      try {
        const { outcome, ms } = await timed(() => harness.mover().transfer({ transferId: id, source: source.uri, destination: denied.place.uri }));
        expectFailed(outcome, 'PERMISSION');
        expect(outcome.reason).toContain(`${id}.bin`);
        expect(ms).toBeLessThan(3_000);
      } finally {
        await denied.restore();
      }
    });

    it('fails PERMISSION within 3 s on a source it may not read', async (context) => {
      const unreadable = await harness.unreadableSource(`${id}.bin`, randomBytes(harness.chunkBytes * 2));
      if (typeof unreadable === 'string') return context.skip(unreadable);
      try {
        const during = unreadable.during ?? (<T>(run: () => Promise<T>): Promise<T> => run());
        const { outcome, ms } = await during(() => timed(() => harness.mover().transfer({ transferId: id, source: unreadable.place.uri, destination: harness.destination(`${id}.bin`).uri })));
        expectFailed(outcome, 'PERMISSION');
        expect(outcome.reason).toContain(`${id}.bin`);
        expect(ms).toBeLessThan(3_000);
      } finally {
        await unreadable.restore();
      }
    });

    it('fails CHECKSUM_MISMATCH within 3 s when the bytes arrive changed', async () => {
      const bytes = randomBytes(harness.chunkBytes * 4);
      const source = await harness.source(`${id}.bin`, bytes);
      const destination = harness.destination(`${id}.bin`);
      harness.corruptNext();
      const { outcome, ms } = await timed(() => harness.mover().transfer({ transferId: id, source: source.uri, destination: destination.uri }));
      expectFailed(outcome, 'CHECKSUM_MISMATCH');
      expect(ms).toBeLessThan(3_000);
    });

    it('fails CHECKSUM_MISMATCH when the source is not the SHA-256 the spec names', async () => {
      const bytes = randomBytes(harness.chunkBytes * 2);
      const source = await harness.source(`${id}.bin`, bytes);
      const destination = harness.destination(`${id}.bin`);
      const { outcome, ms } = await timed(() => harness.mover().transfer({ transferId: id, source: source.uri, destination: destination.uri, sha256: sha(randomBytes(8)) }));
      expectFailed(outcome, 'CHECKSUM_MISMATCH');
      expect(ms).toBeLessThan(3_000);
    });

    it('cancels mid-transfer: CANCELLED, and a later transfer of it is CANCELLED too', async () => {
      const bytes = randomBytes(harness.chunkBytes * 6);
      const source = await harness.source(`${id}.bin`, bytes);
      const destination = harness.destination(`${id}.bin`);
      const mover = harness.mover({ bytesPerSecond: Math.round(bytes.length / 4) });
      const spec = { transferId: id, source: source.uri, destination: destination.uri };
      let moving = false;
      const running = mover.transfer(spec, { onProgress: (p) => void (moving ||= p.bytesTransferred > 0) });
      while (!moving) await new Promise((resolve) => setTimeout(resolve, 20));
      const started = Date.now();
      await mover.cancel(id);
      expectFailed(await running, 'CANCELLED');
      expect(Date.now() - started).toBeLessThan(3_000);
      expectFailed(await harness.mover().transfer(spec), 'CANCELLED');
    });

    it('resumes after its process is SIGKILLed mid-way, sending at most one chunk again', async () => {
      const bytes = randomBytes(harness.chunkBytes * 8);
      const source = await harness.source(`${id}.bin`, bytes);
      const destination = harness.destination(`${id}.bin`);
      const spec = { transferId: id, source: source.uri, destination: destination.uri, sha256: sha(bytes) };
      await harness.runAndKill(spec, 0.5, Math.round(bytes.length / 3));
      const outcome = await harness.mover().transfer(spec);
      expect(outcome).toMatchObject({ status: 'completed', bytesTransferred: bytes.length });
      if (outcome.status !== 'completed') return;
      expect(outcome.bytesResent).toBeLessThanOrEqual(harness.chunkBytes);
      expect(outcome.sha256).toBe(sha(bytes));
      expect(Buffer.compare(await readFile(destination.path), bytes)).toBe(0);
      if (harness.tasksSubmitted) expect(harness.tasksSubmitted()).toBe(1);
    });

    it('rides out a transient fault mid-transfer', async () => {
      const bytes = randomBytes(harness.chunkBytes * 4);
      const source = await harness.source(`${id}.bin`, bytes);
      const destination = harness.destination(`${id}.bin`);
      harness.transientFaultNext();
      const outcome = await harness.mover().transfer({ transferId: id, source: source.uri, destination: destination.uri, sha256: sha(bytes) });
      expect(outcome).toMatchObject({ status: 'completed', bytesTransferred: bytes.length, sha256: sha(bytes) });
      expect(Buffer.compare(await readFile(destination.path), bytes)).toBe(0);
    });
  });
}

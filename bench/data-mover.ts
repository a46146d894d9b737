/**
 * A section of `npm run bench`: the POSIX data mover's throughput against a plain `cp` of the same
 * file in the same run (issue 13, goal >= 80 %). A 512 MiB file (128 MiB with --quick) of random
 * bytes, copied by `cp`, by `cp` then an fsync of the copy (the mover fsyncs each chunk, `cp` does
 * not: this is the like-for-like figure), and by the mover with 64 MiB chunks, with and without its
 * read-back verification. Run in both orders (cp first, then the mover first), so neither side
 * always gets the warmer page cache; every copy is removed before the next, and one untimed copy
 * of each kind runs first (the first copy in a process here pays ~1 s of system time, fresh pages).
 * The goal is the issue's, against plain `cp`; cp+fsync is printed beside it as the like-for-like
 * figure. The mover hashes every byte twice (its chunk's SHA-256 and the whole file's, one worker
 * thread each), so one core's SHA-256 rate, measured here in the same run, is its ceiling.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PosixDataMover } from '../src/training/posix-mover.ts';

const MiB = 1024 * 1024;

function writeRandomFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  const piece = Buffer.alloc(8 * MiB);
  try {
    for (let done = 0; done < bytes; done += piece.length) writeSync(fd, randomFillSync(piece), 0, Math.min(piece.length, bytes - done));
  } finally {
    closeSync(fd);
  }
}

function timeMs(run: () => void): number {
  const started = performance.now();
  run();
  return performance.now() - started;
}

async function timeMsAsync(run: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await run();
  return performance.now() - started;
}

function removeCopies(dir: string): void {
  for (const name of ['cp.bin', 'mover.bin', 'mover.bin.partial', 'mover.bin.arcnet-transfer.json']) rmSync(join(dir, name), { force: true });
  execFileSync('sync');
}

export async function dataMoverSection(dir: string, quick: boolean): Promise<void> {
  const size = (quick ? 128 : 512) * MiB;
  const source = join(dir, 'data-mover-source.bin');
  writeRandomFile(source, size);
  execFileSync('sync');
  console.log(`9. Data mover (POSIX, 64 MiB chunks, SHA-256 per chunk and whole file, fsync per chunk) vs cp, a ${size / MiB} MiB file on ${dir}`);
  const mbps = (ms: number): string => `${Math.round(size / MiB / (ms / 1_000))} MiB/s`;
  const cp = (): number => timeMs(() => execFileSync('cp', [source, join(dir, 'cp.bin')]));
  const cpSync = (): number => timeMs(() => execFileSync('sh', ['-c', 'cp "$1" "$2" && sync "$2"', 'sh', source, join(dir, 'cp.bin')]));
  const sample = Buffer.alloc(64 * MiB, 7);
  const hashMs = timeMs(() => void createHash('sha256').update(sample).digest());
  console.log(`   SHA-256 on one core: ${Math.round(64 / (hashMs / 1_000))} MiB/s, the mover's ceiling (two streams over every byte, ${os.availableParallelism()} cores)`);
  let n = 0;
  const mover = (verifyChecksum: boolean): Promise<number> =>
    timeMsAsync(async () => {
      const outcome = await new PosixDataMover({ verifyChecksum }).transfer({ transferId: `bench-${n++}`, source: pathToFileURL(source).href, destination: join(dir, 'mover.bin') });
      if (outcome.status !== 'completed') throw new Error(`the mover failed: ${outcome.reason}`);
    });
  try {
    cp();
    removeCopies(dir);
    await mover(true);
    removeCopies(dir);
    for (const order of ['cp first', 'mover first'] as const) {
      const times: Record<string, number> = {};
      const runCp = (): void => {
        times.cp = cp();
        removeCopies(dir);
        times.cpSync = cpSync();
        removeCopies(dir);
      };
      const runMover = async (): Promise<void> => {
        times.verified = await mover(true);
        removeCopies(dir);
        times.unverified = await mover(false);
        removeCopies(dir);
      };
      if (order === 'cp first') {
        runCp();
        await runMover();
      } else {
        await runMover();
        runCp();
      }
      const ratio = (mover: number, against: number): string => `${Math.round((against / mover) * 100)} %`;
      const verdict = (mover: number, against: number): string => (against / mover >= 0.8 ? 'MET' : 'NOT MET');
      // The goal (issue 13): the mover, as it runs by default (verified), at >= 80 % of plain cp.
      console.log(`   ${order}: cp ${mbps(times.cp!)}, cp+fsync ${mbps(times.cpSync!)}; mover verified ${mbps(times.verified!)}, without read-back ${mbps(times.unverified!)}`);
      console.log(
        `      mover (verified) vs cp ${ratio(times.verified!, times.cp!)} (goal >= 80 %: ${verdict(times.verified!, times.cp!)}), vs cp+fsync ${ratio(times.verified!, times.cpSync!)}; ` +
          `without read-back vs cp ${ratio(times.unverified!, times.cp!)}, vs cp+fsync ${ratio(times.unverified!, times.cpSync!)}`,
      );
    }
  } finally {
    removeCopies(dir);
    rmSync(source, { force: true });
  }
}

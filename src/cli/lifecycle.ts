/**
 * How a long-running command lives: it starts (a taken port is one line, not a stack trace), says
 * what runs where, gives memory back when it goes idle (src/core/idle-memory.ts), and on SIGINT or
 * SIGTERM stops once, cleanly, and exits.
 */
import { errorMessage } from '../core/errors.ts';
import { releaseMemoryWhenIdle } from '../core/idle-memory.ts';
import { usage } from './options.ts';

/** Starts something that listens; EADDRINUSE becomes a usage error naming the port (what started has closed again). */
export async function startOrExplain<T>(portInUse: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw usage(portInUse);
    throw error;
  }
}

export const portInUse = (flag: string, port: number, host: string): string => `${flag} ${port} on ${host} is already in use; stop what holds it or pick another port`;

export interface StopOnSignalOptions {
  /** Printed once everything has stopped. */
  readonly stoppedLine: string;
  /** Runs first (the live status line). */
  readonly beforeStop?: () => void;
  /** Flushed before exiting (asynchronous log destinations). */
  readonly logger?: { flush(): void };
}

/**
 * On SIGINT or SIGTERM: stop once, print the line, exit 0; a failed stop exits 1 naming what failed.
 * Until then the process lets V8 return memory once it is idle (every long-running command calls this).
 */
export function stopOnSignal(name: string, running: { stop(): Promise<void> }, options: StopOnSignalOptions): void {
  let stopping = false;
  const stopReleasing = releaseMemoryWhenIdle();
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    stopReleasing();
    options.beforeStop?.();
    process.stdout.write(`${signal}: stopping…\n`);
    running
      .stop()
      .then(() => {
        process.stdout.write(`${options.stoppedLine}\n`);
        options.logger?.flush();
        process.exit(0);
      })
      .catch((error: unknown) => {
        process.stderr.write(`${name}: shutdown failed: ${errorMessage(error)}\n`);
        process.exit(1);
      });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

/** ArcNet's CLI as child processes, for the e2e suites: a free port, a started command, polling while it comes up. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { until as untilWithin } from './until.ts';

export const CLI = join(import.meta.dirname, '../../src/cli/main.ts');

export type CliProcess = ChildProcess & { output: () => string };

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Runs `arcnet <args>` on this Node, collecting stdout and stderr together. */
export function startCli(args: readonly string[]): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return Object.assign(child, { output: () => output });
}

/** Processes take a while to come up: probes that throw (connection refused) just mean "not yet". */
export const untilUp = <T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 20_000): Promise<T> =>
  untilWithin(probe, what, timeoutMs, { intervalMs: 100, retryOnError: true });

/**
 * A Kafka broker of a suite's own (a separate instance of scripts/kafka.sh, with its own data), for
 * suites that stop and start their broker: the suites sharing the default broker are not disturbed.
 * Commands run as child processes without blocking the event loop, so clients keep working (and
 * failing) while the broker stops and starts.
 */
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';

const SCRIPT = join(import.meta.dirname, '../../scripts/kafka.sh');
const INSTANCES = join(import.meta.dirname, '../../.cache/kafka/instances');

export interface KafkaInstance {
  readonly port: number;
  readonly servers: readonly string[];
  /** Starts the broker (formatting its storage the first time) and waits until it answers metadata. */
  start(): Promise<void>;
  /** Stops it gracefully (SIGTERM, as an operator would); quiet when it is not running. */
  stop(): Promise<void>;
  /** Stops it and drops its data: the next start is an empty cluster. */
  clean(): Promise<void>;
  /** Stops it and removes the instance's directory altogether. */
  remove(): Promise<void>;
  /** Freezes the broker's process (SIGSTOP): connections stay open and nothing answers, as with a hung broker. */
  pause(): Promise<void>;
  /** Lets a paused broker run on (SIGCONT). */
  resume(): Promise<void>;
  /** The broker's process id, for a test that signals it at an exact moment. */
  pid(): Promise<number>;
}

export function kafkaInstance(instance: string, port: number): KafkaInstance {
  const env = { ...process.env, ARCNET_KAFKA_INSTANCE: instance, ARCNET_KAFKA_PORT: String(port) };
  const run = (command: 'start' | 'stop' | 'clean'): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = spawn('bash', [SCRIPT, command], { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kafka.sh ${command} (instance ${instance}, port ${port}) failed (${code}): ${stderr}`))));
    });
  const pid = async (): Promise<number> => Number((await readFile(join(INSTANCES, instance, 'broker.pid'), 'utf8')).trim());
  const signal = async (name: 'SIGSTOP' | 'SIGCONT'): Promise<void> => {
    process.kill(await pid(), name);
  };
  return {
    port,
    servers: [`127.0.0.1:${port}`],
    start: () => run('start'),
    stop: () => run('stop'),
    clean: () => run('clean'),
    pid,
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
    remove: async () => {
      await signal('SIGCONT').catch(() => undefined);
      await run('clean');
      await rm(join(INSTANCES, instance), { recursive: true, force: true });
    },
  };
}

/** A port whose successor is free too: a broker takes its port and the next for its controller. */
export async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    if ((await portFree(port)) && (await portFree(port + 1))) return port;
  }
  throw new Error('no two consecutive free ports found');
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

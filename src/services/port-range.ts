/**
 * The host ports a node's slice runtimes hand out: one range `[first, last]` the operator reserves for
 * services, so their ports never collide with the agent's own listeners or the kernel's ephemeral range.
 *
 * A port is handed out only after binding it briefly on 127.0.0.1 and 0.0.0.0 succeeded: something the
 * agent does not know of (another program, an instance a killed agent left behind) may already hold
 * one. That check is advisory, since a port free now can be taken before the instance binds it, and the
 * runtime then sees its instance fail to listen, which is the honest outcome.
 */
import { createServer } from 'node:net';

export class PortsExhaustedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PortsExhaustedError';
  }
}

const MIN_PORT = 1024;
const MAX_PORT = 65_535;

export class PortRange {
  readonly first: number;
  readonly last: number;
  private readonly held = new Set<number>();
  /**
   * Where the next search starts. It moves on past every port handed out, so a port just released is
   * the last to be reused: a client of the instance that held it may still be connecting to it.
   */
  private cursor: number;

  constructor(first: number, last: number) {
    for (const [name, value] of [['first', first], ['last', last]] as const) {
      if (!Number.isInteger(value) || value < MIN_PORT || value > MAX_PORT) {
        throw new RangeError(`port range: ${name} must be a whole number from ${MIN_PORT} to ${MAX_PORT}, not ${String(value)}`);
      }
    }
    if (first > last) throw new RangeError(`port range: first (${first}) is above last (${last})`);
    this.first = first;
    this.last = last;
    this.cursor = first;
  }

  /** `"20000-20099"` (or one port, `"20000"`), as an operator writes it. */
  static parse(text: string): PortRange {
    const match = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(text);
    if (!match?.[1]) throw new RangeError(`port range "${text}" is not FIRST-LAST (for example 20000-20099)`);
    return new PortRange(Number(match[1]), Number(match[2] ?? match[1]));
  }

  get size(): number {
    return this.last - this.first + 1;
  }

  /** Ports handed out and not yet released, ascending. */
  heldPorts(): number[] {
    return [...this.held].sort((a, b) => a - b);
  }

  isHeld(port: number): boolean {
    return this.held.has(port);
  }

  /**
   * `count` distinct ports that bound freely just now, held until released. Throws PortsExhaustedError
   * when the range has fewer free ports; then none is held.
   */
  async allocate(count = 1): Promise<number[]> {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`port range: count must be a whole number ≥ 1, not ${String(count)}`);
    const taken: number[] = [];
    let inUse = 0;
    try {
      for (let tried = 0; tried < this.size && taken.length < count; tried++) {
        const port = this.cursor;
        this.cursor = port === this.last ? this.first : port + 1;
        if (this.held.has(port)) continue;
        // Held before the probe's await, so a concurrent allocate cannot pick the same port meanwhile.
        this.held.add(port);
        if (await portIsFree(port)) {
          taken.push(port);
        } else {
          this.held.delete(port);
          inUse++;
        }
      }
    } catch (error) {
      for (const port of taken) this.held.delete(port);
      throw error;
    }
    if (taken.length < count) {
      for (const port of taken) this.held.delete(port);
      throw new PortsExhaustedError(
        `no ${count} free port${count === 1 ? '' : 's'} in ${this.first}-${this.last}: ${this.held.size} held by this node's instances, ${inUse} in use by something else`,
      );
    }
    return taken;
  }

  /** Gives ports back; a port not held is ignored, so releasing twice is harmless. */
  release(ports: Iterable<number>): void {
    for (const port of ports) this.held.delete(port);
  }
}

/** Whether `port` binds on both loopback and the wildcard address right now. */
export async function portIsFree(port: number): Promise<boolean> {
  for (const host of ['127.0.0.1', '0.0.0.0']) {
    if (!(await bindsFreely(port, host))) return false;
  }
  return true;
}

function bindsFreely(port: number, host: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE' || error.code === 'EACCES') resolve(false);
      else reject(error);
    });
    // exclusive: a cluster primary must not share the handle; the probe has to own the port to prove it free.
    server.listen({ port, host, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

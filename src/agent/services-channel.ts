/**
 * The node's `NodeSliceChannel` over its agent session (frames in src/services/session-protocol.ts):
 * `arcnet agent --services` reads and writes its own slice keys through the server it is connected
 * to. On every welcome it asks for a snapshot and follows the changes; a snapshot after a reconnect
 * is compared with what the manager was last told, so a key deleted or changed while the session was
 * down is reported, and one unchanged is not reported again (its instance keeps running undisturbed).
 *
 * A call made while no session is up waits for the next one (bounded by `callTimeoutMs`). A call
 * whose session drops before the answer resolves as a conflict: it may or may not have landed, and
 * the next snapshot says which; the manager re-reads either way. Failed calls that need an answer
 * (a spec, an endpoint) reject with UNAVAILABLE, and the manager retries them as a failed step.
 */
import { ArcError } from '../core/errors.ts';
import type { EndpointRecord, SliceRecord, SliceSpec } from '../services/model.ts';
import type { ChannelWrite, NodeSliceChannel, NodeSliceEntry } from '../services/ports.ts';
import { SERVICES_FRAME_PREFIX, type ServicesCall } from '../services/session-protocol.ts';
import type { AgentExtension } from './agent.ts';

interface Pending {
  readonly call: ServicesCall;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
  sent: boolean;
}

type Listener = (artifact: string, entry: NodeSliceEntry | undefined) => void;

export interface AgentSliceChannelOptions {
  readonly nodeId: string;
  /** The runtimes this node's runner has: the leader places only slices it can run. */
  readonly runtimes: readonly ('process' | 'container')[];
  /** How long a call waits for a session and its answer (default 15 s). */
  readonly callTimeoutMs?: number;
}

export class AgentSliceChannel implements NodeSliceChannel, AgentExtension {
  readonly prefix = SERVICES_FRAME_PREFIX;
  readonly nodeId: string;
  private readonly options: AgentSliceChannelOptions;
  private send: ((frame: object) => boolean) | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<Listener>();
  /** What listeners were last told, per artifact. */
  private readonly known = new Map<string, NodeSliceEntry>();

  constructor(options: AgentSliceChannelOptions) {
    this.options = options;
    this.nodeId = options.nodeId;
  }

  sessionStarted(send: (frame: object) => boolean): void {
    this.send = send;
    send({ type: 'services.watch', runtimes: this.options.runtimes });
    for (const [id, pending] of this.pending) if (!pending.sent) this.transmit(id, pending);
  }

  sessionEnded(): void {
    this.send = undefined;
    for (const [id, pending] of this.pending) {
      if (!pending.sent) continue;
      this.pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new ArcError('UNAVAILABLE', 'the session with the server closed before it answered', { retryable: true }));
    }
  }

  onFrame(frame: Readonly<Record<string, unknown>>): void {
    if (frame['type'] === 'services.snapshot') return this.onSnapshot(frame['entries'] as { artifact: string; entry: NodeSliceEntry }[]);
    if (frame['type'] === 'services.change') {
      const entry = (frame['entry'] as NodeSliceEntry | null) ?? undefined;
      return this.tell(frame['artifact'] as string, entry);
    }
    if (frame['type'] === 'services.reply') {
      const id = frame['id'] as number;
      const pending = this.pending.get(id);
      if (!pending) return;
      this.pending.delete(id);
      clearTimeout(pending.timer);
      if (frame['ok'] === true) pending.resolve(frame['value']);
      else pending.reject(new ArcError('FORBIDDEN', `the server refused ${pending.call.op} of ${(pending.call as { artifact: string }).artifact}: ${String(frame['error'])}`, { retryable: false }));
    }
  }

  watch(onChange: Listener): { close(): void } {
    this.listeners.add(onChange);
    for (const [artifact, entry] of this.known) onChange(artifact, entry);
    return { close: () => this.listeners.delete(onChange) };
  }

  async write(artifact: string, record: SliceRecord, expectedRevision: number): Promise<ChannelWrite> {
    return this.writeLike({ op: 'write', artifact, record, expectedRevision });
  }

  async remove(artifact: string, expectedRevision: number): Promise<ChannelWrite> {
    return this.writeLike({ op: 'remove', artifact, expectedRevision });
  }

  async spec(blueprint: string, artifact: string): Promise<SliceSpec | undefined> {
    return ((await this.call({ op: 'spec', blueprint, artifact })) as SliceSpec | null) ?? undefined;
  }

  async publishEndpoint(artifact: string, entryPoint: string, record: EndpointRecord): Promise<void> {
    await this.call({ op: 'publish', artifact, entryPoint, record });
  }

  async unpublishEndpoint(artifact: string, entryPoint: string, instance: number): Promise<void> {
    await this.call({ op: 'unpublish', artifact, entryPoint, instance });
  }

  /** Pending calls fail; listeners are dropped. */
  close(): void {
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new ArcError('CLOSED', 'the agent is stopping', { retryable: false }));
    }
    this.pending.clear();
    this.listeners.clear();
  }

  private async writeLike(call: ServicesCall): Promise<ChannelWrite> {
    try {
      return (await this.call(call)) as ChannelWrite;
    } catch (error) {
      if (error instanceof ArcError && error.code === 'UNAVAILABLE') return { ok: false, reason: 'conflict' };
      throw error;
    }
  }

  private call(call: ServicesCall): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const timeoutMs = this.options.callTimeoutMs ?? 15_000;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ArcError('UNAVAILABLE', `no answer from the server within ${timeoutMs} ms to ${call.op}`, { retryable: true }));
      }, timeoutMs);
      timer.unref();
      const pending: Pending = { call, resolve, reject, timer, sent: false };
      this.pending.set(id, pending);
      this.transmit(id, pending);
    });
  }

  private transmit(id: number, pending: Pending): void {
    if (this.send?.({ type: 'services.call', id, call: pending.call })) pending.sent = true;
  }

  private onSnapshot(entries: readonly { artifact: string; entry: NodeSliceEntry }[]): void {
    const seen = new Set<string>();
    for (const { artifact, entry } of entries) {
      seen.add(artifact);
      this.tell(artifact, entry);
    }
    for (const artifact of [...this.known.keys()]) if (!seen.has(artifact)) this.tell(artifact, undefined);
  }

  private tell(artifact: string, entry: NodeSliceEntry | undefined): void {
    const before = this.known.get(artifact);
    if (entry === undefined && before === undefined) return;
    if (entry !== undefined && before !== undefined && before.revision === entry.revision) return;
    if (entry === undefined) this.known.delete(artifact);
    else this.known.set(artifact, entry);
    for (const listener of this.listeners) listener(artifact, entry);
  }
}

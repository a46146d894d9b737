/**
 * The server's side of the services frames on an agent session (src/services/session-protocol.ts):
 * a node's deployment manager reads and writes its own slice keys through the server that holds the
 * KV. The session already proved which node it is (the agent gateway); this handler makes sure that
 * node touches only what is its own, so a node key cannot steer another node's instances, forge the
 * leader's commands, or publish an endpoint that sends traffic to itself:
 *
 * - writes go only to `slices/{this node}/…`, only progress states (LOADING, LOADED, ACTIVATING,
 *   ACTIVE, DEACTIVATING, UNLOADING, FAILED; the commands are the leader's), only onto a key that
 *   exists, keeping the leader's instance, blueprint, epoch and placement time, compare-and-set;
 * - a key is removed only while the leader asked to unload it;
 * - a spec is read only for a slice the node holds, from the blueprint that placed it;
 * - an endpoint is published only for an instance the node holds, with its instance number and
 *   epoch, for an entry point its slice declares, naming this node; unpublished only if it is ours.
 *
 * Refusals answer the call with the reason (the agent logs it); none closes the session.
 */
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { validate } from '../contracts/validation.ts';
import type { KvStore } from '../store/ports.ts';
import type { AgentSessionExtension, AgentSessionHandler } from './agent-gateway.ts';
import { ARTIFACT_PATTERN, COMMAND_STATES, EndpointRecordSchema, SliceRecordSchema, endpointKey, entryPointsOf, nodeSlicesPrefix, sliceKey, type EndpointRecord, type SliceRecord } from '../services/model.ts';
import type { NodeSliceChannel } from '../services/ports.ts';
import { SERVICES_FRAME_PREFIX, type ServicesCall } from '../services/session-protocol.ts';
import { runnerKey, type RunnerRecord, type RunnerRuntime } from '../services/runner-directory.ts';

const RUNTIMES: ReadonlySet<string> = new Set<RunnerRuntime>(['process', 'container']);

const ARTIFACT = new RegExp(ARTIFACT_PATTERN);
const REMOVABLE: ReadonlySet<string> = new Set(['UNLOAD', 'UNLOADING']);

export interface AgentServicesDeps {
  readonly kv: KvStore;
  readonly clock: Clock;
  /** This server's instance id, recorded in each runner's key. */
  readonly instanceId: string;
  /** The node's channel over the KV (src/services/kv-node-channel.ts). */
  readonly channelFor: (nodeId: string) => NodeSliceChannel;
  readonly logger: Logger;
  /** Counts each refusal by reason. */
  readonly onRefusal?: (reason: string) => void;
}

class Refusal extends Error {}

export function agentServicesExtension(deps: AgentServicesDeps): AgentSessionExtension {
  return {
    prefix: SERVICES_FRAME_PREFIX,
    open: (node, send) => new AgentServicesSession(deps, node.id, send),
  };
}

class AgentServicesSession implements AgentSessionHandler {
  private readonly deps: AgentServicesDeps;
  private readonly nodeId: string;
  private readonly send: (frame: object) => void;
  private readonly channel: NodeSliceChannel;
  private watch: { close(): void } | undefined;
  private closed = false;
  /** The revision of the runner key this session wrote, so closing marks it disconnected only if no newer session took it. */
  private runnerRevision: number | undefined;
  private runtimes: readonly RunnerRuntime[] = [];

  constructor(deps: AgentServicesDeps, nodeId: string, send: (frame: object) => void) {
    this.deps = deps;
    this.nodeId = nodeId;
    this.send = send;
    this.channel = deps.channelFor(nodeId);
  }

  async onFrame(frame: Readonly<Record<string, unknown>>): Promise<void> {
    if (frame['type'] === 'services.watch') {
      const runtimes = frame['runtimes'];
      if (!Array.isArray(runtimes) || runtimes.length > 2 || !runtimes.every((r) => typeof r === 'string' && RUNTIMES.has(r))) {
        return this.send({ type: 'error', message: `services.watch: /runtimes must list the runner's runtimes (process, container), got ${JSON.stringify(runtimes)}` });
      }
      this.runtimes = [...new Set(runtimes as RunnerRuntime[])];
      await this.startWatch();
      return this.registerRunner(true);
    }
    if (frame['type'] !== 'services.call') return this.send({ type: 'error', message: `unknown frame type "${String(frame['type'])}" (expected services.watch or services.call)` });
    const id = frame['id'];
    if (typeof id !== 'number' || !Number.isSafeInteger(id)) return this.send({ type: 'error', message: 'services.call needs an integer "id"' });
    try {
      const value = await this.call(frame['call']);
      this.send({ type: 'services.reply', id, ok: true, value: value ?? null });
    } catch (error) {
      const reason = error instanceof Refusal ? error.message : `server could not do it: ${errorMessage(error)}`;
      if (error instanceof Refusal) this.deps.onRefusal?.('services');
      else this.deps.logger.warn({ node: this.nodeId, err: errorMessage(error) }, 'a services call from an agent failed');
      this.send({ type: 'services.reply', id, ok: false, error: reason });
    }
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
    this.watch = undefined;
    if (this.runnerRevision !== undefined) {
      this.registerRunner(false).catch((error: unknown) => this.deps.logger.warn({ node: this.nodeId, err: errorMessage(error) }, 'could not mark the runner disconnected; the mesh will see the node offline'));
    }
  }

  /** `runners/{node}`: the leader places only on nodes whose runner is connected (or only just left). */
  private async registerRunner(connected: boolean): Promise<void> {
    const record: RunnerRecord = { runtimes: this.runtimes, connected, since: this.deps.clock.now(), server: this.deps.instanceId };
    const outcome = await this.deps.kv.put(runnerKey(this.nodeId), record, connected ? {} : { expectedRevision: this.runnerRevision! });
    if (connected && outcome.ok) this.runnerRevision = outcome.revision;
  }

  /** A snapshot from one list, then every change after the revision it was read at: nothing missed, nothing twice. */
  private async startWatch(): Promise<void> {
    this.watch?.close();
    this.watch = undefined;
    const prefix = nodeSlicesPrefix(this.nodeId);
    const listed = await this.deps.kv.list<SliceRecord>(prefix);
    if (this.closed) return;
    const entries = listed.entries.map((e) => ({ artifact: e.key.slice(prefix.length), entry: { record: e.value, revision: e.modRevision } }));
    this.send({ type: 'services.snapshot', entries });
    this.watch = this.deps.kv.watch<SliceRecord>(prefix, listed.revision, (event) => {
      if (this.closed) return;
      const artifact = event.key.slice(prefix.length);
      const entry = event.type === 'put' && event.value !== undefined ? { record: event.value, revision: event.revision } : null;
      this.send({ type: 'services.change', artifact, entry });
    });
  }

  private async call(raw: unknown): Promise<unknown> {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Refusal('services.call: /call must be an object with an "op"');
    const call = raw as ServicesCall;
    const artifact = (call as { artifact?: unknown }).artifact;
    if (typeof artifact !== 'string' || !ARTIFACT.test(artifact)) throw new Refusal(`services.call: /call/artifact must be group:artifact:version, got ${JSON.stringify(artifact)}`);
    switch (call.op) {
      case 'write':
        return this.write(artifact, call.record, call.expectedRevision);
      case 'remove':
        return this.remove(artifact, call.expectedRevision);
      case 'spec':
        return this.spec(artifact, call.blueprint);
      case 'publish':
        return this.publish(artifact, call.entryPoint, call.record);
      case 'unpublish':
        return this.unpublish(artifact, call.entryPoint, call.instance);
      default:
        throw new Refusal(`services.call: unknown /call/op ${JSON.stringify((call as { op?: unknown }).op)} (expected write, remove, spec, publish or unpublish)`);
    }
  }

  private async held(artifact: string): Promise<{ record: SliceRecord; revision: number } | undefined> {
    const entry = await this.deps.kv.get<SliceRecord>(sliceKey(this.nodeId, artifact));
    return entry ? { record: entry.value, revision: entry.modRevision } : undefined;
  }

  private async write(artifact: string, record: unknown, expectedRevision: unknown): Promise<unknown> {
    const checked = validate(SliceRecordSchema, record);
    if (!checked.ok) throw new Refusal(`services.call write: /call/record${checked.error}`);
    if (typeof expectedRevision !== 'number' || !Number.isSafeInteger(expectedRevision) || expectedRevision < 1) throw new Refusal('services.call write: /call/expectedRevision must be the key\'s revision (an integer ≥ 1)');
    const next = checked.value as SliceRecord;
    if (COMMAND_STATES.has(next.state)) throw new Refusal(`services.call write: ${next.state} is the leader's command; a node writes only its progress`);
    const current = await this.held(artifact);
    if (!current) return { ok: false, reason: 'gone' };
    for (const field of ['instance', 'blueprint', 'epoch', 'placedAt'] as const) {
      if (current.record[field] !== next[field]) throw new Refusal(`services.call write: /call/record/${field} ${JSON.stringify(next[field])} is not the placement's ${JSON.stringify(current.record[field])} (set by the leader)`);
    }
    return this.channel.write(artifact, next, expectedRevision);
  }

  private async remove(artifact: string, expectedRevision: unknown): Promise<unknown> {
    if (typeof expectedRevision !== 'number' || !Number.isSafeInteger(expectedRevision) || expectedRevision < 1) throw new Refusal('services.call remove: /call/expectedRevision must be the key\'s revision (an integer ≥ 1)');
    const current = await this.held(artifact);
    if (!current) return { ok: false, reason: 'gone' };
    if (!REMOVABLE.has(current.record.state)) throw new Refusal(`services.call remove: ${artifact} is ${current.record.state}; a node removes its key only once the leader asked to unload it`);
    return this.channel.remove(artifact, expectedRevision);
  }

  private async spec(artifact: string, blueprint: unknown): Promise<unknown> {
    const current = await this.held(artifact);
    if (!current) throw new Refusal(`services.call spec: this node holds no instance of ${artifact}`);
    if (blueprint !== current.record.blueprint) throw new Refusal(`services.call spec: ${artifact} was placed here by blueprint ${current.record.blueprint}, not ${JSON.stringify(blueprint)}`);
    return (await this.channel.spec(current.record.blueprint, artifact)) ?? null;
  }

  private async publish(artifact: string, entryPoint: unknown, record: unknown): Promise<unknown> {
    const checked = validate(EndpointRecordSchema, record);
    if (!checked.ok) throw new Refusal(`services.call publish: /call/record${checked.error}`);
    const endpoint = checked.value as EndpointRecord;
    if (endpoint.nodeId !== this.nodeId) throw new Refusal(`services.call publish: /call/record/nodeId ${endpoint.nodeId} is not this session's node ${this.nodeId}`);
    const current = await this.held(artifact);
    if (!current) throw new Refusal(`services.call publish: this node holds no instance of ${artifact}`);
    if (current.record.instance !== endpoint.instance || current.record.epoch !== endpoint.epoch) {
      throw new Refusal(`services.call publish: instance ${endpoint.instance} epoch ${endpoint.epoch} is not the one placed here (instance ${current.record.instance}, epoch ${current.record.epoch})`);
    }
    const spec = await this.channel.spec(current.record.blueprint, artifact);
    if (typeof entryPoint !== 'string' || !spec || !entryPointsOf(spec).some((e) => e.name === entryPoint)) {
      throw new Refusal(`services.call publish: ${JSON.stringify(entryPoint)} is not an entry point of ${artifact}`);
    }
    await this.channel.publishEndpoint(artifact, entryPoint, endpoint);
    return null;
  }

  private async unpublish(artifact: string, entryPoint: unknown, instance: unknown): Promise<unknown> {
    if (typeof entryPoint !== 'string' || typeof instance !== 'number' || !Number.isSafeInteger(instance)) throw new Refusal('services.call unpublish: needs /call/entryPoint (string) and /call/instance (integer)');
    const existing = await this.deps.kv.get<EndpointRecord>(endpointKey(artifact, entryPoint, instance));
    if (!existing) return null;
    if (existing.value.nodeId !== this.nodeId) throw new Refusal(`services.call unpublish: endpoint ${entryPoint}:${instance} of ${artifact} belongs to node ${existing.value.nodeId}`);
    await this.channel.unpublishEndpoint(artifact, entryPoint, instance);
    return null;
  }
}

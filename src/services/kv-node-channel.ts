/**
 * `NodeSliceChannel` over the KV store itself, for one node: the in-process node of `arcnet up`
 * uses it directly, and the server side of an agent's session (src/api/agent-services.ts) answers
 * the agent's calls through it after checking the node may make them.
 *
 * The watch is one list of `slices/{node}/` and then the store's watch from the revision that list
 * was read at, so no change between the two is missed or delivered twice. Writes and removals are
 * compare-and-set on the key's modRevision; a refused one says `gone` when the key no longer exists
 * (the leader forgot it) and `conflict` otherwise (the leader wrote since), which is what the
 * deployment manager acts on.
 */
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logging.ts';
import type { KvStore, KvWatch } from '../store/ports.ts';
import { blueprintKey, endpointKey, nodeSlicesPrefix, sliceKey, type Blueprint, type EndpointRecord, type SliceRecord, type SliceSpec } from './model.ts';
import type { ChannelWrite, NodeSliceChannel, NodeSliceEntry } from './ports.ts';

export class KvNodeSliceChannel implements NodeSliceChannel {
  readonly nodeId: string;
  private readonly kv: KvStore;
  private readonly logger: Logger;

  constructor(kv: KvStore, nodeId: string, logger: Logger = silentLogger) {
    this.kv = kv;
    this.nodeId = nodeId;
    this.logger = logger;
  }

  watch(onChange: (artifact: string, entry: NodeSliceEntry | undefined) => void): { close(): void } {
    const prefix = nodeSlicesPrefix(this.nodeId);
    let closed = false;
    let watch: KvWatch | undefined;
    const deliver = (artifact: string, entry: NodeSliceEntry | undefined): void => {
      if (!closed && artifact !== '' && !artifact.includes('/')) onChange(artifact, entry);
    };
    // The listing is asynchronous; the watch is opened from its revision, or not at all if closed meanwhile.
    void (async () => {
      try {
        const listed = await this.kv.list<SliceRecord>(prefix);
        if (closed) return;
        for (const entry of listed.entries) deliver(entry.key.slice(prefix.length), { record: entry.value, revision: entry.modRevision });
        watch = this.kv.watch<SliceRecord>(prefix, listed.revision, (event) => {
          const artifact = event.key.slice(prefix.length);
          deliver(artifact, event.type === 'put' && event.value !== undefined ? { record: event.value, revision: event.revision } : undefined);
        });
      } catch (error) {
        // The store closed or is unreachable: the manager sees no keys, and says why here rather than crashing.
        if (!closed) this.logger.error({ node: this.nodeId, err: errorMessage(error) }, 'could not watch the node\'s slice keys');
      }
    })();
    return {
      close: () => {
        closed = true;
        watch?.close();
        watch = undefined;
      },
    };
  }

  async write(artifact: string, record: SliceRecord, expectedRevision: number): Promise<ChannelWrite> {
    const outcome = await this.kv.put(sliceKey(this.nodeId, artifact), record, { expectedRevision });
    if (outcome.ok) return { ok: true, revision: outcome.revision };
    return { ok: false, reason: outcome.currentRevision === 0 ? 'gone' : 'conflict' };
  }

  async remove(artifact: string, expectedRevision: number): Promise<ChannelWrite> {
    const outcome = await this.kv.delete(sliceKey(this.nodeId, artifact), { expectedRevision });
    if (outcome.ok) return { ok: true, revision: outcome.revision };
    return { ok: false, reason: outcome.currentRevision === 0 ? 'gone' : 'conflict' };
  }

  async spec(blueprint: string, artifact: string): Promise<SliceSpec | undefined> {
    const entry = await this.kv.get<Blueprint>(blueprintKey(blueprint));
    return entry?.value.slices.find((slice) => slice.artifact === artifact);
  }

  async publishEndpoint(artifact: string, entryPoint: string, record: EndpointRecord): Promise<void> {
    await this.kv.put(endpointKey(artifact, entryPoint, record.instance), record);
  }

  /**
   * Only this node's: an instance number re-placed on another node publishes under the same key, and
   * a node cleaning up after its agent restarted must not take that endpoint away.
   */
  async unpublishEndpoint(artifact: string, entryPoint: string, instance: number): Promise<void> {
    const key = endpointKey(artifact, entryPoint, instance);
    const existing = await this.kv.get<EndpointRecord>(key);
    if (existing === undefined || existing.value.nodeId !== this.nodeId) return;
    // Compare-and-set: if another node published it since the read, theirs stays.
    await this.kv.delete(key, { expectedRevision: existing.modRevision });
  }
}

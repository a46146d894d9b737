/**
 * The services frames of the agent session (`/agent`, src/agent/protocol.ts): how `arcnet agent
 * --services` reads and writes its own slice keys through the server it is connected to, which holds
 * the KV. The server side (src/api/agent-services.ts) answers only for the node the session proved it
 * is; the agent side (src/agent/services-channel.ts) is the node's `NodeSliceChannel`.
 *
 *   agent  → server  { type: 'services.watch', runtimes: ['process', 'container'] }   (registers the runner)
 *   server → agent   { type: 'services.snapshot', entries: [{ artifact, entry }] }   (then, in order:)
 *   server → agent   { type: 'services.change', artifact, entry | null }
 *   agent  → server  { type: 'services.call', id, call: ServicesCall }
 *   server → agent   { type: 'services.reply', id, ok: true, value } | { type: 'services.reply', id, ok: false, error }
 */
import type { EndpointRecord, SliceRecord } from './model.ts';
import type { NodeSliceEntry } from './ports.ts';

export const SERVICES_FRAME_PREFIX = 'services.';

export type ServicesCall =
  | { readonly op: 'write'; readonly artifact: string; readonly record: SliceRecord; readonly expectedRevision: number }
  | { readonly op: 'remove'; readonly artifact: string; readonly expectedRevision: number }
  | { readonly op: 'spec'; readonly blueprint: string; readonly artifact: string }
  | { readonly op: 'publish'; readonly artifact: string; readonly entryPoint: string; readonly record: EndpointRecord }
  | { readonly op: 'unpublish'; readonly artifact: string; readonly entryPoint: string; readonly instance: number };

export type ServicesAgentFrame = { readonly type: 'services.watch'; readonly runtimes: readonly ('process' | 'container')[] } | { readonly type: 'services.call'; readonly id: number; readonly call: ServicesCall };

export type ServicesServerFrame =
  | { readonly type: 'services.snapshot'; readonly entries: readonly { readonly artifact: string; readonly entry: NodeSliceEntry }[] }
  | { readonly type: 'services.change'; readonly artifact: string; readonly entry: NodeSliceEntry | null }
  | { readonly type: 'services.reply'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: 'services.reply'; readonly id: number; readonly ok: false; readonly error: string };

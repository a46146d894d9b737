/**
 * The agent session protocol on WebSocket `/agent`: JSON text frames. An agent says hello with its
 * identity, then streams telemetry and results; the server pushes only this node's dispatches.
 *
 *   agent  → server  { type: 'hello', node: AgentIdentity }
 *   server → agent   { type: 'welcome', nodeId, telemetryIntervalMs, credential? } | { type: 'error', message }
 *                    (credential: the node key, once, when an enrolment token enrolled the node)
 *   agent  → server  { type: 'telemetry', telemetry: NodeTelemetry v2 }
 *   server → agent   { type: 'dispatch', dispatch: InferenceDispatch v1 }
 *   agent  → server  { type: 'result', result: InferenceResult v1 }
 *   server → agent   { type: 'error', message }   (a bad frame; the session stays open)
 */
import { Type, type Static } from '@sinclair/typebox';
import { NodeCapacity, type InferenceDispatch, type InferenceResult, type NodeTelemetry } from '../contracts/messages.ts';

export const AgentIdentity = Type.Object({
  id: Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' }),
  name: Type.String({ minLength: 1, maxLength: 255 }),
  geozone: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }),
  geohash: Type.String({ minLength: 6, maxLength: 6, pattern: '^[0-9bcdefghjkmnpqrstuvwxyz]{6}$' }),
  // Bounded as telemetry's own fields are (src/contracts/messages.ts): the hello's become the node's.
  capacity: NodeCapacity,
  tags: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 256 }),
  backend: Type.String({ maxLength: 256 }),
});
export type AgentIdentity = Static<typeof AgentIdentity>;

export type AgentToServer =
  | { type: 'hello'; node: AgentIdentity }
  | { type: 'telemetry'; telemetry: NodeTelemetry }
  | { type: 'result'; result: InferenceResult };

export type ServerToAgent =
  | { type: 'welcome'; nodeId: string; telemetryIntervalMs: number; credential?: string }
  | { type: 'dispatch'; dispatch: InferenceDispatch }
  | { type: 'error'; message: string };

export const AGENT_PATH = '/agent';

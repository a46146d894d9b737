/**
 * Fields a reader may need before it decodes a message, copied into record headers as the message is
 * encoded (src/bus/typed-bus.ts). The scheduler turns a request away by its priority and deadline
 * from these alone (src/inference/admission.ts): past capacity, decoding every body only to reject it
 * would cost as much as routing it. The body stays the truth; a header never admits what the body
 * would not, it can only make a rejection cheaper.
 */
import type { InferenceRequest, SchemaName } from './messages.ts';

export const HEADER_REQUEST_ID = 'arc-request-id';
export const HEADER_PRIORITY = 'arc-priority';
export const HEADER_MAX_LATENCY_MS = 'arc-max-latency-ms';
export const HEADER_MODEL = 'arc-model';

type Projection<T> = Readonly<Record<string, (message: T) => string>>;

const INFERENCE_REQUEST: Projection<InferenceRequest> = {
  [HEADER_REQUEST_ID]: (r) => r.id,
  [HEADER_PRIORITY]: (r) => r.priority,
  [HEADER_MAX_LATENCY_MS]: (r) => String(r.maxLatencyMs),
  [HEADER_MODEL]: (r) => r.modelId,
};

/** The screen headers of a message of this schema (none for most). */
export function screenHeaders(schema: SchemaName, message: unknown): Record<string, string> {
  if (schema !== 'InferenceRequest') return {};
  const out: Record<string, string> = {};
  for (const [name, field] of Object.entries(INFERENCE_REQUEST)) out[name] = field(message as InferenceRequest);
  return out;
}

/**
 * The topic table of seed 001 as data: name, schema, partition key and retention. Regional topics
 * (`{geozone}` in the name) are instantiated per geozone.
 */
import type { SchemaName } from './messages.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export interface TopicSpec {
  /** Topic name; `{geozone}` is replaced per geozone. */
  readonly name: string;
  readonly purpose: string;
  readonly schema: SchemaName;
  /** Which field of the message is the partition key: order is kept per key value. */
  readonly key: string;
  readonly retentionMs: number;
  readonly partitions: number;
}

export const topicTable: readonly TopicSpec[] = [
  { name: 'arc.telemetry.node', purpose: 'Node telemetry updates', schema: 'NodeTelemetry', key: 'id', retentionMs: 7 * DAY, partitions: 12 },
  { name: 'arc.request.inference', purpose: 'Inference requests', schema: 'InferenceRequest', key: 'requesterGeozone', retentionMs: DAY, partitions: 12 },
  { name: 'arc.request.inference.waiting', purpose: 'Inference requests waiting for a free node', schema: 'InferenceRequest', key: 'requesterGeozone', retentionMs: HOUR, partitions: 12 },
  { name: 'arc.command.dispatch.{geozone}', purpose: 'Inference assignments', schema: 'InferenceDispatch', key: 'nodeId', retentionMs: HOUR, partitions: 6 },
  { name: 'arc.result.inference', purpose: 'Inference results', schema: 'InferenceResult', key: 'requestId', retentionMs: 7 * DAY, partitions: 12 },
  { name: 'arc.job.submission', purpose: 'Training job submissions', schema: 'TrainingJob', key: 'id', retentionMs: 30 * DAY, partitions: 3 },
  { name: 'arc.bridge.pending', purpose: 'HPC jobs awaiting transfer', schema: 'HpcJob', key: 'id', retentionMs: 30 * DAY, partitions: 3 },
  { name: 'ornl.bridge.ingress', purpose: 'Jobs ready for ORNL', schema: 'HpcJob', key: 'id', retentionMs: 90 * DAY, partitions: 3 },
  { name: 'arc.scheduler.training', purpose: 'Federated training tasks', schema: 'FederatedTask', key: 'nodeId', retentionMs: 30 * DAY, partitions: 6 },
  { name: 'arc.summary.regional', purpose: 'Regional aggregates', schema: 'RegionalSummary', key: 'geozoneId', retentionMs: 30 * DAY, partitions: 3 },
  { name: 'arc.event.system', purpose: 'System events and alerts', schema: 'SystemEvent', key: 'id', retentionMs: 90 * DAY, partitions: 3 },
];

export const DEAD_LETTER_PREFIX = 'arc.dead-letter.';
export const DEAD_LETTER_RETENTION_MS = 30 * DAY;

export const topics = {
  telemetry: 'arc.telemetry.node',
  inferenceRequest: 'arc.request.inference',
  inferenceWaiting: 'arc.request.inference.waiting',
  inferenceResult: 'arc.result.inference',
  jobSubmission: 'arc.job.submission',
  bridgePending: 'arc.bridge.pending',
  bridgeIngress: 'ornl.bridge.ingress',
  federatedTraining: 'arc.scheduler.training',
  regionalSummary: 'arc.summary.regional',
  systemEvent: 'arc.event.system',
  dispatch: (geozone: string): string => `arc.command.dispatch.${geozone}`,
  deadLetter: (topic: string): string => `${DEAD_LETTER_PREFIX}${topic}`,
} as const;

const specCache = new Map<string, TopicSpec | undefined>();

/** Finds the table entry for a concrete topic name (regional topics match their template). */
export function topicSpecFor(topic: string): TopicSpec | undefined {
  if (specCache.has(topic)) return specCache.get(topic);
  const spec = findSpec(topic);
  if (specCache.size < 10_000) specCache.set(topic, spec);
  return spec;
}

function findSpec(topic: string): TopicSpec | undefined {
  for (const spec of topicTable) {
    if (spec.name === topic) return spec;
    const brace = spec.name.indexOf('{');
    if (brace > 0 && topic.startsWith(spec.name.slice(0, brace)) && topic.length > brace) return spec;
  }
  return undefined;
}

/** The concrete topic list for a set of geozones, for creating topics on start. */
export function concreteTopics(geozones: readonly string[]): { spec: TopicSpec; topic: string }[] {
  const out: { spec: TopicSpec; topic: string }[] = [];
  for (const spec of topicTable) {
    if (spec.name.includes('{geozone}')) {
      for (const zone of geozones) out.push({ spec, topic: spec.name.replace('{geozone}', zone) });
    } else {
      out.push({ spec, topic: spec.name });
    }
  }
  return out;
}

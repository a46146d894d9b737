/**
 * Section 13 of `npm run bench`: the message codec on the routing path (issue 15, ADR 0018), JSON
 * against MessagePack (msgpackr, src/bus/codec.ts), both in the same run. For each message the
 * inference routing step handles (InferenceRequest in, InferenceDispatch out, NodeTelemetry,
 * InferenceResult), built as the API, the scheduler and the nodes build them:
 *  - encode+validate: MessageBus.encode, what a publish costs before the adapter (validation,
 *    key, screen headers, traceparent, the codec);
 *  - decode+validate: decodeRecord, what a subscriber pays per record (headers, the codec, validation);
 *  - the codec alone, each way, and the bytes of the body.
 * A routed request costs one encode and one decode each of a request, a dispatch and a result; that
 * sum is the per-request figure. Rounds alternate the codecs so both see the same machine; the
 * figure per cell is the median round.
 */
import { percentileOfSorted } from '../src/core/stats.ts';
import { seededUuid } from '../src/core/ids.ts';
import type { InferenceDispatch, InferenceRequest, InferenceResult, MessageTypes } from '../src/contracts/messages.ts';
import { topics } from '../src/contracts/topics.ts';
import { MemoryBus } from '../src/bus/memory.ts';
import type { ConsumedRecord } from '../src/bus/ports.ts';
import { MessageBus, decodeRecord } from '../src/bus/typed-bus.ts';
import { codecs, DEFAULT_CODEC, type CodecName } from '../src/bus/codec.ts';
import { seededRandom } from '../src/sim/random.ts';
import { ZONES, request, telemetry } from './mesh-fixtures.ts';

type RoutedSchema = 'InferenceRequest' | 'InferenceDispatch' | 'NodeTelemetry' | 'InferenceResult';
const SCHEMAS: readonly RoutedSchema[] = ['InferenceRequest', 'InferenceDispatch', 'NodeTelemetry', 'InferenceResult'];
const CODECS: readonly CodecName[] = ['json', 'msgpack'];
/** Distinct messages per schema, cycled, so ids and timestamps differ as they do on the bus. */
const DISTINCT = 1_024;

function dispatchFor(ask: InferenceRequest, random: () => number, at: number): InferenceDispatch {
  const geozone = ZONES[Math.floor(random() * ZONES.length)]!;
  return {
    schemaVersion: 1,
    requestId: ask.id,
    nodeId: seededUuid(`bench-${geozone}-${Math.floor(random() * 10_000)}`),
    modelId: ask.modelId,
    contextWindowTokens: ask.contextWindowTokens,
    dispatchedAt: new Date(at).toISOString(),
    fencingToken: 1_000_000 + Math.floor(random() * 1e9),
    geozone,
    requesterGeozone: ask.requesterGeozone,
    score: Math.round(random() * 1000) / 1000,
    priority: ask.priority,
    maxLatencyMs: ask.maxLatencyMs,
  };
}

/** As src/agent/result.ts builds it for a completed run of a simulated node (no output text). */
function resultFor(dispatch: InferenceDispatch, random: () => number, at: number): InferenceResult {
  return {
    schemaVersion: 1,
    requestId: dispatch.requestId,
    nodeId: dispatch.nodeId,
    latencyMs: Math.round(random() * 400_000) / 1000,
    status: 'completed',
    completedAt: new Date(at + 250).toISOString(),
    fencingToken: dispatch.fencingToken!,
    outputTokens: 1 + Math.floor(random() * 512),
  };
}

export function routedMessages(count: number, seed = 13): { [N in RoutedSchema]: MessageTypes[N][] } {
  const random = seededRandom(seed);
  const at = Date.now();
  const requests = Array.from({ length: count }, (_, i) => request(random, i, (['critical', 'normal', 'background'] as const)[i % 3]!, 500 + (i % 4) * 500));
  const dispatches = requests.map((ask, i) => dispatchFor(ask, random, at + i));
  return {
    InferenceRequest: requests,
    InferenceDispatch: dispatches,
    NodeTelemetry: Array.from({ length: count }, (_, i) => telemetry(ZONES[i % ZONES.length]!, i, random)),
    InferenceResult: dispatches.map((dispatch, i) => resultFor(dispatch, random, at + i)),
  };
}

function topicOf(schema: RoutedSchema, message: MessageTypes[RoutedSchema]): string {
  switch (schema) {
    case 'InferenceRequest':
      return topics.inferenceRequest;
    case 'InferenceDispatch':
      return topics.dispatch((message as InferenceDispatch).geozone ?? ZONES[0]!);
    case 'NodeTelemetry':
      return topics.telemetry;
    case 'InferenceResult':
      return topics.inferenceResult;
  }
}

interface Cell {
  encodeNs: number;
  decodeNs: number;
  codecEncodeNs: number;
  codecDecodeNs: number;
  bytes: number;
}

let sink = 0;

/** ns per call of `op` over `iterations` calls, cycling through `DISTINCT` inputs. */
function time(iterations: number, op: (i: number) => number): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink += op(i & (DISTINCT - 1));
  return Number(process.hrtime.bigint() - started) / iterations;
}

function measureRound(bus: MessageBus, codec: CodecName, schema: RoutedSchema, messages: readonly MessageTypes[RoutedSchema][], iterations: number): Cell {
  const topicList = messages.map((message) => topicOf(schema, message));
  const topic = (i: number): string => topicList[i]!;
  const records: ConsumedRecord[] = messages.map((message, i) => ({ ...bus.encode(topic(i), schema, message as never), topic: topic(i), partition: 0, offset: i, timestamp: 0 }));
  const values = records.map((r) => r.value);
  const { encode, decode } = codecs[codec];
  const encodeNs = time(iterations, (i) => bus.encode(topic(i), schema, messages[i] as never).value.byteLength);
  const decodeNs = time(iterations, (i) => {
    const decoded = decodeRecord(records[i]!, schema);
    if (!decoded.ok) throw new Error(`bench ${codec} ${schema}: ${decoded.reason}`);
    return 1;
  });
  const codecEncodeNs = time(iterations, (i) => encode(messages[i]).byteLength);
  const codecDecodeNs = time(iterations, (i) => (decode(values[i]!).ok ? 1 : 0));
  const bytes = values.reduce((sum, v) => sum + v.byteLength, 0) / values.length;
  return { encodeNs, decodeNs, codecEncodeNs, codecDecodeNs, bytes };
}

function median(values: number[]): number {
  return percentileOfSorted(Float64Array.from(values).sort(), 50);
}

const opsPerSecond = (ns: number): string => Math.round(1e9 / ns).toLocaleString('en').padStart(10);

export async function codecSection(quick: boolean): Promise<void> {
  const rounds = quick ? 5 : 9;
  const iterations = quick ? 20_000 : 60_000;
  console.log(`13. Message codec on the routing path (ADR 0018): JSON against MessagePack (msgpackr, useRecords false), ${rounds} alternating rounds of ${iterations.toLocaleString('en')} messages; writer default today: ${DEFAULT_CODEC}`);
  const messages = routedMessages(DISTINCT);
  const buses = Object.fromEntries(CODECS.map((name) => [name, new MessageBus(new MemoryBus(), { codec: name })])) as Record<CodecName, MessageBus>;
  // Warm-up: both codecs' and the validators' code optimised before any round counts.
  for (const schema of SCHEMAS) for (const name of CODECS) measureRound(buses[name], name, schema, messages[schema], iterations / 4);
  const cells = new Map<string, Cell[]>();
  for (let round = 0; round < rounds; round++) {
    for (const schema of SCHEMAS) {
      for (const name of round % 2 === 0 ? CODECS : [...CODECS].reverse()) {
        const key = `${schema}/${name}`;
        const list = cells.get(key) ?? [];
        list.push(measureRound(buses[name], name, schema, messages[schema], iterations));
        cells.set(key, list);
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  const med = (schema: RoutedSchema, name: CodecName): Cell => {
    const list = cells.get(`${schema}/${name}`)!;
    return {
      encodeNs: median(list.map((c) => c.encodeNs)),
      decodeNs: median(list.map((c) => c.decodeNs)),
      codecEncodeNs: median(list.map((c) => c.codecEncodeNs)),
      codecDecodeNs: median(list.map((c) => c.codecDecodeNs)),
      bytes: list[0]!.bytes,
    };
  };
  console.log('   message            codec    encode+validate/s  decode+validate/s  codec encode ns  codec decode ns  bytes');
  for (const schema of SCHEMAS) {
    for (const name of CODECS) {
      const c = med(schema, name);
      console.log(`   ${schema.padEnd(18)} ${name.padEnd(8)} ${opsPerSecond(c.encodeNs)}         ${opsPerSecond(c.decodeNs)}         ${c.codecEncodeNs.toFixed(0).padStart(8)}         ${c.codecDecodeNs.toFixed(0).padStart(8)}    ${c.bytes.toFixed(0).padStart(5)}`);
    }
    const json = med(schema, 'json');
    const pack = med(schema, 'msgpack');
    console.log(`   ${''.padEnd(18)} msgpack/json: encode+validate ${(json.encodeNs / pack.encodeNs).toFixed(2)}x the rate, decode+validate ${(json.decodeNs / pack.decodeNs).toFixed(2)}x, bytes ${(pack.bytes / json.bytes).toFixed(2)}x`);
  }
  const perRequest = (name: CodecName): { ns: number; bytes: number } => {
    const parts = (['InferenceRequest', 'InferenceDispatch', 'InferenceResult'] as const).map((schema) => med(schema, name));
    return { ns: parts.reduce((sum, c) => sum + c.encodeNs + c.decodeNs, 0), bytes: parts.reduce((sum, c) => sum + c.bytes, 0) };
  };
  const json = perRequest('json');
  const pack = perRequest('msgpack');
  console.log(`   per routed request (request, dispatch and result each encoded once and decoded once): json ${(json.ns / 1000).toFixed(2)} µs, ${json.bytes.toFixed(0)} bytes; msgpack ${(pack.ns / 1000).toFixed(2)} µs, ${pack.bytes.toFixed(0)} bytes`);
  const faster = pack.ns < json.ns ? 'msgpack' : 'json';
  console.log(`   msgpack/json: time ${(pack.ns / json.ns).toFixed(2)}x, bytes ${(pack.bytes / json.bytes).toFixed(2)}x; faster on this path: ${faster}`);
  if (sink < 0) console.log(sink); // keeps the measured results alive
}

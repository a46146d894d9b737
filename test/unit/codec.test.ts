/**
 * The message codecs (src/bus/codec.ts) and how the typed bus reads them by content type: every
 * schema survives both codecs as JSON would carry it, a MessagePack record is read by any bus, and
 * what no codec here reads (an unknown content type, a corrupt body) is dead-lettered with a reason.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { randomUUID } from 'node:crypto';
import { MemoryBus } from '../../src/bus/memory.ts';
import type { ConsumedRecord, OutgoingRecord } from '../../src/bus/ports.ts';
import {
  MessageBus,
  decodeRecord,
  HEADER_CONTENT_TYPE,
  HEADER_DLQ_REASON,
  HEADER_SCHEMA,
  HEADER_VERSION,
} from '../../src/bus/typed-bus.ts';
import { codecForContentType, codecs, jsonCodec, msgpackCodec, DEFAULT_CODEC, JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE } from '../../src/bus/codec.ts';
import { schemas, type MessageTypes, type SchemaName, type SystemEvent } from '../../src/contracts/messages.ts';
import { validateMessage } from '../../src/contracts/validation.ts';
import { until } from '../support/until.ts';

const at = '2026-03-01T12:00:00.000Z';
const id = (n: number): string => `00000000-0000-4000-a000-${n.toString(16).padStart(12, '0')}`;

/** For each schema, a message with only its required fields and one with every optional field. */
const samples: { [N in SchemaName]: MessageTypes[N][] } = {
  NodeTelemetry: [
    { schemaVersion: 2, id: id(1), geohash: '9q9k6m', energySource: 'grid', batteryLevel: 0.5, gpuUtilization: 0, gpuMemoryFreeGb: 40, modelsLoaded: [], timestamp: at },
    {
      schemaVersion: 2, id: id(2), geohash: 'dr4e39', energySource: 'battery', batteryLevel: 1, gpuUtilization: 0.123456789, gpuMemoryFreeGb: 79.5, modelsLoaded: ['llama-3-8b', 'whisper-large-v3'],
      timestamp: at, geozone: 'PJM', name: 'pjm-7 ünïcödé ✓', cpuLoad: 0.25, tags: ['a100', 'spot'], capacity: { cpuCores: 64, memoryGb: 512, gpus: 8, gpuMemoryGb: 640 }, datasetsHot: ['s3://bucket/data/shard-0001'],
    },
  ],
  InferenceRequest: [{ schemaVersion: 1, id: id(3), modelId: 'llama-3-70b', contextWindowTokens: 10_000_000, priority: 'critical', maxLatencyMs: 600_000, requesterGeozone: 'CAISO' }],
  InferenceDispatch: [
    { schemaVersion: 1, requestId: id(4), nodeId: id(5), modelId: 'mistral-7b', contextWindowTokens: 1, dispatchedAt: at },
    {
      schemaVersion: 1, requestId: id(4), nodeId: id(5), modelId: 'mistral-7b', contextWindowTokens: 4096, dispatchedAt: at, fencingToken: Number.MAX_SAFE_INTEGER, geozone: 'ERCOT',
      requesterGeozone: 'CAISO', score: -0.731, priority: 'background', maxLatencyMs: 1,
    },
  ],
  InferenceResult: [
    { schemaVersion: 1, requestId: id(6), nodeId: id(7), latencyMs: 0, status: 'failed', completedAt: at, error: 'backend "x" refused: \u0000\n' },
    { schemaVersion: 1, requestId: id(6), nodeId: id(7), latencyMs: 86_400_000, status: 'completed', completedAt: at, fencingToken: 4_294_967_296, outputTokens: 512, output: 'x'.repeat(65_536) },
  ],
  TrainingJob: [
    { schemaVersion: 1, id: id(8), datasetUri: 'file:///data/a', datasetSizeGb: 1e9, estimatedFlops: 1e30 },
    {
      schemaVersion: 1, id: id(8), datasetUri: 'file:///data/a', datasetSizeGb: 0.001, estimatedFlops: 3.14e21, checkpointUri: 'file:///ckpt', target: 'hpc', routingReason: 'too large to federate',
      urgency: 'low', sourceNodeId: id(9), geozone: 'PJM',
    },
  ],
  HpcJob: [
    { schemaVersion: 1, id: id(10), trainingJobId: id(8), datasetUri: 'file:///data/a', datasetSizeGb: 12, destination: 'ornl:/lustre/x', status: 'pending', bytesTransferred: 0, submittedAt: at },
    {
      schemaVersion: 1, id: id(10), trainingJobId: id(8), datasetUri: 'file:///data/a', datasetSizeGb: 12, destination: 'ornl:/lustre/x', status: 'failed', bytesTransferred: Number.MAX_SAFE_INTEGER,
      submittedAt: at, sourceNodeId: id(9), schedulerJobId: '123456', reason: 'node failure', progress: 0.75, checkpointUri: 'file:///ckpt/3', updatedAt: at, geozone: 'PJM',
    },
  ],
  FederatedTask: [
    { schemaVersion: 1, id: id(11), trainingJobId: id(8), round: 0, datasetUri: 'file:///data/a', partition: { index: 0, count: 1 }, issuedAt: at },
    { schemaVersion: 1, id: id(11), trainingJobId: id(8), round: 1_000_000, nodeId: id(12), datasetUri: 'file:///data/a', partition: { index: 999_999, count: 1_000_000 }, checkpointUri: '', issuedAt: at },
  ],
  RegionalSummary: [{ schemaVersion: 1, geozoneId: 'CAISO', totalNodes: 10_000, activeNodes: 9_876, avgGpuUtil: 0.4321, energyBreakdown: { cogen: 1, grid: 2, battery: 0 }, timestamp: at }],
  SystemEvent: [
    { schemaVersion: 1, id: id(13), kind: 'node.lost', severity: 'warn', message: '', timestamp: at },
    {
      schemaVersion: 1, id: id(13), kind: 'alert', severity: 'error', message: 'm', geozone: 'CAISO', subjectId: 's', timestamp: at,
      details: { nested: { list: [1, 2.5, -3, null, true, 'x'], empty: {} }, big: 2 ** 53 - 1, small: -(2 ** 31) - 1, tiny: 5e-324, none: null },
    },
  ],
};

const asJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

function consumed(record: OutgoingRecord, topic = 'arc.request.inference', offset = 0): ConsumedRecord {
  return { ...record, topic, partition: 0, offset, timestamp: 0 };
}

function raw(value: Uint8Array, contentType: string | undefined, schema: SchemaName = 'InferenceRequest'): ConsumedRecord {
  return consumed({
    key: 'CAISO',
    value,
    headers: { [HEADER_SCHEMA]: schema, [HEADER_VERSION]: String(schemas[schema].version), ...(contentType === undefined ? {} : { [HEADER_CONTENT_TYPE]: contentType }) },
  });
}

describe('codecs', () => {
  for (const name of Object.keys(schemas) as SchemaName[]) {
    it(`round-trips every ${name} sample through JSON and MessagePack alike`, () => {
      for (const message of samples[name]) {
        expect(validateMessage(name, message).ok).toBe(true);
        for (const codec of [jsonCodec, msgpackCodec]) {
          const decoded = codec.decode(codec.encode(message));
          expect(decoded).toEqual({ ok: true, value: message });
          expect(decoded.ok && validateMessage(name, decoded.value).ok).toBe(true);
        }
      }
    });
  }

  it('writes MessagePack smaller than JSON, as a standard map a foreign decoder reads (no record extension)', () => {
    const message = samples.InferenceDispatch[1]!;
    const packed = msgpackCodec.encode(message);
    expect(packed.byteLength).toBeLessThan(jsonCodec.encode(message).byteLength);
    // A fixmap of 12 entries, then the first key as a fixstr: no 0xd4 0x72 record definition.
    expect(packed[0]).toBe(0x80 | 12);
    expect(packed.subarray(2, 2 + 'schemaVersion'.length).toString()).toBe('schemaVersion');
  });

  it('leaves out an optional field set to undefined, as JSON does, so the message stays valid', () => {
    const message = { schemaVersion: 1, requestId: id(6), nodeId: id(7), latencyMs: 3, status: 'completed', completedAt: at, error: undefined, output: undefined } as const;
    expect(validateMessage('InferenceResult', message).ok).toBe(true);
    const decoded = msgpackCodec.decode(msgpackCodec.encode(message));
    expect(decoded.ok && Object.keys(decoded.value as object)).toEqual(Object.keys(asJson(message) as object));
    expect(decoded.ok && validateMessage('InferenceResult', decoded.value).ok).toBe(true);
  });

  it('gives any JSON value in a SystemEvent the value JSON gives', () => {
    // msgpackr renames a "__proto__" key (its guard against prototype pollution), which JSON.parse keeps.
    const key = fc.string().filter((k) => k !== '__proto__');
    const value = fc.letrec((tie) => ({
      any: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.boolean(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), fc.maxSafeInteger(), fc.string(), fc.constant(undefined),
        fc.array(tie('any')), fc.dictionary(key, tie('any'))),
    })).any;
    fc.assert(fc.property(fc.dictionary(key, value), (details) => {
      const event: SystemEvent = { ...samples.SystemEvent[0]!, details };
      const decoded = msgpackCodec.decode(msgpackCodec.encode(event));
      expect(decoded).toEqual({ ok: true, value: asJson(event) });
      // toEqual treats -0 as 0 and an undefined key as absent: the bytes of JSON's own rendering say more.
      expect(decoded.ok && JSON.stringify(decoded.value)).toBe(JSON.stringify(event));
    }), { numRuns: 500 });
  });

  it('reads the content type case- and parameter-blind, with the unregistered MessagePack names as aliases', () => {
    expect(codecForContentType(undefined)).toBe(jsonCodec);
    expect(codecForContentType('Application/JSON; charset=utf-8')).toBe(jsonCodec);
    for (const type of [MSGPACK_CONTENT_TYPE, 'application/msgpack', 'application/x-msgpack', 'APPLICATION/VND.MSGPACK ; q=1']) expect(codecForContentType(type)).toBe(msgpackCodec);
    for (const type of ['text/plain', 'application/cbor', '', 'application/jsonx']) expect(codecForContentType(type)).toBeUndefined();
    expect(codecs[DEFAULT_CODEC].contentType).toBe(JSON_CONTENT_TYPE);
  });
});

describe('typed bus by content type', () => {
  const ask = samples.InferenceRequest[0]!;

  it('writes the configured codec with its content type, JSON by default', () => {
    const byDefault = new MessageBus(new MemoryBus()).encode('arc.request.inference', 'InferenceRequest', ask);
    expect(byDefault.headers[HEADER_CONTENT_TYPE]).toBe(JSON_CONTENT_TYPE);
    expect(JSON.parse(Buffer.from(byDefault.value).toString())).toEqual(ask);
    const packed = new MessageBus(new MemoryBus(), { codec: 'msgpack' }).encode('arc.request.inference', 'InferenceRequest', ask);
    expect(packed.headers[HEADER_CONTENT_TYPE]).toBe(MSGPACK_CONTENT_TYPE);
    expect(msgpackCodec.decode(packed.value)).toEqual({ ok: true, value: ask });
  });

  it('reads a record written as MessagePack, and one with no content type as JSON', () => {
    for (const name of Object.keys(schemas) as SchemaName[]) {
      for (const message of samples[name]) {
        const written = new MessageBus(new MemoryBus(), { codec: 'msgpack' }).encode('arc.request.inference', name, message as never);
        expect(decodeRecord(consumed(written), name)).toEqual({ ok: true, message });
      }
    }
    expect(decodeRecord(raw(Buffer.from(JSON.stringify(ask)), undefined), 'InferenceRequest')).toEqual({ ok: true, message: ask });
    expect(decodeRecord(raw(msgpackCodec.encode(ask), 'application/x-msgpack'), 'InferenceRequest')).toEqual({ ok: true, message: ask });
  });

  it('names an unknown content type, and says what is wrong with a corrupt MessagePack body', () => {
    const unknown = decodeRecord(raw(Buffer.from(JSON.stringify(ask)), 'application/cbor'), 'InferenceRequest');
    expect(unknown).toEqual({ ok: false, reason: 'arc.request.inference[0]@0: unsupported content-type application/cbor' });
    const packed = msgpackCodec.encode(ask);
    const corrupt = [
      ['truncated', packed.subarray(0, packed.byteLength - 5)],
      ['trailing bytes', Buffer.concat([packed, Buffer.from([0xc0])])],
      ['JSON labelled MessagePack', Buffer.from(JSON.stringify(ask))],
      ['empty', Buffer.alloc(0)],
      ['a reserved byte', Buffer.from([0xc1])],
    ] as const;
    for (const [what, body] of corrupt) {
      const decoded = decodeRecord(raw(body, MSGPACK_CONTENT_TYPE), 'InferenceRequest');
      expect(decoded.ok, what).toBe(false);
      expect(!decoded.ok && decoded.reason, what).toMatch(/^arc\.request\.inference\[0\]@0: payload is not valid MessagePack \(.+\)$/);
    }
    // Well-formed MessagePack of the wrong shape is refused by validation, as JSON of it would be.
    const wrongShape = decodeRecord(raw(msgpackCodec.encode({ ...ask, maxLatencyMs: '500' }), MSGPACK_CONTENT_TYPE), 'InferenceRequest');
    expect(!wrongShape.ok && wrongShape.reason).toMatch(/invalid InferenceRequest v1: \/maxLatencyMs/);
  });

  it('dead-letters an unknown content type and a corrupt MessagePack body with their reasons, and delivers both codecs', async () => {
    const adapter = new MemoryBus({ retryBaseMs: 5, retryCapMs: 20 });
    const topic = `codec-${randomUUID()}`;
    const headers = { [HEADER_SCHEMA]: 'InferenceRequest', [HEADER_VERSION]: '1' };
    await new MessageBus(adapter).publish(topic, 'InferenceRequest', { ...ask, id: id(101) });
    await new MessageBus(adapter, { codec: 'msgpack' }).publish(topic, 'InferenceRequest', { ...ask, id: id(102) });
    await adapter.produce(topic, [{ key: 'CAISO', value: Buffer.from(JSON.stringify(ask)), headers: { ...headers, [HEADER_CONTENT_TYPE]: 'text/yaml' } }]);
    await adapter.produce(topic, [{ key: 'CAISO', value: msgpackCodec.encode(ask).subarray(0, 20), headers: { ...headers, [HEADER_CONTENT_TYPE]: MSGPACK_CONTENT_TYPE } }]);
    const received: string[] = [];
    const dead: ConsumedRecord[] = [];
    const typed = new MessageBus(adapter);
    const consumer = await typed.subscribe(`g-${randomUUID()}`, [topic], 'InferenceRequest', (m) => void received.push(m.id));
    const dlq = await adapter.consume({ group: `g-${randomUUID()}`, topics: [`arc.dead-letter.${topic}`], handler: (r) => void dead.push(r) });
    await until(() => received.length === 2 && dead.length === 2);
    expect(received.sort()).toEqual([id(101), id(102)]);
    const reasons = dead.map((r) => r.headers[HEADER_DLQ_REASON]!);
    expect(reasons.filter((r) => /: payload is not valid MessagePack \(.+\)$/.test(r))).toHaveLength(1);
    expect(reasons.filter((r) => r.endsWith(': unsupported content-type text/yaml'))).toHaveLength(1);
    await Promise.all([consumer.close(), dlq.close(), adapter.close()]);
  });
});

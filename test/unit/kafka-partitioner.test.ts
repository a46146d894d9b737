/**
 * The Kafka partitioner in 32-bit arithmetic against the library's BigInt murmur2 (a port of
 * kafka-clients' Utils.murmur2) on any bytes, and against partitions kafka-clients computes.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { murmur2 as libraryMurmur2 } from '@platformatic/kafka';
import { javaPartitioner, murmur2 } from '../../src/bus/kafka-partitioner.ts';

describe('Kafka partitioner', () => {
  it('hashes any bytes as the reference murmur2 does, every length modulo 4 included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70 }), (bytes) => {
        expect(murmur2(bytes)).toBe(libraryMurmur2(Buffer.from(bytes)));
      }),
      { numRuns: 3_000 },
    );
    expect(murmur2(new Uint8Array(0))).toBe(libraryMurmur2(Buffer.alloc(0)));
    expect(murmur2(new Uint8Array([0xff, 0xff, 0xff]))).toBe(libraryMurmur2(Buffer.from([0xff, 0xff, 0xff])));
  });

  it('puts keys in the partitions kafka-clients does', () => {
    // Utils.toPositive(Utils.murmur2(utf8(key))) % 12, as the bus contract suite checks on a broker.
    const expected: Record<string, number> = { CAISO: 2, ERCOT: 2, 'node-1': 10 };
    for (const [key, partition] of Object.entries(expected)) expect(javaPartitioner(undefined, Buffer.from(key)) % 12, key).toBe(partition);
    expect(javaPartitioner(undefined, undefined)).toBe(0);
  });
});

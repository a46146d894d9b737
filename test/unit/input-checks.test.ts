/**
 * The pieces of input strictness on their own: the instant range, the per-part validator on a bare
 * Fastify (no coercion of bodies, plain-decimal parsing of text parts), and the rate limit on
 * logging a client's protocol errors.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import Fastify from 'fastify';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Type } from '@sinclair/typebox';
import { isInstant, MAX_INSTANT_MS, parseInstant } from '../../src/core/instants.ts';
import { installRequestValidation } from '../../src/api/validator.ts';
import { ClientErrorLog } from '../../src/api/client-errors.ts';
import { validateMessage } from '../../src/contracts/validation.ts';

describe('instants', () => {
  it('takes ISO-8601 and, where asked, epoch milliseconds, from 1970 to the end of 9999', () => {
    expect(parseInstant('1970-01-01T00:00:00Z')).toEqual({ ok: true, ms: 0 });
    expect(parseInstant('9999-12-31T23:59:59.999Z')).toEqual({ ok: true, ms: MAX_INSTANT_MS });
    expect(parseInstant('2026-12-02T01:00:00+01:00')).toEqual({ ok: true, ms: Date.UTC(2026, 11, 2, 0) });
    expect(parseInstant(String(MAX_INSTANT_MS), { epochMs: true })).toEqual({ ok: true, ms: MAX_INSTANT_MS });
    for (const text of [String(MAX_INSTANT_MS + 1), '99999999999999999', '8640000000000001']) {
      expect(parseInstant(text, { epochMs: true }), text).toMatchObject({ ok: false, problem: expect.stringMatching(/outside the supported range/) });
    }
    for (const text of ['+300000-01-01T00:00:00Z', '+275760-09-13T00:00:00Z', '+010000-01-01T00:00:00Z', '1969-12-31T23:59:59.999Z']) {
      expect(parseInstant(text), text).toMatchObject({ ok: false, problem: expect.stringMatching(/outside the supported range 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z/) });
    }
    // Date.parse reads these; none is ISO-8601, and digits are only milliseconds when the caller says so.
    for (const text of ['1', 'March 1 2024', 'Tue, 01 Dec 2026 00:00:00 GMT', '2026/12/01', '1700000000000']) {
      expect(parseInstant(text), text).toMatchObject({ ok: false, problem: expect.stringMatching(/is not an ISO-8601 instant/) });
    }
    expect(parseInstant('2026-02-30T00:00:00Z')).toMatchObject({ ok: false, problem: expect.stringMatching(/is not a valid date/) });
    expect(parseInstant('2028-02-29T00:00:00Z')).toEqual({ ok: true, ms: Date.UTC(2028, 1, 29) });
    expect(parseInstant('x'.repeat(10_000))).toMatchObject({ ok: false, problem: expect.stringMatching(/^"x{61}\.\.\." is not/) });
  });

  it('tells a canonical instant by arithmetic as Date does: every day of every month, leap years by the Gregorian rule', () => {
    const canonical = (y: number, m: number, d: number, rest: string): string => `${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}T${rest}Z`;
    fc.assert(
      fc.property(fc.integer({ min: 1970, max: 9999 }), fc.integer({ min: 0, max: 13 }), fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 86_399_999 }), (y, m, d, msOfDay) => {
        const rest = new Date(msOfDay).toISOString().slice(11, 23);
        const text = canonical(y, m, d, rest);
        const reference = Date.UTC(y, m - 1, d);
        const exists = m >= 1 && m <= 12 && d >= 1 && new Date(reference).getUTCDate() === d;
        expect(isInstant(text), text).toBe(exists);
        expect(parseInstant(text), text).toEqual(exists ? { ok: true, ms: reference + msOfDay } : { ok: false, problem: expect.any(String) });
      }),
      { numRuns: 2_000 },
    );
    for (const [text, ok] of [['2000-02-29T00:00:00.000Z', true], ['1900-02-29T00:00:00.000Z', false], ['2100-02-29T00:00:00.000Z', false], ['2024-02-29T12:00:00.000Z', true], ['2026-04-31T00:00:00.000Z', false], ['2026-13-01T00:00:00.000Z', false], ['2026-1a-01T00:00:00.000Z', false]] as const) {
      expect(isInstant(text), text).toBe(ok);
      expect(parseInstant(text).ok, text).toBe(ok);
    }
  });

  it('holds bus messages to the same range, and coerces nothing on the bus', () => {
    const telemetry = { schemaVersion: 2, id: '6f1d3c4e-0000-4000-8000-000000000001', geohash: '9q9hvu', energySource: 'grid', batteryLevel: 0.5, gpuUtilization: 0.5, gpuMemoryFreeGb: 1, modelsLoaded: [], timestamp: '2026-12-02T00:00:00.000Z' };
    expect(validateMessage('NodeTelemetry', telemetry).ok).toBe(true);
    expect(validateMessage('NodeTelemetry', { ...telemetry, timestamp: '+275760-09-13T00:00:00.000Z' })).toMatchObject({ ok: false, error: expect.stringMatching(/^\/timestamp: .* is outside the supported range/) });
    expect(validateMessage('NodeTelemetry', { ...telemetry, batteryLevel: '0.5' })).toEqual({ ok: false, error: '/batteryLevel: Expected number' });
    expect(validateMessage('NodeTelemetry', { ...telemetry, gpuMemoryFreeGb: Number.POSITIVE_INFINITY })).toEqual({ ok: false, error: '/gpuMemoryFreeGb: Expected number' });
    expect(validateMessage('NodeTelemetry', { ...telemetry, capacity: { cpuCores: 5_000, memoryGb: 1, gpus: 0 } })).toMatchObject({ ok: false, error: '/capacity/cpuCores: Expected number to be less or equal to 4096' });
  });
});

describe('the request validator', () => {
  const server = async (): Promise<ReturnType<typeof Fastify>> => {
    const app = Fastify();
    installRequestValidation(app);
    const query = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })), ratio: Type.Optional(Type.Number({ maximum: 10 })), flag: Type.Optional(Type.Boolean()), ids: Type.Optional(Type.Array(Type.Integer())) }, { additionalProperties: false });
    const body = Type.Object({ n: Type.Integer(), b: Type.Optional(Type.Boolean()), list: Type.Optional(Type.Array(Type.String())), when: Type.Optional(Type.String({ format: 'date-time' })) }, { additionalProperties: false });
    app.get('/q', { schema: { querystring: query } }, async (request) => ({ query: request.query }));
    app.post('/b', { schema: { body } }, async (request) => ({ body: request.body }));
    // Encapsulated, as the job routes are: the validator is inherited.
    await app.register(async (scope) => {
      scope.post('/scoped', { schema: { body } }, async (request) => ({ body: request.body }));
    });
    return app;
  };

  it('parses text parts into their types only when written plainly', async () => {
    const app = await server();
    const get = async (qs: string): Promise<{ status: number; json: Record<string, unknown> }> => {
      const response = await app.inject({ method: 'GET', url: `/q?${qs}` });
      return { status: response.statusCode, json: response.json() };
    };
    expect(await get('limit=20&ratio=2.5&flag=true&ids=1&ids=2')).toEqual({ status: 200, json: { query: { limit: 20, ratio: 2.5, flag: true, ids: [1, 2] } } });
    expect(await get('ids=3')).toEqual({ status: 200, json: { query: { ids: [3] } } });
    for (const [qs, message] of [
      ['limit=0x10', 'querystring/limit must be integer'],
      ['limit=Infinity', 'querystring/limit must be integer'],
      ['limit=%207', 'querystring/limit must be integer'],
      ['limit=1e3', 'querystring/limit must be integer'],
      ['limit=99999999999999999', 'querystring/limit must be integer'],
      ['ratio=Infinity', 'querystring/ratio must be number'],
      ['ratio=NaN', 'querystring/ratio must be number'],
      ['flag=1', 'querystring/flag must be boolean'],
      ['ids=0x1', 'querystring/ids/0 must be integer'],
    ]) {
      const answer = await get(qs!);
      expect(answer.status, qs).toBe(400);
      expect(answer.json['message'], qs).toBe(message);
    }
    await app.close();
  });

  it('validates bodies exactly as sent, on the root and in encapsulated plugins', async () => {
    const app = await server();
    for (const url of ['/b', '/scoped']) {
      const post = async (payload: string): Promise<{ status: number; message: unknown }> => {
        const response = await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload });
        return { status: response.statusCode, message: (response.json() as { message?: unknown }).message };
      };
      expect((await app.inject({ method: 'POST', url, payload: { n: 3, b: false, list: ['a'], when: '2026-12-02T00:00:00Z' } })).json()).toEqual({ body: { n: 3, b: false, list: ['a'], when: '2026-12-02T00:00:00Z' } });
      expect(await post('{"n":"3"}')).toEqual({ status: 400, message: 'body/n must be integer' });
      expect(await post('{"n":true}')).toEqual({ status: 400, message: 'body/n must be integer' });
      expect(await post('{"n":1e400}')).toEqual({ status: 400, message: 'body/n must be integer' });
      expect(await post('{"n":1,"b":"true"}')).toEqual({ status: 400, message: 'body/b must be boolean' });
      expect(await post('{"n":1,"list":"a"}')).toEqual({ status: 400, message: 'body/list must be array' });
      expect(await post('{"n":1,"when":"+275760-09-13T00:00:00Z"}')).toMatchObject({ status: 400, message: expect.stringMatching(/^body\/when must match format "date-time"/) });
      expect(await post('{"n":1,"when":"10000-01-01T00:00:00Z"}')).toMatchObject({ status: 400 });
      expect(await post('{"n":1,"extra":1}')).toEqual({ status: 400, message: 'body must NOT have additional properties' });
    }
    await app.close();
  });
});

describe('client protocol errors in the log', () => {
  const capture = (): { logger: pino.Logger; entries: { level: number; suppressed?: number; problem?: string }[] } => {
    const entries: { level: number; suppressed?: number; problem?: string }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) entries.push(JSON.parse(line) as { level: number });
        done();
      },
    });
    return { logger: pino({ level: 'debug', base: undefined }, sink), entries };
  };
  const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  it('warns at most once per 10 s, at debug in between, and counts what it held back in the next warning', async () => {
    const { logger, entries } = capture();
    let now = 1_000_000;
    const log = new ClientErrorLog(logger, { session: 's1' }, { now: () => now });
    log.note('first');
    for (let i = 0; i < 5; i++) {
      now += 1_000;
      log.note(`again ${i}`);
    }
    now += 4_999; // 9,999 ms after the warning: still inside the window
    log.note('inside');
    now += 1; // 10,000 ms after it: a new window
    log.note('next window');
    await flush();
    expect(entries.map((e) => [e.level, e.problem, e.suppressed])).toEqual([
      [40, 'first', 0],
      [20, 'again 0', undefined],
      [20, 'again 1', undefined],
      [20, 'again 2', undefined],
      [20, 'again 3', undefined],
      [20, 'again 4', undefined],
      [20, 'inside', undefined],
      [40, 'next window', 6],
    ]);
  });
});

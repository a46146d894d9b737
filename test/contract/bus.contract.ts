/**
 * Bus contract: every adapter (in-memory now, Kafka later) must pass these. Topic names carry a
 * random suffix so a shared broker can run the suite repeatedly.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { BusAdapter, ConsumedRecord } from '../../src/bus/ports.ts';
import { MessageBus, HEADER_DLQ_REASON, HEADER_DLQ_TOPIC, HEADER_SCHEMA, HEADER_VERSION } from '../../src/bus/typed-bus.ts';
import type { InferenceRequest } from '../../src/contracts/messages.ts';
import { until } from '../support/until.ts';

const encoder = new TextEncoder();
const text = (record: ConsumedRecord): string => new TextDecoder().decode(record.value);


function request(overrides: Partial<InferenceRequest> = {}): InferenceRequest {
  return {
    schemaVersion: 1,
    id: randomUUID(),
    modelId: 'llama-3-70b',
    contextWindowTokens: 2048,
    priority: 'normal',
    maxLatencyMs: 500,
    requesterGeozone: 'CAISO',
    ...overrides,
  };
}

export function busContract(name: string, open: () => Promise<BusAdapter>): void {
  describe(`Bus contract: ${name}`, () => {
    let bus: BusAdapter;
    let topic: string;
    beforeEach(async () => {
      bus = await open();
      topic = `contract.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopics([{ topic, partitions: 4, retentionMs: 3_600_000 }]);
    });
    afterEach(async () => {
      await bus.close();
    });

    it('keeps order per key and puts one key in one partition', async () => {
      const keys = ['a', 'b', 'c', 'd', 'e'];
      const records = Array.from({ length: 200 }, (_, i) => ({ key: keys[i % keys.length]!, value: encoder.encode(String(i)), headers: {} }));
      await bus.produce(topic, records);
      const seen = new Map<string, number[]>();
      const partitionOf = new Map<string, Set<number>>();
      const consumer = await bus.consume({
        group: `g-${randomUUID()}`,
        topics: [topic],
        handler: (record) => {
          seen.set(record.key, [...(seen.get(record.key) ?? []), Number(text(record))]);
          partitionOf.set(record.key, (partitionOf.get(record.key) ?? new Set()).add(record.partition));
        },
      });
      await until(() => [...seen.values()].reduce((n, v) => n + v.length, 0) === 200);
      for (const key of keys) {
        const values = seen.get(key)!;
        expect(values).toEqual([...values].sort((x, y) => x - y));
        expect(partitionOf.get(key)!.size).toBe(1);
      }
      await consumer.close();
    });

    it('gives every group every record, and splits a group\'s records between its members exactly once', async () => {
      const total = 300;
      const group = `g-${randomUUID()}`;
      const byMember: number[][] = [[], []];
      const members = await Promise.all([0, 1].map((m) => bus.consume({ group, topics: [topic], handler: (r) => void byMember[m]!.push(Number(text(r))) })));
      const other: number[] = [];
      const otherGroup = await bus.consume({ group: `g-${randomUUID()}`, topics: [topic], handler: (r) => void other.push(Number(text(r))) });
      // Produced once both members are in: over a network, the member whose join completes first may
      // legitimately drain a backlog before its peer's join completes.
      await bus.produce(topic, Array.from({ length: total }, (_, i) => ({ key: `k${i}`, value: encoder.encode(String(i)), headers: {} })));
      await until(() => byMember[0]!.length + byMember[1]!.length === total && other.length === total);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const all = [...byMember[0]!, ...byMember[1]!].sort((a, b) => a - b);
      expect(all).toEqual(Array.from({ length: total }, (_, i) => i));
      expect(byMember[0]!.length).toBeGreaterThan(0);
      expect(byMember[1]!.length).toBeGreaterThan(0);
      expect([...other].sort((a, b) => a - b)).toEqual(all);
      await Promise.all([...members, otherGroup].map((c) => c.close()));
    });

    it('redelivers a record whose handler failed and commits only after success', async () => {
      await bus.produce(topic, [{ key: 'x', value: encoder.encode('one'), headers: {} }]);
      const group = `g-${randomUUID()}`;
      const partitions = await bus.partitions(topic);
      const committed = async (): Promise<number> => {
        let total = 0;
        for (let p = 0; p < partitions; p++) total += await bus.committed(group, topic, p);
        return total;
      };
      let calls = 0;
      const committedWhileFailing: number[] = [];
      const consumer = await bus.consume({
        group,
        topics: [topic],
        handler: async () => {
          calls++;
          if (calls < 3) {
            committedWhileFailing.push(await committed());
            throw new Error('transient');
          }
        },
      });
      await until(() => calls >= 3, 'the third delivery', 15_000);
      // Read again on every poll: the commit after the successful third call must reach exactly 1.
      await until(async () => (await committed()) === 1, 'the committed offset to reach 1 after the handler succeeded', 15_000, { intervalMs: 50 });
      expect(committedWhileFailing).toEqual([0, 0]);
      // Committed past the record: it is not delivered again, and the offset stays at 1.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(calls).toBe(3);
      expect(await committed()).toBe(1);
      await consumer.close();
    });

    it('resumes a group from its committed offsets after a member leaves (nothing lost, nothing skipped)', async () => {
      const group = `g-${randomUUID()}`;
      await bus.produce(topic, Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(String(i)), headers: {} })));
      const first: number[] = [];
      const c1 = await bus.consume({ group, topics: [topic], handler: (r) => void first.push(Number(text(r))) });
      await until(() => first.length === 50);
      await c1.close();
      await bus.produce(topic, Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(String(50 + i)), headers: {} })));
      const second: number[] = [];
      const c2 = await bus.consume({ group, topics: [topic], handler: (r) => void second.push(Number(text(r))) });
      await until(() => second.length >= 50);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect([...second].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => 50 + i));
      await c2.close();
    });

    it('hands a closed member\'s unfinished record to the remaining member (at-least-once)', async () => {
      const group = `g-${randomUUID()}`;
      const done = new Set<string>();
      let release: () => void = () => undefined;
      const stuck = new Promise<void>((resolve) => { release = resolve; });
      const c1 = await bus.consume({
        group,
        topics: [topic],
        handler: async (r) => {
          if (text(r) === 'slow') await stuck;
        },
      });
      await bus.produce(topic, [{ key: 'slow-key', value: encoder.encode('slow'), headers: {} }]);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const c2 = await bus.consume({ group, topics: [topic], handler: (r) => void done.add(text(r)) });
      const closing = c1.close();
      release();
      await closing;
      await until(() => done.has('slow'));
      await c2.close();
    });

    it('starts a new group at the end when asked for only new records', async () => {
      await bus.produce(topic, [{ key: 'old', value: encoder.encode('old'), headers: {} }]);
      const seen: string[] = [];
      const consumer = await bus.consume({ group: `g-${randomUUID()}`, topics: [topic], startAt: 'latest', handler: (r) => void seen.push(text(r)) });
      await bus.produce(topic, [{ key: 'new', value: encoder.encode('new'), headers: {} }]);
      await until(() => seen.length === 1);
      expect(seen).toEqual(['new']);
      await consumer.close();
    });

    describe('transactional consume-produce', () => {
      const readAll = async (name: string): Promise<string[]> => {
        const out: string[] = [];
        const partitions = await bus.partitions(name);
        for (let p = 0; p < partitions; p++) for (const r of await bus.read(name, p, 0, 10_000)) out.push(text(r));
        return out;
      };
      const committedTotal = async (group: string): Promise<number> => {
        let total = 0;
        for (let p = 0; p < 4; p++) total += await bus.committed(group, topic, p);
        return total;
      };

      it('commits each batch\'s output with its offsets: every input produces its output once, in partition order', async () => {
        const out = `${topic}.out`;
        await bus.ensureTopics([{ topic: out, partitions: 2, retentionMs: 3_600_000 }]);
        const group = `g-${randomUUID()}`;
        await bus.produce(topic, Array.from({ length: 120 }, (_, i) => ({ key: `k${i % 7}`, value: encoder.encode(String(i)), headers: {} })));
        const order = new Map<string, number[]>();
        let committedTasks = 0;
        let batches = 0;
        const consumer = await bus.consumeTransactional({
          group,
          topics: [topic],
          transactionalId: `contract-${group}`,
          maxBatch: 16,
          handler: async (records, output) => {
            batches++;
            expect(records.length).toBeLessThanOrEqual(16);
            expect(new Set(records.map((r) => r.partition)).size).toBe(1);
            output.produce(out, records.map((r) => ({ key: r.key, value: encoder.encode(`out-${text(r)}`), headers: {} })));
            // Order is judged on what committed: a batch whose transaction the broker aborted is handed
            // over again, so the handler may see records twice, but only one of those runs commits.
            output.afterCommit(() => {
              committedTasks += records.length;
              for (const r of records) {
                const seen = order.get(r.key) ?? [];
                seen.push(Number(text(r)));
                order.set(r.key, seen);
              }
            });
          },
        });
        await until(async () => committedTasks === 120, 'the transactional batches', 20_000);
        await until(async () => (await committedTotal(group)) === 120, 'the transactional batches', 20_000);
        const produced = await readAll(out);
        expect(produced.length).toBe(120);
        expect(new Set(produced).size).toBe(120);
        for (const seen of order.values()) expect(seen).toEqual([...new Set(seen)].sort((a, b) => a - b));
        expect(batches).toBeLessThan(120);
        await consumer.close();
      });

      it('takes only the prefix a handler says it took: the rest open the next batch, none lost or handled twice', async () => {
        const out = `${topic}.out`;
        await bus.ensureTopics([{ topic: out, partitions: 1, retentionMs: 3_600_000 }]);
        const group = `g-${randomUUID()}`;
        // One key, so one partition and one order: 0..59.
        await bus.produce(topic, Array.from({ length: 60 }, (_, i) => ({ key: 'one', value: encoder.encode(String(i)), headers: {} })));
        const firsts: number[] = [];
        const ends = new Set<number>([0]);
        const committed: number[] = [];
        const consumer = await bus.consumeTransactional({
          group,
          topics: [topic],
          transactionalId: `contract-${group}`,
          maxBatch: 20,
          handler: async (records, output) => {
            // Takes at most 3 of what it is handed; the records it leaves must come first next time.
            const taken = records.slice(0, 3);
            firsts.push(Number(text(records[0]!)));
            ends.add(Number(text(taken[taken.length - 1]!)) + 1);
            output.produce(out, taken.map((r) => ({ key: r.key, value: encoder.encode(`out-${text(r)}`), headers: {} })));
            output.afterCommit(() => void committed.push(...taken.map((r) => Number(text(r)))));
            return taken.length;
          },
        });
        await until(async () => (await committedTotal(group)) === 60, 'every record taken, three at a time', 30_000);
        await until(() => committed.length === 60, 'the afterCommit tasks', 5_000);
        expect(committed).toEqual(Array.from({ length: 60 }, (_, i) => i));
        // Each batch began where a taken prefix ended (a batch the broker aborted is handed over again from its start).
        for (const first of firsts) expect(ends.has(first), `a batch began at ${first}`).toBe(true);
        expect(firsts.length).toBeGreaterThanOrEqual(20);
        const produced = await readAll(out);
        expect(produced).toEqual(Array.from({ length: 60 }, (_, i) => `out-${i}`));
        await consumer.close();
      });

      it('refuses a handler that claims to take none, or more than it was handed, and hands the records over again', async () => {
        const group = `g-${randomUUID()}`;
        await bus.produce(topic, [{ key: 'one', value: encoder.encode('payload'), headers: {} }]);
        const claims = [0, 2, 1];
        let calls = 0;
        const consumer = await bus.consumeTransactional({
          group,
          topics: [topic],
          transactionalId: `contract-${group}`,
          handler: async () => claims[Math.min(calls++, claims.length - 1)],
        });
        await until(async () => (await committedTotal(group)) === 1, 'the valid claim to commit', 20_000);
        expect(calls).toBe(3);
        await consumer.close();
      });

      it('publishes nothing from a batch whose handler failed and hands the same records over again', async () => {
        const out = `${topic}.out`;
        await bus.ensureTopics([{ topic: out, partitions: 1, retentionMs: 3_600_000 }]);
        const group = `g-${randomUUID()}`;
        await bus.produce(topic, [{ key: 'one', value: encoder.encode('payload'), headers: {} }]);
        let calls = 0;
        let commits = 0;
        const consumer = await bus.consumeTransactional({
          group,
          topics: [topic],
          transactionalId: `contract-${group}`,
          handler: async (records, output) => {
            calls++;
            output.produce(out, records.map((r) => ({ key: r.key, value: encoder.encode(`attempt-${calls}`), headers: {} })));
            output.afterCommit(() => void commits++);
            if (calls < 3) throw new Error('outage');
          },
        });
        await until(() => commits === 1, 'the transactional batches', 20_000);
        await until(async () => (await committedTotal(group)) === 1, 'the transactional batches', 20_000);
        expect(calls).toBe(3);
        expect(await readAll(out)).toEqual(['attempt-3']);
        await consumer.close();
      });

      it('lets a second member resume after the first leaves with nothing handled twice', async () => {
        const out = `${topic}.out`;
        await bus.ensureTopics([{ topic: out, partitions: 1, retentionMs: 3_600_000 }]);
        const group = `g-${randomUUID()}`;
        const member = (seen: string[]) =>
          bus.consumeTransactional({
            group,
            topics: [topic],
            transactionalId: `contract-${group}`,
            maxBatch: 5,
            handler: async (records, output) => {
              output.produce(out, records.map((r) => ({ key: r.key, value: r.value, headers: {} })));
              output.afterCommit(() => void seen.push(...records.map(text)));
            },
          });
        const first: string[] = [];
        const c1 = await member(first);
        await bus.produce(topic, Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(`a${i}`), headers: {} })));
        await until(() => first.length === 40, 'the transactional batches', 20_000);
        await c1.close();
        const second: string[] = [];
        const c2 = await member(second);
        await bus.produce(topic, Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(`b${i}`), headers: {} })));
        await until(() => second.length === 40, 'the transactional batches', 20_000);
        expect(second.every((v) => v.startsWith('b'))).toBe(true);
        const produced = await readAll(out);
        expect(produced.length).toBe(80);
        expect(new Set(produced).size).toBe(80);
        await c2.close();
      });
    });

    describe('typed messages', () => {
      it('delivers valid messages and dead-letters invalid ones with the reason and original topic', async () => {
        const typed = new MessageBus(bus);
        const requestTopic = `${topic}.requests`;
        const good = request();
        await typed.publish(requestTopic, 'InferenceRequest', good);
        const bad = { ...request(), contextWindowTokens: -5 };
        await bus.produce(requestTopic, [{ key: 'CAISO', value: encoder.encode(JSON.stringify(bad)), headers: { [HEADER_SCHEMA]: 'InferenceRequest', [HEADER_VERSION]: '1' } }]);
        await bus.produce(requestTopic, [{ key: 'CAISO', value: encoder.encode(JSON.stringify(request())), headers: { [HEADER_SCHEMA]: 'InferenceRequest', [HEADER_VERSION]: '7' } }]);
        await bus.produce(requestTopic, [{ key: 'CAISO', value: encoder.encode('{not json'), headers: { [HEADER_SCHEMA]: 'InferenceRequest', [HEADER_VERSION]: '1' } }]);
        const received: InferenceRequest[] = [];
        const consumer = await typed.subscribe(`g-${randomUUID()}`, [requestTopic], 'InferenceRequest', (m) => void received.push(m));
        const dead: ConsumedRecord[] = [];
        const dlq = await bus.consume({ group: `g-${randomUUID()}`, topics: [`arc.dead-letter.${requestTopic}`], handler: (r) => void dead.push(r) });
        await until(() => received.length === 1 && dead.length === 3);
        expect(received[0]).toEqual(good);
        const reasons = dead.map((r) => r.headers[HEADER_DLQ_REASON]!);
        expect(reasons[0]).toMatch(/\/contextWindowTokens/);
        expect(reasons[1]).toMatch(/version 7 is not known/);
        expect(reasons[2]).toMatch(/not valid JSON/);
        expect(dead.every((r) => r.headers[HEADER_DLQ_TOPIC] === requestTopic)).toBe(true);
        await Promise.all([consumer.close(), dlq.close()]);
      });

      it('dead-letters a record whose handler keeps failing instead of blocking its partition forever', async () => {
        const typed = new MessageBus(bus);
        const requestTopic = `${topic}.poison`;
        const poison = request({ modelId: 'poison' });
        const fine = request({ modelId: 'fine' });
        await typed.publish(requestTopic, 'InferenceRequest', poison);
        await typed.publish(requestTopic, 'InferenceRequest', fine);
        const handled: string[] = [];
        const consumer = await typed.subscribe(`g-${randomUUID()}`, [requestTopic], 'InferenceRequest', (m) => {
          if (m.modelId === 'poison') throw new Error('cannot handle poison');
          handled.push(m.modelId);
        }, { maxAttempts: 3 });
        const dead: ConsumedRecord[] = [];
        const dlq = await bus.consume({ group: `g-${randomUUID()}`, topics: [`arc.dead-letter.${requestTopic}`], handler: (r) => void dead.push(r) });
        await until(() => handled.includes('fine') && dead.length === 1);
        expect(dead[0]!.headers[HEADER_DLQ_REASON]).toMatch(/handler failed 3 times: cannot handle poison/);
        await Promise.all([consumer.close(), dlq.close()]);
      });

      it('refuses to publish an invalid message', async () => {
        const typed = new MessageBus(bus);
        await expect(typed.publish(`${topic}.x`, 'InferenceRequest', { ...request(), priority: 'urgent' as 'normal' })).rejects.toThrow(/\/priority/);
      });
    });
  });
}

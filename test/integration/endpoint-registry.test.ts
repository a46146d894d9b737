/**
 * The endpoint registry (src/services/endpoint-registry.ts) over a real SQLite KV: what it lists at
 * start, what it follows live from the watch (no polling: each change shows within a second), the
 * blueprint's service names, epoch fencing, and how `pick` spreads requests over instances.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { EndpointRegistry, type ServiceEndpoint } from '../../src/services/endpoint-registry.ts';
import { blueprintKey, endpointKey, type Blueprint, type EndpointRecord, type SliceSpec } from '../../src/services/model.ts';
import { until } from '../support/until.ts';

const ECHO = 'org.example:echo:1.0.0';
const LIVE_MS = 1_000;

function slice(artifact: string, extra: Partial<SliceSpec> = {}): SliceSpec {
  return { artifact, instances: 1, run: { kind: 'process', command: ['serve'] }, ...extra };
}

function blueprint(name: string, slices: SliceSpec[], timestamp = 1_000): Blueprint {
  return { name, slices, timestamp };
}

function endpoint(nodeId: string, instance: number, port: number, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  return { nodeId, instance, state: 'ACTIVE', timestamp: 1_000, address: `127.0.0.1:${port}`, path: '/', epoch: 1, ...extra };
}

const addresses = (endpoints: readonly ServiceEndpoint[]): string[] => endpoints.map((e) => e.address);

describe('endpoint registry', () => {
  let stores: StateStores;
  let registry: EndpointRegistry | undefined;

  beforeEach(() => {
    stores = openSqliteStores({ path: ':memory:' });
  });
  afterEach(async () => {
    registry?.stop();
    registry = undefined;
    await stores.close();
  });

  const start = async (): Promise<EndpointRegistry> => {
    registry = new EndpointRegistry({ kv: stores.kv });
    expect(registry.ready).toBe(false);
    await registry.start();
    expect(registry.ready).toBe(true);
    return registry;
  };

  /** The addresses `resolve` gives for a service, once they are `expected`; fails after LIVE_MS. */
  const resolvesTo = async (r: EndpointRegistry, service: string, expected: string[]): Promise<number> => {
    const began = Date.now();
    await until(() => {
      const resolution = r.resolve(service);
      const now = resolution.found ? addresses(resolution.endpoints) : [];
      return JSON.stringify(now) === JSON.stringify(expected);
    }, `${service} → [${expected.join(', ')}]`, LIVE_MS);
    return Date.now() - began;
  };

  it('holds what the KV held at start: services from blueprints, ACTIVE endpoints by instance', async () => {
    await stores.kv.put(blueprintKey('shop'), blueprint('shop', [slice(ECHO), slice('org.example:Cart:2.0', { service: 'basket' })]));
    await stores.kv.put(endpointKey(ECHO, 'http', 2), endpoint('node-b', 2, 5002));
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-a', 1, 5001));
    const r = await start();

    const echo = r.resolve('echo');
    expect(echo.found).toBe(true);
    if (!echo.found) return;
    expect(echo.route).toEqual({ service: 'echo', artifact: ECHO, blueprint: 'shop', entryPoint: 'http' });
    expect(echo.endpoints.map((e) => [e.nodeId, e.instance, e.address, e.epoch])).toEqual([
      ['node-a', 1, '127.0.0.1:5001', 1],
      ['node-b', 2, '127.0.0.1:5002', 1],
    ]);
    // The slice's `service` names it, not its artifact id.
    expect(r.knows('basket')).toBe(true);
    expect(r.knows('cart')).toBe(false);
    const basket = r.resolve('basket');
    expect(basket).toMatchObject({ found: false, known: true, route: { artifact: 'org.example:Cart:2.0' } });
    expect(basket.found ? '' : basket.missing).toMatch(/no instance has published an ACTIVE endpoint "http"/);
    expect(r.resolve('nothing')).toMatchObject({ found: false, known: false, missing: 'no blueprint names a service "nothing"' });
  });

  it('follows puts and deletes of endpoints and blueprints from the watch, each within a second', async () => {
    const r = await start();
    expect(r.knows('echo')).toBe(false);
    const timings: number[] = [];

    await stores.kv.put(blueprintKey('shop'), blueprint('shop', [slice(ECHO)]));
    await until(() => r.knows('echo'), 'the blueprint', LIVE_MS);
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-a', 1, 5001));
    timings.push(await resolvesTo(r, 'echo', ['127.0.0.1:5001']));
    await stores.kv.put(endpointKey(ECHO, 'http', 2), endpoint('node-b', 2, 5002));
    timings.push(await resolvesTo(r, 'echo', ['127.0.0.1:5001', '127.0.0.1:5002']));
    // A restarted instance publishes its new address under the same key.
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-a', 1, 6001));
    timings.push(await resolvesTo(r, 'echo', ['127.0.0.1:6001', '127.0.0.1:5002']));
    await stores.kv.delete(endpointKey(ECHO, 'http', 1));
    timings.push(await resolvesTo(r, 'echo', ['127.0.0.1:5002']));

    await stores.kv.delete(blueprintKey('shop'));
    await until(() => !r.knows('echo'), 'the blueprint deleted', LIVE_MS);
    expect(r.resolve('echo')).toMatchObject({ found: false, known: false });
    // The SQLite adapter wakes its watchers on its own commits: far inside the 250 ms revision poll.
    for (const ms of timings) expect(ms).toBeLessThan(LIVE_MS);
  });

  it('takes service names as the blueprint gives them: the first entry point, never a server path, the earlier blueprint on a clash', async () => {
    await stores.kv.put(blueprintKey('a'), blueprint('a', [slice(ECHO, { entryPoints: [{ name: 'api', path: '/v1' }, { name: 'admin', path: '/admin' }] })], 1_000));
    // Written past the API's checks: a reserved name and a second claim on "echo".
    await stores.kv.put(blueprintKey('b'), blueprint('b', [slice('org.example:echo:2.0.0'), slice('org.example:assets:1.0')], 2_000));
    await stores.kv.put(endpointKey(ECHO, 'api', 1), endpoint('node-a', 1, 5001, { path: '/v1' }));
    await stores.kv.put(endpointKey(ECHO, 'admin', 1), endpoint('node-a', 1, 5101, { path: '/admin' }));
    const r = await start();

    const echo = r.resolve('echo');
    expect(echo).toMatchObject({ found: true, route: { artifact: ECHO, blueprint: 'a', entryPoint: 'api' } });
    expect(echo.found ? echo.endpoints.map((e) => [e.entryPoint, e.address, e.path]) : []).toEqual([['api', '127.0.0.1:5001', '/v1']]);
    expect(r.knows('assets')).toBe(false);
    expect(r.snapshot().conflicts).toEqual([{ service: 'echo', blueprint: 'b', artifact: 'org.example:echo:2.0.0', heldBy: 'a' }]);

    // Once the first blueprint goes, the other one's claim takes the name.
    await stores.kv.delete(blueprintKey('a'));
    await until(() => {
      const now = r.resolve('echo');
      return now.route?.artifact === 'org.example:echo:2.0.0';
    }, 'blueprint b taking "echo"', LIVE_MS);
    expect(r.snapshot().conflicts).toEqual([]);
  });

  it('ignores records that are not ACTIVE or not well formed, and drops a key that stops being ACTIVE', async () => {
    await stores.kv.put(blueprintKey('shop'), blueprint('shop', [slice(ECHO)]));
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-a', 1, 5001));
    await stores.kv.put(endpointKey(ECHO, 'http', 2), { ...endpoint('node-b', 2, 5002), state: 'DEACTIVATING' });
    await stores.kv.put(endpointKey(ECHO, 'http', 3), { ...endpoint('node-c', 3, 5003), address: 'not an address' });
    await stores.kv.put(`endpoints/${ECHO}/http`, endpoint('node-d', 4, 5004));
    const r = await start();
    await resolvesTo(r, 'echo', ['127.0.0.1:5001']);

    await stores.kv.put(endpointKey(ECHO, 'http', 1), { ...endpoint('node-a', 1, 5001), state: 'DEACTIVATING' });
    await resolvesTo(r, 'echo', []);
    expect(r.resolve('echo')).toMatchObject({ found: false, known: true });
  });

  it('keeps the higher epoch of an instance: an older epoch never gets traffic again, on any entry point, even after the newer record is gone', async () => {
    await stores.kv.put(blueprintKey('shop'), blueprint('shop', [slice(ECHO, { entryPoints: [{ name: 'http' }, { name: 'admin' }] })]));
    // At start, across entry points: instance 1's admin endpoint is of epoch 4, its http one of epoch 2.
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-old', 1, 5001, { epoch: 2 }));
    await stores.kv.put(endpointKey(ECHO, 'admin', 1), endpoint('node-new', 1, 5101, { epoch: 4 }));
    await stores.kv.put(endpointKey(ECHO, 'http', 2), endpoint('node-b', 2, 5002, { epoch: 3 }));
    const r = await start();
    await resolvesTo(r, 'echo', ['127.0.0.1:5002']);

    // The new instance publishes its http endpoint; then the old one, back from a partition, overwrites the key.
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-new', 1, 6001, { epoch: 4 }));
    await resolvesTo(r, 'echo', ['127.0.0.1:6001', '127.0.0.1:5002']);
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-old', 1, 5001, { epoch: 2 }));
    await stores.kv.put(endpointKey(ECHO, 'http', 9), endpoint('node-z', 9, 5009, { epoch: 1 }));
    // A later write (instance 9) has been seen, so the stale one before it was too.
    await resolvesTo(r, 'echo', ['127.0.0.1:6001', '127.0.0.1:5002', '127.0.0.1:5009']);
    expect(r.snapshot().fencedWrites).toBe(1);

    await stores.kv.delete(endpointKey(ECHO, 'http', 1));
    await resolvesTo(r, 'echo', ['127.0.0.1:5002', '127.0.0.1:5009']);
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-old', 1, 5001, { epoch: 2 }));
    await stores.kv.put(endpointKey(ECHO, 'http', 9), endpoint('node-z', 9, 5019, { epoch: 1 }));
    await resolvesTo(r, 'echo', ['127.0.0.1:5002', '127.0.0.1:5019']);
    expect(r.snapshot().fencedWrites).toBe(2);

    // A newer epoch still replaces it, and retires the epoch-4 admin endpoint with it.
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-newer', 1, 7001, { epoch: 6 }));
    await resolvesTo(r, 'echo', ['127.0.0.1:7001', '127.0.0.1:5002', '127.0.0.1:5019']);
    const admin = r.snapshot().services[0]!.endpoints.filter((e) => e.entryPoint === 'admin');
    expect(admin).toEqual([]);
  });

  it('picks the instance with the fewest requests in flight, in turn among equals, and never one excluded', async () => {
    await stores.kv.put(blueprintKey('shop'), blueprint('shop', [slice(ECHO)]));
    for (const n of [1, 2, 3]) await stores.kv.put(endpointKey(ECHO, 'http', n), endpoint(`node-${n}`, n, 5000 + n));
    const r = await start();

    const sequence: number[] = [];
    for (let i = 0; i < 6; i++) {
      const picked = r.pick('echo');
      if (!picked.found) throw new Error(picked.missing);
      sequence.push(picked.endpoint.instance);
      picked.release();
    }
    expect(sequence).toEqual([1, 2, 3, 1, 2, 3]);

    // Instance 2 holds two slow requests: the others take the next ones, in turn.
    const held = [r.begin('127.0.0.1:5002'), r.begin('127.0.0.1:5002')];
    const busy: number[] = [];
    const open: (() => void)[] = [];
    for (let i = 0; i < 4; i++) {
      const picked = r.pick('echo');
      if (!picked.found) throw new Error(picked.missing);
      busy.push(picked.endpoint.instance);
      open.push(picked.release);
    }
    // 1 and 3 reach two in flight each, as many as 2: then 2 is among the least loaded again.
    expect(busy.slice(0, 4).sort()).toEqual([1, 1, 3, 3]);
    expect(r.snapshot().services[0]!.endpoints.map((e) => e.inFlight)).toEqual([2, 2, 2]);
    for (const release of [...held, ...open]) release();
    held[0]!();
    expect(r.snapshot().services[0]!.endpoints.map((e) => e.inFlight)).toEqual([0, 0, 0]);

    const first = r.pick('echo');
    if (!first.found) throw new Error(first.missing);
    const exclude = new Set([first.endpoint.key]);
    const second = r.pick('echo', exclude);
    if (!second.found) throw new Error(second.missing);
    exclude.add(second.endpoint.key);
    const third = r.pick('echo', exclude);
    if (!third.found) throw new Error(third.missing);
    exclude.add(third.endpoint.key);
    expect(new Set([first, second, third].map((p) => (p.found ? p.endpoint.instance : 0)))).toEqual(new Set([1, 2, 3]));
    const none = r.pick('echo', exclude);
    expect(none).toMatchObject({ found: false, known: true, missing: 'every ACTIVE instance (3) was already tried' });
    for (const p of [first, second, third]) p.release();
  });

  it('stops following the KV once stopped', async () => {
    await stores.kv.put(blueprintKey('shop'), blueprint('shop', [slice(ECHO)]));
    const r = await start();
    r.stop();
    await stores.kv.put(endpointKey(ECHO, 'http', 1), endpoint('node-a', 1, 5001));
    // A later change to a watched prefix, awaited, and still nothing: the watches are closed.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(r.resolve('echo')).toMatchObject({ found: false, known: true });
  });
});

/**
 * The runner directory as the services leader reads it (src/services/runner-directory.ts), on the
 * embedded KV: a node counts for placement only while its runner's session is open or within the
 * grace after it closed; a runner the mesh has not reported yet keeps its instances (a leader that
 * just started must not take every node for gone) but takes nothing new.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteStores } from '../../src/store/sqlite-open.ts';
import type { StateStores } from '../../src/store/ports.ts';
import { RunnerDirectory, runnerKey, type MeshNode, type RunnerRecord } from '../../src/services/runner-directory.ts';
import { planServices } from '../../src/services/planner.ts';
import type { SliceRecord } from '../../src/services/model.ts';
import { until } from '../support/until.ts';

const NOW = 1_700_000_000_000;
const ECHO = 'org.example:echo:1.0';

const mesh = (id: string): MeshNode => ({ id, name: `node ${id}`, status: 'online', tags: [], cpuCores: 4, memoryGb: 8, cpuLoad: 0, datasetsHot: [] });
const runner = (connected: boolean, since: number): RunnerRecord => ({ runtimes: ['process'], connected, since, server: 'srv-1' });
const active = (instance: number): SliceRecord => ({ state: 'ACTIVE', timestamp: NOW - 1_000, version: 3, instance, blueprint: 'web', epoch: 1, placedAt: NOW - 10_000 });

describe('runner directory', () => {
  let stores: StateStores | undefined;
  let directory: RunnerDirectory | undefined;
  afterEach(async () => {
    directory?.stop();
    await stores?.close();
  });

  it('follows runners/ with a watch: connected and within-grace runners count, a runner gone past the grace makes its node offline, a node without a runner is left out', async () => {
    stores = openSqliteStores({ path: ':memory:', watchPollMs: 20, retention: false });
    await stores.kv.put(runnerKey('n-1'), runner(true, NOW - 60_000));
    directory = new RunnerDirectory(stores.kv);
    await directory.start();
    await stores.kv.put(runnerKey('n-2'), runner(false, NOW - 1_000));
    await stores.kv.put(runnerKey('n-3'), runner(false, NOW - 10_000));
    await until(async () => directory!.size === 3, 'the watch to see three runners');
    const nodes = directory.serviceNodes([mesh('n-1'), mesh('n-2'), mesh('n-3'), mesh('n-4')], NOW, 3_000);
    expect(nodes.map((n) => [n.id, n.status])).toEqual([['n-1', 'online'], ['n-2', 'online'], ['n-3', 'offline']]);
    await stores.kv.delete(runnerKey('n-1'));
    await until(async () => directory!.size === 2, 'the watch to see the runner deleted');
  });

  it('keeps the instances on a connected runner the mesh has not reported yet, and places nothing new there', async () => {
    stores = openSqliteStores({ path: ':memory:', watchPollMs: 20, retention: false });
    await stores.kv.put(runnerKey('n-1'), runner(true, NOW - 60_000));
    await stores.kv.put(runnerKey('n-2'), runner(true, NOW - 60_000));
    directory = new RunnerDirectory(stores.kv);
    await directory.start();
    // The mesh knows only n-2 so far.
    const nodes = directory.serviceNodes([mesh('n-2')], NOW, 3_000);
    expect(nodes.find((n) => n.id === 'n-1')).toMatchObject({ status: 'unreported', tags: [] });
    const blueprint = { name: 'web', timestamp: NOW, slices: [{ artifact: ECHO, instances: 2, run: { kind: 'process' as const, command: ['serve'] } }] };
    const plan = planServices({ blueprints: [blueprint], nodes, slices: [{ nodeId: 'n-1', artifact: ECHO, record: active(1) }], now: NOW, epoch: 2 });
    // n-1's instance survives; the second goes to n-2, not to the unreported node.
    expect(plan.changes.map((c) => [c.kind, c.nodeId])).toEqual([['place', 'n-2']]);
    const alone = planServices({ blueprints: [{ ...blueprint, slices: [{ ...blueprint.slices[0]!, instances: 3 }] }], nodes, slices: [{ nodeId: 'n-1', artifact: ECHO, record: active(1) }], now: NOW, epoch: 2 });
    expect(alone.unplaced[0]!.reason).toMatch(/not yet reported by the mesh/);
  });
});

/**
 * The one way a process starts and stops its modules (src/main/system.ts): start order, the reverse
 * stop order with the HTTP edge first and the engines last, one health, and a failed start that
 * stops what had started.
 */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logging.ts';
import { System } from '../../src/main/system.ts';
import { modeOf } from '../../src/main/engines.ts';
import type { ModuleHandle, ModuleHealth } from '../../src/main/modules/module.ts';

function harness(): { system: System; log: string[]; module: (name: string, health?: () => ModuleHealth) => () => Promise<ModuleHandle> } {
  const log: string[] = [];
  const system = new System('embedded', { instanceId: 'arc-1', kinds: { bus: 'memory', store: 'sqlite' }, logger: silentLogger, close: async () => void log.push('engines closed') });
  const module = (name: string, health: () => ModuleHealth = () => ({ ready: true, details: { name } })) => async (): Promise<ModuleHandle> => {
    log.push(`${name} started`);
    return { name, health, stop: async () => void log.push(`${name} stopped`) };
  };
  return { system, log, module };
}

describe('System', () => {
  it('stops the HTTP edge first, then the modules in reverse start order, then the engines, once', async () => {
    const { system, log, module } = harness();
    await system.start(module('inference'));
    await system.start(module('mesh'));
    await system.serve(async () => ({ close: async () => void log.push('http closed') }));
    await system.start(module('simulator'));
    await Promise.all([system.stop(), system.stop()]);
    expect(log).toEqual(['inference started', 'mesh started', 'simulator started', 'http closed', 'simulator stopped', 'mesh stopped', 'inference stopped', 'engines closed']);
  });

  it('is ready only when every module is, naming each one that is not and why', async () => {
    const { system, module } = harness();
    let known = 0;
    await system.start(module('mesh'));
    await system.start(module('scheduler', () => (known > 0 ? { ready: true, details: { known } } : { ready: false, notReady: 'no node known yet', details: { known } })));
    await system.start(module('jobs', () => ({ ready: false, details: {} })));
    const waiting = system.report();
    expect(waiting.ready).toBe(false);
    expect(waiting.body).toMatchObject({ status: 'starting', role: 'embedded', instanceId: 'arc-1', engines: { bus: 'memory', store: 'sqlite' }, mode: 'embedded', notReady: 'scheduler: no node known yet; jobs: not ready' });
    expect(waiting.body['modules']).toEqual({ mesh: { ready: true, name: 'mesh' }, scheduler: { ready: false, notReady: 'no node known yet', known: 0 }, jobs: { ready: false } });
    // Several modules: their details stay under their names.
    expect(waiting.body).not.toHaveProperty('known');
    known = 3;
    expect(system.health()).toMatchObject({ ready: false, notReady: 'jobs: not ready' });
  });

  it('stops what had started, and closes the engines, when a module fails to start', async () => {
    const { system, log, module } = harness();
    await system.start(module('mesh'));
    await expect(system.start(async () => Promise.reject(new Error('broker unreachable')))).rejects.toThrow('broker unreachable');
    expect(log).toEqual(['mesh started', 'mesh stopped', 'engines closed']);
    expect(system.health()).toMatchObject({ ready: false, notReady: 'stopping' });
  });

  it('merges what the modules give the API, routes from every module', async () => {
    const { system } = harness();
    const first = (): void => undefined;
    const second = (): void => undefined;
    const nodes = { get: () => undefined, all: () => [] };
    await system.start(async () => ({ name: 'mesh', api: { nodes, routes: [first] }, health: () => ({ ready: true, details: {} }), stop: async () => undefined }));
    await system.start(async () => ({ name: 'jobs', api: { routes: [second] }, health: () => ({ ready: true, details: {} }), stop: async () => undefined }));
    const api = system.api();
    expect(api.nodes).toBe(nodes);
    expect(api.routes).toEqual([first, second]);
  });
});

describe('modeOf', () => {
  it('says embedded only when both engines are, distributed when both are external, mixed otherwise', () => {
    expect(modeOf({ bus: 'memory', store: 'sqlite' })).toBe('embedded');
    expect(modeOf({ bus: 'memory', store: 'sqlite-memory' })).toBe('embedded');
    expect(modeOf({ bus: 'kafka', store: 'postgres' })).toBe('distributed');
    expect(modeOf({ bus: 'kafka', store: 'sqlite' })).toBe('mixed');
    expect(modeOf({ bus: 'memory', store: 'postgres' })).toBe('mixed');
  });
});

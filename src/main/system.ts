/**
 * One process's modules, started in order, stopped in reverse, with one health report. Every
 * composition root uses it: `startEmbedded` for all modules in one process, `roles.ts` for one module
 * per process. The HTTP edge (the API server or a role's health port) is registered with `serve` and
 * closed before any module stops, so no request reaches a stopped module.
 *
 * Health: the process is ready when every module is; `notReady` names each module that is not and
 * why. The same body (`report()`) is what every process answers on `/health` (200 while it runs) and
 * `/ready` (503 until ready), whether from the API server or from `role-http.ts`.
 */
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import type { HealthReport, ServerContributions } from '../api/server.ts';
import { modeOf, type EngineKinds } from './engines.ts';
import type { ModuleHandle, ModuleHealth } from './modules/module.ts';
import { VERSION } from './version.ts';

export interface SystemHealth {
  readonly ready: boolean;
  /** `scheduler: no node of CAISO known yet`; one clause per module that is not ready. */
  readonly notReady?: string;
  readonly modules: Readonly<Record<string, ModuleHealth>>;
}

/** The engines as the system sees them: who it is, what runs underneath, and how to close it. */
export interface SystemEngines {
  readonly instanceId: string;
  readonly kinds: { readonly bus: EngineKinds['bus']; readonly store?: EngineKinds['store'] };
  readonly logger: Logger;
  close(): Promise<void>;
}

interface Edge {
  close(): Promise<void>;
}

export class System {
  /** `embedded`, `aggregator`, `scheduler`, `server`, `coordinator`, `simulate`: what `/health` calls this process. */
  readonly role: string;
  readonly engines: SystemEngines;
  private readonly started: ModuleHandle[] = [];
  private readonly edges: Edge[] = [];
  private readonly startedAt = Date.now();
  private stopping: Promise<void> | undefined;

  constructor(role: string, engines: SystemEngines) {
    this.role = role;
    this.engines = engines;
  }

  get instanceId(): string {
    return this.engines.instanceId;
  }

  get modules(): readonly ModuleHandle[] {
    return this.started;
  }

  /** Starts a module after the ones before it; if it fails, everything started so far stops (and the engines close) before the error goes on. */
  start<T extends ModuleHandle>(start: () => Promise<T>): Promise<T> {
    return this.orStop(async () => {
      const handle = await start();
      this.started.push(handle);
      if (this.started.filter((m) => m.name === handle.name).length > 1) throw new Error(`two modules named ${handle.name} in one process`);
      return handle;
    });
  }

  /** Opens the HTTP edge; it closes first on stop. A failure to open it (a taken port) stops the system too. */
  serve<T extends Edge>(open: () => Promise<T>): Promise<T> {
    return this.orStop(async () => {
      const edge = await open();
      this.edges.push(edge);
      return edge;
    });
  }

  private async orStop<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /** What the modules give the API server, merged in start order. */
  api(): ServerContributions {
    const merged: { -readonly [K in keyof ServerContributions]: ServerContributions[K] } = {};
    const routes: NonNullable<ServerContributions['routes']>[number][] = [];
    for (const module of this.started) {
      if (!module.api) continue;
      Object.assign(merged, module.api);
      routes.push(...(module.api.routes ?? []));
    }
    return { ...merged, routes };
  }

  health(): SystemHealth {
    const modules: Record<string, ModuleHealth> = {};
    const waiting: string[] = [];
    for (const module of this.started) {
      let health: ModuleHealth;
      try {
        health = module.health();
      } catch (error) {
        health = { ready: false, notReady: `health check failed: ${errorMessage(error)}`, details: {} };
      }
      modules[module.name] = health;
      if (!health.ready) waiting.push(`${module.name}: ${health.notReady ?? 'not ready'}`);
    }
    if (this.stopping) waiting.unshift('stopping');
    return { ready: waiting.length === 0, ...(waiting.length > 0 ? { notReady: waiting.join('; ') } : {}), modules };
  }

  /**
   * The one body of `/health` and `/ready`. `mode` and `uptimeS` stay for clients of the API's
   * `/health` before modules existed; a process running one module also repeats its details at the
   * top level, as the role ports did (`nodesKnown`, `routing`, `geozones`).
   */
  report(): HealthReport {
    const health = this.health();
    const uptimeSeconds = Math.round((Date.now() - this.startedAt) / 1000);
    const modules = Object.fromEntries(Object.entries(health.modules).map(([name, m]) => [name, { ready: m.ready, ...(m.notReady ? { notReady: m.notReady } : {}), ...m.details }]));
    const only = this.started.length === 1 ? health.modules[this.started[0]!.name]!.details : {};
    return {
      ready: health.ready,
      body: {
        ...only,
        status: health.ready ? 'ok' : 'starting',
        role: this.role,
        instanceId: this.instanceId,
        version: VERSION,
        uptimeSeconds,
        uptimeS: uptimeSeconds,
        engines: this.engines.kinds,
        mode: modeOf(this.engines.kinds),
        ...(health.notReady ? { notReady: health.notReady } : {}),
        modules,
      },
    };
  }

  /** Closes the edge, stops the modules in reverse start order, then closes the engines. Safe to call twice. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const step = async (what: string, run: () => Promise<void>): Promise<void> => {
        try {
          await run();
        } catch (error) {
          this.engines.logger.error({ err: errorMessage(error) }, `${what} did not stop cleanly`);
        }
      };
      for (const edge of this.edges.splice(0).reverse()) await step('the HTTP server', () => edge.close());
      for (const module of [...this.started].reverse()) await step(`module ${module.name}`, () => module.stop());
      await step('the engines', () => this.engines.close());
    })();
    return this.stopping;
  }
}

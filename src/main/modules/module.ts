/**
 * The contract every module of `src/main/modules/` keeps. A module is one family's (or one role's)
 * wiring: a function `start<Name>Module(engines, options, …)` that constructs the family's classes on
 * the opened engines, starts them, and returns a handle. The composition roots (`embedded.ts` starts
 * them all, `roles.ts` one per process) hand the handles to a `System` (`../system.ts`), which stops
 * them in reverse order and reports one health; what a module gives the HTTP API travels in `api`.
 */
import type { ServerContributions } from '../../api/server.ts';

/** What a module says of itself: `ready` false comes with the reason in `notReady`. */
export interface ModuleHealth {
  readonly ready: boolean;
  readonly notReady?: string;
  /** Figures for people and probes (nodes known, leadership, sessions); shown under the module's name. */
  readonly details: Readonly<Record<string, unknown>>;
}

export interface ModuleHandle {
  /** Unique within a process: `mesh`, `scheduler`, `inference`, `jobs`, `simulator`. */
  readonly name: string;
  /** What the API server of this process takes from the module (its routes, or the parts its routes read). */
  readonly api?: ServerContributions;
  health(): ModuleHealth;
  /** Stops what the module started; called once, after the modules started later have stopped. */
  stop(): Promise<void>;
}

/**
 * Which real engines (Kafka, PostgreSQL, a Docker Engine API, headless Chromium, Slurm) this test run has, decided once per run
 * by the global setup and read by every suite that needs one, so all of them run or skip for the
 * same reason.
 *
 * Locally a missing engine skips its suites, and the skip reporter lists them at the end with why.
 * In CI (`CI=true`, or `ARCNET_REQUIRE_ENGINES=1`) a missing engine fails the run before any test:
 * a green CI must mean the engine suites ran, not that they quietly stepped aside.
 */
import { inject } from 'vitest';

export type EngineName = 'kafka' | 'postgres' | 'containers' | 'chromium' | 'slurm';

export type EngineStatus = { readonly available: true } | { readonly available: false; readonly reason: string };

export type EngineReport = Readonly<Record<EngineName, EngineStatus>>;

declare module 'vitest' {
  interface ProvidedContext {
    engines: EngineReport;
  }
}

export const ENGINE_LABELS: Readonly<Record<EngineName, string>> = {
  kafka: 'Kafka',
  postgres: 'PostgreSQL',
  containers: 'container engine',
  chromium: 'Chromium',
  slurm: 'Slurm',
};

export function enginesRequired(env: NodeJS.ProcessEnv = process.env): boolean {
  return env['CI'] === 'true' || env['CI'] === '1' || env['ARCNET_REQUIRE_ENGINES'] === '1';
}

export interface EngineNeeds {
  readonly available: boolean;
  /** Why not, naming each missing engine; empty when available. */
  readonly reason: string;
  /** The suite's title, with "(skipped: why)" appended when it will skip, which the skip reporter prints. */
  title(name: string): string;
}

/** What a suite that needs these engines should do: run, or skip with the reason. */
export function needEngines(...names: readonly EngineName[]): EngineNeeds {
  const report = inject('engines');
  const missing = names.flatMap((name) => {
    const status = report[name];
    return status.available ? [] : [`${ENGINE_LABELS[name]}: ${status.reason}`];
  });
  const reason = missing.join('; ');
  if (missing.length > 0 && enginesRequired()) {
    // The global setup refuses to start without them in CI; reaching here means it was bypassed.
    throw new Error(`engines required in CI are unavailable: ${reason}`);
  }
  return {
    available: missing.length === 0,
    reason,
    title: (name) => (missing.length === 0 ? name : `${name} (skipped: ${reason})`),
  };
}

export interface RetryBudget {
  /** Total time to keep trying, ms. */
  readonly budgetMs: number;
  /** Pause between attempts, ms. */
  readonly pauseMs: number;
  /**
   * Attempts after which a "nothing is listening" answer is taken as final: nothing is starting
   * there, so a local run without that engine need not wait out the whole budget.
   */
  readonly refusedAttempts: number;
}

const NOTHING_LISTENING = /ECONNREFUSED|ENOENT|connection refused|no such file/i;

/**
 * Probes until the engine answers or the budget runs out. A slow answer (an engine still starting,
 * or a machine busy with the suites already running) is retried for the whole budget; a refused
 * connection only for a few attempts, unless the engine is required, when everything is retried.
 */
export async function probeWithRetry(
  probe: () => Promise<EngineStatus>,
  budget: RetryBudget,
  required: boolean,
): Promise<EngineStatus & { readonly attempts: number }> {
  const deadline = Date.now() + budget.budgetMs;
  for (let attempt = 1; ; attempt++) {
    const status = await probe();
    if (status.available) return { ...status, attempts: attempt };
    const refusedForGood = !required && NOTHING_LISTENING.test(status.reason) && attempt >= budget.refusedAttempts;
    if (refusedForGood || Date.now() + budget.pauseMs >= deadline) {
      return { available: false, reason: `${status.reason} (after ${attempt} attempt${attempt === 1 ? '' : 's'} in ${Math.round((Date.now() - deadline + budget.budgetMs) / 1000)} s)`, attempts: attempt };
    }
    await new Promise((resolve) => setTimeout(resolve, budget.pauseMs));
  }
}

/**
 * Runs once per test run, before any suite: probes each engine (concurrently, retrying within a
 * budget) and hands the report to the suites. In CI a missing engine ends the run here, naming it.
 */
import type { TestProject } from 'vitest/node';
import { probeChromium } from './browser.ts';
import { probeTestEngine } from './containers.ts';
import { ENGINE_LABELS, enginesRequired, probeWithRetry, type EngineName, type EngineReport, type EngineStatus } from './engines.ts';
import { probeKafka } from './kafka.ts';
import { probePostgres } from './postgres.ts';
import { probeSlurm } from './slurm.ts';

const probes: Readonly<Record<EngineName, () => Promise<EngineStatus>>> = {
  kafka: probeKafka,
  postgres: probePostgres,
  containers: probeTestEngine,
  chromium: probeChromium,
  slurm: probeSlurm,
};

function budgetMs(): number {
  const raw = process.env['ARCNET_ENGINE_PROBE_BUDGET_MS'];
  if (raw === undefined || raw === '') return 45_000;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 600_000) {
    throw new Error(`ARCNET_ENGINE_PROBE_BUDGET_MS must be a whole number of milliseconds from 0 to 600000, not ${JSON.stringify(raw)}`);
  }
  return value;
}

export default async function setup(project: TestProject): Promise<void> {
  const required = enginesRequired();
  const budget = { budgetMs: budgetMs(), pauseMs: 1_000, refusedAttempts: 2 };
  const names = Object.keys(probes) as EngineName[];
  const results = await Promise.all(names.map((name) => probeWithRetry(probes[name], budget, required)));
  const report = Object.fromEntries(names.map((name, i) => {
    const result = results[i]!;
    return [name, result.available ? { available: true } : { available: false, reason: result.reason }];
  })) as Record<EngineName, EngineStatus>;
  const missing = names.filter((name) => !report[name].available);
  if (required && missing.length > 0) {
    const lines = missing.map((name) => {
      const status = report[name];
      return `  ${ENGINE_LABELS[name]}: ${status.available ? '' : status.reason}`;
    });
    throw new Error(`engines required in CI (CI=true or ARCNET_REQUIRE_ENGINES=1) are unavailable, so their suites cannot run:\n${lines.join('\n')}`);
  }
  project.provide('engines', report satisfies EngineReport);
}

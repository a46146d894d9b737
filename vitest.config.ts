import { defineConfig } from 'vitest/config';

/**
 * Suites whose timing a loaded machine breaks, not their guarantees: they run alone, after the rest.
 * The scheduler chaos suite kills the active scheduler every few seconds with a fast failover; beside
 * another suite starting its own broker, its consumer group lost its sessions and never settled.
 */
const ALONE = ['test/e2e/scheduler-chaos.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Probes Kafka, PostgreSQL and the container engine once for the whole run (test/support/engines.ts).
    globalSetup: ['test/support/global-setup.ts'],
    reporters: ['default', './test/support/skip-reporter.ts'],
    projects: [
      { extends: true, test: { name: 'suites', include: ['test/**/*.test.ts'], exclude: ALONE, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'alone', include: ALONE, sequence: { groupOrder: 1 } } },
    ],
  },
});

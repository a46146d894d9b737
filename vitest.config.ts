import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Probes Kafka, PostgreSQL and the container engine once for the whole run (test/support/engines.ts).
    globalSetup: ['test/support/global-setup.ts'],
    reporters: ['default', './test/support/skip-reporter.ts'],
  },
});

// Vitest config for `npm run mutate` (stryker.config.mjs): only the fast, engine-free tests that
// exercise the pure cores. No test/contract, test/e2e or test/integration: those need Kafka,
// PostgreSQL or containers, and Stryker runs the suite once per mutant.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/property/**/*.test.ts', 'test/unit/**/*-mutants.test.ts'],
    testTimeout: 30_000,
    pool: 'forks',
  },
});

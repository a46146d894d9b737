// Mutation testing of the pure cores: `npm run mutate`. See docs/testing.md, "Mutation testing".
// To cover another pure core, add its file to `mutate` and the tests that exercise it to
// vitest.mutation.config.mjs (engine-free tests only: every mutant reruns them).

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate: [
    'src/placement/framework.ts',
    'src/placement/candidate-index.ts',
    'src/placement/indexed-heap.ts',
    'src/placement/registry.ts',
    'src/inference/profile.ts',
    'src/jobs/verification.ts',
    'src/jobs/job-plan.ts',
  ],
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  vitest: { configFile: 'vitest.mutation.config.mjs', pool: 'forks' },
  coverageAnalysis: 'perTest',
  concurrency: 2,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  // The sandbox is a copy of what the tests need, not the whole work tree (which may hold engine
  // sockets and caches under .cache/ that cannot be copied). node_modules is symlinked in.
  ignorePatterns: ['/*', '!/src/', '!/test/', '!/package.json', '!/tsconfig.json', '!/vitest.mutation.config.mjs'],
  tempDirName: '.stryker-tmp',
  incremental: false,
  // A mutant is a timeout (counted as detected) when its tests take 1.5 × their normal time + timeoutMS. The default
  // 5 s let mutants that cannot change behaviour time out while other work shared the 2 cores.
  timeoutMS: 10_000,
  // Issue 9's goal: the run fails when fewer than 80 % of the mutants are detected.
  thresholds: { high: 90, low: 80, break: 80 },
};

/**
 * Prints, after the run, one line per skipped suite (or test) with why, which the default reporter
 * does not. In CI (see engines.ts) a skip is a failure: a suite that steps aside there has tested nothing.
 */
import type { Reporter, TestCase, TestModule, TestSuite } from 'vitest/node';
import { enginesRequired } from './engines.ts';

function topSuiteOf(test: TestCase): TestSuite | undefined {
  let parent: TestCase['parent'] = test.parent;
  let top: TestSuite | undefined;
  while (parent.type === 'suite') {
    top = parent;
    parent = parent.parent;
  }
  return top;
}

export default class SkipReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const lines = new Map<string, number>();
    for (const module of testModules) {
      for (const test of module.children.allTests('skipped')) {
        const suite = topSuiteOf(test);
        const result = test.result();
        const note = result.state === 'skipped' ? result.note : undefined;
        const what = note ? `${suite?.name ?? ''} › ${test.name}: ${note}` : (suite?.name ?? test.name);
        const line = `${module.relativeModuleId}: ${what}`;
        lines.set(line, (lines.get(line) ?? 0) + 1);
      }
    }
    if (lines.size === 0) return;
    const out = [`${lines.size} skipped suite${lines.size === 1 ? '' : 's'} or test${lines.size === 1 ? '' : 's'}:`];
    for (const [line, count] of lines) out.push(`  skipped ${count} test${count === 1 ? '' : 's'} in ${line}`);
    if (enginesRequired()) {
      out.push('CI requires every suite to run (CI=true or ARCNET_REQUIRE_ENGINES=1): failing the run');
      process.exitCode = 1;
    }
    process.stderr.write(`${out.join('\n')}\n`);
  }
}

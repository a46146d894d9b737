/**
 * The import boundaries are checked by lint, not only described: the real ESLint configuration
 * refuses a domain file that imports an adapter, and accepts the same file importing the port.
 */
import { describe, expect, it } from 'vitest';
import { ESLint } from 'eslint';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');

async function lint(filePath: string, code: string): Promise<string[]> {
  // The project's own configuration, parsed without type information (the planted files are not on
  // disk, so the TypeScript project cannot hold them) and reporting only the boundary rule.
  const eslint = new ESLint({
    cwd: root,
    overrideConfig: { languageOptions: { parserOptions: { projectService: false } } },
    ruleFilter: ({ ruleId }) => ruleId === 'import-x/no-restricted-paths',
  });
  const [result] = await eslint.lintText(code, { filePath: resolve(root, filePath) });
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? 'parse'}: ${m.message}`);
}

describe('import boundaries', () => {
  it.each([
    ['src/jobs/planted.ts', "import { MemoryBus } from '../bus/memory.ts';\nexport const planted = MemoryBus;\n"],
    ['src/inference/planted.ts', "import { KafkaBus } from '../bus/kafka.ts';\nexport const planted = KafkaBus;\n"],
    ['src/mesh/planted.ts', "import { openPostgresStores } from '../store/postgres.ts';\nexport const planted = openPostgresStores;\n"],
    ['src/placement/planted.ts', "import { openSqliteStores } from '../store/sqlite.ts';\nexport const planted = openSqliteStores;\n"],
    ['src/jobs/planted.ts', "import { DockerRuntime } from '../agent/docker-runtime.ts';\nexport const planted = DockerRuntime;\n"],
  ])('refuses %s importing an adapter', async (file, code) => {
    const messages = await lint(file, code);
    expect(messages).toEqual([expect.stringMatching(/^import-x\/no-restricted-paths: .*domain code imports ports, never adapters/)]);
  }, 60_000);

  it('accepts domain code importing a port, and the composition root importing an adapter', async () => {
    expect(await lint('src/jobs/planted.ts', "import type { BusAdapter } from '../bus/ports.ts';\nexport type Planted = BusAdapter;\n")).toEqual([]);
    expect(await lint('src/main/planted.ts', "import { MemoryBus } from '../bus/memory.ts';\nexport const planted = MemoryBus;\n")).toEqual([]);
  }, 60_000);
});

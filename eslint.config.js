// Lint gates from the developers' brief: no floating promises, consistent type imports, no import cycles,
// and import boundaries: domain code sees ports, never the adapters behind them.
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

/** Bounded contexts whose code must stay engine-neutral: the composition root picks their adapters. */
const DOMAIN = ['mesh', 'placement', 'inference', 'jobs', 'training', 'services'].map((folder) => `./src/${folder}/**`);
/** Adapters: the engines behind the ports. */
const ADAPTERS = ['./src/bus/kafka*', './src/bus/memory*', './src/store/sqlite*', './src/store/postgres*', './src/store/memory*', './src/agent/docker-*', './src/training/slurm*', './src/training/posix*', './src/training/globus*', './src/services/*-runtime.ts', './src/services/port-range*'];

export default tseslint.config(
  { ignores: ['node_modules/**', '.arcnet/**', '.cache/**', '.stryker-tmp/**', 'reports/**', 'web/dist/**', 'coverage/**',
    // Node-side build config, typechecked by web/tsconfig.node.json; import-x's legacy `node` resolver setting
    // resolves to the npm package "node" from web/ and throws there.
    'web/vite.config.ts'] },
  {
    // The console's components (web/src/**/*.tsx) are held to the same rules as the server's code.
    files: ['**/*.ts', 'web/**/*.tsx'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver': { node: { extensions: ['.ts', '.tsx', '.js'] } } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import-x/no-cycle': 'error',
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [{
            target: DOMAIN,
            from: ADAPTERS,
            message: 'domain code imports ports, never adapters: the composition root (src/main/) picks the adapter',
          }],
        },
      ],
      'no-restricted-syntax': ['error', { selector: 'ExportAllDeclaration', message: 'Named exports only: no export *.' }],
    },
  },
  {
    // Adapters that sit beside their port inside a domain folder are not domain code: they import their own parts.
    files: ['src/training/slurm*.ts', 'src/services/*-runtime.ts'],
    rules: { 'import-x/no-restricted-paths': 'off' },
  },
);

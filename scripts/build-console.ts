/**
 * Builds the console (web/) into web/dist with Vite, which every ArcNet server serves at `/`
 * (src/api/console-delivery.ts). Run by `npm run build:console` and after every install
 * (`postinstall`), so a fresh checkout serves the console without a separate step.
 *
 * It skips the build when web/dist/.build-stamp holds the hash of what the build reads: web/'s
 * sources, the contracts the app imports (src/contracts) and package-lock.json (the versions of Vite,
 * React and the atlases). `--force` builds regardless. Without web/ it says so and exits 0: an
 * install never fails for want of the console. It prints one line.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const WEB = join(ROOT, 'web');
const DIST = join(WEB, 'dist');
const STAMP = join(DIST, '.build-stamp');
const CONFIG = join(WEB, 'vite.config.ts');

/** Every file under `dir`, sorted, skipping build output and installed packages. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (path === DIST || entry.name === 'node_modules') continue;
      out.push(...filesUnder(path));
    } else if (entry.isFile()) out.push(path);
  }
  return out.sort();
}

/** The hash of every input of the build, by path and content. */
function inputsHash(): string {
  const hash = createHash('sha256');
  const inputs = [...filesUnder(WEB), ...filesUnder(join(ROOT, 'src', 'contracts')), join(ROOT, 'package-lock.json')];
  for (const file of inputs) {
    if (!existsSync(file)) continue;
    hash.update(relative(ROOT, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex');
}

async function main(): Promise<void> {
  if (!existsSync(CONFIG)) {
    console.log(`build:console: no console to build (${relative(ROOT, CONFIG)} does not exist); skipped`);
    return;
  }
  const stamp = inputsHash();
  const force = process.argv.includes('--force');
  if (!force && existsSync(join(DIST, 'index.html')) && existsSync(STAMP) && readFileSync(STAMP, 'utf8').trim() === stamp) {
    console.log(`build:console: web/dist is up to date (${stamp.slice(0, 12)}); skipped`);
    return;
  }
  const started = Date.now();
  // Vite's own CLI on this Node (the pinned one under npm), warnings and errors only; NODE_ENV=production
  // whoever calls, since vitest sets `test` and Vite would then bundle React's development build.
  const vite = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--config', CONFIG, '--logLevel', 'warn'], { cwd: ROOT, stdio: 'inherit', env: { ...process.env, NODE_ENV: 'production' } });
  if (vite.status !== 0) throw new Error(vite.error ? vite.error.message : `vite build exited with ${vite.signal ?? vite.status}`);
  writeFileSync(STAMP, `${stamp}\n`);
  const files = filesUnder(DIST).filter((f) => !f.endsWith('.build-stamp'));
  const bytes = files.reduce((sum, f) => sum + readFileSync(f).length, 0);
  console.log(`build:console: built web/dist in ${((Date.now() - started) / 1000).toFixed(1)} s (${files.length} files, ${(bytes / 1024).toFixed(0)} KiB, ${stamp.slice(0, 12)})`);
}

main().catch((error: unknown) => {
  console.error(`build:console: the console did not build: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});

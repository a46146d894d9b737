/**
 * The console as its users see it: Debian's Chromium driven by playwright-core against a real
 * `arcnet up` process. One place for how Chromium starts on these machines (the flags), how the
 * suites know whether it can (the engine probe), how a server is started and stopped, how the console
 * is opened and signed in to, and where screenshots go.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { errorMessage } from '../../src/core/errors.ts';
import { keyed, operatorKeyIn } from './api-key.ts';
import type { EngineStatus } from './engines.ts';
import { freePort, startCli, untilUp, type CliProcess } from './processes.ts';

/** ARCNET_CHROMIUM (set by .ci/run from scripts/chromium.sh), else Debian's package. */
export function chromiumExecutable(env: NodeJS.ProcessEnv = process.env): string {
  return env['ARCNET_CHROMIUM'] || '/usr/bin/chromium';
}

/**
 * --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start. The background
 * networking flags: without them Chromium spends its start reaching for Google's hosts, which the
 * closed network of these machines refuses, many connections at a time.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const ARTIFACTS_DIR = join(import.meta.dirname, '../../artifacts/console');

/**
 * Builds web/ into web/dist (scripts/build-console.ts: a no-op when its stamp says the sources are
 * unchanged), so a browser suite tests the console of this checkout, not a build left from earlier.
 */
export async function buildConsole(): Promise<void> {
  await promisify(execFile)(process.execPath, [join(import.meta.dirname, '../../scripts/build-console.ts')], { timeout: 120_000 });
}

/** Playwright's plain launch gives the browser a new empty profile of its own and removes it on close. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumExecutable(), headless: true, args: [...CHROMIUM_ARGS], timeout: 30_000 });
}

/** The engine probe: the executable is there and renders a page headless. */
export async function probeChromium(): Promise<EngineStatus> {
  const executable = chromiumExecutable();
  // "no such file" reads as nothing-is-there to probeWithRetry, so a machine without Chromium is not retried for the whole budget.
  if (!existsSync(executable)) return { available: false, reason: `no such file: ${executable} (bash scripts/chromium.sh ensure installs Debian's chromium)` };
  let browser: Browser | undefined;
  try {
    browser = await launchChromium();
    const page = await browser.newPage();
    await page.setContent('<p id="probe">rendered</p>');
    const text = await page.textContent('#probe');
    return text === 'rendered' ? { available: true } : { available: false, reason: `${executable} rendered ${JSON.stringify(text)} instead of the probe page` };
  } catch (error) {
    return { available: false, reason: `${executable} does not start headless: ${errorMessage(error).split('\n')[0]}` };
  } finally {
    await browser?.close().catch(() => undefined);
  }
}

async function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SIGINT (a clean stop), then SIGKILL if it is still there after `graceMs`. */
export async function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGINT');
  if (!(await exited(child, graceMs))) {
    child.kill('SIGKILL');
    await exited(child, 5_000);
  }
}

export interface UpOptions {
  readonly nodes?: number;
  readonly rate?: number;
  readonly telemetryIntervalMs?: number;
  readonly offlineAfterMs?: number;
  readonly extra?: readonly string[];
}

/** A real `arcnet up` on a free port and a temporary data directory, with the operator key it wrote there. */
export class ArcnetUp {
  process: CliProcess;
  readonly port: number;
  readonly dataDir: string;
  readonly key: string;
  readonly api: typeof fetch;
  private readonly args: readonly string[];
  /** Every process started for this server (itself, agents, workers), stopped by dispose. */
  private readonly children: ChildProcess[] = [];

  private constructor(port: number, dataDir: string, args: readonly string[], process: CliProcess) {
    this.port = port;
    this.dataDir = dataDir;
    this.args = args;
    this.process = process;
    this.children.push(process);
    this.key = operatorKeyIn(dataDir);
    this.api = keyed(this.key);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(options: UpOptions = {}): Promise<ArcnetUp> {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'arcnet-console-'));
    const args = [
      'up', '--port', String(port), '--data-dir', dataDir,
      '--nodes', String(options.nodes ?? 30), '--rate', String(options.rate ?? 2),
      '--telemetry-interval', String(options.telemetryIntervalMs ?? 1_000),
      '--offline-after', String(options.offlineAfterMs ?? 30_000),
      '--no-status', '--log-level', 'warn', ...(options.extra ?? []),
    ];
    const child = startCli(args);
    try {
      await ArcnetUp.healthy(port, child);
      return new ArcnetUp(port, dataDir, args, child);
    } catch (error) {
      await stopProcess(child);
      rmSync(dataDir, { recursive: true, force: true });
      throw error;
    }
  }

  private static async healthy(port: number, child: CliProcess): Promise<void> {
    await untilUp(async () => {
      if (child.exitCode !== null) throw new Error(`arcnet up exited with ${child.exitCode}:\n${child.output()}`);
      return (await fetch(`http://127.0.0.1:${port}/health`)).ok;
    }, 'arcnet up to answer /health', 40_000).catch((error: unknown) => {
      throw new Error(`${errorMessage(error)}; its output:\n${child.output()}`);
    });
  }

  /** A clean stop and a start on the same port and data directory: what an operator's restart is. */
  async restart(): Promise<void> {
    await stopProcess(this.process);
    this.process = startCli(this.args);
    this.children.push(this.process);
    await ArcnetUp.healthy(this.port, this.process);
  }

  /** Starts `arcnet <args>` (an agent, a worker) tracked with this server, so dispose stops it. */
  startChild(args: readonly string[]): CliProcess {
    const child = startCli(args);
    this.children.push(child);
    return child;
  }

  async json<T>(path: string, init?: RequestInit): Promise<T> {
    const response = await this.api(`${this.url}${path}`, init);
    if (!response.ok) throw new Error(`${init?.method ?? 'GET'} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  async post<T>(path: string, body: unknown): Promise<{ status: number; body: T }> {
    const response = await this.api(`${this.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as T };
  }

  async dispose(): Promise<void> {
    // Agents and workers first, so none of them is left reconnecting to a server that is gone.
    for (const child of [...this.children].reverse()) await stopProcess(child, 5_000);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

export interface ConsolePage {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Uncaught errors and console errors of the page, for a failing assertion's message. */
  readonly errors: string[];
}

export interface OpenOptions {
  /** Record when arcs and log entries first appear (see trackFirstSeen); set up before the page loads. */
  readonly trackFirstSeen?: boolean;
}

/** A new browser context (its own sessionStorage) at the console's address, not yet signed in. */
export async function openConsole(browser: Browser, url: string, path = '/', options: OpenOptions = {}): Promise<ConsolePage> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  if (options.trackFirstSeen) await trackFirstSeen(context);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console.error: ${message.text()}`);
  });
  // The console's own "failed to load resource" line does not say which: this does.
  page.on('response', (response) => {
    if (response.status() >= 400) errors.push(`HTTP ${response.status()} ${response.request().method()} ${new URL(response.url()).pathname}`);
  });
  await page.goto(`${url}${path}`);
  return { context, page, errors };
}

/** Types the key into the sign-in form and submits it, as a user would. */
export async function signIn(page: Page, key: string): Promise<void> {
  const form = page.locator('form[data-testid="signin"]');
  await form.waitFor({ state: 'visible', timeout: 15_000 });
  await form.locator('input[name="apiKey"]').fill(key);
  await form.locator('button[type="submit"], input[type="submit"]').first().click();
}

/** Opens the console, signs in with the key and waits for the feed to be live. */
export async function signedInConsole(browser: Browser, up: ArcnetUp, path = '/', options: OpenOptions = {}): Promise<ConsolePage> {
  const opened = await openConsole(browser, up.url, path, options);
  await signIn(opened.page, up.key);
  await opened.page.locator('[data-testid="feed-status"][data-state="live"]').waitFor({ state: 'attached', timeout: 15_000 });
  return opened;
}

/** Sets `html[data-theme]` through the theme toggle, as a user would. */
export async function setTheme(page: Page, theme: 'dark' | 'light'): Promise<void> {
  const current = await page.locator('html').getAttribute('data-theme');
  if (current !== theme) await page.locator('button[data-testid="theme-toggle"]').click();
  await page.locator(`html[data-theme="${theme}"]`).waitFor({ state: 'attached', timeout: 5_000 });
}

/** Saves artifacts/console/<name>.png (gitignored) and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const path = join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** Reads one `data-*` attribute as a number (NaN when absent), for assertions on the DOM contract. */
export async function numberAttribute(page: Page, selector: string, name: string): Promise<number> {
  const value = await page.locator(selector).first().getAttribute(name);
  return value === null ? Number.NaN : Number(value);
}

/**
 * Records, in the page, when each arc and each inference log entry first appeared (Date.now(), the
 * clock the test's own submission time is read from): an arc may be drawn and gone again between two
 * polls, and the question is when it was first on screen.
 */
export async function trackFirstSeen(context: BrowserContext): Promise<void> {
  // Plain JavaScript: it runs in the page, and this project's TypeScript has no DOM library.
  await context.addInitScript({
    content: `(() => {
      const seen = { arc: {}, log: {} };
      window.__arcnetSeen = seen;
      const scan = () => {
        const now = Date.now();
        for (const el of document.querySelectorAll('[data-testid="arc"][data-request-id]')) seen.arc[el.getAttribute('data-request-id')] ??= now;
        for (const el of document.querySelectorAll('[data-testid="inference-log"] li[data-request-id]')) seen.log[el.getAttribute('data-request-id')] ??= now;
      };
      new MutationObserver(scan).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-request-id'] });
    })();`,
  });
}

/** When the page first showed request `id` as an arc and in the log (Date.now() values), or undefined. */
export async function firstSeen(page: Page, id: string): Promise<{ arc: number | undefined; log: number | undefined }> {
  // Runs in the page; globalThis is its window (this project's TypeScript has no DOM library to name it).
  const seen = await page.evaluate((requestId) => {
    const tracked = (globalThis as unknown as { __arcnetSeen?: { arc: Record<string, number>; log: Record<string, number> } }).__arcnetSeen;
    return { arc: tracked?.arc[requestId] ?? null, log: tracked?.log[requestId] ?? null };
  }, id);
  return { arc: seen.arc ?? undefined, log: seen.log ?? undefined };
}

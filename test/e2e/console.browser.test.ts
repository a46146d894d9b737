/**
 * The ArcNet Console (issue 12) in headless Chromium against a real `arcnet up` process: what a user
 * sees on the map, in the log, in the explain panel and the jobs view is checked through the DOM
 * contract (data attributes and accessible tables, never pixels) against what the API answers.
 *
 * One server is shared by the whole file, started once; the last test restarts it. A real `arcnet
 * agent` gives the tests a node they can route to and kill; real container workers run the job.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { PlacementExplanation } from '../../src/contracts/console.ts';
import { ArcnetUp, buildConsole, firstSeen, launchChromium, openConsole, screenshot, setTheme, signIn, signedInConsole, stopProcess, type ConsolePage } from '../support/browser.ts';
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { needEngines } from '../support/engines.ts';
import { FeedClient } from '../support/feed.ts';
import { until } from '../support/until.ts';
import { freePort, type CliProcess } from '../support/processes.ts';

const browserEngine = needEngines('chromium');
const containers = needEngines('containers');

/** Short enough that a killed agent turns offline within the test, long enough that a busy machine's simulated nodes do not flap. */
const OFFLINE_AFTER_MS = 4_000;
const AGENT_MODEL = 'console-e2e-model';
const ECHO_SERVICE = join(import.meta.dirname, '../fixtures/echo-service.ts');

interface NodeRow { id: string; name: string; status: string; geozone?: string }
interface NodesAnswer { count: number; nodes: NodeRow[] }

describe.skipIf(!browserEngine.available)(browserEngine.title('the console in Chromium against a real arcnet up'), () => {
  let up: ArcnetUp;
  let browser: Browser;
  let main: ConsolePage;
  let page: Page;
  let agent: CliProcess;
  let agentId = '';
  const pages: ConsolePage[] = [];
  const feeds: FeedClient[] = [];

  /** The page's own errors, appended to a failing assertion's message. */
  const pageErrors = (): string => (main?.errors.length ? `\npage errors:\n${main.errors.slice(0, 10).join('\n')}` : '');

  beforeAll(async () => {
    await buildConsole();
    // Regional summaries every 2 s (not the default minute), so the zones view's global panel has figures within the run; HPC
    // datasets copied at 1 MB/s, so a few megabytes are seen moving on the map.
    const extra = ['--summary-interval', '2000', '--transfer-max-rate', '1000000', '--chunk-size', '262144'];
    [up, browser] = await Promise.all([ArcnetUp.start({ nodes: 30, rate: 2, telemetryIntervalMs: 1_000, offlineAfterMs: OFFLINE_AFTER_MS, extra }), launchChromium()]);
    // ERCOT, asked for from CAISO: the scheduler forwards to it, so its arcs cross zones.
    agent = up.startChild([
      'agent', '--server', up.url, '--token', up.key, '--node-key', join(up.dataDir, 'console-agent.key'), '--name', 'console-agent',
      '--geozone', 'ERCOT', '--geohash', '9vk1eh', '--models', AGENT_MODEL, '--speed', '0.2', '--telemetry-interval', '300', '--log-level', 'warn',
    ]);
    const node = await until(async () => (await up.json<NodesAnswer>('/api/v1/nodes')).nodes.find((n) => n.name === 'console-agent' && n.status === 'online'), 'the agent online', 30_000, { intervalMs: 200, retryOnError: true });
    agentId = node.id;
    main = await signedInConsole(browser, up, '/#/map', { trackFirstSeen: true });
    pages.push(main);
    page = main.page;
  }, 90_000);

  afterAll(async () => {
    for (const feed of feeds) await feed.close();
    for (const opened of pages) await opened.context.close().catch(() => undefined);
    await browser?.close();
    await up?.dispose();
  });

  it('refuses a wrong API key with a readable message, and accepts a #key= fragment, removing it from the address bar', async () => {
    const wrong = await openConsole(browser, up.url);
    pages.push(wrong);
    await signIn(wrong.page, 'arck_this-key-does-not-exist');
    const alert = wrong.page.locator('[role="alert"]');
    await alert.waitFor({ state: 'visible', timeout: 10_000 });
    expect(await alert.textContent()).toMatch(/^\s*API key refused: \S.{3,}/);
    // Still on the sign-in form, with nothing stored: the refused key is not kept.
    expect(await wrong.page.locator('form[data-testid="signin"]').isVisible()).toBe(true);
    expect(await wrong.page.evaluate(() => sessionStorage.getItem('arcnet.apiKey'))).toBeNull();
    await screenshot(wrong.page, 'signin-refused');

    const fragment = await openConsole(browser, up.url, `/#key=${encodeURIComponent(up.key)}`);
    pages.push(fragment);
    await fragment.page.locator('[data-testid="feed-status"][data-state="live"]').waitFor({ state: 'attached', timeout: 15_000 });
    expect(fragment.page.url()).not.toContain(up.key);
    expect(await fragment.page.evaluate(() => sessionStorage.getItem('arcnet.apiKey'))).toBe(up.key);
    await fragment.page.locator('button[data-testid="sign-out"]').click();
    await fragment.page.locator('form[data-testid="signin"]').waitFor({ state: 'visible', timeout: 5_000 });
    expect(await fragment.page.evaluate(() => sessionStorage.getItem('arcnet.apiKey'))).toBeNull();
    await fragment.context.close();
  });

  it('shows as many nodes on the map and in its table as GET /api/v1/nodes, with their statuses', async () => {
    // The simulated mesh and the agent are all reporting by now; both sides are read until they settle on the same set.
    const agreed = await until(async () => {
      const api = await up.json<NodesAnswer>('/api/v1/nodes');
      const map = page.locator('svg[data-testid="mesh-map"]');
      const count = Number(await map.getAttribute('data-node-count'));
      const markers = await page.locator('[data-testid="node-marker"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-node-id')));
      const rows = await page.locator('table[data-testid="node-table"] tbody tr[data-node-id]').evaluateAll((els) => els.map((e) => [e.getAttribute('data-node-id'), e.getAttribute('data-status')] as const));
      const ids = api.nodes.map((n) => n.id).sort();
      const same = count === api.count && JSON.stringify([...markers].sort()) === JSON.stringify(ids) && JSON.stringify(rows.map((r) => r[0]).sort()) === JSON.stringify(ids);
      return same ? { api, rows } : undefined;
    }, 'the map, its node table and GET /api/v1/nodes to agree on the nodes', 15_000, { intervalMs: 250 }).catch((error: unknown) => {
      throw new Error(`${String(error)}${pageErrors()}`);
    });
    expect(agreed.api.count).toBe(31);
    const apiStatus = new Map(agreed.api.nodes.map((n) => [n.id, n.status]));
    // Statuses change as nodes report; the agent's is stable here.
    expect(agreed.rows.find((r) => r[0] === agentId)?.[1]).toBe(apiStatus.get(agentId));
    expect(await page.locator(`[data-testid="node-marker"][data-node-id="${agentId}"]`).getAttribute('data-geozone')).toBe('ERCOT');

    await setTheme(page, 'dark');
    await screenshot(page, 'map-dark');
    await setTheme(page, 'light');
    await screenshot(page, 'map-light');
    await setTheme(page, 'dark');
  });

  let requestId = '';

  it('draws an inference request submitted through the API as an arc and lists it in the log within 1 s', async () => {
    const submittedAt = Date.now();
    const { status, body } = await up.post<{ id: string; nodeId: string; forwarded: boolean; message?: string }>('/api/v1/inference', { modelId: AGENT_MODEL, contextWindowTokens: 512, requesterGeozone: 'CAISO', priority: 'critical' });
    expect(status, body.message).toBe(201);
    expect(body.nodeId).toBe(agentId);
    requestId = body.id;
    const seen = await until(async () => {
      const times = await firstSeen(page, requestId);
      return times.arc !== undefined && times.log !== undefined ? times : undefined;
    }, `request ${requestId} as an arc and in the log`, 5_000, { intervalMs: 50 }).catch((error: unknown) => {
      throw new Error(`${String(error)}${pageErrors()}`);
    });
    expect(seen.arc! - submittedAt, 'ms from submission to the arc').toBeLessThanOrEqual(1_000);
    expect(seen.log! - submittedAt, 'ms from submission to the log entry').toBeLessThanOrEqual(1_000);
    // The log is newest first, and the request is there with its status.
    const entry = page.locator(`[data-testid="inference-log"] li[data-request-id="${requestId}"]`);
    await entry.waitFor({ state: 'attached', timeout: 2_000 });
    expect(await entry.getAttribute('data-status')).toMatch(/^(dispatched|processing|completed)$/);
    const arc = page.locator(`[data-testid="arc"][data-request-id="${requestId}"]`);
    if ((await arc.count()) > 0) {
      expect(await arc.first().getAttribute('data-priority')).toBe('critical');
      expect(await arc.first().getAttribute('data-forwarded')).toBe('true');
    }
  });

  it("opens the explain panel from the log, and its filters, candidates and chosen node agree with the API's", async () => {
    const api = await up.json<PlacementExplanation>(`/api/v1/inference/${requestId}/explain`);
    expect(api.chosen?.nodeId).toBe(agentId);
    await page.locator(`[data-testid="inference-log"] li[data-request-id="${requestId}"]`).click();
    const panel = page.locator(`[data-testid="explain"][data-request-id="${requestId}"]`);
    await panel.waitFor({ state: 'visible', timeout: 5_000 });
    // The panel opens at once and fills in when the explanation arrives.
    await until(async () => Boolean(await panel.getAttribute('data-chosen')), 'the explain panel to name its chosen node', 5_000, { intervalMs: 50 });
    expect(page.url()).toContain(`#/explain/${requestId}`);
    expect(await panel.getAttribute('data-chosen')).toBe(api.chosen!.nodeId);
    expect(await panel.getAttribute('data-agrees')).toBe(String(api.agrees));
    const filters = await panel.locator('[data-filter]').evaluateAll((els) => els.map((e) => ({ name: e.getAttribute('data-filter'), removed: Number(e.getAttribute('data-removed')) })));
    expect(filters).toEqual(api.filters.map((f) => ({ name: f.name, removed: f.removed })));
    const candidates = await panel.locator('[data-candidate]').evaluateAll((els) => els.map((e) => ({ nodeId: e.getAttribute('data-candidate'), score: Number(e.getAttribute('data-score')) })));
    expect(candidates.map((c) => c.nodeId)).toEqual(api.candidates.map((c) => c.nodeId));
    for (const [i, candidate] of candidates.entries()) expect(candidate.score).toBeCloseTo(api.candidates[i]!.score, 3);
    await screenshot(page, 'explain');
    await page.keyboard.press('Escape');
    await panel.waitFor({ state: 'hidden', timeout: 5_000 });
  });

  let killedAt = 0;

  it('turns a node whose agent is SIGKILLed offline on the map within the offline timeout', async () => {
    await page.goto(`${up.url}/#/map`);
    const marker = page.locator(`[data-testid="node-marker"][data-node-id="${agentId}"]`);
    await until(async () => (await marker.getAttribute('data-status')) === 'online', 'the agent online on the map', 5_000, { intervalMs: 50 });
    killedAt = Date.now();
    agent.kill('SIGKILL');
    await until(async () => (await marker.getAttribute('data-status')) === 'offline', 'the killed agent offline on the map', OFFLINE_AFTER_MS + 10_000, { intervalMs: 50 });
    const tookMs = Date.now() - killedAt;
    // Silence is counted from the last telemetry (≤ 300 ms before the kill) and checked once a second.
    expect(tookMs, 'ms from SIGKILL to offline on the map').toBeLessThanOrEqual(OFFLINE_AFTER_MS + 1_000 + 1_000);
    expect(await page.locator(`table[data-testid="node-table"] tbody tr[data-node-id="${agentId}"]`).getAttribute('data-status')).toBe('offline');
    expect((await up.json<NodeRow>(`/api/v1/nodes/${agentId}`)).status).toBe('offline');
    await stopProcess(agent);
  });

  it('travels back in time: as of a moment before the kill the map shows the agent online, as GET /api/v1/nodes?asOf= does', async () => {
    await page.locator('select[data-testid="time-mode"]').selectOption('asOf');
    await page.locator('input[type="range"][data-testid="time-slider"]').fill(String(killedAt - 2_000));
    const map = page.locator('svg[data-testid="mesh-map"]');
    const asOf = await until(async () => {
      const value = await map.getAttribute('data-as-of');
      // The slider moves in whole seconds, so the moment shown is within a second of the one set.
      return value !== null && Math.abs(Date.parse(value) - (killedAt - 2_000)) <= 1_000 ? value : undefined;
    }, 'the map to carry data-as-of near the moment set', 5_000, { intervalMs: 50 }).catch((error: unknown) => {
      throw new Error(`${String(error)}${pageErrors()}`);
    });
    const api = await up.json<NodesAnswer>(`/api/v1/nodes?asOf=${encodeURIComponent(asOf)}`);
    expect(api.nodes.find((n) => n.id === agentId)?.status).toBe('online');
    const marker = page.locator(`[data-testid="node-marker"][data-node-id="${agentId}"]`);
    await until(async () => (await marker.getAttribute('data-status')) === 'online' && Number(await map.getAttribute('data-node-count')) === api.count, 'the past map: the agent online and as many nodes as the API had then', 5_000, { intervalMs: 50 });
    await screenshot(page, 'map-as-of');
    await page.locator('select[data-testid="time-mode"]').selectOption('live');
    await until(async () => (await map.getAttribute('data-as-of')) === null && (await marker.getAttribute('data-status')) === 'offline', 'the live map again, the agent offline', 5_000, { intervalMs: 50 });
  });

  it('shows the zones, a node and the events views, switched by keys and links', async () => {
    await page.evaluate('document.activeElement?.blur()');
    await page.keyboard.press('2');
    await page.locator('table[data-testid="zones"]').waitFor({ state: 'visible', timeout: 5_000 });
    expect(page.url()).toContain('#/zones');
    const zones = await page.locator('table[data-testid="zones"] tbody tr[data-geozone]').evaluateAll((els) => els.map((e) => e.getAttribute('data-geozone')));
    const apiZones = await up.json<{ zones: { geozone: string }[] } | { geozone: string }[]>('/api/v1/zones');
    const apiZoneNames = (Array.isArray(apiZones) ? apiZones : apiZones.zones).map((z) => z.geozone);
    expect([...zones].sort()).toEqual([...apiZoneNames].sort());
    await screenshot(page, 'zones');

    await page.goto(`${up.url}/#/nodes/${agentId}`);
    await page.locator(`[data-testid="node-detail"][data-node-id="${agentId}"]`).waitFor({ state: 'visible', timeout: 5_000 });
    await screenshot(page, 'node-detail');

    await page.locator('nav a[data-view="events"]').click();
    const events = page.locator('[data-testid="events"] li[data-severity]');
    await events.first().waitFor({ state: 'attached', timeout: 5_000 });
    // The agent's loss is a warning somewhere in ERCOT; filtering by severity leaves only that severity.
    await page.locator('select[name="severity"]').selectOption('warn');
    await until(async () => {
      const severities = await events.evaluateAll((els) => els.map((e) => e.getAttribute('data-severity')));
      return severities.length > 0 && severities.every((s) => s === 'warn');
    }, 'only warnings listed', 5_000, { intervalMs: 100 });
    // Shortcuts are off while a form control has focus (the severity select has it now), as typing there must not switch views.
    await page.evaluate('document.activeElement?.blur()');
    await page.keyboard.press('/');
    // The app focuses the field once the view has rendered (two animation frames later).
    await until(async () => (await page.evaluate<string | null>("document.activeElement?.getAttribute('name') ?? null")) === 'search', '/ to focus the events search', 2_000, { intervalMs: 50 });
    await page.locator('select[name="severity"]').selectOption({ index: 0 });
    await screenshot(page, 'events');
  });

  it('submits a federated training job from the form (listed with its target and routing reason), follows and cancels an HPC transfer, and shows the global view on the zones page', async () => {
    await page.goto(`${up.url}/#/map`);
    await page.evaluate('document.activeElement?.blur()');
    await page.keyboard.press('5');
    const form = page.locator('form[data-testid="training-form"]');
    await form.waitFor({ state: 'visible', timeout: 5_000 });
    expect(page.url()).toContain('#/training');
    expect(await page.locator('nav a[data-view="training"]').getAttribute('aria-current')).toBe('page');

    // The server's refusal is shown as it says it.
    await form.locator('[name="datasetUri"]').fill('ftp://example.org/set.bin');
    await form.locator('button[type="submit"]').click();
    const refused = form.locator('[role="alert"]');
    await refused.waitFor({ state: 'visible', timeout: 5_000 });
    expect(await refused.textContent()).toContain('ftp:// is not a scheme ArcNet moves');

    await form.locator('[name="datasetUri"]').fill('file:///data/console-e2e.bin');
    await form.locator('[name="datasetSizeGb"]').fill('5');
    await form.locator('[name="estimatedFlops"]').fill('1e15');
    await form.locator('select[name="target"]').selectOption('federated');
    await form.locator('button[type="submit"]').click();
    const submitted = page.locator('[data-testid="training-submitted"][data-job-id]');
    await submitted.waitFor({ state: 'attached', timeout: 5_000 });
    const jobId = (await submitted.getAttribute('data-job-id'))!;
    expect(await refused.count()).toBe(0);

    // The bridge classifies it federated and it waits on arc.scheduler.training: the list's next poll shows it so.
    const job = page.locator(`[data-testid="training-job"][data-job-id="${jobId}"]`);
    await until(async () => (await job.getAttribute('data-target', { timeout: 500 }).catch(() => null)) === 'federated' && (await job.getAttribute('data-status')) === 'waiting', 'the job listed as federated and waiting', 8_000, { intervalMs: 100 }).catch((error: unknown) => {
      throw new Error(`${String(error)}${pageErrors()}`);
    });
    const api = await up.json<{ target: string; status: string; routingReason: string }>(`/api/v1/training/${jobId}`);
    expect(api).toMatchObject({ target: 'federated', status: 'waiting' });
    expect((await job.locator('[data-testid="routing-reason"]').textContent())?.trim()).toBe(api.routingReason);
    // Not an HPC job: no transfer to show, and it can still be cancelled.
    expect(await job.locator('[data-testid="hpc-progress"]').count()).toBe(0);
    expect(await job.locator('button[data-testid="training-cancel"]').isEnabled()).toBe(true);

    // An HPC job from a node of the mesh: its transfer shows in the list and on the map as it moves, and the list's button cancels it.
    const dataset = join(up.dataDir, 'console-hpc.bin');
    writeFileSync(dataset, Buffer.alloc(6_000_000, 7));
    const source = (await up.json<NodesAnswer>('/api/v1/nodes')).nodes.find((n) => n.status === 'online' && n.name !== 'console-agent')!;
    const hpc = await up.post<{ id: string; message?: string }>('/api/v1/training', { datasetUri: `file://${dataset}`, datasetSizeGb: 0.006, estimatedFlops: 1e15, target: 'hpc', sourceNodeId: source.id, geozone: source.geozone });
    expect(hpc.status, hpc.body.message).toBe(202);
    const hpcJob = page.locator(`[data-testid="training-job"][data-job-id="${hpc.body.id}"]`);
    const progressOf = async (selector: string, attribute = 'data-progress'): Promise<number> => Number((await page.locator(selector).first().getAttribute(attribute, { timeout: 500 }).catch(() => null)) ?? Number.NaN);
    await until(async () => (await hpcJob.getAttribute('data-status', { timeout: 500 }).catch(() => null)) === 'transferring' && (await progressOf(`[data-testid="training-job"][data-job-id="${hpc.body.id}"] [data-testid="hpc-progress"]`)) > 0, 'the HPC job transferring, with progress, in the list', 8_000, { intervalMs: 100 }).catch((error: unknown) => {
      throw new Error(`${String(error)}${pageErrors()}`);
    });
    expect(await hpcJob.getAttribute('data-target')).toBe('hpc');
    // Between the list's polls the feed alone knows it; once listed, it has its dataset and its cancel button.
    await until(async () => (await hpcJob.getAttribute('data-feed-only')) === 'false', 'the HPC job in the polled list', 5_000, { intervalMs: 100 });
    await screenshot(page, 'training');
    await page.locator('nav a[data-view="map"]').click();
    const transfer = page.locator(`[data-testid="hpc-transfer"][data-job-id="${hpc.body.id}"]`);
    await until(async () => (await progressOf(`[data-testid="hpc-transfer"][data-job-id="${hpc.body.id}"]`)) > 0, 'the HPC transfer on the map', 5_000, { intervalMs: 100 });
    expect(await transfer.getAttribute('data-placed')).toBe('true');
    expect(await page.locator('[data-testid="hpc-marker"]').textContent()).toContain('HPC (ORNL)');
    await screenshot(page, 'map-hpc');
    await page.locator('nav a[data-view="training"]').click();
    await hpcJob.locator('button[data-testid="training-cancel"]').click();
    await until(async () => (await hpcJob.getAttribute('data-status', { timeout: 500 }).catch(() => null)) === 'cancelled', 'the HPC job cancelled from the list', 8_000, { intervalMs: 100 });
    expect(await hpcJob.locator('button[data-testid="training-cancel"]').count()).toBe(0);

    // The zones view opens with the central orchestrator's global view: its total is GET /api/v1/global's.
    await page.evaluate('document.activeElement?.blur()');
    await page.keyboard.press('2');
    const total = page.locator('[data-testid="global-total"]');
    await total.waitFor({ state: 'attached', timeout: 5_000 });
    // Both move with every summary (2 s) and the panel polls every 5 s: read until they agree, on the nodes and on the active alerts.
    const agreed = await until(async () => {
      const global = await up.json<{ total: { nodes: number; active: number }; alerts: { key: string }[] }>('/api/v1/global');
      const shown = {
        nodes: Number(await total.getAttribute('data-nodes')),
        alerts: (await page.locator('[data-testid="alert"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-alert-key') ?? ''))).sort(),
      };
      const apiAlerts = global.alerts.map((a) => a.key).sort();
      return global.total.nodes > 0 && shown.nodes === global.total.nodes && JSON.stringify(shown.alerts) === JSON.stringify(apiAlerts) ? { global, shown } : undefined;
    }, 'the global panel and GET /api/v1/global to agree on the total nodes and the alerts', 10_000, { intervalMs: 250 }).catch((error: unknown) => {
      throw new Error(`${String(error)}${pageErrors()}`);
    });
    expect(agreed.shown.nodes).toBe(agreed.global.total.nodes);
    await screenshot(page, 'zones-global');
  }, 45_000);

  it.skipIf(!containers.available)(containers.title('runs a job submitted from the form on real container workers and shows its verdict'), async () => {
    const endpoint = testEngineEndpoint();
    for (const name of ['console-worker-a', 'console-worker-b']) {
      up.startChild([
        'agent', '--worker', '--no-inference', '--server', up.url, '--token', up.key, '--node-key', join(up.dataDir, `${name}.key`), '--name', name,
        '--docker-host', endpoint, '--worker-state', join(up.dataDir, `${name}.json`), '--cpus', '1', '--memory-gb', '1', '--heartbeat-interval', '500', '--log-level', 'warn',
      ]);
    }
    await until(async () => (await up.json<{ workers: { connected: number } }>('/stats')).workers.connected === 2, 'two workers connected', 30_000, { intervalMs: 200, retryOnError: true });
    const workerIds = (await up.json<NodesAnswer>('/api/v1/nodes')).nodes.filter((n) => n.name.startsWith('console-worker-')).map((n) => n.id);
    expect(workerIds).toHaveLength(2);
    await page.locator('nav a[data-view="jobs"]').click();
    await until(async () => {
      for (const id of workerIds) if ((await page.locator(`[data-testid="worker"][data-worker-id="${id}"]`).getAttribute('data-status', { timeout: 500 }).catch(() => null)) !== 'online') return false;
      return true;
    }, 'both workers online in the jobs view', 10_000, { intervalMs: 200 }).catch((error: unknown) => {
      throw new Error(`${String(error)}${pageErrors()}`);
    });

    const form = page.locator('form[data-testid="job-form"]');
    await form.locator('[name="name"]').fill('console e2e');
    await form.locator('[name="docker_image"]').fill(TEST_IMAGE);
    await form.locator('[name="command"]').fill('echo console-verdict');
    await form.locator('[name="redundancy"]').fill('2');
    await form.locator('[name="consensus"]').fill('2');
    await form.locator('button[type="submit"], input[type="submit"]').first().click();
    const submitted = page.locator('[data-testid="job-submitted"][data-job-id]');
    await submitted.waitFor({ state: 'attached', timeout: 10_000 });
    const jobId = (await submitted.getAttribute('data-job-id'))!;

    const job = page.locator(`[data-testid="job"][data-job-id="${jobId}"]`);
    await until(async () => (await job.getAttribute('data-status')) === 'completed', 'the job completed in the jobs view', 40_000, { intervalMs: 200 });
    const api = await up.json<{ status: string; result: string; executions: { id: string; result_hash: string | null; verdict: string | null }[] }>(`/api/v1/jobs/${jobId}`);
    expect(api.status).toBe('completed');
    expect(api.result).toBe('console-verdict\n');
    expect((await job.locator('[data-testid="verdict"]').textContent())?.trim()).not.toBe('');
    const shown = await job.locator('[data-testid="execution"]').evaluateAll((els) => els.map((e) => [e.getAttribute('data-execution-id'), e.getAttribute('data-hash')] as const));
    const completedExecutions = api.executions.filter((e) => e.result_hash !== null);
    expect(completedExecutions.length).toBeGreaterThanOrEqual(2);
    for (const execution of completedExecutions) expect(shown).toContainEqual([execution.id, execution.result_hash]);
    // The counters on the cards are the server's.
    await until(async () => Number(await page.locator('[data-testid="stat-card"][data-stat="jobs_completed"]').getAttribute('data-value')) === 1, 'jobs_completed = 1 on its card', 10_000, { intervalMs: 200 });
    await screenshot(page, 'jobs');
  }, 90_000);

  it('shows the services view: a blueprint, its instance ACTIVE on the runner agent with the endpoint the API reports, and why a second instance cannot be placed', async () => {
    const artifact = 'org.arcnet:console-echo:1.0.0';
    const base = await freePort();
    const runner = up.startChild([
      'agent', '--services', '--server', up.url, '--token', up.key, '--node-key', join(up.dataDir, 'services-agent.key'), '--name', 'services-agent',
      '--models', 'services-only-model', '--service-ports', `${base}-${Math.min(65_535, base + 20)}`, '--services-dir', join(up.dataDir, 'services-runner'),
      '--telemetry-interval', '500', '--log-level', 'warn',
    ]);
    try {
      const node = await until(async () => (await up.json<NodesAnswer>('/api/v1/nodes')).nodes.find((n) => n.name === 'services-agent' && n.status === 'online'), 'the services agent online', 30_000, { intervalMs: 200, retryOnError: true });
      const blueprint = { name: 'console-shop', slices: [{ artifact, instances: 1, run: { kind: 'process', command: [process.execPath, ECHO_SERVICE] }, health: { path: '/health', intervalMs: 200 } }] };
      expect((await up.post<{ message?: string }>('/api/v1/deploy', blueprint)).status).toBe(201);

      await page.goto(`${up.url}/#/map`);
      await page.evaluate('document.activeElement?.blur()');
      await page.keyboard.press('6');
      await page.locator('[data-testid="blueprint"][data-name="console-shop"]').waitFor({ state: 'visible', timeout: 5_000 });
      expect(page.url()).toContain('#/services');
      const slice = page.locator(`[data-testid="service-slice"][data-artifact="${artifact}"]`);
      const active = slice.locator(`[data-testid="service-instance"][data-node-id="${node.id}"][data-state="ACTIVE"]`);
      await active.waitFor({ state: 'visible', timeout: 30_000 }).catch(async (error: unknown) => {
        const shown = await page.locator('main').innerText().catch(() => '(nothing)');
        throw new Error(`${(error as Error).message}\nthe view shows: ${shown}\nthe API says: ${JSON.stringify(await up.json(`/api/v1/slices/${artifact}`))}${pageErrors()}`);
      });
      const reported = await up.json<{ slices: { instances: { node: string; state: string; address?: string }[] }[] }>(`/api/v1/slices/${artifact}`);
      const address = reported.slices.flatMap((s) => s.instances).find((i) => i.node === node.id && i.state === 'ACTIVE')?.address;
      expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(await active.getAttribute('data-address')).toBe(address);
      // Its endpoint, behind the router's path, as the endpoint registry has it.
      const endpoint = page.locator(`[data-testid="endpoint"][data-artifact="${artifact}"][data-node-id="${node.id}"]`);
      await endpoint.waitFor({ state: 'visible', timeout: 10_000 });
      expect(await endpoint.getAttribute('data-route')).toBe('/console-echo/');
      expect(await endpoint.getAttribute('data-address')).toBe(address);
      expect(await page.locator(`[data-testid="service-node"][data-node-id="${node.id}"]`).getAttribute('data-slices')).toBe('1');

      // One runner, two instances wanted: the second has nowhere to go, and the view says why, as the API does.
      expect((await up.post('/api/v1/scale', { artifact, instances: 2 })).status).toBe(200);
      const unplaced = slice.locator('[data-testid="unplaced-reason"]');
      await unplaced.waitFor({ state: 'visible', timeout: 10_000 });
      const reason = (await up.json<{ unplaced: { reason: string } | null }>(`/api/v1/slices/${artifact}`)).unplaced?.reason;
      expect(reason).toMatch(/one-per-node|already/);
      expect(await unplaced.innerText()).toBe(reason);
      await screenshot(page, 'services');
    } finally {
      await up.json(`/api/v1/blueprints/console-shop`, { method: 'DELETE' }).catch(() => undefined);
      await stopProcess(runner, 10_000);
    }
  }, 90_000);

  it('resyncs with no gap when the WebSocket drops mid-run (server restarted): the console and a Node client both check sequence numbers', async () => {
    // A fresh load (signed in from sessionStorage), so this test does not depend on what earlier ones left on screen.
    await page.goto(`${up.url}/#/map`);
    await page.reload();
    const status = page.locator('[data-testid="feed-status"]');
    await page.locator('[data-testid="feed-status"][data-state="live"]').waitFor({ state: 'attached', timeout: 10_000 }).catch((error: unknown) => {
      throw new Error(`${String(error)}${pageErrors()}`);
    });
    // "live" can show as the socket opens, a moment before its hello names the session: wait for the name.
    const before = await until(async () => {
      const [session, instance, resyncs] = await Promise.all([status.getAttribute('data-session'), status.getAttribute('data-server-instance'), status.getAttribute('data-resyncs')]);
      return session && instance ? { session, instance, resyncs: Number(resyncs) } : undefined;
    }, 'the console to name its feed session', 5_000, { intervalMs: 50 });

    // A Node client: drop it and resume within the replay window: exactly the messages after `since` follow.
    const first = await FeedClient.connect(up.url, up.key);
    feeds.push(first);
    await first.waitFor((m) => m.length >= 20, 'twenty feed messages');
    const session = first.hello()!.session;
    expect(first.messages[0]!.type).toBe('hello');
    expect(first.messages[0]!.seq).toBe(1);
    expect(first.firstGap()).toBeUndefined();
    await first.close();
    const since = first.lastSeq() - 5;
    const resumed = await FeedClient.connect(up.url, up.key, { session, since });
    feeds.push(resumed);
    await resumed.waitFor((m) => m.some((x) => x.type === 'hello') && m.length >= 10, 'the resumed hello and ten messages');
    const hello = resumed.hello()!;
    expect(hello.resumed, hello.resync).toBe(true);
    expect(hello.session).toBe(session);
    // The replay comes first, then the hello as the next message of the same stream: one run of numbers from since + 1.
    expect(resumed.messages[0]!.seq).toBe(since + 1);
    expect(resumed.firstGap(), 'seq after the resume').toBeUndefined();
    expect(resumed.messages.slice(0, 5).map((m) => m.seq)).toEqual(first.messages.slice(-5).map((m) => m.seq));

    // The server restarts under both: the console reconnects by itself.
    await up.restart();
    await until(() => resumed.closed, 'the Node client to see the connection drop', 10_000, { intervalMs: 50 });
    await until(async () => {
      const [state, session, instance] = await Promise.all([status.getAttribute('data-state'), status.getAttribute('data-session'), status.getAttribute('data-server-instance')]);
      return state === 'live' && Boolean(session) && session !== before.session && Boolean(instance) && instance !== before.instance;
    }, 'the console live again on the restarted server', 20_000, { intervalMs: 100 }).catch((error: unknown) => {
      throw new Error(`${String(error)}${pageErrors()}`);
    });
    expect(Number(await status.getAttribute('data-resyncs'))).toBeGreaterThanOrEqual(before.resyncs + 1);
    expect(Number(await status.getAttribute('data-gaps'))).toBe(0);
    // And it keeps counting: the new session's numbers move on without a gap.
    const seq = Number(await status.getAttribute('data-seq'));
    await until(async () => Number(await status.getAttribute('data-seq')) > seq, 'the console seq to advance after the restart', 10_000, { intervalMs: 100 });
    expect(Number(await status.getAttribute('data-gaps'))).toBe(0);

    // The old session is gone with the old process: a client asking for it gets a new session, a reason, and a snapshot.
    const after = await FeedClient.connect(up.url, up.key, { session, since: resumed.lastSeq() });
    feeds.push(after);
    await after.waitFor((m) => m.length >= 5, 'messages from the restarted server');
    const newHello = after.hello()!;
    expect(newHello.resumed).toBe(false);
    expect(newHello.session).not.toBe(session);
    expect(newHello.resync).toBeTruthy();
    expect(newHello.serverInstance).not.toBe(before.instance);
    expect(after.messages[0]!.seq).toBe(1);
    expect(after.messages[1]!.type).toBe('snapshot');
    expect(after.firstGap()).toBeUndefined();
    // The map is whole again after the resync.
    const api = await up.json<NodesAnswer>('/api/v1/nodes');
    await until(async () => Number(await page.locator('svg[data-testid="mesh-map"]').getAttribute('data-node-count')) === api.count, 'the map to show every node after the resync', 10_000, { intervalMs: 100 });
  }, 60_000);
});

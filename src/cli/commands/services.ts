/**
 * The services family from the command line (issue 14), over the server's management API
 * (src/api/service-routes.ts): `arcnet blueprint apply|list|get|delete`, `arcnet slice list|status`,
 * `arcnet cluster status|nodes` and `arcnet scale <artifact> <instances>`. Every command takes
 * `--server` and `--json`; a refusal (a file that cannot be read, a server that says no) is one line
 * on stderr and exit 2.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { errorMessage } from '../../core/errors.ts';
import type { Response } from '../../core/http-client.ts';
import type { Blueprint, SliceSpec } from '../../services/model.ts';
import type { Instance, SliceStatus, Unplaced } from '../../api/service-routes.ts';
import { authHeaders } from '../client-key.ts';
import { ago, colour, oneLine, table, truncateId, type Colour } from '../format.ts';
import { usage } from '../options.ts';
import { cliHttp, withClientTlsOptions } from '../tls-options.ts';

const DEFAULT_SERVER = 'http://127.0.0.1:8080';

interface CommonFlags {
  server: string;
  json: boolean;
}

/** One call; anything but a 2xx ends the command with the server's own sentence. */
async function api(server: string, path: string, init?: { method: string; body?: unknown }): Promise<Record<string, unknown>> {
  let url: URL;
  try {
    url = new URL(path, server);
  } catch {
    throw usage(`--server must be a URL such as ${DEFAULT_SERVER}, got "${server}"`);
  }
  let response: Response;
  try {
    const body = init?.body === undefined ? {} : { body: JSON.stringify(init.body) };
    const headers = init?.body === undefined ? authHeaders() : { 'content-type': 'application/json', ...authHeaders() };
    response = await cliHttp().fetch(url, { method: init?.method ?? 'GET', headers, ...body });
  } catch (error) {
    throw usage(`cannot reach ${server}: ${errorMessage((error as Error).cause ?? error)} (is "arcnet up" running?)`);
  }
  const text = await response.text();
  let answer: Record<string, unknown>;
  try {
    answer = JSON.parse(text) as Record<string, unknown>;
  } catch {
    answer = { message: text.trim().slice(0, 200) || 'no message' };
  }
  if (!response.ok) throw usage(`${server}${path} answered ${response.status}: ${oneLine(String(answer['message'] ?? 'no message'), 500)}`);
  return answer;
}

const seg = (text: string): string => encodeURIComponent(text);

function print(json: boolean, answer: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(answer, null, 2)}\n` : `${human()}\n`);
}

function stateColour(state: string): Colour {
  if (state === 'ACTIVE') return 'green';
  if (state === 'FAILED') return 'red';
  if (state === 'LOAD' || state === 'ACTIVATE' || state === 'DEACTIVATE' || state === 'UNLOAD') return 'grey';
  return 'yellow';
}

const when = (ms: number | undefined): string => (typeof ms === 'number' && Number.isFinite(ms) ? ago(new Date(ms).toISOString()) : '-');

const states = (counts: Readonly<Record<string, number>> | undefined): string =>
  Object.entries(counts ?? {}).map(([state, n]) => colour(`${n} ${state}`, stateColour(state))).join(', ') || '-';

const unplacedText = (u: Unplaced | null | undefined): string => (u ? oneLine(`${u.placed}/${u.wanted}: ${u.reason}`, 90) : '');

function runOf(spec: SliceSpec): string {
  const run = spec.run;
  return run.kind === 'process' ? `process ${oneLine(run.command.join(' '), 40)}` : `container ${oneLine(run.image, 40)}`;
}

function instanceRows(instances: readonly Instance[], artifact?: string): string[][] {
  return instances.map((i) => [
    ...(artifact === undefined ? [] : [artifact]),
    i.nodeName ?? truncateId(i.node),
    String(i.instance),
    colour(i.state, stateColour(i.state)),
    i.address ?? '-',
    when(i.timestamp),
    oneLine(i.reason ?? '', 70),
  ]);
}

/** Reads and parses a blueprint file; a missing or unparsable one is one line naming the file. */
function readBlueprintFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw usage(`${file}: cannot be read: ${errorMessage(error)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw usage(`${file}: not JSON: ${oneLine(errorMessage(error), 200)}`);
  }
}

function blueprintDetails(b: Blueprint): string {
  const head = `blueprint ${b.name}, applied ${when(b.timestamp)}${b.appliedBy ? ` by ${b.appliedBy}` : ''}`;
  const rows = b.slices.map((s) => [s.artifact, s.service ?? '-', String(s.instances), runOf(s), s.resources ? `${s.resources.cpu} cpu, ${s.resources.memoryMb} MB` : '-', (s.requiredTags ?? []).join(',') || '-']);
  return `${head}\n${table(['ARTIFACT', 'SERVICE', 'INSTANCES', 'RUN', 'RESOURCES', 'TAGS'], rows)}`;
}

function sliceDetails(answer: Record<string, unknown>): string {
  const slices = (answer['slices'] as SliceStatus[] | undefined) ?? [];
  const endpoints = (answer['endpoints'] as { entryPoint: string; instance: number; nodeId?: string; address?: string; path?: string }[] | undefined) ?? [];
  const unowned = (answer['unowned'] as (Instance & { blueprint: string })[] | undefined) ?? [];
  const lines = [
    `slice ${String(answer['artifact'])} in ${(answer['blueprints'] as string[]).join(', ') || 'no blueprint'}: ${String(answer['active'])} of ${String(answer['wanted'])} active (${states(answer['states'] as Record<string, number>)})`,
  ];
  const unplaced = answer['unplaced'] as Unplaced | null;
  if (unplaced) lines.push(`unplaced: ${unplacedText(unplaced)}`);
  const instances = [...slices.flatMap((s) => s.instances), ...unowned];
  lines.push(instances.length === 0 ? 'no instances' : table(['NODE', 'INSTANCE', 'STATE', 'ADDRESS', 'SINCE', 'REASON'], instanceRows(instances)));
  const names = new Map(instances.flatMap((i) => (i.nodeName === undefined ? [] : [[i.node, i.nodeName] as const])));
  const nodeOf = (id: string | undefined): string => (id === undefined ? '-' : (names.get(id) ?? truncateId(id)));
  if (endpoints.length > 0) lines.push(table(['ENTRY POINT', 'INSTANCE', 'NODE', 'ADDRESS', 'PATH'], endpoints.map((e) => [e.entryPoint, String(e.instance), nodeOf(e.nodeId), e.address ?? '-', e.path ?? '-'])));
  return lines.join('\n');
}

function clusterStatus(answer: Record<string, unknown>): string {
  const leader = answer['leader'] as { holder: string; epoch: number | null; since: unknown } | null;
  const totals = answer['totals'] as { blueprints: number; slices: number; wanted: number; instances: number; active: number; unplaced: number; states: Record<string, number> };
  const blueprints = answer['blueprints'] as { name: string; slices: SliceStatus[] }[];
  const unowned = answer['unowned'] as (Instance & { artifact: string; blueprint: string })[];
  const lines = [leader ? `leader: ${leader.holder}${leader.epoch === null ? '' : ` (epoch ${leader.epoch})`}${typeof leader.since === 'number' ? ` since ${when(leader.since)}` : ''}` : 'leader: none (no cluster deployment manager has published itself)'];
  const rows = blueprints.flatMap((b) => b.slices.map((s) => [b.name, s.artifact, s.service, String(s.wanted), colour(String(s.active), s.active >= s.wanted ? 'green' : 'yellow'), states(s.states), unplacedText(s.unplaced)]));
  lines.push(rows.length === 0 ? 'no blueprints' : table(['BLUEPRINT', 'ARTIFACT', 'SERVICE', 'WANTED', 'ACTIVE', 'STATES', 'UNPLACED'], rows));
  if (unowned.length > 0) lines.push(`slices no blueprint names (to be unloaded):\n${table(['ARTIFACT', 'NODE', 'INSTANCE', 'STATE', 'ADDRESS', 'SINCE', 'REASON'], instanceRows(unowned).map((r, i) => [unowned[i]!.artifact, ...r]))}`);
  lines.push(`${totals.blueprints} blueprints, ${totals.slices} slices, ${totals.active} of ${totals.wanted} instances active, ${totals.instances} slice keys (${states(totals.states)})${totals.unplaced > 0 ? `, ${totals.unplaced} short of nodes` : ''}`);
  return lines.join('\n');
}

function instancesArg(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n)) throw usage(`<instances> must be an integer ≥ 0, got "${raw}"`);
  return n;
}

export function registerServices(program: Command): void {
  const common = (command: Command): Command => withClientTlsOptions(command).option('--server <url>', 'ArcNet server', DEFAULT_SERVER).option('--json', 'print JSON', false);

  const blueprint = program.command('blueprint').description('services blueprints (seed 003): which slices run, how many of each');

  common(blueprint.command('apply <file>'))
    .description('create or replace a blueprint from a JSON file ({ "name": …, "slices": [ … ] })')
    .action(async (file: string, opts: CommonFlags) => {
      const answer = await api(opts.server, '/api/v1/deploy', { method: 'POST', body: readBlueprintFile(file) });
      const b = answer['blueprint'] as Blueprint;
      print(opts.json, answer, () => `blueprint ${b.name} ${answer['created'] ? 'created' : 'replaced'}: ${b.slices.length} slices, ${b.slices.reduce((sum, s) => sum + s.instances, 0)} instances wanted\n  follow it: arcnet cluster status`);
    });

  common(blueprint.command('list'))
    .description('list the blueprints')
    .action(async (opts: CommonFlags) => {
      const answer = await api(opts.server, '/api/v1/blueprints');
      const list = answer['blueprints'] as Blueprint[];
      print(opts.json, answer, () =>
        list.length === 0
          ? 'no blueprints'
          : `${table(['NAME', 'SLICES', 'INSTANCES', 'APPLIED', 'BY'], list.map((b) => [b.name, String(b.slices.length), String(b.slices.reduce((sum, s) => sum + s.instances, 0)), when(b.timestamp), b.appliedBy ?? '-']))}\n${list.length} blueprints`,
      );
    });

  common(blueprint.command('get <name>'))
    .description('show a blueprint and its slices')
    .action(async (name: string, opts: CommonFlags) => {
      const answer = await api(opts.server, `/api/v1/blueprints/${seg(name)}`);
      print(opts.json, answer, () => blueprintDetails(answer as unknown as Blueprint));
    });

  common(blueprint.command('delete <name>'))
    .description('delete a blueprint: the leader unloads its slices')
    .action(async (name: string, opts: CommonFlags) => {
      const answer = await api(opts.server, `/api/v1/blueprints/${seg(name)}`, { method: 'DELETE' });
      print(opts.json, answer, () => `blueprint ${name} deleted; its slices are unloaded by the leader`);
    });

  const slice = program.command('slice').description('slices: the instances of artifacts on nodes');

  common(slice.command('list'))
    .description('list slice instances, as the leader and the nodes last wrote them')
    .option('--node <id>', 'only this node')
    .option('--artifact <group:artifact:version>', 'only this artifact')
    .action(async (opts: CommonFlags & { node?: string; artifact?: string }) => {
      const query = new URLSearchParams({ ...(opts.node ? { node: opts.node } : {}), ...(opts.artifact ? { artifact: opts.artifact } : {}) });
      const answer = await api(opts.server, `/api/v1/slices${query.size > 0 ? `?${query.toString()}` : ''}`);
      const rows = answer['slices'] as (Instance & { artifact: string; blueprint: string })[];
      print(opts.json, answer, () =>
        rows.length === 0 ? 'no slices' : `${table(['ARTIFACT', 'BLUEPRINT', 'NODE', 'INSTANCE', 'STATE', 'ADDRESS', 'SINCE', 'REASON'], instanceRows(rows).map((r, i) => [rows[i]!.artifact, rows[i]!.blueprint, ...r]))}\n${rows.length} slices`,
      );
    });

  common(slice.command('status <artifact>'))
    .description("one slice: wanted and active, its instances, its endpoints, why it is short")
    .action(async (artifact: string, opts: CommonFlags) => {
      const answer = await api(opts.server, `/api/v1/slices/${seg(artifact)}`);
      print(opts.json, answer, () => sliceDetails(answer));
    });

  const cluster = program.command('cluster').description('the services cluster as a whole');

  common(cluster.command('status'))
    .description('per blueprint and slice: wanted, active, states, why short; the leader')
    .action(async (opts: CommonFlags) => {
      const answer = await api(opts.server, '/api/v1/status');
      print(opts.json, answer, () => clusterStatus(answer));
    });

  common(cluster.command('nodes'))
    .description('the nodes services can run on, with their slices')
    .action(async (opts: CommonFlags) => {
      const answer = await api(opts.server, '/api/v1/cluster/nodes');
      const nodes = answer['nodes'] as { id: string; name: string; status: string; tags: string[]; cpuLoad: number; capacity: { cpuCores: number; memoryGb: number }; datasetsHot: string[]; slices: number }[];
      const unknown = answer['unknown'] as { id: string; slices: number }[];
      print(opts.json, answer, () => {
        const rows = nodes.map((n) => [truncateId(n.id), n.name, colour(n.status, n.status === 'online' ? 'green' : n.status === 'offline' ? 'red' : 'yellow'), `${Math.round(n.cpuLoad * 100)}%`, String(n.capacity.cpuCores), `${n.capacity.memoryGb} GB`, oneLine(n.tags.join(','), 40) || '-', String(n.datasetsHot.length), String(n.slices)]);
        const lines = [nodes.length === 0 ? 'no nodes' : table(['ID', 'NAME', 'STATUS', 'CPU', 'CORES', 'MEMORY', 'TAGS', 'DATASETS', 'SLICES'], rows)];
        if (unknown.length > 0) lines.push(`slice keys of nodes not known here: ${unknown.map((u) => `${u.id} (${u.slices})`).join(', ')}`);
        lines.push(`${nodes.length} nodes`);
        return lines.join('\n');
      });
    });

  common(program.command('scale <artifact> <instances>'))
    .description("change how many instances of a slice its blueprint wants")
    .option('--blueprint <name>', 'the blueprint, when more than one names the artifact')
    .action(async (artifact: string, raw: string, opts: CommonFlags & { blueprint?: string }) => {
      const instances = instancesArg(raw);
      const answer = await api(opts.server, '/api/v1/scale', { method: 'POST', body: { artifact, instances, ...(opts.blueprint ? { blueprint: opts.blueprint } : {}) } });
      print(opts.json, answer, () => `${artifact} in blueprint ${String(answer['blueprint'])}: ${String(answer['previous'])} → ${instances} instances`);
    });
}

/**
 * `arcnet train submit|list|get|cancel`: training jobs over the server's HTTP API
 * (src/api/training-routes.ts). `submit` stores and publishes a TrainingJob and shows how the bridge
 * classified it; `get --watch` follows the job's states and transfer progress until it ends.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { errorMessage } from '../../core/errors.ts';
import type { Response } from '../../core/http-client.ts';
import type { TrainingRecord } from '../../training/model.ts';
import { authHeaders } from '../client-key.ts';
import { ago, colour, oneLine, table, truncateId, type Colour } from '../format.ts';
import { int, usage } from '../options.ts';
import { cliHttp, withClientTlsOptions } from '../tls-options.ts';

const DEFAULT_SERVER = 'http://127.0.0.1:8080';
const FINAL = new Set(['completed', 'failed', 'cancelled']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** How long `get --watch` keeps retrying a server that stopped answering (a restart) before giving up. */
const WATCH_UNREACHABLE_MS = 30_000;

class Unreachable extends Error {}

async function call(server: string, path: string, init?: { method: string; body: unknown }): Promise<{ status: number; body: Record<string, unknown> }> {
  let response: Response;
  try {
    response = await cliHttp().fetch(new URL(path, server), init ? { method: init.method, headers: { 'content-type': 'application/json', ...authHeaders() }, body: JSON.stringify(init.body) } : { headers: authHeaders() });
  } catch (error) {
    throw new Unreachable(`cannot reach ${server}: ${errorMessage((error as Error).cause ?? error)} (is "arcnet up" running?)`);
  }
  const text = await response.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { message: text.trim().slice(0, 200) || 'no message' };
  }
  return { status: response.status, body };
}

async function api(server: string, path: string, init?: { method: string; body: unknown }): Promise<Record<string, unknown>> {
  let answer: { status: number; body: Record<string, unknown> };
  try {
    answer = await call(server, path, init);
  } catch (error) {
    throw usage(errorMessage(error));
  }
  if (answer.status < 200 || answer.status >= 300) throw usage(`${server}${path} answered ${answer.status}: ${oneLine(String(answer.body['message'] ?? 'no message'), 500)}`);
  return answer.body;
}

/** A number as the API wants it, with the flag named when it is not one. */
function amount(flag: string, raw: string | undefined): number {
  if (raw === undefined) throw usage(`${flag} is required`);
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0) throw usage(`${flag} must be a number ≥ 0 (1e18 is fine), got "${raw}"`);
  return n;
}

/** A plain path is taken as a file on this machine: `./set.bin` → `file:///abs/set.bin`. */
export function datasetUriOf(raw: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) return raw;
  return pathToFileURL(isAbsolute(raw) ? raw : resolve(raw)).href;
}

function statusColour(status: string): Colour {
  if (status === 'completed') return 'green';
  if (status === 'failed') return 'red';
  if (status === 'cancelled') return 'grey';
  if (status === 'running' || status === 'transferring') return 'blue';
  return 'yellow';
}

function percent(record: TrainingRecord): string {
  return record.hpc ? `${Math.floor(record.hpc.progress * 100)}%` : '-';
}

function reasonOf(record: TrainingRecord): string {
  return record.hpc?.reason ?? record.reason ?? '';
}

function details(record: TrainingRecord): string {
  const rows: [string, string][] = [
    ['job', record.id],
    ['status', colour(record.status, statusColour(record.status))],
    ['target', record.target ?? '(not classified yet)'],
    ['routing', record.routingReason ?? '-'],
    ['dataset', `${record.datasetUri} (${record.datasetSizeGb} GB, ${record.estimatedFlops} FLOPs${record.urgency ? `, urgency ${record.urgency}` : ''})`],
    ['submitted', `${record.submittedAt} (${ago(record.submittedAt)})${record.submittedBy ? ` by ${record.submittedBy}` : ''}`],
  ];
  if (reasonOf(record)) rows.push(['reason', oneLine(reasonOf(record), 300)]);
  const hpc = record.hpc;
  if (hpc) {
    rows.push(['transfer', `${percent(record)} ${hpc.bytesTransferred}${hpc.totalBytes === null ? '' : `/${hpc.totalBytes}`} bytes → ${hpc.datasetPath}${hpc.sha256 ? ` (sha256 ${hpc.sha256})` : ''}${hpc.bytesResent > 0 ? `, ${hpc.bytesResent} bytes re-sent after a resume` : ''}`]);
    rows.push(['slurm', hpc.schedulerJobId === null ? '-' : `job ${hpc.schedulerJobId}${hpc.nativeState ? ` ${hpc.nativeState}` : ''}${hpc.exitCode === null ? '' : ` exit ${hpc.exitCode}`}`]);
    rows.push(['checkpoint', hpc.checkpoint ? `${hpc.checkpoint.uri}${hpc.checkpoint.bytes === null ? '' : ` (${hpc.checkpoint.bytes} bytes)`}` : `- (expected at ${hpc.checkpointUri})`]);
    rows.push(['states', Object.entries(hpc.timestamps).map(([s, at]) => `${s} ${at}`).join(', ')]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

interface SubmitFlags {
  server: string;
  dataset?: string;
  sizeGb?: string;
  flops?: string;
  urgency?: string;
  checkpoint?: string;
  target?: string;
  script?: string;
  timeLimit?: number;
  sha256?: string;
  geozone?: string;
  sourceNode?: string;
  id?: string;
  json: boolean;
}

export function registerTrain(program: Command): void {
  const train = program.command('train').description('training jobs (seed 000 §4): classified HPC or federated by the bridge; HPC jobs move their data, run on Slurm, record their checkpoint');

  withClientTlsOptions(train.command('submit'))
    .description('submit a training job: published on arc.job.submission, classified by the bridge')
    .option('--server <url>', 'ArcNet server', DEFAULT_SERVER)
    .option('--dataset <uri>', 'the dataset: file:///abs/path or a path on this machine, globus://endpoint/path (required)')
    .option('--size-gb <gb>', 'dataset size in GB (required; over 100 goes to HPC)')
    .option('--flops <n>', 'estimated FLOPs, e.g. 2e18 (required; over 1e18 goes to HPC)')
    .option('--urgency <level>', 'critical (goes to HPC), normal or low')
    .option('--checkpoint <uri>', 'where the job writes its checkpoint (default file://<staging>/<job>/checkpoint)')
    .option('--target <target>', 'hpc or federated: skip the classifier')
    .option('--script <file>', 'the batch script to run on the HPC system (default: reads the dataset, prints its sha256, writes a checkpoint)')
    .option('--time-limit <minutes>', 'Slurm time limit (default the bridge\'s, 60)', int('--time-limit', 1))
    .option('--sha256 <hex>', "the dataset's SHA-256: the transfer fails unless the bytes that arrive match it")
    .option('--geozone <zone>', 'the geozone the dataset comes from (named in hpc.failed events)')
    .option('--source-node <uuid>', 'the node that holds the dataset (the console draws the transfer from it)')
    .option('--id <uuid>', 'job id, making the submission idempotent')
    .option('--json', 'print the job as JSON', false)
    .addHelpText('after', '\nExample:\n  arcnet train submit --dataset ./set.bin --size-gb 250 --flops 1e15')
    .action(async (opts: SubmitFlags) => {
      if (!opts.dataset) throw usage('--dataset is required (e.g. --dataset file:///data/set.bin)');
      if (opts.urgency !== undefined && !['critical', 'normal', 'low'].includes(opts.urgency)) throw usage(`--urgency must be critical, normal or low, got "${opts.urgency}"`);
      if (opts.target !== undefined && !['hpc', 'federated'].includes(opts.target)) throw usage(`--target must be hpc or federated, got "${opts.target}"`);
      if (opts.id !== undefined && !UUID.test(opts.id)) throw usage(`--id must be a UUID, got "${opts.id}"`);
      if (opts.sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(opts.sha256)) throw usage(`--sha256 must be 64 hex digits (sha256sum's first column), got "${opts.sha256}"`);
      if (opts.sourceNode !== undefined && !UUID.test(opts.sourceNode)) throw usage(`--source-node must be a node's UUID, got "${opts.sourceNode}"`);
      let script: string | undefined;
      if (opts.script !== undefined) {
        try {
          script = readFileSync(opts.script, 'utf8');
        } catch (error) {
          throw usage(`--script ${opts.script}: ${errorMessage(error)}`);
        }
      }
      const body = {
        datasetUri: datasetUriOf(opts.dataset),
        datasetSizeGb: amount('--size-gb', opts.sizeGb),
        estimatedFlops: amount('--flops', opts.flops),
        ...(opts.urgency === undefined ? {} : { urgency: opts.urgency }),
        ...(opts.checkpoint === undefined ? {} : { checkpointUri: datasetUriOf(opts.checkpoint) }),
        ...(opts.target === undefined ? {} : { target: opts.target }),
        ...(script === undefined ? {} : { script }),
        ...(opts.timeLimit === undefined ? {} : { timeLimitMinutes: opts.timeLimit }),
        ...(opts.sha256 === undefined ? {} : { datasetSha256: opts.sha256 }),
        ...(opts.geozone === undefined ? {} : { geozone: opts.geozone }),
        ...(opts.sourceNode === undefined ? {} : { sourceNodeId: opts.sourceNode }),
        ...(opts.id === undefined ? {} : { id: opts.id }),
      };
      let record = (await api(opts.server, '/api/v1/training', { method: 'POST', body })) as unknown as TrainingRecord;
      // The bridge classifies within moments; show its decision when it comes quickly, else say where to look.
      const deadline = Date.now() + 3_000;
      while (record.target === null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        record = (await api(opts.server, `/api/v1/training/${record.id}`)) as unknown as TrainingRecord;
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
        return;
      }
      const routed = record.target === null ? 'not classified yet (is a bridge running?)' : `${record.target}: ${record.routingReason}`;
      process.stdout.write(`training job ${record.id} ${colour(record.status, statusColour(record.status))}, ${routed}\n  follow it: arcnet train get ${record.id} --watch\n`);
    });

  withClientTlsOptions(train.command('list'))
    .description('list training jobs, newest first')
    .option('--server <url>', 'ArcNet server', DEFAULT_SERVER)
    .option('--status <status>', 'only this status (submitted, waiting, pending, transferring, queued, running, completed, failed, cancelled)')
    .option('--limit <n>', 'at most this many', int('--limit', 1), 50)
    .option('--json', 'print JSON', false)
    .action(async (opts: { server: string; status?: string; limit: number; json: boolean }) => {
      const query = new URLSearchParams({ limit: String(opts.limit), ...(opts.status ? { status: opts.status } : {}) });
      const answer = await api(opts.server, `/api/v1/training?${query.toString()}`);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
        return;
      }
      const jobs = answer['jobs'] as TrainingRecord[];
      if (jobs.length === 0) {
        process.stdout.write('no training jobs\n');
        return;
      }
      const rows = jobs.map((j) => [truncateId(j.id), colour(j.status, statusColour(j.status)), j.target ?? '-', percent(j), oneLine(j.datasetUri, 50), ago(j.submittedAt), oneLine(reasonOf(j) || (j.routingReason ?? ''), 70)]);
      process.stdout.write(`${table(['JOB', 'STATUS', 'TARGET', 'DATA', 'DATASET', 'SUBMITTED', 'REASON'], rows)}\n${jobs.length} of ${String(answer['total'])}\n`);
    });

  withClientTlsOptions(train.command('get <id>'))
    .description('show a training job; --watch follows it until it ends')
    .option('--server <url>', 'ArcNet server', DEFAULT_SERVER)
    .option('--watch', 'print each state and progress change until the job ends (exit 1 if it fails or is cancelled)', false)
    .option('--interval <ms>', 'how often --watch asks', int('--interval', 100), 1_000)
    .option('--json', 'print JSON', false)
    .action(async (id: string, opts: { server: string; watch: boolean; interval: number; json: boolean }) => {
      if (!UUID.test(id)) throw usage(`the job id must be a UUID, got "${id}"`);
      const path = `/api/v1/training/${id}`;
      let record = (await api(opts.server, path)) as unknown as TrainingRecord;
      if (!opts.watch) {
        process.stdout.write(opts.json ? `${JSON.stringify(record, null, 2)}\n` : `${details(record)}\n`);
        return;
      }
      let last = '';
      let unreachableSince: number | undefined;
      for (;;) {
        const line = `${record.status} ${percent(record)}${record.hpc?.schedulerJobId ? ` slurm ${record.hpc.schedulerJobId}` : ''}${reasonOf(record) ? `: ${oneLine(reasonOf(record), 200)}` : ''}`;
        if (line !== last) {
          process.stdout.write(opts.json ? `${JSON.stringify(record)}\n` : `${new Date().toISOString()} ${colour(line, statusColour(record.status))}\n`);
          last = line;
        }
        if (FINAL.has(record.status)) break;
        await new Promise((r) => setTimeout(r, opts.interval));
        try {
          const answer = await call(opts.server, path);
          if (answer.status !== 200) throw usage(`${opts.server}${path} answered ${answer.status}: ${String(answer.body['message'] ?? '')}`);
          record = answer.body as unknown as TrainingRecord;
          unreachableSince = undefined;
        } catch (error) {
          // A server restarting (arcnet up after a kill) comes back: keep asking for a while.
          if (!(error instanceof Unreachable)) throw error;
          unreachableSince ??= Date.now();
          if (Date.now() - unreachableSince > WATCH_UNREACHABLE_MS) throw usage(errorMessage(error));
        }
      }
      if (!opts.json) process.stdout.write(`${details(record)}\n`);
      if (record.status !== 'completed') process.exitCode = 1;
    });

  withClientTlsOptions(train.command('cancel <id>'))
    .description('cancel a training job: a transfer stops, a Slurm job is scancelled; it ends cancelled with the reason')
    .option('--server <url>', 'ArcNet server', DEFAULT_SERVER)
    .option('--reason <text>', 'why (recorded as the job\'s reason; default "cancelled by <key name>")')
    .action(async (id: string, opts: { server: string; reason?: string }) => {
      if (!UUID.test(id)) throw usage(`the job id must be a UUID, got "${id}"`);
      const answer = await api(opts.server, `/api/v1/training/${id}/cancel`, { method: 'POST', body: opts.reason === undefined ? {} : { reason: opts.reason } });
      process.stdout.write(`cancel asked for training job ${id} (${String(answer['status'])}): ${String(answer['cancelRequested'])}\n  follow it: arcnet train get ${id} --watch\n`);
    });
}

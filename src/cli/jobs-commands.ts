/**
 * Seed 004's verified batch jobs from the command line: `arcnet submit` (signed with `--sign-key`),
 * `arcnet list` and `arcnet get [--watch]`, all over the server's HTTP API (`src/api/job-routes.ts`),
 * and `arcnet jobs keygen`, which makes a submitter's signing key pair (`src/jobs/signing.ts`). Kept out of
 * main.ts so the jobs commands can grow without touching the other roles; main.ts passes its own
 * UsageError factory so refusals end the same way everywhere (exit 2, one line on stderr).
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { errorMessage } from '../core/errors.ts';
import type { Job, JobExecution, JobStatus } from '../jobs/model.ts';
import { generateSigningKeyPair, isKeyId, parsePrivateKey, signJob, type SignedSpec } from '../jobs/signing.ts';
import { PRIVATE_KEY_SUFFIX, PUBLIC_KEY_SUFFIX } from '../main/job-signers.ts';
import { ago, colour, oneLine, table, truncateId, type Colour } from './format.ts';
import { cliHttp, withClientTlsOptions } from './tls-options.ts';
import type { Response } from '../core/http-client.ts';
import { authHeaders } from './client-key.ts';

type UsageErrorFactory = (message: string) => Error;

/** A job as GET /api/v1/jobs/:id shows it: executions without logs, and a count per status. */
type JobView = Job & { readonly executions?: readonly Omit<JobExecution, 'logs'>[]; readonly execution_counts?: Readonly<Record<string, number>> };
type ExecutionView = Omit<JobExecution, 'logs'>;

const DEFAULT_SERVER = 'http://127.0.0.1:8080';
const JOB_STATUSES: readonly JobStatus[] = ['pending', 'running', 'completed', 'failed'];
const FINAL: ReadonlySet<string> = new Set(['completed', 'failed']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** The server's own rule for environment names; its schema does not enforce it (TypeBox records carry no additionalProperties: false), so the CLI does. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** The list endpoint's maximum page: prefixes are resolved among this many most recent jobs. */
const PREFIX_SCAN = 1000;
/** How long `get --watch` keeps retrying a server that stopped answering (a restart) before giving up. */
const WATCH_UNREACHABLE_MS = 30_000;

/** The server did not answer at all (as opposed to answering with an error status). */
class ServerUnreachable extends Error {}

interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

async function send(server: string, path: string, init?: { method: string; body: unknown }): Promise<Answer> {
  let url: URL;
  try {
    url = new URL(path, server);
  } catch {
    throw new ServerUnreachable(`--server must be a URL such as ${DEFAULT_SERVER}, got "${server}"`);
  }
  let response: Response;
  try {
    response = await cliHttp().fetch(url, init ? { method: init.method, headers: { 'content-type': 'application/json', ...authHeaders() }, body: JSON.stringify(init.body) } : { headers: authHeaders() });
  } catch (error) {
    throw new ServerUnreachable(`cannot reach ${server}: ${errorMessage((error as Error).cause ?? error)} (is "arcnet up" running?)`);
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

const messageOf = (answer: Answer): string => oneLine(String(answer.body['message'] ?? 'no message'), 500);

// ---------------------------------------------------------------- option parsing

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Memory in GB as the API wants it: `512m` → 0.5, `1g` → 1, unitless is GB (`0.5`). Units are binary, as Docker's are. */
export function parseMemoryGb(raw: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgt])(?:i?b)?)?$/i.exec(raw.trim());
  if (!match) return undefined;
  const value = Number(match[1]);
  const unit = (match[2] ?? 'g').toLowerCase();
  const perGb: Record<string, number> = { k: 1024 * 1024, m: 1024, g: 1, t: 1 / 1024 };
  const gb = value / perGb[unit]!;
  return gb > 0 ? gb : undefined;
}

/** `K=V` pairs; the value may itself hold `=`. */
export function parseEnvironment(pairs: readonly string[]): Record<string, string> | string {
  const environment: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at < 0) return `--env must be NAME=VALUE, got "${pair}"`;
    const name = pair.slice(0, at);
    if (!ENV_NAME.test(name)) return `--env name must be letters, digits and _ and not start with a digit, got "${name}"`;
    environment[name] = pair.slice(at + 1);
  }
  return environment;
}

function integer(usageError: UsageErrorFactory, option: string, raw: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw usageError(`${option} must be an integer ≥ ${min}${max < Number.MAX_SAFE_INTEGER ? ` and ≤ ${max}` : ''}, got "${raw}"`);
  return n;
}

// ---------------------------------------------------------------- presentation

function jobColour(status: string): Colour {
  if (status === 'completed') return 'green';
  if (status === 'failed' || status === 'timed_out') return 'red';
  if (status === 'running') return 'blue';
  if (status === 'pending' || status === 'scheduled') return 'yellow';
  return 'grey';
}

function duration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
}

/** The command as one would type it in a shell, so it can be copied. */
function shellCommand(argv: readonly string[]): string {
  return argv.map((arg) => (/^[A-Za-z0-9_./:=@%+,-]+$/.test(arg) ? arg : `'${oneLine(arg).replace(/'/g, `'\\''`)}'`)).join(' ');
}

function when(iso: string | null): string {
  return iso === null ? '-' : `${iso} (${ago(iso)})`;
}

/** Short results on one line (escaped, so a trailing newline shows); multi-line output as an indented block. */
function resultText(job: Pick<Job, 'result' | 'result_encoding'>): string {
  const { result } = job;
  if (result === null) return '-';
  if (job.result_encoding === 'base64') return `(base64, ${Buffer.from(result, 'base64').length} bytes) ${oneLine(result, 60)}`;
  const body = result.endsWith('\n') ? result.slice(0, -1) : result;
  if (!body.includes('\n') && body.length <= 200) return oneLine(result);
  const lines = body.split('\n');
  const shown = lines.slice(0, 20).map((line) => `    ${oneLine(line, 200)}`);
  if (lines.length > 20) shown.push(`    … ${lines.length - 20} more lines (--json shows the whole result)`);
  return `${Buffer.byteLength(result)} bytes\n${shown.join('\n')}`;
}

function details(job: JobView): string {
  const rows: [string, string][] = [
    ['job', job.id],
    ['name', oneLine(job.name)],
    ...(job.description ? [['description', oneLine(job.description, 200)] as [string, string]] : []),
    ['image', oneLine(job.docker_image)],
    ['command', shellCommand(job.command)],
    ['status', colour(job.status, jobColour(job.status))],
    ['rules', `${job.redundancy} executions, ${job.consensus} must agree, at most ${job.max_executions} in all`],
    ['needs', `${job.required_cpu} CPU, ${job.required_memory} GB memory${job.required_gpu ? ', a GPU' : ''}${job.network ? ', network' : ', no network'}, timeout ${job.timeout_seconds}s`],
  ];
  const env = Object.entries(job.environment);
  if (env.length > 0) rows.push(['environment', env.map(([k, v]) => `${k}=${oneLine(v, 60)}`).join(' ')]);
  if (job.input_data !== null) rows.push(['input', `${Buffer.byteLength(job.input_data)} bytes`]);
  if (job.submitted_by) rows.push(['submitted by', oneLine(job.submitted_by)]);
  if (job.signed_by) rows.push(['signed by', `${oneLine(job.signed_by)} (signature verified on submission)`]);
  rows.push(['submitted', when(job.submitted_at)], ['started', when(job.started_at)], ['completed', when(job.completed_at)]);
  rows.push(['result', resultText(job)], ['result hash', job.result_hash ?? '-']);
  if (job.error_message) rows.push(['error', colour(oneLine(job.error_message, 500), 'red')]);
  const width = Math.max(...rows.map(([label]) => label.length));
  const block = rows.map(([label, value]) => `${colour(label.padEnd(width), 'bold')}  ${value}`).join('\n');
  const executions = job.executions ?? [];
  if (executions.length === 0) return `${block}\n\nno executions yet${job.status === 'pending' ? ' (waiting for workers with room for it)' : ''}\n`;
  const execRows = executions.map((e) => [
    truncateId(e.id),
    truncateId(e.node_id),
    String(e.attempt),
    colour(e.status, jobColour(e.status)),
    e.verdict === null ? '-' : colour(e.verdict, e.verdict === 'agree' ? 'green' : 'red'),
    e.exit_code === null ? '-' : String(e.exit_code),
    duration(e.duration_ms),
    e.result_hash === null ? '-' : e.result_hash.slice(0, 12),
    e.error_message === null ? '' : oneLine(e.error_message, 60),
  ]);
  return `${block}\n\n${table(['ID', 'NODE', 'ATTEMPT', 'STATUS', 'VERDICT', 'EXIT', 'DURATION', 'RESULT HASH', 'ERROR'], execRows)}\n`;
}

/**
 * How close a job is to a decision. Verdicts are only set once consensus is reached, so before that
 * "agree" is the largest group of identical results and "disagree" the other completed ones.
 */
function progress(job: JobView, stream: NodeJS.WriteStream): string {
  const executions: readonly ExecutionView[] = job.executions ?? [];
  const head = `job ${truncateId(job.id)} ${colour(job.status, jobColour(job.status), stream)}`;
  const finished = executions.filter((e) => e.status !== 'scheduled' && e.status !== 'running').length;
  const failed = executions.filter((e) => e.status === 'failed' || e.status === 'timed_out').length;
  let agree: number;
  let disagree: number;
  if (executions.some((e) => e.verdict !== null)) {
    agree = executions.filter((e) => e.verdict === 'agree').length;
    disagree = executions.filter((e) => e.verdict === 'disagree').length;
  } else {
    const groups = new Map<string, number>();
    for (const e of executions) if (e.status === 'completed' && e.result_hash !== null) groups.set(e.result_hash, (groups.get(e.result_hash) ?? 0) + 1);
    agree = Math.max(0, ...groups.values());
    disagree = [...groups.values()].reduce((sum, n) => sum + n, 0) - agree;
  }
  const filled = Math.min(8, Math.round((8 * agree) / job.consensus));
  // The API shows no unplaced slots; first-round ones are inferable (redundancy minus executions), and they are the ones that stall a job.
  const unplaced = FINAL.has(job.status) ? 0 : Math.max(0, job.redundancy - executions.length);
  const total = executions.length + unplaced;
  return `${head}: ${finished}/${total} executions finished, ${agree} agree, ${disagree} disagree${failed > 0 ? `, ${failed} failed` : ''}${unplaced > 0 ? `, ${unplaced} waiting for a worker` : ''} [${'#'.repeat(filled)}${'-'.repeat(8 - filled)}]`;
}

const print = (text: string): void => void process.stdout.write(text);
const printJson = (value: unknown): void => print(`${JSON.stringify(value, null, 2)}\n`);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- commands

interface SubmitOptions {
  server: string;
  json: boolean;
  name?: string;
  image?: string;
  cmd: string[];
  description?: string;
  redundancy?: string;
  consensus?: string;
  maxExecutions?: string;
  cpu?: string;
  memory?: string;
  gpu?: boolean;
  env: string[];
  inputFile?: string;
  timeout?: string;
  network?: boolean;
  credits?: string;
  id?: string;
  signKey?: string;
  keyId?: string;
}

/** Seed 004's defaults, written out: a signature covers every signed field, so a signed body states each one rather than leave it to the server. */
const SIGNED_DEFAULTS = { environment: {}, required_cpu: 1, required_memory: 0.5, required_gpu: false, timeout_seconds: 300, network: false } as const;

/** The body with every signed field stated, its id (given or new) and its signature by the key in `keyFile`. */
function signedBody(body: Record<string, unknown> & { name: string; docker_image: string; command: string[] }, keyFile: string, keyId: string, usageError: UsageErrorFactory): Record<string, unknown> {
  if (!isKeyId(keyId)) throw usageError(`--key-id must be letters, digits, ".", "_" or "-" (at most 64), got "${keyId}"`);
  let key: KeyObject;
  try {
    key = parsePrivateKey(readFileSync(keyFile, 'utf8'));
  } catch (error) {
    throw usageError(`--sign-key ${keyFile}: ${errorMessage(error)}`);
  }
  const redundancy = (body['redundancy'] as number | undefined) ?? 3;
  const stated = {
    ...SIGNED_DEFAULTS,
    redundancy,
    consensus: Math.floor(redundancy / 2) + 1,
    max_executions: 2 * redundancy,
    ...body,
    id: (body['id'] as string | undefined) ?? randomUUID(),
  } as Record<string, unknown> & Omit<SignedSpec, 'input_data'> & { input_data?: string };
  const signature = signJob({ ...stated, input_data: stated.input_data ?? null }, keyId, key);
  return { ...stated, signature };
}

export function registerJobCommands(program: Command, usageError: UsageErrorFactory): void {
  /** An API call for a one-shot command: unreachable servers and unexpected statuses end it with one line. */
  const api = async (server: string, path: string, init?: { method: string; body: unknown }): Promise<Answer> => {
    try {
      return await send(server, path, init);
    } catch (error) {
      if (error instanceof ServerUnreachable) throw usageError(error.message);
      throw error;
    }
  };
  const expectOk = (server: string, path: string, answer: Answer): Record<string, unknown> => {
    if (answer.status === 404 && /^Route /.test(String(answer.body['message']))) throw usageError(`${server} does not serve the jobs API (${messageOf(answer)}); is it an ArcNet server with jobs enabled?`);
    if (answer.status < 200 || answer.status >= 300) throw usageError(`${server}${path} answered ${answer.status}: ${messageOf(answer)}`);
    return answer.body;
  };

  /** A full id as given, or the one job whose id starts with the given prefix. */
  const resolveId = async (server: string, given: string): Promise<string> => {
    const prefix = given.trim().toLowerCase();
    if (UUID.test(prefix)) return prefix;
    if (!/^[0-9a-f-]+$/.test(prefix)) throw usageError(`"${given}" is not a job id or the start of one (ids are hexadecimal UUIDs)`);
    const path = `/api/v1/jobs?limit=${PREFIX_SCAN}`;
    const jobs = (expectOk(server, path, await api(server, path))['jobs'] as { id: string }[]).filter((j) => j.id.toLowerCase().startsWith(prefix));
    if (jobs.length === 0) throw usageError(`no job id starts with "${given}" (among the ${PREFIX_SCAN} most recent jobs on ${server})`);
    if (jobs.length > 1) throw usageError(`job id prefix "${given}" is ambiguous: it matches ${jobs.slice(0, 5).map((j) => j.id).join(', ')}${jobs.length > 5 ? ', …' : ''}; give more characters`);
    return jobs[0]!.id;
  };

  const fetchJob = async (server: string, id: string): Promise<JobView> => {
    const path = `/api/v1/jobs/${id}`;
    const answer = await send(server, path);
    if (answer.status === 404 && !/^Route /.test(String(answer.body['message']))) throw usageError(`job ${id} is not known to ${server}`);
    return expectOk(server, path, answer) as unknown as JobView;
  };

  withClientTlsOptions(program.command('submit'))
    .description('submit a verified batch job: run on several workers, accepted when enough results agree')
    .option('--server <url>', 'ArcNet server', DEFAULT_SERVER)
    .option('--name <name>', 'job name (required)')
    .option('--image <image>', 'container image, e.g. alpine:3 (required)')
    .option('--cmd <arg>', 'one element of the command; repeat for each (--cmd echo --cmd hello) (required)', collect, [])
    .option('--description <text>', 'free text')
    .option('--redundancy <n>', 'executions scheduled at first, on different workers (server default 3)')
    .option('--consensus <k>', 'identical results needed, a majority of --redundancy (server default: majority)')
    .option('--max-executions <n>', 'executions in all, extras for failed or disagreeing ones included (server default 2 × redundancy)')
    .option('--cpu <cores>', 'CPU cores per execution, fractions allowed (server default 1)')
    .option('--memory <size>', 'memory per execution: 512m, 1g, or GB when unitless (server default 0.5 = 512m)')
    .option('--gpu', 'needs a GPU')
    .option('--env <NAME=VALUE>', 'environment variable; repeat for each', collect, [])
    .option('--input-file <file>', 'file whose text is given to the job as input_data')
    .option('--timeout <seconds>', 'per-execution timeout (server default 300)')
    .option('--network', 'let the container use the network (off by default)')
    .option('--credits <n>', 'credits the job costs (server default 1)')
    .option('--id <uuid>', 'job id, making the submission idempotent: submitting the same id again returns the stored job')
    .option('--sign-key <private.pem>', 'sign the job with this Ed25519 private key (arcnet jobs keygen makes one); every signed field is then sent explicitly, and a new --id is chosen if none is given')
    .option('--key-id <id>', 'the key id the coordinator and workers know the --sign-key public key by (its <key_id>.pub file name)')
    .option('--json', 'print the job as JSON', false)
    .addHelpText('after', '\nExample:\n  arcnet submit --name Test --image alpine:3 --cmd echo --cmd hello --redundancy 3 --consensus 2')
    .action(async (opts: SubmitOptions) => {
      if (!opts.name) throw usageError('--name is required (e.g. --name "nightly render")');
      if (!opts.image) throw usageError('--image is required (e.g. --image alpine:3)');
      if (opts.cmd.length === 0) throw usageError('--cmd is required, once per command element (e.g. --cmd echo --cmd hello)');
      const environment = parseEnvironment(opts.env);
      if (typeof environment === 'string') throw usageError(environment);
      let requiredMemory: number | undefined;
      if (opts.memory !== undefined) {
        requiredMemory = parseMemoryGb(opts.memory);
        if (requiredMemory === undefined) throw usageError(`--memory must be a size such as 512m, 1g or 0.5 (GB), got "${opts.memory}"`);
      }
      let requiredCpu: number | undefined;
      if (opts.cpu !== undefined) {
        requiredCpu = Number(opts.cpu);
        if (opts.cpu.trim() === '' || !Number.isFinite(requiredCpu) || requiredCpu <= 0) throw usageError(`--cpu must be a number of cores above 0, got "${opts.cpu}"`);
      }
      if (opts.id !== undefined && !UUID.test(opts.id)) throw usageError(`--id must be a UUID, got "${opts.id}"`);
      if ((opts.signKey === undefined) !== (opts.keyId === undefined)) throw usageError('--sign-key and --key-id go together: the private key signs, the key id names its public key on the server');
      let inputData: string | undefined;
      if (opts.inputFile !== undefined) {
        try {
          inputData = readFileSync(opts.inputFile, 'utf8');
        } catch (error) {
          throw usageError(`cannot read --input-file ${opts.inputFile}: ${errorMessage(error)}`);
        }
      }
      const body = {
        ...(opts.id !== undefined ? { id: opts.id } : {}),
        name: opts.name,
        ...(opts.description !== undefined ? { description: opts.description } : {}),
        docker_image: opts.image,
        command: opts.cmd,
        ...(opts.env.length > 0 ? { environment } : {}),
        ...(inputData !== undefined ? { input_data: inputData } : {}),
        ...(requiredCpu !== undefined ? { required_cpu: requiredCpu } : {}),
        ...(requiredMemory !== undefined ? { required_memory: requiredMemory } : {}),
        ...(opts.gpu ? { required_gpu: true } : {}),
        ...(opts.redundancy !== undefined ? { redundancy: integer(usageError, '--redundancy', opts.redundancy, 1) } : {}),
        ...(opts.consensus !== undefined ? { consensus: integer(usageError, '--consensus', opts.consensus, 1) } : {}),
        ...(opts.maxExecutions !== undefined ? { max_executions: integer(usageError, '--max-executions', opts.maxExecutions, 1) } : {}),
        ...(opts.timeout !== undefined ? { timeout_seconds: integer(usageError, '--timeout', opts.timeout, 1) } : {}),
        ...(opts.network ? { network: true } : {}),
        ...(opts.credits !== undefined ? { credits_required: integer(usageError, '--credits', opts.credits, 0) } : {}),
      };
      const sent = opts.signKey === undefined ? body : signedBody(body, opts.signKey, opts.keyId!, usageError);
      const answer = await api(opts.server, '/api/v1/jobs', { method: 'POST', body: sent });
      // 400 is the schema or the coordinator's rules (consensus, caps), 403 a signature refused (or missing where required), 409 a reused --id with another image or command.
      if (answer.status === 400 || answer.status === 403 || answer.status === 409 || answer.status === 413) throw usageError(`the server refused the job: ${messageOf(answer)}`);
      const job = expectOk(opts.server, '/api/v1/jobs', answer) as unknown as Job;
      if (opts.json) return printJson(job);
      const verb = answer.status === 201 ? 'submitted job' : 'job already submitted:';
      const waiting = job.status === 'pending' ? '; waiting for workers with room for it' : '';
      const signed = job.signed_by ? `, signed by ${job.signed_by}` : '';
      print(`${verb} ${job.id} (${colour(job.status, jobColour(job.status))}): ${job.redundancy} executions, ${job.consensus} must agree${signed}${waiting}\n`);
    });

  const jobs = program.command('jobs').description('verified-jobs tools: keygen');
  jobs
    .command('keygen')
    .description('make an Ed25519 key pair for signing jobs: <name>.key (private, 0600) and <name>.pub in --out')
    .option('--out <dir>', 'directory to write the key pair into (created if missing)')
    .option('--name <key_id>', 'the key id: letters, digits, ".", "_", "-"; the coordinator and workers know the public key by it')
    .addHelpText(
      'after',
      '\nThen: copy <name>.pub into the coordinator\'s jobs.signers directory (--job-signers) and the workers\'\n' +
        '--trusted-signers directory, and submit with arcnet submit --sign-key <dir>/<name>.key --key-id <name>.',
    )
    .action((opts: { out?: string; name?: string }) => {
      if (!opts.out) throw usageError('--out is required: the directory to write the key pair into');
      if (!opts.name) throw usageError('--name is required: the key id, e.g. --name alice');
      if (!isKeyId(opts.name)) throw usageError(`--name must be letters, digits, ".", "_" or "-" (at most 64, starting with a letter or digit), got "${opts.name}"`);
      const privatePath = join(opts.out, `${opts.name}${PRIVATE_KEY_SUFFIX}`);
      const publicPath = join(opts.out, `${opts.name}${PUBLIC_KEY_SUFFIX}`);
      for (const path of [privatePath, publicPath]) if (existsSync(path)) throw usageError(`${path} already exists: refusing to overwrite a key (choose another --name or --out)`);
      const pair = generateSigningKeyPair();
      try {
        mkdirSync(opts.out, { recursive: true });
        // 'wx': never replace a key that appeared meanwhile; the mode is set again in case a umask narrowed or an ACL widened it.
        writeFileSync(privatePath, pair.privateKey, { mode: 0o600, flag: 'wx' });
        chmodSync(privatePath, 0o600);
        writeFileSync(publicPath, pair.publicKey, { mode: 0o644, flag: 'wx' });
      } catch (error) {
        throw usageError(`cannot write the key pair into ${opts.out}: ${errorMessage(error)}`);
      }
      print(
        `wrote Ed25519 key pair "${opts.name}":\n` +
          `  private key  ${privatePath}  (0600; sign with: arcnet submit --sign-key ${privatePath} --key-id ${opts.name} …)\n` +
          `  public key   ${publicPath}  (copy into the coordinator's --job-signers and the workers' --trusted-signers directories)\n`,
      );
    });

  withClientTlsOptions(program.command('list'))
    .description('list verified batch jobs, newest first')
    .option('--server <url>', 'ArcNet server', DEFAULT_SERVER)
    .option('--status <status>', `only jobs in this status (${JOB_STATUSES.join(', ')})`)
    .option('--limit <n>', 'at most this many jobs (1..1000)', '100')
    .option('--json', 'raw JSON', false)
    .action(async (opts: { server: string; status?: string; limit: string; json: boolean }) => {
      if (opts.status !== undefined && !JOB_STATUSES.includes(opts.status as JobStatus)) throw usageError(`--status must be one of ${JOB_STATUSES.join(', ')}, got "${opts.status}"`);
      const limit = integer(usageError, '--limit', opts.limit, 1, 1000)!;
      const query = new URLSearchParams({ limit: String(limit), ...(opts.status ? { status: opts.status } : {}) });
      const path = `/api/v1/jobs?${query}`;
      const body = expectOk(opts.server, path, await api(opts.server, path)) as { count: number; total: number; jobs: JobView[] };
      if (opts.json) return printJson(body);
      // The list endpoint carries no executions today; the column appears once it does.
      const withCounts = body.jobs.some((j) => j.execution_counts !== undefined);
      const now = Date.now();
      const rows = body.jobs.map((j) => [
        truncateId(j.id),
        oneLine(j.name, 30),
        oneLine(j.docker_image, 40),
        colour(j.status, jobColour(j.status)),
        `${j.redundancy}/${j.consensus}`,
        ...(withCounts ? [j.execution_counts ? String(Object.values(j.execution_counts).reduce((a, b) => a + b, 0)) : '-'] : []),
        ago(j.submitted_at, now),
        j.result === null ? (j.error_message ? colour(oneLine(j.error_message, 40), 'red') : '') : j.result_encoding === 'base64' ? '(base64)' : oneLine(j.result, 40),
      ]);
      const headers = ['ID', 'NAME', 'IMAGE', 'STATUS', 'N/K', ...(withCounts ? ['EXECUTIONS'] : []), 'SUBMITTED', 'RESULT'];
      print(`${table(headers, rows)}\n${body.count} ${body.count === 1 ? 'job' : 'jobs'} (of ${body.total})\n`);
    });

  withClientTlsOptions(program.command('get'))
    .description('show a job and its executions; --watch follows it until it completes or fails')
    .argument('<id>', 'job id, or enough of its start to be unique (as `arcnet list` shows it)')
    .option('--server <url>', 'ArcNet server', DEFAULT_SERVER)
    .option('--watch', 'poll until the job completes or fails, showing progress on stderr, then print it', false)
    .option('--interval <ms>', 'how often --watch polls', '1000')
    .option('--json', 'raw JSON (with --watch: the final job only)', false)
    .addHelpText(
      'after',
      '\nExit status: 0, or with --watch 0 when the job completed and 1 when it failed; 2 when the job is\n' +
        'unknown, the prefix ambiguous, or the server unreachable. With --watch, progress goes to stderr:\n' +
        'one live line on a terminal, otherwise a line each time something changes.',
    )
    .action(async (given: string, opts: { server: string; watch: boolean; interval: string; json: boolean }) => {
      const interval = integer(usageError, '--interval', opts.interval, 50)!;
      const id = await resolveId(opts.server, given);
      const load = async (): Promise<JobView> => {
        try {
          return await fetchJob(opts.server, id);
        } catch (error) {
          if (error instanceof ServerUnreachable) throw usageError(error.message);
          throw error;
        }
      };
      let job = await load();
      // Watched even when already final, so a script always sees the same progress line before the details.
      if (opts.watch) job = await watch(opts.server, job, interval, fetchJob, usageError);
      if (opts.json) printJson(job);
      else print(details(job));
      if (opts.watch && job.status === 'failed') process.exitCode = 1;
    });
}

/** Polls until the job is final. A server that stops answering is retried for a while (it may be restarting: jobs survive that). */
async function watch(server: string, first: JobView, intervalMs: number, fetchJob: (server: string, id: string) => Promise<JobView>, usageError: UsageErrorFactory): Promise<JobView> {
  const stream = process.stderr;
  const live = Boolean(stream.isTTY);
  // A live line rewritten in place must not wrap, or \r would only return to its last row.
  const fit = (line: string): string => (live && stream.columns ? line.slice(0, Math.max(20, stream.columns - 1)) : line);
  const clear = (): void => void stream.write('\r\x1b[2K');
  const onInterrupt = (): void => {
    clear();
    process.exit(130);
  };
  if (live) process.once('SIGINT', onInterrupt);
  const started = Date.now();
  let job = first;
  let shown = '';
  let unreachableSince: number | undefined;
  try {
    for (;;) {
      const line = progress(job, stream);
      // On a terminal the elapsed time ticks, so a quiet job still shows the watch is alive.
      if (live) stream.write(`\r\x1b[2K${fit(`${line} ${Math.round((Date.now() - started) / 1000)}s`)}`);
      else if (line !== shown) stream.write(`${line}\n`);
      shown = line;
      if (FINAL.has(job.status)) break;
      await sleep(intervalMs);
      try {
        job = await fetchJob(server, job.id);
        unreachableSince = undefined;
      } catch (error) {
        if (!(error instanceof ServerUnreachable)) throw error;
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince > WATCH_UNREACHABLE_MS) throw usageError(`${error.message}; gave up watching after ${WATCH_UNREACHABLE_MS / 1000} s`);
        const note = `job ${truncateId(job.id)}: ${server} is not answering, retrying`;
        if (live) stream.write(`\r\x1b[2K${fit(note)}`);
        else if (shown !== note) stream.write(`${note}\n`);
        shown = note;
      }
    }
  } finally {
    if (live) {
      process.removeListener('SIGINT', onInterrupt);
      stream.write('\n');
    }
  }
  return job;
}

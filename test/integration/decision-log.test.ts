/** The decision log on a real store: first writer wins across servers, and the sweep's expiry by age. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { silentLogger } from '../../src/core/logging.ts';
import { DECISIONS_COLLECTION, DecisionLog, type DecisionLogOptions } from '../../src/inference/decision-log.ts';
import type { RequestRecord } from '../../src/inference/tracker.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import type { StateStores } from '../../src/store/ports.ts';

function rejected(id: string): RequestRecord {
  return { id, modelId: 'llama-3-8b', requesterGeozone: 'CAISO', priority: 'normal', status: 'rejected', submittedAt: 0, reason: 'no capacity', rejectedBy: { capacity: 3 } };
}

describe('decision log', () => {
  let clock: ManualClock;
  let stores: StateStores;
  const logs: DecisionLog[] = [];

  beforeEach(() => {
    clock = new ManualClock();
    stores = openSqliteStores({ path: ':memory:', clock, retention: false });
  });

  afterEach(async () => {
    for (const log of logs.splice(0)) await log.stop();
    await stores.close();
  });

  function log(instanceId: string, options: Partial<DecisionLogOptions> = {}): DecisionLog {
    const created = new DecisionLog({ records: stores.records, logger: silentLogger, instanceId, now: () => clock.now(), ...options });
    logs.push(created);
    return created;
  }

  it("keeps the first server's record when every server's tracker records the same decision", async () => {
    const first = log('server-a');
    const second = log('server-b');
    first.listener().rejected?.(rejected('r-1'));
    second.listener().rejected?.(rejected('r-1'));
    await first.flush(true);
    await second.flush(true);
    expect((await stores.records.get(DECISIONS_COLLECTION, 'r-1'))?.body).toMatchObject({ id: 'r-1', outcome: 'rejected', recordedBy: 'server-a' });
    expect(await second.get('r-1')).toMatchObject({ recordedBy: 'server-a' });
    expect(first.written + second.written).toBe(2);
  });

  it('sweeps away records older than the retention, chunk by chunk, and keeps the younger ones', async () => {
    const decisions = log('server-a', { retentionMs: 60_000, sweepChunk: 3 });
    const old = Array.from({ length: 7 }, (_, i) => `old-${i}`);
    for (const id of old) decisions.listener().rejected?.(rejected(id));
    await decisions.flush(true);
    clock.advance(30_000);
    for (const id of ['young-0', 'young-1']) decisions.listener().rejected?.(rejected(id));
    await decisions.flush(true);
    clock.advance(31_000);

    expect(await decisions.sweep()).toBe(7);
    for (const id of old) expect(await decisions.get(id)).toBeUndefined();
    expect(await decisions.get('young-0')).toMatchObject({ id: 'young-0' });
    expect(await decisions.get('young-1')).toMatchObject({ id: 'young-1' });
    expect(await decisions.sweep()).toBe(0);
    expect(decisions.expired).toBe(7);
  });
});

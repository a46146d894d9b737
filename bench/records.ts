/**
 * Section 7 of `npm run bench`: what a decision record costs to write on the SQLite store, where the
 * write runs on the event loop routing shares (ADR 0014). The same records, 250 a batch as the decision
 * log writes them, into a file store already holding `prefill` of them: as bitemporal documents
 * (putMany with expectedVersion 0, how the log wrote them before) and as write-once records
 * (insertMany); then what expiring them costs, 200 per call as the log's sweep does.
 */
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { percentileOfSorted } from '../src/core/stats.ts';
import { openSqliteStores } from '../src/store/sqlite.ts';
import { DECISIONS_COLLECTION, type DecisionRecord } from '../src/inference/decision-log.ts';
import type { StateStores } from '../src/store/ports.ts';

const BATCH = 250;

function record(i: number): DecisionRecord {
  const reserved = Array.from({ length: 12 }, (_, k) => `caiso-${(i + k) % 1_000}`);
  return { id: randomUUID(), modelId: 'llama-3-8b', requesterGeozone: 'CAISO', priority: 'normal', decidedAt: Date.now(), outcome: 'dispatched', nodeId: `caiso-${i % 1_000}`, geozone: 'CAISO', score: 0.8123, forwarded: false, fencingToken: 10_000 + i, reserved, recordedBy: 'bench' };
}

type Writer = (stores: StateStores, batch: readonly DecisionRecord[]) => Promise<unknown>;

const asDocuments: Writer = (stores, batch) =>
  stores.documents.putMany(batch.map((r) => ({ collection: DECISIONS_COLLECTION, id: r.id, body: r, options: { validFrom: r.decidedAt, expectedVersion: 0 } })));
const asRecords: Writer = (stores, batch) => stores.records.insertMany(batch.map((r) => ({ collection: DECISIONS_COLLECTION, id: r.id, body: r })));

/** Median µs per record over `batches` timed batches, after `prefill` untimed ones. */
async function perRecord(path: string, write: Writer, prefill: number, batches: number): Promise<{ write: number; expire: number | undefined }> {
  const stores = openSqliteStores({ path, retention: false });
  try {
    let n = 0;
    const next = (): DecisionRecord[] => Array.from({ length: BATCH }, () => record(n++));
    for (let i = 0; i < prefill; i += BATCH) await write(stores, next());
    const samples: number[] = [];
    for (let b = 0; b < batches; b++) {
      const batch = next();
      const started = performance.now();
      await write(stores, batch);
      samples.push(((performance.now() - started) * 1000) / BATCH);
    }
    samples.sort((a, b) => a - b);
    if (write !== asRecords) return { write: percentileOfSorted(samples, 50), expire: undefined };
    const chunks: number[] = [];
    const before = Date.now() + 1;
    for (let removed = 200; removed === 200 && chunks.length < batches; ) {
      const started = performance.now();
      removed = await stores.records.expire(DECISIONS_COLLECTION, before, 200);
      chunks.push(((performance.now() - started) * 1000) / Math.max(1, removed));
    }
    chunks.sort((a, b) => a - b);
    return { write: percentileOfSorted(samples, 50), expire: percentileOfSorted(chunks, 50) };
  } finally {
    await stores.close();
  }
}

export async function recordsSection(dir: string, quick: boolean): Promise<void> {
  const prefill = quick ? 10_000 : 50_000;
  const batches = quick ? 40 : 100;
  console.log(`7. Decision record writes on a SQLite file store holding ${prefill.toLocaleString('en')} of them, ${BATCH} a batch (event-loop time per record, median of ${batches} batches)`);
  for (let round = 1; round <= 2; round++) {
    const documents = await perRecord(join(dir, `records-${round}-documents`, 'state.sqlite'), asDocuments, prefill, batches);
    const records = await perRecord(join(dir, `records-${round}-records`, 'state.sqlite'), asRecords, prefill, batches);
    console.log(
      `   round ${round}: documents putMany ${documents.write.toFixed(2)} µs, records insertMany ${records.write.toFixed(2)} µs (${(documents.write / records.write).toFixed(1)}x cheaper; goal >= 5x: ${documents.write / records.write >= 5 ? 'MET' : 'NOT MET'}); expire ${records.expire?.toFixed(2)} µs a record`,
    );
  }
}

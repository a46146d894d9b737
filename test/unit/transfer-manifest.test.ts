import { describe, it, expect } from 'vitest';
import { chunkCount, chunkRange, parseManifest, planResume, serializeManifest, type TransferManifest } from '../../src/training/transfer-manifest.ts';

const H = (n: number): string => n.toString(16).padStart(64, '0');
const source = { size: 1_000, mtimeMs: 1_700_000_000_000 };
const manifest = (chunks: number, overrides: Partial<TransferManifest> = {}): TransferManifest =>
  ({ version: 1, transferId: 't', source, chunkBytes: 300, chunks: Array.from({ length: chunks }, (_, i) => H(i)), ...overrides });
const input = (m: TransferManifest | undefined, partialBytes: number | undefined) => ({ transferId: 't', source, chunkBytes: 300, manifest: m, partialBytes });

describe('chunk layout', () => {
  it('splits a file into whole chunks and a short last one', () => {
    expect(chunkCount(1_000, 300)).toBe(4);
    expect(chunkCount(900, 300)).toBe(3);
    expect(chunkCount(0, 300)).toBe(0);
    expect(chunkRange(3, 1_000, 300)).toEqual({ offset: 900, length: 100 });
    expect(chunkRange(1, 1_000, 300)).toEqual({ offset: 300, length: 300 });
  });
});

describe('parseManifest', () => {
  it('reads back what serializeManifest wrote', () => {
    expect(parseManifest(serializeManifest(manifest(2)))).toEqual(manifest(2));
    expect(parseManifest(serializeManifest(manifest(0, { cancelled: true })))).toEqual(manifest(0, { cancelled: true }));
  });

  it('rejects a torn, foreign or impossible manifest', () => {
    const text = serializeManifest(manifest(2));
    expect(parseManifest(text.slice(0, 20))).toBeUndefined();
    expect(parseManifest('null')).toBeUndefined();
    expect(parseManifest(JSON.stringify({ ...manifest(2), version: 2 }))).toBeUndefined();
    expect(parseManifest(JSON.stringify({ ...manifest(2), chunks: ['abc'] }))).toBeUndefined();
    expect(parseManifest(JSON.stringify({ ...manifest(2), chunkBytes: 0 }))).toBeUndefined();
    // More chunks than the source has.
    expect(parseManifest(JSON.stringify(manifest(5)))).toBeUndefined();
  });
});

describe('planResume', () => {
  it('starts fresh without a manifest, saying why when a partial file was there', () => {
    expect(planResume(input(undefined, undefined))).toEqual({ kind: 'fresh', reason: undefined });
    expect(planResume(input(undefined, 10))).toMatchObject({ kind: 'fresh', reason: expect.stringContaining('without a readable manifest') });
  });

  it('keeps the recorded chunks and resends only what the chunk in flight left', () => {
    // Two chunks recorded (600 bytes); the third was half written when the process died.
    expect(planResume(input(manifest(2), 750))).toEqual({ kind: 'resume', chunksKept: 2, keepBytes: 600, resentBytes: 150 });
    // Killed after the third chunk's fsync but before its record: that whole chunk is sent again.
    expect(planResume(input(manifest(2), 900))).toEqual({ kind: 'resume', chunksKept: 2, keepBytes: 600, resentBytes: 300 });
    expect(planResume(input(manifest(4), 1_000))).toEqual({ kind: 'resume', chunksKept: 4, keepBytes: 1_000, resentBytes: 0 });
  });

  it('keeps only the recorded chunks wholly in a partial file shorter than the record', () => {
    expect(planResume(input(manifest(3), 650))).toEqual({ kind: 'resume', chunksKept: 2, keepBytes: 600, resentBytes: 50 });
    expect(planResume(input(manifest(1), 0))).toEqual({ kind: 'resume', chunksKept: 0, keepBytes: 0, resentBytes: 0 });
  });

  it('starts over, with the reason, for another transfer, a changed source or chunk size, or a lost partial file', () => {
    expect(planResume(input(manifest(2, { transferId: 'other' }), 600))).toMatchObject({ kind: 'fresh', reason: expect.stringContaining('transfer other') });
    expect(planResume(input(manifest(2, { source: { ...source, size: 999 } }), 600))).toMatchObject({ kind: 'fresh', reason: expect.stringContaining('the source changed') });
    expect(planResume(input(manifest(2, { source: { ...source, mtimeMs: 1 } }), 600))).toMatchObject({ kind: 'fresh', reason: expect.stringContaining('mtime') });
    expect(planResume(input(manifest(2, { chunkBytes: 200 }), 600))).toMatchObject({ kind: 'fresh', reason: expect.stringContaining('chunk size') });
    expect(planResume(input(manifest(2), undefined))).toMatchObject({ kind: 'fresh', reason: expect.stringContaining('partial file is gone') });
  });

  it('answers cancelled for a tombstone of the same transfer', () => {
    expect(planResume(input(manifest(0, { cancelled: true }), undefined))).toEqual({ kind: 'cancelled' });
  });
});

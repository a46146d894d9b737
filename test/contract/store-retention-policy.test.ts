/** The retention option of the open functions: defaults, off, overrides, and policies refused before anything opens. */
import { describe, expect, it } from 'vitest';
import { openPostgresStores } from '../../src/store/postgres.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import { DAY_MS, DEFAULT_RETENTION, HOUR_MS, MINUTE_MS, resolveRetention } from '../../src/store/retention.ts';

describe('retention policy', () => {
  it('is on with the documented defaults when not given, and off with false', () => {
    expect(resolveRetention(undefined)).toEqual({
      collections: ['nodes', 'workers', 'global_view'],
      tiers: [
        { olderThanMs: DAY_MS, everyMs: MINUTE_MS },
        { olderThanMs: 7 * DAY_MS, everyMs: HOUR_MS },
      ],
      horizonMs: 90 * DAY_MS,
      intervalMs: MINUTE_MS,
      batchRows: 100,
    });
    expect(resolveRetention(false)).toBeUndefined();
    expect(resolveRetention({ collections: ['nodes'], horizonMs: null })).toEqual({ ...DEFAULT_RETENTION, collections: ['nodes'], horizonMs: null });
  });

  it.each([
    ['a resolution that is not a multiple of the one before', { tiers: [{ olderThanMs: 10, everyMs: 3 }, { olderThanMs: 20, everyMs: 5 }] }],
    ['tiers out of age order', { tiers: [{ olderThanMs: 20, everyMs: 1 }, { olderThanMs: 10, everyMs: 2 }] }],
    ['a horizon younger than the last tier', { horizonMs: DAY_MS }],
    ['a non-positive interval', { intervalMs: 0 }],
    ['a fractional batch size', { batchRows: 1.5 }],
  ])('refuses %s', (_what, option) => {
    expect(() => resolveRetention(option)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
  });

  it('is refused by the open functions before they open anything', async () => {
    expect(() => openSqliteStores({ path: ':memory:', retention: { intervalMs: -1 } })).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
    // No server is asked: the URL points nowhere.
    await expect(openPostgresStores({ url: 'postgres://nobody@127.0.0.1:1/none', retention: { batchRows: 0 } })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });

  it('compacts nothing on demand when off', async () => {
    const stores = openSqliteStores({ path: ':memory:', retention: false });
    try {
      expect(await stores.compactHistory()).toEqual({ examined: 0, deleted: 0, batches: 0, yielded: false });
    } finally {
      await stores.close();
    }
  });
});

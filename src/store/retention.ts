/**
 * History retention for the bitemporal documents, the same in both engines (ADR 0013). Telemetry
 * writes a node version every report, so old history is thinned out by age:
 *
 *   younger than 1 day        every version
 *   1 to 7 days               the versions current at each whole minute
 *   7 to 90 days              the versions current at each whole hour
 *   older than 90 days        the version current at the horizon
 *
 * Ages are by transaction time. The rule for a tier with resolution R: a version r of an id is
 * removed when it answers no read at a grid point (whole multiples of R on both time axes), i.e. when
 * another version s of the id is visible at r's own grid point (valid ≤ r's valid time rounded up to
 * R, stored ≤ r's transaction time rounded up to R) and outranks r there (later valid time; then
 * later transaction; then higher version). A read at any grid point of a compacted range therefore
 * answers exactly as before compaction; between grid points it answers with a version that was
 * current at that grid point or later, up to the read's own time (for histories written the way
 * ArcNet writes them: valid times increasing per id and no later than the write). The latest version
 * of every id is never removed, so reads of now never change.
 *
 * The winner at a grid point is never removed, so deciding on the versions still present gives the
 * same answer as deciding on all that were ever written: a pass can stop anywhere and resume, tiers
 * can run one after another (each resolution a multiple of the one before, so their grids nest), and
 * two processes compacting one store at once cannot remove a version that one of them relies on.
 *
 * This module holds the policy and the pass (which windows, which ids, how big a batch, when); each
 * engine holds the SQL of one batch (`CompactionEngine`).
 */
import type { Logger } from '../core/logging.ts';
import type { Clock } from '../core/clock.ts';
import { ArcError, errorMessage } from '../core/errors.ts';
import type { StateStores } from './ports.ts';
import { UNMETERED, type QueryMeter } from './query-metrics.ts';

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

export interface RetentionTier {
  /** Versions stored longer ago than this are thinned to this tier's resolution. */
  readonly olderThanMs: number;
  /** The resolution: the versions current at each whole multiple of this are kept. */
  readonly everyMs: number;
}

export interface RetentionPolicy {
  /** Collections whose history is compacted; every other collection keeps every version. */
  readonly collections: readonly string[];
  /** Finest first: olderThanMs increasing, and each everyMs a multiple of the one before. */
  readonly tiers: readonly RetentionTier[];
  /** Past this age only the version current at the horizon is kept; null keeps the last tier's resolution forever. */
  readonly horizonMs: number | null;
  /** How often a pass runs. */
  readonly intervalMs: number;
  /**
   * About how many versions one batch (one transaction) examines. On SQLite a batch runs on the event
   * loop, and a day-old version costs about 0.15 ms of it on the development machines (its pages
   * must be read back in), so 100 holds writers up by about 15 ms at most.
   */
  readonly batchRows: number;
}

/**
 * Node documents (a version per telemetry report), worker records (one per heartbeat) and the central
 * orchestrator's global view (one per zone per summary) are state that churns; jobs, job executions
 * and training jobs keep every version, since their history is the audit trail.
 */
export const DEFAULT_RETENTION: RetentionPolicy = {
  collections: ['nodes', 'workers', 'global_view'],
  tiers: [
    { olderThanMs: DAY_MS, everyMs: MINUTE_MS },
    { olderThanMs: 7 * DAY_MS, everyMs: HOUR_MS },
  ],
  horizonMs: 90 * DAY_MS,
  intervalMs: MINUTE_MS,
  batchRows: 100,
};

/** The open functions' `retention` option: undefined for the defaults, false for none, or overrides. */
export type RetentionOption = false | Partial<RetentionPolicy>;

function requirePositive(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new ArcError('INVALID_INPUT', `retention ${what} must be a positive integer, got ${value}`);
  return value;
}

/** The policy to run, or undefined when retention is off; refuses a policy whose grids do not nest. */
export function resolveRetention(option: RetentionOption | undefined): RetentionPolicy | undefined {
  if (option === false) return undefined;
  const policy: RetentionPolicy = { ...DEFAULT_RETENTION, ...option };
  requirePositive(policy.intervalMs, 'intervalMs');
  requirePositive(policy.batchRows, 'batchRows');
  let previous: RetentionTier | undefined;
  for (const tier of policy.tiers) {
    requirePositive(tier.olderThanMs, 'olderThanMs');
    requirePositive(tier.everyMs, 'everyMs');
    if (previous !== undefined && (tier.olderThanMs <= previous.olderThanMs || tier.everyMs % previous.everyMs !== 0 || tier.everyMs === previous.everyMs)) {
      throw new ArcError(
        'INVALID_INPUT',
        `retention tiers must be ordered by olderThanMs, each everyMs a larger multiple of the one before; got ${JSON.stringify(policy.tiers)}`,
      );
    }
    previous = tier;
  }
  if (policy.horizonMs !== null && requirePositive(policy.horizonMs, 'horizonMs') <= (previous?.olderThanMs ?? 0)) {
    throw new ArcError('INVALID_INPUT', `retention horizonMs (${policy.horizonMs}) must be older than the last tier (${previous?.olderThanMs})`);
  }
  return policy;
}

/**
 * One batch: among the versions of `ids` stored in (after, through], remove those that answer no
 * read at a grid point. A time's grid point is `horizon` when it is at or before the horizon, else
 * the next whole multiple of `everyMs`.
 */
export interface CompactionBatch {
  readonly collection: string;
  readonly ids: readonly string[];
  readonly after: number;
  readonly through: number;
  readonly everyMs: number;
  readonly horizon: number | null;
}

export interface CompactionEngine {
  /** Called once at the start of every pass (PostgreSQL refreshes stale planner statistics here). */
  beforePass?(): Promise<void>;
  /** Up to `limit` ids of the collection in id order, after `after` (from the first when undefined). */
  ids(collection: string, after: string | undefined, limit: number): Promise<readonly string[]>;
  /** Runs one batch in one transaction; undefined when another process is compacting this store now. */
  compact(batch: CompactionBatch): Promise<{ readonly examined: number; readonly deleted: number } | undefined>;
  /** The earliest transaction time in the collection (may scan it: asked only until every tier has progress). */
  oldest(collection: string): Promise<number | undefined>;
  /** How far the tier with this resolution (0: the horizon) has compacted the collection. */
  progress(collection: string, resolutionMs: number): Promise<number | undefined>;
  saveProgress(collection: string, resolutionMs: number, through: number): Promise<void>;
}

export interface CompactionReport {
  readonly examined: number;
  readonly deleted: number;
  readonly batches: number;
  /** Another process was compacting the same store: this pass left the work to it. */
  readonly yielded: boolean;
}

/** What the open functions return: the three ports, and the retention pass on demand. */
export interface OpenedStores extends StateStores {
  /** Runs one retention pass now with the store's policy (an empty report when retention is off). */
  compactHistory(): Promise<CompactionReport>;
}

const NOTHING: CompactionReport = { examined: 0, deleted: 0, batches: 0, yielded: false };

/** Starts the policy's timer (when there is a policy) and returns the on-demand pass and the stop for close(). */
export function startRetention(
  engine: CompactionEngine,
  policy: RetentionPolicy | undefined,
  clock: Clock,
  logger: Logger | undefined,
  meter: QueryMeter,
): { compactHistory(): Promise<CompactionReport>; stop(): Promise<void> } {
  if (policy === undefined) return { compactHistory: async () => NOTHING, stop: async () => undefined };
  const retention = new HistoryRetention(engine, policy, clock, logger, meter);
  retention.start();
  return { compactHistory: () => retention.compact(), stop: () => retention.stop() };
}

/** The horizon's progress key: no tier has resolution 0. */
const HORIZON = 0;
/** A window spans at most this many steps of its tier (and never more than a day), so one id's versions in it stay few. */
const WINDOW_BUCKETS = 10;
const FIRST_PAGE_IDS = 1;
const MAX_PAGE_IDS = 1_000;

const floorTo = (time: number, step: number): number => Math.floor(time / step) * step;

export class HistoryRetention {
  private readonly engine: CompactionEngine;
  private readonly policy: RetentionPolicy;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly meter: QueryMeter;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<CompactionReport> | undefined;
  private stopped = false;
  /** Ids per batch, learnt per collection and tier: how many versions an id has in a window differs by both. */
  private readonly pageIds = new Map<string, number>();

  constructor(engine: CompactionEngine, policy: RetentionPolicy, clock: Clock, logger: Logger | undefined, meter: QueryMeter = UNMETERED) {
    this.engine = engine;
    this.policy = policy;
    this.clock = clock;
    this.logger = logger;
    this.meter = meter;
  }

  /** Runs a pass every intervalMs (the timer does not keep the process alive). */
  start(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setInterval(() => {
      if (this.running !== undefined) return;
      this.compact().catch((error: unknown) => {
        if (!this.stopped) this.logger?.warn({ err: errorMessage(error) }, 'history retention pass failed; the next pass retries');
      });
    }, this.policy.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and waits for a pass in progress to end at its next batch boundary. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** One full pass now, at the clock's current time; a call during a pass runs after it. */
  compact(): Promise<CompactionReport> {
    const previous = this.running ?? Promise.resolve(undefined);
    const pass = previous
      .catch(() => undefined)
      .then(() => this.pass())
      .finally(() => {
        if (this.running === pass) this.running = undefined;
      });
    this.running = pass;
    return pass;
  }

  private async pass(): Promise<CompactionReport> {
    const started = performance.now();
    const now = this.clock.now();
    const report = { examined: 0, deleted: 0, batches: 0, yielded: false };
    await this.engine.beforePass?.();
    for (const collection of this.policy.collections) {
      if (!(await this.compactCollection(collection, now, report))) break;
    }
    if (report.deleted > 0) {
      this.logger?.debug({ ...report, ms: Math.round(performance.now() - started) }, 'history retention pass');
    }
    return report;
  }

  /** False when the pass should end: stopped, or another process is compacting. */
  private async compactCollection(collection: string, now: number, report: { examined: number; deleted: number; batches: number; yielded: boolean }): Promise<boolean> {
    // Finding the oldest version scans the collection, so it is asked once per pass at most, and only
    // by a tier that has no progress yet.
    let oldest: Promise<number | undefined> | undefined;
    /** Where a tier resumes: its progress, else just before the oldest version; undefined for an empty collection. */
    const resume = async (resolution: number, cutoff: number, step: number): Promise<number | undefined> => {
      const done = await this.engine.progress(collection, resolution);
      if (done !== undefined) return done;
      const first = await (oldest ??= this.engine.oldest(collection));
      if (first === undefined) return undefined;
      if (first <= cutoff) return floorTo(first - 1, step);
      // Nothing is that old yet: recorded, so that later passes resume from here without looking again.
      await this.engine.saveProgress(collection, resolution, cutoff);
      return cutoff;
    };
    for (const tier of this.policy.tiers) {
      const cutoff = floorTo(now - tier.olderThanMs, tier.everyMs);
      let done = await resume(tier.everyMs, cutoff, tier.everyMs);
      if (done === undefined) return true;
      const span = Math.max(tier.everyMs, Math.min(WINDOW_BUCKETS * tier.everyMs, floorTo(DAY_MS, tier.everyMs)));
      while (done < cutoff) {
        const through = Math.min(cutoff, done + span);
        if (!(await this.compactWindow({ collection, after: done, through, everyMs: tier.everyMs, horizon: null }, report))) return false;
        await this.engine.saveProgress(collection, tier.everyMs, through);
        done = through;
      }
    }
    if (this.policy.horizonMs !== null) {
      const everyMs = this.policy.tiers.at(-1)?.everyMs ?? 1;
      const horizon = floorTo(now - this.policy.horizonMs, everyMs);
      const done = await resume(HORIZON, horizon, everyMs);
      if (done !== undefined && done < horizon) {
        // Everything stored by the horizon: what was kept there before competes with what just aged into it.
        if (!(await this.compactWindow({ collection, after: Number.MIN_SAFE_INTEGER, through: horizon, everyMs, horizon }, report))) return false;
        await this.engine.saveProgress(collection, HORIZON, horizon);
      }
    }
    return true;
  }

  /** Every id of the collection over one window, a page of ids per batch, yielding to writers between batches. */
  private async compactWindow(window: Omit<CompactionBatch, 'ids'>, report: { examined: number; deleted: number; batches: number; yielded: boolean }): Promise<boolean> {
    let after: string | undefined;
    for (;;) {
      if (this.stopped) return false;
      const key = `${window.collection}\u0000${window.horizon === null ? window.everyMs : HORIZON}`;
      const ids = await this.engine.ids(window.collection, after, this.pageIds.get(key) ?? FIRST_PAGE_IDS);
      if (ids.length === 0) return true;
      const outcome = await this.meter.time('retention_compact', () => this.engine.compact({ ...window, ids }));
      if (outcome === undefined) {
        report.yielded = true;
        return false;
      }
      report.examined += outcome.examined;
      report.deleted += outcome.deleted;
      report.batches += 1;
      // Aim the next page at batchRows versions, from what this one held.
      const scaled = outcome.examined === 0 ? ids.length * 2 : Math.floor((ids.length * this.policy.batchRows) / outcome.examined);
      this.pageIds.set(key, Math.max(1, Math.min(MAX_PAGE_IDS, scaled)));
      after = ids.at(-1);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

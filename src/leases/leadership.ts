/**
 * Single-writer duties go to whichever replica holds a lease: a geozone's node status and summaries
 * (the aggregator, lease `aggregator/<zone>`), the verified-jobs coordinator (lease `coordinator`).
 * The holder's writes carry the lease's fencing token, so once the lease has passed to another
 * replica the store rejects anything the deposed one still tries to write. Shared by every family
 * that needs one writer; the null objects below let the same code run where nothing competes.
 */
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import type { Fence, LeaseGrant, LeaseStore } from '../store/ports.ts';

export interface Leadership {
  /** True while this replica may perform the writer's duties. */
  readonly leading: boolean;
  /** The fence its writes carry; undefined where nothing competes (embedded mode). */
  fence(): Fence | undefined;
}

/** The only writer there is (embedded mode): no lease, no fence. */
export const SOLE_WRITER: Leadership = { leading: true, fence: () => undefined };
/** A read-only view (a server's node list): never writes. */
export const READ_ONLY: Leadership = { leading: false, fence: () => undefined };

export interface LeaseLeadershipOptions {
  readonly leases: LeaseStore;
  readonly name: string;
  readonly holder: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Lease time to live; a dead leader's duties move after at most this long (default 6 s). */
  readonly ttlMs?: number;
  readonly onChange?: (leading: boolean) => void;
}

/** Campaigns for a lease and renews it at a third of its TTL; steps down before the lease can expire unseen. */
export class LeaseLeadership implements Leadership {
  private readonly options: LeaseLeadershipOptions;
  private readonly ttlMs: number;
  private grant: LeaseGrant | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(options: LeaseLeadershipOptions) {
    this.options = options;
    this.ttlMs = options.ttlMs ?? 6_000;
  }

  get leading(): boolean {
    // A grant whose expiry passed is not leadership, even if the renewal has not run yet.
    return this.grant !== undefined && this.grant.expiresAt - this.options.clock.now() > this.ttlMs / 6;
  }

  fence(): Fence | undefined {
    return this.grant ? { lease: this.grant.name, token: this.grant.token } : undefined;
  }

  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => {
      this.running = this.running.then(() => this.tick());
    }, Math.max(50, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
    const grant = this.grant;
    this.set(undefined);
    if (grant) await this.options.leases.release(grant).catch(() => false);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const { leases, name, holder, logger } = this.options;
    try {
      if (this.grant) {
        const renewed = await leases.renew(this.grant, this.ttlMs);
        if (renewed) {
          this.grant = renewed;
          return;
        }
        logger.warn({ lease: name, token: this.grant.token }, `lost the ${name} lease; stepping down`);
        this.set(undefined);
      }
      const outcome = await leases.acquire(name, holder, this.ttlMs);
      if (outcome.ok) this.set(outcome.grant);
    } catch (error) {
      logger.warn({ lease: name, err: errorMessage(error) }, `could not renew or acquire the ${name} lease; retrying`);
      // Past its expiry the grant is worthless; `leading` already says so, and the next acquire starts over.
      if (this.grant && this.grant.expiresAt <= this.options.clock.now()) this.set(undefined);
    }
  }

  private set(grant: LeaseGrant | undefined): void {
    const was = this.grant !== undefined;
    this.grant = grant;
    if (was !== (grant !== undefined)) {
      if (grant) this.options.logger.info({ lease: grant.name, token: grant.token }, `took the ${grant.name} lease`);
      this.options.onChange?.(grant !== undefined);
    }
  }
}

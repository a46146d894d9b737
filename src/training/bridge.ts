/**
 * The training bridge (seed 000 §4, seed 001 Pattern 3): consumes `arc.job.submission`, classifies
 * each job (./classifier.ts) and routes it: federated jobs are announced on `arc.scheduler.training`
 * and wait there; HPC jobs are driven through ./hpc-workflow.ts by moving the dataset with the
 * DataMover and running it with the HpcScheduler. This file is the edge: it does the I/O the pure
 * workflow asks for and feeds the outcomes back as events.
 *
 * Ownership: one bridge drives a job, the holder of its lease `bridge/job/<id>` (src/leases/), and
 * every state it stores carries that lease's fencing token, so a replica that lost the lease (a
 * pause longer than the TTL) has its late writes refused by the store and stops. A job's events are
 * applied one at a time (a queue per job). Replicas share submissions through one consumer group;
 * classifying twice is harmless (the classification is stored with compare-and-set on the version).
 *
 * Restarts: on start and every scan interval, the bridge lists the training documents and takes the
 * lease of every unfinished HPC job no live bridge holds (its own before a restart, a dead replica's),
 * then resumes it from its stored state: a transfer through the mover's journal, a submission through
 * the scheduler's find-by-name. Submissions stored but never classified (the in-memory bus loses them
 * in a restart) are classified by the scan too.
 *
 * Polling: one `status` call to the scheduler per cycle for every job this bridge owns; cancel
 * requests (KV `training/cancel/<id>`, written by the API) are read in the same cycle.
 */
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Clock } from '../core/clock.ts';
import { ArcError, StaleFencingTokenError, errorMessage } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logging.ts';
import type { Consumer } from '../bus/ports.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { FederatedTask, SystemEvent, TrainingJob } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import type { DocumentStore, KvStore, LeaseStore } from '../store/ports.ts';
import { LeaseLeadership } from '../leases/leadership.ts';
import { classify, DEFAULT_THRESHOLDS, type ClassifierThresholds } from './classifier.ts';
import { initialHpcState, step, type HpcAction, type HpcEvent } from './hpc-workflow.ts';
import { CANCEL_PREFIX, HPC_FINAL, TRAINING_COLLECTION, hpcMessage, jobLeaseName, recordOfMessage, type HpcState, type TrainingRecord } from './model.ts';
import type { DataMover, HpcScheduler, HpcSubmission } from './ports.ts';

/** The bridge's consumer group on `arc.job.submission`: replicas share the submissions. */
export const BRIDGE_GROUP = 'arc-bridge';

/**
 * What runs when the submitter gave no script: reads the dataset, prints its SHA-256 and writes a
 * small checkpoint naming it (atomically, so a half-written checkpoint is never seen as the job's).
 */
export const DEFAULT_SCRIPT = `#!/bin/sh
set -eu
echo "arcnet job $ARCNET_JOB_ID reading $ARCNET_DATASET_PATH"
sum=$(sha256sum "$ARCNET_DATASET_PATH" | cut -d' ' -f1)
echo "dataset sha256 $sum"
case "$ARCNET_CHECKPOINT_URI" in
  file://*) checkpoint="\${ARCNET_CHECKPOINT_URI#file://}" ;;
  *) echo "the default script writes only file:// checkpoints, not $ARCNET_CHECKPOINT_URI" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$checkpoint")"
printf '{"jobId":"%s","datasetSha256":"%s"}\\n' "$ARCNET_JOB_ID" "$sum" > "$checkpoint.tmp"
mv "$checkpoint.tmp" "$checkpoint"
`;

export interface BridgeConfig {
  readonly thresholds: ClassifierThresholds;
  /** Where datasets land: `<stagingDir>/<jobId>/<basename>`; also the job's working directory and default checkpoint. */
  readonly stagingDir: string;
  /** One scheduler status query per this many ms (default 2 s). */
  readonly pollIntervalMs: number;
  /** A transfer running longer fails TIMEOUT (seed's `bridge.transfer-timeout-ms`, default an hour). */
  readonly transferTimeoutMs: number;
  /** A dead bridge's jobs move after at most this long (default 10 s). */
  readonly leaseTtlMs: number;
  /** How often unowned unfinished jobs are looked for (default 5 s). */
  readonly scanIntervalMs: number;
  /** The Slurm time limit of a job that names none (default 60 min). */
  readonly defaultTimeLimitMinutes: number;
  /** Progress is stored and published at most this often per job (default 500 ms; state changes always). */
  readonly progressIntervalMs: number;
}

export const DEFAULT_BRIDGE_CONFIG: Omit<BridgeConfig, 'stagingDir'> = {
  thresholds: DEFAULT_THRESHOLDS,
  pollIntervalMs: 2_000,
  transferTimeoutMs: 3_600_000,
  leaseTtlMs: 10_000,
  scanIntervalMs: 5_000,
  defaultTimeLimitMinutes: 60,
  progressIntervalMs: 500,
};

export interface BridgeDeps {
  readonly bus: MessageBus;
  readonly documents: DocumentStore;
  readonly kv: KvStore;
  readonly leases: LeaseStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The lease holder's name. */
  readonly instanceId: string;
  readonly mover: DataMover;
  /** Undefined: no HPC scheduler here; HPC jobs are classified and wait in `pending` for a bridge that has one. */
  readonly scheduler: HpcScheduler | undefined;
  readonly config: BridgeConfig;
}

interface RunningTransfer {
  readonly controller: AbortController;
  timedOut: boolean;
  /** Settles when the mover has answered (a stop waits for it, so the mover's journal is written before exit). */
  settled?: Promise<void>;
}

/** A job this bridge holds the lease of. */
interface Owned {
  readonly id: string;
  readonly leadership: LeaseLeadership;
  record: TrainingRecord;
  queue: Promise<void>;
  transfer: RunningTransfer | undefined;
  lastProgressAt: number;
  /** The lease is gone (or the job ended): nothing more is done for it here. */
  done: boolean;
  /** A cancel request seen in the KV store has been fed to the workflow. */
  cancelFed: boolean;
  /** scancel failed: asked again next cycle. */
  cancelRetry: boolean;
  submitAttempts: number;
}

export interface BridgeCounts {
  readonly classified: { hpc: number; federated: number };
  readonly owned: number;
  readonly completed: number;
  readonly failed: number;
  readonly cancelled: number;
}

const SUBMIT_ATTEMPTS = 5;

export class TrainingBridge {
  private readonly deps: BridgeDeps;
  private readonly owned = new Map<string, Owned>();
  private consumer: Consumer | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private cycling: Promise<void> | undefined;
  private lastScanAt = 0;
  private stopped = false;
  private readonly counts = { hpc: 0, federated: 0, completed: 0, failed: 0, cancelled: 0 };

  constructor(deps: BridgeDeps) {
    this.deps = deps;
  }

  get hasScheduler(): boolean {
    return this.deps.scheduler !== undefined;
  }

  async start(): Promise<void> {
    await this.scan(true);
    this.consumer = await this.deps.bus.subscribe(BRIDGE_GROUP, [topics.jobSubmission], 'TrainingJob', (job) => this.onSubmission(job));
    this.pollTimer = setInterval(() => {
      this.cycling ??= this.cycle().finally(() => (this.cycling = undefined));
    }, this.deps.config.pollIntervalMs);
    this.pollTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    await this.consumer?.close();
    await this.cycling;
    // Transfers stop where they are (the mover keeps its chunks); the leases go back so the next bridge resumes at once.
    for (const owned of this.owned.values()) owned.transfer?.controller.abort();
    await Promise.all(
      [...this.owned.values()].map(async (owned) => {
        await owned.transfer?.settled;
        await owned.queue;
        await owned.leadership.stop();
      }),
    );
    this.owned.clear();
  }

  stats(): BridgeCounts {
    const { hpc, federated, completed, failed, cancelled } = this.counts;
    return { classified: { hpc, federated }, owned: this.owned.size, completed, failed, cancelled };
  }

  /** Runs one poll cycle now (tests; the timer runs them otherwise). */
  async pollOnce(): Promise<void> {
    await (this.cycling ??= this.cycle().finally(() => (this.cycling = undefined)));
  }

  // ------------------------------------------------------------------ submissions and classification

  private async onSubmission(job: TrainingJob): Promise<void> {
    if (this.stopped) return;
    const { documents } = this.deps;
    let stored = await documents.get<TrainingRecord>(TRAINING_COLLECTION, job.id);
    if (!stored?.body) {
      // Published by another producer than the API: stored as it came, then classified like any other.
      const written = await documents.put(TRAINING_COLLECTION, job.id, recordOfMessage(job, this.iso()), { expectedVersion: stored?.version ?? 0 });
      stored = written.ok ? written.version : await documents.get<TrainingRecord>(TRAINING_COLLECTION, job.id);
      if (!stored?.body) return;
    }
    if (stored.body.status !== 'submitted') return; // a redelivery, or another replica was first
    await this.classifyRecord(stored.body, stored.version);
  }

  private async classifyRecord(record: TrainingRecord, version: number): Promise<void> {
    const { documents, bus, config } = this.deps;
    const decision = classify({ datasetSizeGb: record.datasetSizeGb, estimatedFlops: record.estimatedFlops, urgency: record.urgency, target: record.requestedTarget }, config.thresholds);
    const now = this.iso();
    const classified = { ...record, target: decision.target, routingReason: decision.reason, classifiedAt: now, updatedAt: now };
    if (decision.target === 'federated') {
      // Announced first, stored second: a crash between repeats the announcement (keyed by the training job), never loses it.
      const task: FederatedTask = {
        schemaVersion: 1,
        id: record.id,
        trainingJobId: record.id,
        round: 0,
        datasetUri: record.datasetUri,
        partition: { index: 0, count: 1 },
        ...(record.checkpointUri === undefined ? {} : { checkpointUri: record.checkpointUri }),
        issuedAt: now,
      };
      await bus.publish(topics.federatedTraining, 'FederatedTask', task);
      const waiting: TrainingRecord = { ...classified, status: 'waiting', hpc: null, reason: 'announced on arc.scheduler.training; it waits there for the federated rounds' };
      const written = await documents.put(TRAINING_COLLECTION, record.id, waiting, { expectedVersion: version });
      if (written.ok) this.counts.federated++;
      return;
    }
    const hpc = initialHpcState(this.placement(record), now, this.deps.scheduler ? null : 'no HPC scheduler configured: the job waits in pending for a bridge that has one');
    const pending: TrainingRecord = { ...classified, status: 'pending', hpc };
    if (!this.deps.scheduler) {
      const written = await documents.put(TRAINING_COLLECTION, record.id, pending, { expectedVersion: version });
      if (written.ok) {
        this.counts.hpc++;
        await bus.publish(topics.bridgePending, 'HpcJob', hpcMessage(pending, hpc));
      }
      return;
    }
    const leadership = await this.campaign(record.id);
    if (!leadership) return; // another bridge holds it: that one classifies and drives it
    const fence = leadership.fence();
    const written = fence ? await documents.put(TRAINING_COLLECTION, record.id, pending, { expectedVersion: version, fence }).catch(() => undefined) : undefined;
    if (!written?.ok) {
      await leadership.stop();
      return;
    }
    this.counts.hpc++;
    await bus.publish(topics.bridgePending, 'HpcJob', hpcMessage(pending, hpc));
    this.adopt(pending, leadership);
  }

  /** Where this job's data, working directory and default checkpoint go. */
  private placement(record: TrainingRecord): { datasetUri: string; datasetPath: string; checkpointUri: string; expectedBytes: null } {
    const dir = join(this.deps.config.stagingDir, record.id);
    const name = datasetName(record.datasetUri);
    return { datasetUri: record.datasetUri, datasetPath: join(dir, name), checkpointUri: record.checkpointUri ?? pathToFileURL(join(dir, 'checkpoint')).href, expectedBytes: null };
  }

  // ------------------------------------------------------------------ ownership

  /** Takes the job's lease if no live bridge holds it; undefined otherwise. */
  private async campaign(id: string, alreadyGranted = false): Promise<LeaseLeadership | undefined> {
    const { leases, clock, logger, instanceId, config } = this.deps;
    let owned: Owned | undefined;
    const leadership = new LeaseLeadership({
      leases,
      name: jobLeaseName(id),
      holder: instanceId,
      clock,
      logger,
      ttlMs: config.leaseTtlMs,
      onChange: (leading) => {
        owned ??= this.owned.get(id);
        if (!leading && owned) this.lose(owned, 'lost its lease');
      },
    });
    await leadership.start();
    if (!leadership.leading) {
      await leadership.stop();
      if (alreadyGranted) logger.warn({ job: id }, 'the job lease granted a moment ago is no longer ours');
      return undefined;
    }
    return leadership;
  }

  private adopt(record: TrainingRecord, leadership: LeaseLeadership): void {
    const owned: Owned = { id: record.id, leadership, record, queue: Promise.resolve(), transfer: undefined, lastProgressAt: 0, done: false, cancelFed: false, cancelRetry: false, submitAttempts: 0 };
    this.owned.set(record.id, owned);
    this.deps.logger.info({ job: record.id, status: record.status }, 'owning training job');
    this.enqueue(owned, { type: 'own' });
  }

  /** Stops driving a job without giving anything back: its lease went to another bridge, or this one stops. */
  private lose(owned: Owned, why: string): void {
    if (owned.done) return;
    owned.done = true;
    owned.transfer?.controller.abort();
    this.owned.delete(owned.id);
    this.deps.logger.warn({ job: owned.id }, `stopped driving training job: ${why}`);
    void owned.leadership.stop();
  }

  // ------------------------------------------------------------------ applying the workflow

  private enqueue(owned: Owned, event: HpcEvent): void {
    owned.queue = owned.queue
      .then(() => this.apply(owned, event))
      .catch((error: unknown) => this.deps.logger.error({ job: owned.id, event: event.type, err: errorMessage(error) }, 'training job step failed'));
  }

  private async apply(owned: Owned, event: HpcEvent): Promise<void> {
    if (owned.done || this.stopped) return;
    const before = owned.record.hpc;
    if (!before) return;
    const at = this.deps.clock.now();
    const now = new Date(at).toISOString();
    const next = step(before, event, now);
    if (next.state === before && next.actions.length === 0) return;
    const record: TrainingRecord = { ...owned.record, status: next.state.status, hpc: next.state, updatedAt: now };
    const progressDue = event.type === 'transfer.progress' && at - owned.lastProgressAt >= this.deps.config.progressIntervalMs;
    if (next.store || progressDue) {
      if (!(await this.write(owned, record))) return;
      if (progressDue) {
        owned.lastProgressAt = at;
        await this.deps.bus.publish(topics.bridgePending, 'HpcJob', hpcMessage(record, next.state));
      }
    } else {
      owned.record = record;
    }
    for (const action of next.actions) await this.act(owned, action);
  }

  /** Stores the record under the job's fence; false (and the job let go) when the fence is stale. */
  private async write(owned: Owned, record: TrainingRecord): Promise<boolean> {
    const fence = owned.leadership.fence();
    if (!fence) {
      this.lose(owned, 'no lease to write under');
      return false;
    }
    try {
      await this.deps.documents.put(TRAINING_COLLECTION, owned.id, record, { fence });
      owned.record = record;
      return true;
    } catch (error) {
      if (error instanceof StaleFencingTokenError) {
        this.lose(owned, 'another bridge holds the job now (stale fencing token)');
        return false;
      }
      throw error;
    }
  }

  private async act(owned: Owned, action: HpcAction): Promise<void> {
    const hpc = owned.record.hpc!;
    const { bus, mover, logger, kv } = this.deps;
    switch (action.type) {
      case 'transfer':
        this.startTransfer(owned, hpc);
        return;
      case 'cancelTransfer':
        owned.transfer?.controller.abort();
        await mover.cancel(owned.id).catch((error: unknown) => logger.warn({ job: owned.id, err: errorMessage(error) }, 'could not cancel the transfer'));
        return;
      case 'submit':
        await this.submit(owned, hpc);
        return;
      case 'cancelScheduler':
        await this.cancelOnScheduler(owned, action.schedulerJobId);
        return;
      case 'publish':
        await bus.publish(action.topic === 'pending' ? topics.bridgePending : topics.bridgeIngress, 'HpcJob', hpcMessage(owned.record, hpc));
        return;
      case 'event':
        await this.announce(owned.record, hpc, action);
        return;
      case 'release':
        owned.done = true;
        this.owned.delete(owned.id);
        if (hpc.status === 'completed' || hpc.status === 'failed' || hpc.status === 'cancelled') this.counts[hpc.status]++;
        await kv.delete(`${CANCEL_PREFIX}${owned.id}`).catch(() => undefined);
        await owned.leadership.stop();
        return;
    }
  }

  private startTransfer(owned: Owned, hpc: HpcState): void {
    if (owned.transfer) return;
    const { mover, config, logger } = this.deps;
    const running: RunningTransfer = { controller: new AbortController(), timedOut: false };
    owned.transfer = running;
    const timer = setTimeout(() => {
      running.timedOut = true;
      running.controller.abort();
    }, config.transferTimeoutMs);
    timer.unref();
    running.settled = mover
      .transfer(
        { transferId: owned.id, source: hpc.datasetUri, destination: hpc.datasetPath, ...(owned.record.datasetSha256 === undefined ? {} : { sha256: owned.record.datasetSha256 }) },
        { signal: running.controller.signal, onProgress: (p) => this.enqueue(owned, { type: 'transfer.progress', ...p }) },
      )
      .then(
        (outcome) => {
          if (outcome.status === 'completed') return this.enqueue(owned, { type: 'transfer.completed', bytesTransferred: outcome.bytesTransferred, sha256: outcome.sha256, bytesResent: outcome.bytesResent });
          if (running.timedOut) {
            // Stopped here, the transfer may still run elsewhere (a Globus task): cancelled there too, never left to its deadline.
            void mover.cancel(owned.id).catch((error: unknown) => logger.warn({ job: owned.id, err: errorMessage(error) }, 'could not cancel the timed-out transfer'));
            return this.enqueue(owned, { type: 'transfer.failed', code: 'TIMEOUT', reason: `still running after the transfer timeout of ${config.transferTimeoutMs} ms (bridge.transfer-timeout-ms)` });
          }
          // Stopped by this process (a stop, a lost lease): the next owner resumes it; nothing to record.
          if (outcome.code === 'CANCELLED' && (owned.done || this.stopped)) return;
          this.enqueue(owned, { type: 'transfer.failed', code: outcome.code, reason: outcome.reason });
        },
        (error: unknown) => {
          logger.error({ job: owned.id, err: errorMessage(error) }, 'the data mover threw instead of answering');
          if (!owned.done && !this.stopped) this.enqueue(owned, { type: 'transfer.failed', code: 'REMOTE_FAULT', reason: errorMessage(error) });
        },
      )
      .finally(() => {
        clearTimeout(timer);
        if (owned.transfer === running) owned.transfer = undefined;
      });
  }

  private async submit(owned: Owned, hpc: HpcState): Promise<void> {
    const scheduler = this.deps.scheduler;
    if (!scheduler) return;
    const { record } = owned;
    const submission: HpcSubmission = {
      jobId: owned.id,
      script: record.script ?? DEFAULT_SCRIPT,
      environment: { ARCNET_DATASET_PATH: hpc.datasetPath, ARCNET_CHECKPOINT_URI: hpc.checkpointUri, ARCNET_JOB_ID: owned.id },
      workdir: join(this.deps.config.stagingDir, owned.id),
      timeLimitMinutes: record.timeLimitMinutes ?? this.deps.config.defaultTimeLimitMinutes,
      cpus: 1,
    };
    try {
      const submitted = await scheduler.submit(submission);
      owned.submitAttempts = 0;
      await this.apply(owned, { type: 'submitted', ...submitted });
    } catch (error) {
      const final = error instanceof ArcError && !error.retryable;
      owned.submitAttempts++;
      if (final || owned.submitAttempts >= SUBMIT_ATTEMPTS) {
        await this.apply(owned, { type: 'submit.failed', reason: `${errorMessage(error)}${final ? '' : ` (after ${owned.submitAttempts} attempts)`}` });
        return;
      }
      // The scheduler is away (slurmctld restarting): `own` in "queued, no id" submits again, finding the job by name if sbatch did run.
      const delay = Math.min(30_000, 1_000 * 2 ** (owned.submitAttempts - 1));
      this.deps.logger.warn({ job: owned.id, attempt: owned.submitAttempts, err: errorMessage(error) }, `submitting failed; again in ${delay} ms`);
      setTimeout(() => this.enqueue(owned, { type: 'own' }), delay).unref();
    }
  }

  private async cancelOnScheduler(owned: Owned, schedulerJobId: string | null): Promise<void> {
    const scheduler = this.deps.scheduler;
    if (!scheduler) return;
    try {
      const id = schedulerJobId ?? (await scheduler.findByName(owned.id));
      if (id !== undefined) await scheduler.cancel(id);
      owned.cancelRetry = false;
    } catch (error) {
      owned.cancelRetry = true;
      this.deps.logger.warn({ job: owned.id, err: errorMessage(error) }, 'scancel failed; asking again next cycle');
    }
  }

  private async announce(record: TrainingRecord, hpc: HpcState, action: Extract<HpcAction, { type: 'event' }>): Promise<void> {
    const event: SystemEvent = {
      schemaVersion: 1,
      id: newId(),
      kind: action.kind,
      severity: action.severity,
      message: `${action.message} (training job ${record.id})`,
      ...(record.geozone === undefined ? {} : { geozone: record.geozone }),
      subjectId: record.id,
      details: { trainingJobId: record.id, status: hpc.status, schedulerJobId: hpc.schedulerJobId, nativeState: hpc.nativeState, reason: hpc.reason, checkpoint: hpc.checkpoint?.uri ?? null },
      timestamp: this.iso(),
    };
    await this.deps.bus.publish(topics.systemEvent, 'SystemEvent', event);
  }

  // ------------------------------------------------------------------ the poll cycle and the scan

  private async cycle(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.readCancels();
      await this.pollScheduler();
      if (this.deps.clock.now() - this.lastScanAt >= this.deps.config.scanIntervalMs) await this.scan(false);
    } catch (error) {
      this.deps.logger.warn({ err: errorMessage(error) }, 'bridge cycle failed; next cycle retries');
    }
  }

  private async readCancels(): Promise<void> {
    const { entries } = await this.deps.kv.list<{ reason?: string }>(CANCEL_PREFIX);
    for (const entry of entries) {
      const owned = this.owned.get(entry.key.slice(CANCEL_PREFIX.length));
      if (!owned || owned.done) continue;
      if (!owned.cancelFed) {
        owned.cancelFed = true;
        this.enqueue(owned, { type: 'cancel', reason: entry.value.reason ?? 'cancelled from ArcNet' });
      } else if (owned.cancelRetry) {
        this.enqueue(owned, { type: 'own' });
      }
    }
  }

  /** The one status query of this cycle, for every job Slurm holds for this bridge. */
  private async pollScheduler(): Promise<void> {
    const scheduler = this.deps.scheduler;
    if (!scheduler) return;
    const watched = [...this.owned.values()].filter((o) => !o.done && o.record.hpc?.schedulerJobId != null && (o.record.hpc.status === 'queued' || o.record.hpc.status === 'running'));
    if (watched.length === 0) return;
    const statuses = await scheduler.status(watched.map((o) => o.record.hpc!.schedulerJobId!));
    for (const owned of watched) {
      const status = statuses.get(owned.record.hpc!.schedulerJobId!);
      if (!status) continue;
      const checkpoint = status.state === 'completed' ? await checkpointAt(owned.record.hpc!.checkpointUri) : undefined;
      this.enqueue(owned, { type: 'scheduler.status', status, ...(checkpoint ? { checkpoint } : {}) });
    }
  }

  /** Classifies stored submissions nobody classified, takes unfinished HPC jobs no live bridge holds, honours cancels of jobs nobody drives. */
  private async scan(initial: boolean): Promise<void> {
    const { documents, kv, leases, instanceId, config, clock } = this.deps;
    this.lastScanAt = clock.now();
    const [docs, cancels] = await Promise.all([documents.list<TrainingRecord>(TRAINING_COLLECTION), kv.list<{ reason?: string }>(CANCEL_PREFIX)]);
    const cancelOf = new Map(cancels.entries.map((e) => [e.key.slice(CANCEL_PREFIX.length), e.value.reason ?? 'cancelled from ArcNet']));
    const orphans: string[] = [];
    for (const doc of docs) {
      const record = doc.body;
      if (!record || this.owned.has(record.id)) continue;
      const cancelReason = cancelOf.get(record.id);
      const undriven = record.status === 'submitted' || record.status === 'waiting' || (record.status === 'pending' && !this.deps.scheduler);
      if (cancelReason !== undefined && undriven) {
        await this.cancelUndriven(record, doc.version, cancelReason);
        continue;
      }
      // A fresh submission is the consumer's; one still unclassified after a while was lost with the bus.
      if (record.status === 'submitted' && (initial || clock.now() - Date.parse(record.submittedAt) > config.scanIntervalMs)) {
        await this.classifyRecord(record, doc.version).catch((error: unknown) => this.deps.logger.warn({ job: record.id, err: errorMessage(error) }, 'classifying a stored submission failed'));
        continue;
      }
      if (this.deps.scheduler && record.hpc && !HPC_FINAL.has(record.hpc.status)) orphans.push(record.id);
    }
    if (orphans.length === 0 || this.stopped) return;
    const outcomes = await leases.acquireMany(orphans.map((id) => ({ name: jobLeaseName(id), holder: instanceId, ttlMs: config.leaseTtlMs })));
    for (const [i, outcome] of outcomes.entries()) {
      if (!outcome.ok || this.stopped) continue;
      const id = orphans[i]!;
      const leadership = await this.campaign(id, true);
      if (!leadership) continue;
      // Read after taking the lease: the last owner may have written since the list.
      const fresh = await documents.get<TrainingRecord>(TRAINING_COLLECTION, id);
      if (!fresh?.body?.hpc || HPC_FINAL.has(fresh.body.hpc.status)) {
        await leadership.stop();
        continue;
      }
      this.adopt(fresh.body, leadership);
    }
  }

  /** A submitted, waiting (federated) or scheduler-less pending job has no driver: its cancel is stored here, compare-and-set. */
  private async cancelUndriven(record: TrainingRecord, version: number, reason: string): Promise<void> {
    const now = this.iso();
    const hpc = record.hpc ? { ...record.hpc, status: 'cancelled' as const, reason, timestamps: { ...record.hpc.timestamps, cancelled: now } } : null;
    const cancelled: TrainingRecord = { ...record, status: 'cancelled', hpc, updatedAt: now, reason };
    const written = await this.deps.documents.put(TRAINING_COLLECTION, record.id, cancelled, { expectedVersion: version });
    if (!written.ok) return;
    this.counts.cancelled++;
    await this.deps.kv.delete(`${CANCEL_PREFIX}${record.id}`).catch(() => undefined);
    if (hpc) await this.deps.bus.publish(topics.bridgePending, 'HpcJob', hpcMessage(record, hpc));
  }

  private iso(): string {
    return new Date(this.deps.clock.now()).toISOString();
  }
}

/** The file name the dataset keeps at its destination. */
export function datasetName(uri: string): string {
  let path = uri;
  try {
    path = new URL(uri).pathname;
  } catch {
    // not a URL: a plain path
  }
  const name = basename(decodeURIComponent(path));
  return name === '' || name === '.' || name === '..' ? 'dataset' : name;
}

/** Whether the job's checkpoint is there: a `file://` URI is looked at; another scheme cannot be. */
async function checkpointAt(uri: string): Promise<{ found: boolean; checkable: boolean; bytes: number | null }> {
  if (!uri.startsWith('file://')) return { found: false, checkable: false, bytes: null };
  try {
    const info = await stat(fileURLToPath(uri));
    return { found: info.isFile() || info.isDirectory(), checkable: true, bytes: info.isFile() ? info.size : null };
  } catch {
    return { found: false, checkable: true, bytes: null };
  }
}

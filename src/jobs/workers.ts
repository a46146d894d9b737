/**
 * The worker registry: seed 004's node records (registration, heartbeats, going offline,
 * reputation and credits) and what the coordinator has allocated on each worker, which is what
 * placement reads. Records change only through the pure functions here; the registry holds the
 * current ones in memory and the coordinator persists them. No I/O.
 */
import { MAX_CPU_CORES, MAX_MEMORY_GB } from '../contracts/messages.ts';
import { REPUTATION, type WorkerRecord } from './model.ts';
import type { WorkerCandidate } from './profile.ts';

export interface WorkerRegistration {
  readonly id?: string;
  readonly name: string;
  readonly region?: string;
  readonly cpu_cores: number;
  readonly memory_gb: number;
  readonly gpu_enabled?: boolean;
  readonly gpu_model?: string;
}

export interface Heartbeat {
  readonly cpu_usage?: number;
  readonly memory_usage?: number;
  readonly active_jobs?: readonly string[];
}

/** What one plan does to one worker: deltas, each with the reason it was made. */
export interface WorkerChange {
  readonly node_id: string;
  /** Reputation points (+5 agree, −10 disagree), before the floor. */
  readonly reputation: number;
  readonly credits: number;
  /** Executions that ended with an outcome charged to the worker (a report, a timeout, going silent). */
  readonly total: number;
  readonly failed: number;
  readonly successful: number;
  readonly reasons: readonly string[];
}

const clamp01 = (value: number): number => (Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0);

/** Why a registration cannot be accepted, or undefined. */
export function registrationProblem(registration: WorkerRegistration): string | undefined {
  if (!(registration.cpu_cores > 0)) return `cpu_cores must be more than 0, got ${registration.cpu_cores}`;
  if (!(registration.memory_gb > 0)) return `memory_gb must be more than 0, got ${registration.memory_gb}`;
  // A claim of unbounded capacity would win every placement (three such workers filled a quorum, issue 11).
  if (!(registration.cpu_cores <= MAX_CPU_CORES)) return `cpu_cores must be at most ${MAX_CPU_CORES}, got ${registration.cpu_cores}`;
  if (!(registration.memory_gb <= MAX_MEMORY_GB)) return `memory_gb must be at most ${MAX_MEMORY_GB}, got ${registration.memory_gb}`;
  return undefined;
}

/**
 * The record after a (re-)registration: a new worker starts at reputation 100; a known one keeps
 * its reputation, counts and credits, takes the new capacity and credential, and is online again.
 */
export function registeredWorker(existing: WorkerRecord | undefined, registration: WorkerRegistration, id: string, credentialHash: string, now: number, enrolledBy: string | null = null): WorkerRecord {
  const at = new Date(now).toISOString();
  if (existing) {
    return {
      ...existing,
      name: registration.name,
      region: registration.region ?? existing.region,
      cpu_cores: registration.cpu_cores,
      memory_gb: registration.memory_gb,
      gpu_enabled: registration.gpu_enabled ?? false,
      gpu_model: registration.gpu_model ?? null,
      status: existing.status === 'offline' ? 'online' : existing.status,
      last_heartbeat: at,
      credential_hash: credentialHash,
    };
  }
  return {
    id,
    name: registration.name,
    region: registration.region ?? null,
    cpu_cores: registration.cpu_cores,
    memory_gb: registration.memory_gb,
    gpu_enabled: registration.gpu_enabled ?? false,
    gpu_model: registration.gpu_model ?? null,
    status: 'online',
    reputation_score: REPUTATION.start,
    total_jobs_run: 0,
    successful_jobs_run: 0,
    failed_jobs: 0,
    credits_earned: 0,
    last_heartbeat: at,
    registered_at: at,
    current_job_id: null,
    cpu_usage: 0,
    memory_usage: 0,
    credential_hash: credentialHash,
    enrolled_by: enrolledBy,
  };
}

/** The record after a heartbeat: seen now, with its measured load; an offline worker is back online. */
export function heartbeatOf(worker: WorkerRecord, beat: Heartbeat, now: number): WorkerRecord {
  return {
    ...worker,
    status: worker.status === 'offline' ? 'online' : worker.status,
    last_heartbeat: new Date(now).toISOString(),
    cpu_usage: clamp01(beat.cpu_usage ?? worker.cpu_usage),
    memory_usage: clamp01(beat.memory_usage ?? worker.memory_usage),
  };
}

/**
 * Workers silent for longer than `staleAfterMs`, counting silence from `countFrom` at the earliest
 * (the moment this coordinator started leading: workers do not pay for its own downtime or a failover).
 */
export function silentWorkers(workers: Iterable<WorkerRecord>, now: number, staleAfterMs: number, countFrom: number): { worker: WorkerRecord; silentS: number }[] {
  const out: { worker: WorkerRecord; silentS: number }[] = [];
  for (const worker of workers) {
    const heardFrom = Math.max(Date.parse(worker.last_heartbeat), countFrom);
    if (worker.status === 'offline' || now - heardFrom <= staleAfterMs) continue;
    out.push({ worker, silentS: Math.round((now - heardFrom) / 1000) });
  }
  return out;
}

/** A silent worker goes offline and loses 20 (seed 004), never below the floor. */
export function wentOffline(worker: WorkerRecord): WorkerRecord {
  return { ...worker, status: 'offline', reputation_score: Math.max(REPUTATION.floor, worker.reputation_score + REPUTATION.offline) };
}

/** A plan's change applied to a record; the floor is applied once per change. */
export function applyWorkerChange(worker: WorkerRecord, change: WorkerChange): WorkerRecord {
  return {
    ...worker,
    reputation_score: Math.max(REPUTATION.floor, worker.reputation_score + change.reputation),
    total_jobs_run: worker.total_jobs_run + change.total,
    failed_jobs: worker.failed_jobs + change.failed,
    successful_jobs_run: worker.successful_jobs_run + change.successful,
    credits_earned: worker.credits_earned + change.credits,
  };
}

/** The record as the API shows it: without the credential's hash. */
export function publicWorker(worker: WorkerRecord): Omit<WorkerRecord, 'credential_hash'> {
  const { credential_hash: _hidden, ...node } = worker;
  return node;
}

interface Held {
  readonly jobId: string;
  readonly cpu: number;
  readonly memoryGb: number;
}

interface Allocation {
  cpu: number;
  memoryGb: number;
  /** Execution id → what it holds, in allocation order. */
  readonly executions: Map<string, Held>;
}

/** The current worker records and what is allocated on each (in memory; rebuilt from the executions on load). */
export class WorkerRegistry {
  private readonly records = new Map<string, WorkerRecord>();
  private readonly allocations = new Map<string, Allocation>();
  /** credential hash → worker id: the API edge authenticates a worker call before reading its body. */
  private readonly byCredential = new Map<string, string>();

  get(id: string): WorkerRecord | undefined {
    return this.records.get(id);
  }

  /** The worker whose credential hash this is. */
  idOfCredentialHash(hash: string): string | undefined {
    return this.byCredential.get(hash);
  }

  all(): IterableIterator<WorkerRecord> {
    return this.records.values();
  }

  /** Stores the record, its status following its allocations (busy while it holds executions). */
  set(record: WorkerRecord): WorkerRecord {
    const previous = this.records.get(record.id);
    if (previous && previous.credential_hash !== record.credential_hash) this.byCredential.delete(previous.credential_hash);
    this.byCredential.set(record.credential_hash, record.id);
    this.records.set(record.id, record);
    return this.refresh(record.id) ?? record;
  }

  clear(): void {
    this.records.clear();
    this.byCredential.clear();
    this.allocations.clear();
  }

  allocate(nodeId: string, executionId: string, held: Held): void {
    const allocation = this.allocations.get(nodeId) ?? { cpu: 0, memoryGb: 0, executions: new Map<string, Held>() };
    if (allocation.executions.has(executionId)) return;
    allocation.cpu += held.cpu;
    allocation.memoryGb += held.memoryGb;
    allocation.executions.set(executionId, held);
    this.allocations.set(nodeId, allocation);
    this.refresh(nodeId);
  }

  release(nodeId: string, executionId: string): void {
    const allocation = this.allocations.get(nodeId);
    const held = allocation?.executions.get(executionId);
    if (!allocation || !held) return;
    allocation.executions.delete(executionId);
    allocation.cpu = allocation.executions.size === 0 ? 0 : Math.max(0, allocation.cpu - held.cpu);
    allocation.memoryGb = allocation.executions.size === 0 ? 0 : Math.max(0, allocation.memoryGb - held.memoryGb);
    this.refresh(nodeId);
  }

  /** Executions allocated on the worker, by id. */
  executionsOn(nodeId: string): string[] {
    return [...(this.allocations.get(nodeId)?.executions.keys() ?? [])].sort();
  }

  /** What placement reads: each worker's record (or its override, a change not yet applied) and what is allocated on it. */
  *candidates(overrides?: ReadonlyMap<string, WorkerRecord>): Generator<WorkerCandidate> {
    for (const record of this.records.values()) {
      const worker = overrides?.get(record.id) ?? record;
      const allocation = this.allocations.get(worker.id);
      yield {
        id: worker.id,
        online: worker.status !== 'offline',
        reputation: worker.reputation_score,
        cpuCores: worker.cpu_cores,
        memoryGb: worker.memory_gb,
        gpu: worker.gpu_enabled,
        allocatedCpu: allocation?.cpu ?? 0,
        allocatedMemoryGb: allocation?.memoryGb ?? 0,
        cpuUsage: worker.cpu_usage,
        enrolledBy: worker.enrolled_by ?? null,
      };
    }
  }

  /** Busy while it holds executions; offline stays offline until it reports. */
  private refresh(nodeId: string): WorkerRecord | undefined {
    const worker = this.records.get(nodeId);
    if (!worker) return undefined;
    const allocation = this.allocations.get(nodeId);
    const busy = (allocation?.executions.size ?? 0) > 0;
    let current: string | null = null;
    if (allocation) for (const held of allocation.executions.values()) current = held.jobId;
    const status = worker.status === 'offline' ? 'offline' : busy ? 'busy' : 'online';
    if (status === worker.status && current === worker.current_job_id) return worker;
    const updated: WorkerRecord = { ...worker, status, current_job_id: current };
    this.records.set(nodeId, updated);
    return updated;
  }
}

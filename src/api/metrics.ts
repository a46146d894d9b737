/**
 * Prometheus metrics under the seed's names (`arcnet_*`), plus the live figures the status line,
 * `/stats` and the console show. Gauges about nodes are computed when scraped, from the registry.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RateMeter, RollingSamples } from '../core/stats.ts';
import type { BusObserver } from '../bus/typed-bus.ts';
import type { NodeState } from '../mesh/node.ts';
import { ZoneFigures } from './zone-figures.ts';

export interface NodeSource {
  all(): Iterable<NodeState>;
}

/** What the jobs metrics read when scraped: job counts, and workers that are nodes of their own (no telemetry). */
export interface JobsSource {
  jobCounts(): { readonly byStatus: Readonly<Record<string, number>> };
  allWorkers(): Iterable<{ readonly id: string; readonly region: string | null; readonly status: string }>;
}

export class ArcMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'geozone' | 'status'>;
  readonly inferenceLatency: Histogram<'geozone'>;
  readonly routingDecision: Histogram<'outcome'>;
  readonly busProduced: Counter<'topic'>;
  readonly busConsumed: Counter<'topic'>;
  readonly deadLetters: Counter<'topic'>;
  readonly agentsConnected: Gauge;
  /** Agent frames and sessions refused by the gateway, by reason (another node's result, identity change, …). */
  readonly agentRefusals: Counter<'reason'>;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  /** Recent routing decision times in ms, for p50/p99 on the status line. */
  readonly decisionSamples = new RollingSamples(4_096);
  readonly latencySamples = new RollingSamples(4_096);
  readonly requestRate = new RateMeter(10);
  readonly totals = { requests: 0, dispatched: 0, forwarded: 0, completed: 0, failed: 0, rejected: 0 };
  /** The same figures per geozone, for `GET /api/v1/zones`. */
  readonly zones = new ZoneFigures();
  readonly executionDuration: Histogram<'status'>;
  readonly consensus: Counter<'outcome'>;
  private jobs: JobsSource | undefined;
  private nodes: NodeSource = { all: () => [] };

  /** Metrics exist before the modules that feed them (the bus counts from its first message): nodes and jobs are attached once they run. */
  constructor() {
    const registers = [this.registry];
    const jobsOf = (): JobsSource | undefined => this.jobs;
    const nodesOf = (): Iterable<NodeState> => this.nodes.all();
    collectDefaultMetrics({ register: this.registry, prefix: 'arcnet_' });
    new Gauge({
      name: 'arcnet_nodes_total',
      help: 'Nodes by geozone and status',
      labelNames: ['geozone', 'status'],
      registers,
      collect: function (this: Gauge<'geozone' | 'status'>) {
        this.reset();
        const seen = new Set<string>();
        for (const node of nodesOf()) {
          seen.add(node.id);
          this.inc({ geozone: node.geozone, status: node.status });
        }
        // Workers that send no telemetry are nodes too (one registry, ADR 0007).
        for (const worker of jobsOf()?.allWorkers() ?? []) if (!seen.has(worker.id)) this.inc({ geozone: worker.region ?? 'UNZONED', status: worker.status });
      },
    });
    new Gauge({
      name: 'arcnet_gpu_utilization_avg',
      help: 'Average GPU utilization of the nodes that are not offline, by geozone (0..1)',
      labelNames: ['geozone'],
      registers,
      collect() {
        this.reset();
        const sums = new Map<string, [number, number]>();
        for (const node of nodesOf()) {
          if (node.status === 'offline') continue;
          const sum = sums.get(node.geozone) ?? [0, 0];
          sum[0] += node.gpuUtilization;
          sum[1]++;
          sums.set(node.geozone, sum);
        }
        for (const [geozone, [total, count]] of sums) this.set({ geozone }, total / count);
      },
    });
    this.requests = new Counter({ name: 'arcnet_inference_requests_total', help: 'Inference requests by requester geozone and status', labelNames: ['geozone', 'status'], registers });
    this.inferenceLatency = new Histogram({
      name: 'arcnet_inference_latency_ms',
      help: 'Inference latency reported by the node, by node geozone (ms)',
      labelNames: ['geozone'],
      buckets: [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000],
      registers,
    });
    this.routingDecision = new Histogram({
      name: 'arcnet_routing_decision_ms',
      help: 'Time to filter, score and reserve for one request (ms)',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 50],
      registers,
    });
    this.busProduced = new Counter({ name: 'arcnet_bus_messages_produced_total', help: 'Messages produced by topic', labelNames: ['topic'], registers });
    this.busConsumed = new Counter({ name: 'arcnet_bus_messages_consumed_total', help: 'Messages consumed by topic', labelNames: ['topic'], registers });
    this.deadLetters = new Counter({ name: 'arcnet_dead_letters_total', help: 'Messages sent to a dead-letter topic, by original topic', labelNames: ['topic'], registers });
    this.agentsConnected = new Gauge({ name: 'arcnet_agents_connected', help: 'Agent sessions connected to this server', registers });
    this.agentRefusals = new Counter({ name: 'arcnet_agent_refusals_total', help: 'Agent frames and sessions refused by the gateway, by reason', labelNames: ['reason'], registers });
    this.httpRequests = new Counter({ name: 'arcnet_http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'], registers });
    this.httpDuration = new Histogram({
      name: 'arcnet_http_request_duration_seconds',
      help: 'HTTP request duration (s)',
      labelNames: ['method', 'route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
    new Gauge({
      name: 'arcnet_jobs_total',
      help: 'Verified batch jobs by status',
      labelNames: ['status'],
      registers,
      collect: function (this: Gauge<'status'>) {
        this.reset();
        const source = jobsOf();
        if (!source) return;
        for (const [status, count] of Object.entries(source.jobCounts().byStatus)) this.set({ status }, count);
      },
    });
    this.executionDuration = new Histogram({
      name: 'arcnet_job_execution_duration_seconds',
      help: 'Duration of job executions as their workers report it, by final execution status (s)',
      labelNames: ['status'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900],
      registers,
    });
    this.consensus = new Counter({
      name: 'arcnet_verification_consensus_total',
      help: 'k-of-n verification outcomes: reached, or unreachable (the job failed); the success rate is reached / all',
      labelNames: ['outcome'],
      registers,
    });
  }

  /** Counts nodes by geozone and status, and their GPU utilization, from this view at scrape time. */
  attachNodes(source: NodeSource): void {
    this.nodes = source;
  }

  /** Counts jobs and worker nodes from the coordinator at scrape time. */
  attachJobs(source: JobsSource): void {
    this.jobs = source;
  }

  busObserver(): BusObserver {
    return {
      produced: (topic, count) => this.busProduced.inc({ topic }, count),
      consumed: (topic, _group, count) => this.busConsumed.inc({ topic }, count),
      deadLettered: (topic) => this.deadLetters.inc({ topic }),
    };
  }
}

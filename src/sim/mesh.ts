/**
 * Simulated nodes living inside the server process (embedded mode): each reports telemetry on its
 * own staggered schedule, goes silent now and then, and runs the dispatches the router hands it on a
 * simulated backend, returning results on the bus exactly as a real agent's session would.
 */
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import type { InferenceDispatch } from '../contracts/messages.ts';
import { topics } from '../contracts/topics.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import type { DispatchRouter } from '../inference/dispatch-router.ts';
import { SimulatedBackend } from '../agent/simulated-backend.ts';
import { resultOfRun } from '../agent/result.ts';
import { SimulatedNode } from './sim-node.ts';
import { seededRandom } from './random.ts';

export interface SimulatedMeshOptions {
  readonly bus: MessageBus;
  readonly router: DispatchRouter;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly geozones: readonly string[];
  /** Total nodes, spread evenly over the geozones. */
  readonly nodes: number;
  readonly telemetryIntervalMs: number;
  readonly seed?: number;
  /** Latency multiplier for the simulated backends (1 = realistic). */
  readonly speed?: number;
  readonly silencesPerHour?: number;
}

interface Member {
  readonly node: SimulatedNode;
  readonly backend: SimulatedBackend;
  nextReport: number;
  lastAdvance: number;
  detach?: () => void;
}

const TICK_MS = 250;

export class SimulatedMesh {
  private readonly options: SimulatedMeshOptions;
  private readonly members: Member[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly running = new Set<Promise<void>>();

  constructor(options: SimulatedMeshOptions) {
    this.options = options;
    const random = seededRandom(options.seed ?? 42);
    const now = options.clock.now();
    for (let i = 0; i < options.nodes; i++) {
      const geozone = options.geozones[i % options.geozones.length]!;
      const index = Math.floor(i / options.geozones.length);
      const node = new SimulatedNode({ index, geozone, random, now, ...(options.silencesPerHour === undefined ? {} : { silencesPerHour: options.silencesPerHour }) });
      const backend = new SimulatedBackend({ speed: options.speed ?? 1, slots: node.slots, random });
      // Staggered first reports so telemetry arrives as a stream, not a burst every interval.
      this.members.push({ node, backend, nextReport: now + random() * Math.min(options.telemetryIntervalMs, 2_000), lastAdvance: now });
    }
  }

  get size(): number {
    return this.members.length;
  }

  get nodes(): readonly SimulatedNode[] {
    return this.members.map((m) => m.node);
  }

  start(): void {
    for (const member of this.members) {
      member.detach = this.options.router.attach(member.node.id, (dispatch) => this.run(member, dispatch));
    }
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
    void this.tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const member of this.members) member.detach?.();
    await Promise.allSettled([...this.running]);
  }

  private async tick(): Promise<void> {
    const now = this.options.clock.now();
    for (const member of this.members) {
      if (now < member.nextReport) continue;
      // Nodes move forward only when they report: nothing observes them in between, and stepping
      // thousands of them every tick would stall the event loop the real roles share.
      member.node.advance(now - member.lastAdvance, member.backend.active, now);
      member.lastAdvance = now;
      member.nextReport = now + this.options.telemetryIntervalMs;
      if (member.node.isSilent(now)) continue;
      try {
        await this.options.bus.publish(topics.telemetry, 'NodeTelemetry', member.node.telemetry(now), { headers: this.options.router.telemetryHeaders });
      } catch (error) {
        this.options.logger.warn({ err: errorMessage(error), node: member.node.name }, 'simulated telemetry not published');
      }
    }
  }

  private run(member: Member, dispatch: InferenceDispatch): void {
    const work = (async () => {
      const outcome = await member.backend.run(dispatch);
      const result = resultOfRun(dispatch, dispatch.nodeId, outcome, this.options.clock.now());
      // A silent node's site is cut off: its result never makes it back, and the reservation times out.
      if (member.node.isSilent(this.options.clock.now())) return;
      await this.options.bus.publish(topics.inferenceResult, 'InferenceResult', result);
    })().catch((error: unknown) => this.options.logger.warn({ err: errorMessage(error) }, 'simulated inference failed'));
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
  }
}

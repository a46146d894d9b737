/**
 * The simulator module: simulated nodes that publish telemetry and run the dispatches sent to them,
 * plus a seeded inference load. In `arcnet up` the nodes hang off the inference module's router and
 * the load is tracked like API submissions; as `arcnet simulate --kafka` it has a router of its own
 * and publishes straight onto the bus. `startLoad` is also the load of `arcnet simulate --server`.
 */
import type { InferenceRequest } from '../../contracts/messages.ts';
import { topics } from '../../contracts/topics.ts';
import type { DispatchRouter } from '../../inference/dispatch-router.ts';
import { SimulatedMesh } from '../../sim/mesh.ts';
import { LoadGenerator, type LoadGeneratorOptions } from '../../sim/load.ts';
import { seededRandom } from '../../sim/random.ts';
import type { BusEngines } from '../engines.ts';
import { startDispatchRouter } from './inference.ts';
import type { ModuleHandle } from './module.ts';

/** Starts a request load; `stop()` waits for what it already submitted. */
export function startLoad(options: LoadGeneratorOptions): LoadGenerator {
  const load = new LoadGenerator(options);
  load.start();
  return load;
}

export interface SimulatorOptions {
  readonly geozones: readonly string[];
  /** Simulated nodes, spread over the geozones; 0 for none. */
  readonly nodes: number;
  /** Inference requests per second; 0 for none. */
  readonly rate: number;
  readonly seed: number;
  readonly telemetryIntervalMs: number;
  readonly speed?: number;
  readonly silencesPerHour?: number;
  /** The process's dispatch router (the inference module's); without one the module starts its own. */
  readonly router?: DispatchRouter;
  /** How a request is submitted; by default it is published to the request topic. */
  readonly submit?: (request: InferenceRequest) => Promise<void>;
  /** Called with every request published (tests count them). */
  readonly onSubmitted?: (request: InferenceRequest) => void;
  /**
   * Enrols each simulated node before it reports, as the agent gateway enrols a real one (the same
   * key ring call, a node key bound to its id and geozone); absent under --insecure-no-auth.
   */
  readonly enrol?: (node: { readonly id: string; readonly name: string; readonly geozone: string }) => Promise<void>;
}

export interface SimulatorModule extends ModuleHandle {
  readonly mesh: SimulatedMesh | undefined;
  readonly load: LoadGenerator | undefined;
}

export async function startSimulatorModule(engines: BusEngines, options: SimulatorOptions): Promise<SimulatorModule> {
  const { bus, clock, logger } = engines;
  const ownRouter = options.router ? undefined : await startDispatchRouter(engines, options.geozones);
  const router = options.router ?? ownRouter!;
  let mesh: SimulatedMesh | undefined;
  if (options.nodes > 0) {
    mesh = new SimulatedMesh({
      bus,
      router,
      clock,
      logger: logger.child({ component: 'simulator' }),
      geozones: options.geozones,
      nodes: options.nodes,
      telemetryIntervalMs: options.telemetryIntervalMs,
      seed: options.seed,
      speed: options.speed ?? 1,
      ...(options.silencesPerHour === undefined ? {} : { silencesPerHour: options.silencesPerHour }),
    });
    if (options.enrol) for (const node of mesh.nodes) await options.enrol(node);
    mesh.start();
  }
  const publish = options.submit ?? ((request: InferenceRequest) => bus.publish(topics.inferenceRequest, 'InferenceRequest', request));
  const load =
    options.rate > 0
      ? // Short ticks: at thousands of requests per second a 50 ms tick would arrive as bursts that stall everything else.
        startLoad({
          rate: options.rate,
          geozones: options.geozones,
          random: seededRandom(options.seed + 1),
          logger,
          tickMs: 5,
          submit: async (request) => {
            await publish(request);
            options.onSubmitted?.(request);
          },
        })
      : undefined;
  return {
    name: 'simulator',
    mesh,
    load,
    health: () => ({ ready: true, details: { nodes: mesh?.size ?? 0, rate: load?.rate ?? 0, submitted: load?.submitted ?? 0 } }),
    stop: async () => {
      await load?.stop();
      await mesh?.stop();
      await ownRouter?.stop();
    },
  };
}

/**
 * `arcnet simulate --server`: simulated nodes as real agents of a running server (each its own
 * WebSocket session, telemetry from a simulated node, a simulated backend), plus an inference load
 * sent to the server's API as a client would. Everything travels over HTTP; no engine is opened here.
 */
import type { Logger } from '../core/logging.ts';
import { httpClient } from '../core/http-client.ts';
import type { ClientTls } from '../core/tls.ts';
import type { LoadGenerator } from '../sim/load.ts';
import { startLoad } from './modules/simulator.ts';

export interface SimulatedAgentsOptions {
  readonly server: string;
  readonly nodes: number;
  readonly geozone: string;
  /** Inference requests per second sent to the API; 0 for none. */
  readonly rate: number;
  readonly seed: number;
  readonly telemetryIntervalMs: number;
  readonly logger: Logger;
  /** For an `https://` server: the CA to trust and the client certificate its agent sessions need under `--tls-ca`. */
  readonly tls?: ClientTls;
  /**
   * An operator key or an enrolment token of the geozone: each simulated node enrols with it, as a
   * real agent does (node keys kept in memory for the run), and the load is submitted with it.
   */
  readonly token?: string;
}

export interface SimulatedAgents {
  readonly agents: number;
  stop(): Promise<void>;
}

export async function startSimulatedAgents(options: SimulatedAgentsOptions): Promise<SimulatedAgents> {
  const { logger, server } = options;
  const [{ Agent }, { SimulatedBackend }, { SimulatedNode }, { seededRandom }] = await Promise.all([
    import('../agent/agent.ts'),
    import('../agent/simulated-backend.ts'),
    import('../sim/sim-node.ts'),
    import('../sim/random.ts'),
  ]);
  const random = seededRandom(options.seed);
  // Every session and the load share one client: one TLS configuration, one connection pool.
  const http = httpClient(options.tls);
  const agents = Array.from({ length: options.nodes }, (_, index) => {
    const node = new SimulatedNode({ index: 1000 + index, geozone: options.geozone, random, now: Date.now() });
    const backend = new SimulatedBackend({ slots: node.slots, random });
    let last = Date.now();
    return new Agent({
      serverUrl: server,
      identity: node.identity(),
      backend,
      telemetryIntervalMs: options.telemetryIntervalMs,
      logger,
      http,
      ...(options.token === undefined ? {} : { token: options.token, enrolmentToken: options.token }),
      telemetry: () => {
        const now = Date.now();
        node.advance(now - last, backend.active, now);
        last = now;
        return node.isSilent(now) ? undefined : node.telemetry(now);
      },
    });
  });
  await Promise.all(agents.map((a) => a.start()));
  let refused = 0;
  const load: LoadGenerator | undefined =
    options.rate > 0
      ? startLoad({
          rate: options.rate,
          geozones: [options.geozone],
          random,
          logger,
          submit: async (request) => {
            const response = await http.fetch(new URL('/api/v1/inference', server), { method: 'POST', headers: { 'content-type': 'application/json', ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }) }, body: JSON.stringify(request) });
            // 503 is the server saying no node fits or it is shedding load: expected under a simulation. Anything else 4xx/5xx is a bug worth seeing.
            if (response.status >= 400 && response.status !== 503) {
              refused++;
              if (refused === 1 || refused % 1000 === 0) logger.warn({ status: response.status, body: await response.text(), refused }, 'the server refused a simulated request');
              return;
            }
            await response.body?.cancel();
          },
        })
      : undefined;
  return {
    agents: agents.length,
    stop: async () => {
      await load?.stop();
      await Promise.all(agents.map((a) => a.stop()));
      await http.close();
    },
  };
}

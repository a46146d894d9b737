/**
 * `arcnet simulate`: simulated nodes as agents of a running server (`--server`,
 * `src/main/simulate-agents.ts`), or on the Kafka bus directly (`--kafka`, the simulator process of
 * `src/main/roles.ts`), each with an inference load.
 */
import type { Command } from 'commander';
import { createLogger } from '../../core/logging.ts';
import { stopOnSignal } from '../lifecycle.ts';
import { int, list, logLevelOption, usage } from '../options.ts';
import { resolveRole, runRole } from './roles.ts';
import { clientTlsConfig, withClientTlsOptions, type TlsFlags } from '../tls-options.ts';
import { clientKey } from '../client-key.ts';

interface SimulateFlags extends TlsFlags {
  server?: string;
  kafka?: string | true;
  config?: string;
  nodes: number;
  geozone: string;
  rate: number;
  seed: number;
  telemetryInterval: number;
  logLevel: string;
  token?: string;
}

export function registerSimulate(program: Command): void {
  withClientTlsOptions(program.command('simulate'))
    .description('simulate nodes as agents of a running server (--server), or on the Kafka bus directly (--kafka), with an inference load')
    .option('--server <url>', 'ArcNet server, e.g. http://127.0.0.1:8080: nodes connect as agents, requests go to its API')
    .option('--kafka [servers]', 'instead of --server: telemetry and requests straight onto Kafka, dispatches read from it (default $KAFKA_BOOTSTRAP_SERVERS)')
    .option('--config <file>', 'JSON config file for --kafka (docs/configuration.md)')
    .option('--nodes <n>', 'simulated nodes', int('--nodes', 1), 20)
    .option('--geozone <zone>', 'geozone of the nodes', 'CAISO')
    .option('--rate <n>', 'inference requests per second sent to the API (0 for none)', int('--rate'), 0)
    .option('--seed <n>', 'seed', int('--seed'), 7)
    .option('--telemetry-interval <ms>', 'telemetry period', int('--telemetry-interval', 100), 10_000)
    .option('--token <key>', 'with --server: operator key or enrolment token the nodes enrol with and the load is sent with (default $ARCNET_TOKEN, then .arcnet/operator.key)')
    .addOption(logLevelOption('warn', 'log level'))
    .action(async (opts: SimulateFlags) => {
      if (opts.kafka !== undefined) {
        if (opts.tlsCa !== undefined || opts.tlsCert !== undefined || opts.tlsKey !== undefined) throw usage('--tls-ca, --tls-cert and --tls-key are for --server; on Kafka TLS is KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL with KAFKA_SSL_CA_LOCATION');
        const resolved = await resolveRole({ ...opts, geozone: list(opts.geozone) }, 'simulate');
        const [{ resolveEngines }, { startSimulatorProcess }] = await Promise.all([import('../../main/settings.ts'), import('../../main/roles.ts')]);
        const { kafka } = resolveEngines({ kafka: opts.kafka }, { required: false }, resolved.settings);
        if (!kafka) throw usage('simulate --kafka: no Kafka servers');
        const simulator = await startSimulatorProcess({ kafka, logger: resolved.logger, geozones: resolved.geozones, nodes: opts.nodes, rate: opts.rate, seed: opts.seed, telemetryIntervalMs: opts.telemetryInterval });
        runRole('simulate', simulator);
        return;
      }
      const server = opts.server;
      if (!server) throw usage('simulate: pass --server <url> (nodes as agents of a server) or --kafka (nodes on the bus)');
      const logger = createLogger({ level: opts.logLevel, name: 'arcnet-simulate' });
      const { startSimulatedAgents } = await import('../../main/simulate-agents.ts');
      const token = opts.token ?? (process.env['ARCNET_TOKEN']?.trim() || undefined) ?? clientKey();
      const simulation = await startSimulatedAgents({ ...clientTlsConfig(opts), server, nodes: opts.nodes, geozone: opts.geozone, rate: opts.rate, seed: opts.seed, telemetryIntervalMs: opts.telemetryInterval, logger , ...(token === undefined ? {} : { token }) });
      process.stdout.write(`simulating ${simulation.agents} nodes in ${opts.geozone} against ${server}${opts.rate > 0 ? ` with ${opts.rate} req/s` : ''}; Ctrl-C stops\n`);
      stopOnSignal('arcnet simulate', simulation, { stoppedLine: 'stopped.' });
    });
}

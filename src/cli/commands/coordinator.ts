/** `arcnet coordinator`: the verified-jobs coordinator and its API alone (seed 004); workers join with `arcnet agent --worker`. */
import type { Command } from 'commander';
import { createLogger } from '../../core/logging.ts';
import { withDefaults } from '../../main/config.ts';
import { colour } from '../format.ts';
import { startOrExplain, portInUse, stopOnSignal } from '../lifecycle.ts';
import { corsOriginsOf, jobConfig, logLevelOption, withJobOptions, withServerOptions, type JobFlags, type ServerFlags } from '../options.ts';
import { commandSettings } from '../settings.ts';
import { serverTlsConfig, tlsBanner, withServerTlsOptions, type TlsFlags } from '../tls-options.ts';
import { accessLine, dataDirOf, externalEngines, stateWhere } from './up.ts';
import { join } from 'node:path';
import { DEFAULT_CONFIG } from '../../main/config.ts';
import { OPERATOR_KEY_FILE } from '../../main/modules/access.ts';

export function registerCoordinator(program: Command): void {
  withJobOptions(
    withServerTlsOptions(withServerOptions(program.command('coordinator')))
      .description('run the verified-jobs coordinator and its API (seed 004) without the inference roles; workers join with arcnet agent --worker --no-inference')
      .addOption(logLevelOption(undefined, 'log level (logs go to stderr; default $LOG_LEVEL or info)')),
  ).action(async (opts: JobFlags & ServerFlags & TlsFlags & { logLevel?: string }) => {
    const { settings, applied } = await commandSettings(opts.config);
    const logger = createLogger({ level: opts.logLevel ?? applied.logLevel ?? 'info' });
    const config = withDefaults({ ...serverTlsConfig(opts, applied.tls), host: opts.host, port: opts.port, dataDir: dataDirOf(opts, applied.dataDir), jobs: jobConfig(opts, applied), external: await externalEngines(opts, settings) });
    const { startCoordinatorProcess } = await import('../../main/roles.ts');
    const access = { insecure: opts.insecureNoAuth, operatorKeyFile: opts.memory ? null : join(config.dataDir ?? DEFAULT_CONFIG.dataDir ?? '.arcnet', OPERATOR_KEY_FILE), ratePerMinute: opts.rateLimit };
    const coordinator = await startOrExplain(portInUse('port', config.port, config.host), () => startCoordinatorProcess({ ...config, logger, access, corsOrigins: corsOriginsOf(opts.corsOrigin, applied) }));
    process.stdout.write(
      `${colour('arcnet coordinator', 'bold')}: verified batch jobs, state ${stateWhere(config)}\n` +
        `  API: ${coordinator.url}  (POST/GET /api/v1/jobs, /api/v1/nodes, /stats, /health, /ready, /metrics; workers: arcnet agent --worker --no-inference --server ${coordinator.url})\n` +
        `  ${access.insecure ? accessLine(undefined, null) : `operator key in ${access.operatorKeyFile ?? 'memory'}`}\n`,
    );
    process.stdout.write(tlsBanner(config.tls));
    stopOnSignal('arcnet', coordinator, { stoppedLine: 'stopped; state is consistent.', logger });
  });
}

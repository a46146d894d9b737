#!/usr/bin/env node
/**
 * `arcnet`: one binary, one subcommand per role or question. Each command lives in its own file
 * under `src/cli/commands/` (the jobs commands in `jobs-commands.ts`), parses its flags and calls
 * into `src/main/`. Errors end in a non-zero exit and one line on stderr saying what was wrong.
 */
import { Command } from 'commander';
import { errorMessage } from '../core/errors.ts';
import { VERSION } from '../main/version.ts';
import { UsageError, usage } from './options.ts';
import { registerUp } from './commands/up.ts';
import { registerCoordinator } from './commands/coordinator.ts';
import { registerAgent } from './commands/agent.ts';
import { registerSimulate } from './commands/simulate.ts';
import { registerNodes } from './commands/nodes.ts';
import { registerStats } from './commands/stats.ts';
import { registerGlobal } from './commands/global.ts';
import { registerExplain } from './commands/explain.ts';
import { registerToken } from './commands/token.ts';
import { registerAudit } from './commands/audit.ts';
import { registerRoleCommands } from './commands/roles.ts';
import { registerJobCommands } from './jobs-commands.ts';
import { registerTrain } from './commands/train.ts';
import { registerServices } from './commands/services.ts';

const program = new Command();
program.name('arcnet').description('ArcNet: control plane for a heterogeneous compute mesh').version(VERSION).showHelpAfterError(false);

registerUp(program);
registerCoordinator(program);
registerAgent(program);
registerSimulate(program);
registerNodes(program);
registerStats(program);
registerGlobal(program);
registerExplain(program);
registerToken(program);
registerAudit(program);
registerJobCommands(program, usage);
registerTrain(program);
registerServices(program);
registerRoleCommands(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`arcnet: ${errorMessage(error)}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});

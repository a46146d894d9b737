/** A command's settings, loaded once (`src/main/settings.ts`); what is accepted but not used yet is said in one line on stderr. */
import type { AppliedSettings, Settings } from '../main/settings.ts';

export interface CommandSettings {
  readonly settings: Settings;
  readonly applied: AppliedSettings;
}

export async function commandSettings(config: string | undefined): Promise<CommandSettings> {
  const { loadSettings, appliedSettings, notUsedWarning } = await import('../main/settings.ts');
  const settings = loadSettings(config);
  const warning = notUsedWarning(settings);
  if (warning) process.stderr.write(`arcnet: ${warning}\n`);
  return { settings, applied: appliedSettings(settings) };
}

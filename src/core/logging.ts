import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(options: { level?: string; name?: string; destination?: number } = {}): Logger {
  return pino(
    { level: options.level ?? process.env['LOG_LEVEL'] ?? 'info', name: options.name ?? 'arcnet', base: undefined },
    pino.destination({ dest: options.destination ?? 2, sync: false }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });

/** Polls a probe until it yields something truthy, which it returns; fails naming what it waited for. */
export interface UntilOptions {
  readonly intervalMs?: number;
  /** Treat a probe that throws (a server not up yet) as "not yet" rather than a failure. */
  readonly retryOnError?: boolean;
}

export async function until<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what = 'the condition',
  timeoutMs = 10_000,
  options: UntilOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      if (!options.retryOnError) throw error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 5));
  }
}

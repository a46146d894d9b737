/**
 * The spawns a slice runtime has under way, by instance id, shared by the process and container
 * runtimes: a second spawn of the same instance is refused, and a stop or close waits for a spawn in
 * flight rather than missing the instance it is about to create.
 */
import type { SpawnOutcome } from './ports.ts';

export class SpawnsUnderWay {
  private readonly pending = new Map<string, Promise<SpawnOutcome>>();

  has(instanceId: string): boolean {
    return this.pending.has(instanceId);
  }

  /** Runs `start` for the instance, known as under way until it settles. */
  async run(instanceId: string, start: () => Promise<SpawnOutcome>): Promise<SpawnOutcome> {
    const outcome = start();
    this.pending.set(instanceId, outcome);
    try {
      return await outcome;
    } finally {
      this.pending.delete(instanceId);
    }
  }

  /** Resolves once the instance's spawn, if one is under way, has settled (either way). */
  async settled(instanceId: string): Promise<void> {
    await this.pending.get(instanceId)?.catch(() => undefined);
  }

  /** Resolves once every spawn under way has settled. */
  async allSettled(): Promise<void> {
    await Promise.allSettled([...this.pending.values()]);
  }
}

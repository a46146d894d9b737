/**
 * A TransferJournal on disk, one JSON file per transfer, for tests that kill a mover's process and
 * start another: what the first saved must be there for the second, as the KV store keeps it for the
 * bridge. Each save is written to a temporary file, fsynced and renamed, so a kill leaves the old
 * notes or the new ones.
 */
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { TransferJournal } from '../../src/training/ports.ts';

export class FileJournal implements TransferJournal {
  private readonly directory: string;

  constructor(directory: string) {
    this.directory = directory;
  }

  private file(transferId: string): string {
    return join(this.directory, `${encodeURIComponent(transferId)}.json`);
  }

  async load(transferId: string): Promise<Readonly<Record<string, unknown>> | undefined> {
    try {
      return JSON.parse(await readFile(this.file(transferId), 'utf8')) as Record<string, unknown>;
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async save(transferId: string, notes: Readonly<Record<string, unknown>>): Promise<void> {
    const temporary = `${this.file(transferId)}.tmp`;
    const handle = await open(temporary, 'w');
    try {
      await handle.writeFile(JSON.stringify(notes));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, this.file(transferId));
  }
}

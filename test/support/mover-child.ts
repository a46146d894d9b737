/**
 * A data mover in a process of its own, for the contract's kill test: the parent starts this, waits
 * until the transfer is under way, and SIGKILLs it, as the e2e kills the bridge. Argument 1
 * is JSON: `{ mover: 'posix' | 'globus', options, journalDir, spec }`. Prints one line per progress
 * event (`progress <json>`) and, if it lives that long, `outcome <json>`.
 */
import { FileJournal } from './file-journal.ts';
import type { DataMover, TransferSpec } from '../../src/training/ports.ts';

interface ChildConfig {
  readonly mover: 'posix' | 'globus';
  readonly options: Record<string, unknown>;
  readonly journalDir: string;
  readonly spec: TransferSpec;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
const journal = new FileJournal(config.journalDir);
// Imported by name so that one adapter's child does not load the other.
let mover: DataMover;
if (config.mover === 'posix') {
  const { PosixDataMover } = await import('../../src/training/posix-mover.ts');
  mover = new PosixDataMover({ ...config.options, journal });
} else {
  const { GlobusDataMover } = await import('../../src/training/globus-mover.ts');
  mover = new GlobusDataMover({ ...(config.options as unknown as ConstructorParameters<typeof GlobusDataMover>[0]), journal });
}
const outcome = await mover.transfer(config.spec, { onProgress: (p) => process.stdout.write(`progress ${JSON.stringify(p)}\n`) });
process.stdout.write(`outcome ${JSON.stringify(outcome)}\n`);

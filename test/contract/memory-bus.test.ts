import { busContract } from './bus.contract.ts';
import { MemoryBus } from '../../src/bus/memory.ts';

busContract('memory', async () => new MemoryBus({ retryBaseMs: 5, retryCapMs: 20 }));

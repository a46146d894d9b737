/**
 * The transactional floor's middle (bench/kafka.ts, section 5 part a), in its own process as the
 * scheduler is: a KafkaBus.consumeTransactional member that copies each batch of one topic to
 * another in one transaction with its offsets, routing's transaction with nothing routed.
 * Usage: node bench/floor-copier.ts <from> <to> <group>; prints "copying" once consuming, stops on SIGTERM.
 */
import { KafkaBus } from '../src/bus/kafka.ts';
import { kafkaServers } from '../test/support/kafka.ts';

const [from, to, group] = process.argv.slice(2);
if (!from || !to || !group) {
  console.error('usage: node bench/floor-copier.ts <from> <to> <group>');
  process.exit(2);
}
const kafka = new KafkaBus({ bootstrapServers: kafkaServers(), clientId: `arcnet-bench-copier-${group}` });
const copier = await kafka.consumeTransactional({
  group,
  topics: [from],
  transactionalId: group,
  startAt: 'latest',
  handler: (records, output) => {
    output.produce(to, records.map((r) => ({ key: r.key, value: r.value, headers: r.headers })));
    return Promise.resolve();
  },
});
console.log('copying');
process.once('SIGTERM', () => {
  void (async () => {
    await copier.close();
    await kafka.close();
    process.exit(0);
  })();
});

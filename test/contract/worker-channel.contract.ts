/**
 * WorkerChannel contract (`src/jobs/ports.ts`): what the coordinator may rely on from whatever
 * carries its work to workers. Run against the API's push sessions (`WorkerGateway` behind the real
 * route, with `ws` clients connecting as `src/agent/worker.ts` does) and against the in-memory
 * channel the coordinator's own tests use (`test/support/worker-channel.ts`), so that fake cannot
 * promise the coordinator more than the real thing delivers.
 *
 * What the port promises, and what the coordinator builds on:
 * - `offer` pushes to the worker's live session and returns true, or returns false when the worker has
 *   none (the coordinator then counts on the worker polling pending-jobs, or on its next session);
 * - `cancel` reaches a connected worker, and is a silent no-op without a session;
 * - work for one worker never reaches another, and arrives whole and in the order offered;
 * - one live session per worker: a newer session replaces the older one, which is closed and never
 *   sent work again; the older one's close does not take the newer one down;
 * - a session that ended (closed, or dropped without a goodbye) takes no more offers;
 * - every new session is announced (`connected`), which is when the coordinator re-offers a worker
 *   everything it should be running; a worker's acknowledgement is passed on with its node id.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { WorkerSessionHooks } from '../../src/api/worker-gateway.ts';
import type { ExecutionAssignment } from '../../src/jobs/model.ts';
import type { WorkerChannel } from '../../src/jobs/ports.ts';
import { until } from '../support/until.ts';

/** What a worker received on its session, less protocol chatter (welcome, errors). */
export type Delivered =
  | { readonly kind: 'execution'; readonly assignment: ExecutionAssignment }
  | { readonly kind: 'cancel'; readonly executionId: string; readonly reason: string };

/** One worker's session, seen from the worker's side. */
export interface WorkerSession {
  /** What arrived on this session, in order. */
  readonly received: readonly Delivered[];
  /** Resolves once the session is closed, by either side. */
  readonly closed: Promise<void>;
  /** Tells the channel the worker has an execution (the push session's ack). */
  ack(executionId: string): void;
  /** Ends the session as a stopping worker does; resolves once the worker saw it closed. */
  disconnect(): Promise<void>;
  /** The connection is gone without a goodbye (a killed worker, a cut link). */
  drop(): void;
}

export interface WorkerChannelHarness {
  /** The channel under test, with the session hooks the coordinator binds. */
  readonly channel: WorkerChannel & { bind(hooks: WorkerSessionHooks): void };
  /** A worker the channel will take a session from (registered, where the channel asks for that). */
  newWorker(): Promise<string>;
  /** Opens a session for the worker as a worker process does; resolves once the channel holds it. */
  connect(nodeId: string): Promise<WorkerSession>;
  close(): Promise<void>;
}

function assignment(label: string): ExecutionAssignment {
  return {
    execution_id: randomUUID(),
    job_id: randomUUID(),
    docker_image: 'arcnet/busybox:test',
    command: ['sh', '-c', `echo ${label}`],
    environment: { LABEL: label, EMPTY: '' },
    input_data: `input of ${label}\n`,
    required_cpu: 0.5,
    required_memory: 128,
    required_gpu: false,
    network: false,
    timeout_seconds: 60,
  };
}

const executions = (session: WorkerSession): ExecutionAssignment[] => session.received.flatMap((d) => (d.kind === 'execution' ? [d.assignment] : []));

/** Waits until the session holds `count` deliveries; a longer list fails the test where it is read. */
const received = (session: WorkerSession, count: number, what: string): Promise<readonly Delivered[]> =>
  until(() => (session.received.length >= count ? session.received : undefined), what, 5_000);

export function workerChannelContract(name: string, open: () => Promise<WorkerChannelHarness>): void {
  describe(`WorkerChannel contract: ${name}`, () => {
    let harness: WorkerChannelHarness;
    let connected: string[];
    let acknowledged: { nodeId: string; executionId: string }[];
    beforeEach(async () => {
      harness = await open();
      connected = [];
      acknowledged = [];
      harness.channel.bind({
        connected: (nodeId) => void connected.push(nodeId),
        acknowledged: async (nodeId, executionId) => void acknowledged.push({ nodeId, executionId }),
      });
    });
    afterEach(async () => {
      await harness.close();
    });

    it('refuses an offer to a worker without a session (false), and it reaches no one', async () => {
      const [absent, present] = [await harness.newWorker(), await harness.newWorker()];
      const session = await harness.connect(present);
      expect(harness.channel.offer(absent, assignment('for the absent worker'))).toBe(false);
      expect(harness.channel.offer(randomUUID(), assignment('for a worker never heard of'))).toBe(false);
      // Sessions deliver in order: had the refused offers gone anywhere here, they would come first.
      const marker = assignment('marker');
      expect(harness.channel.offer(present, marker)).toBe(true);
      await received(session, 1, 'the marker');
      expect(session.received).toEqual([{ kind: 'execution', assignment: marker }]);
    });

    it('delivers offers to a connected worker whole and in order, and says so (true)', async () => {
      const worker = await harness.newWorker();
      const session = await harness.connect(worker);
      const offered = ['first', 'second', 'third'].map(assignment);
      for (const one of offered) expect(harness.channel.offer(worker, one)).toBe(true);
      await received(session, 3, 'three executions');
      expect(session.received).toEqual(offered.map((one) => ({ kind: 'execution', assignment: one })));
    });

    it('keeps workers apart: an offer reaches only the worker it names', async () => {
      const [a, b] = [await harness.newWorker(), await harness.newWorker()];
      const [sa, sb] = [await harness.connect(a), await harness.connect(b)];
      const [a1, b1, a2] = [assignment('a1'), assignment('b1'), assignment('a2')];
      expect(harness.channel.offer(a, a1)).toBe(true);
      expect(harness.channel.offer(b, b1)).toBe(true);
      expect(harness.channel.offer(a, a2)).toBe(true);
      await received(sa, 2, "a's two executions");
      await received(sb, 1, "b's execution");
      expect(executions(sa)).toEqual([a1, a2]);
      expect(executions(sb)).toEqual([b1]);
    });

    it('delivers a cancel to a connected worker; without a session a cancel is a silent no-op', async () => {
      const [absent, present] = [await harness.newWorker(), await harness.newWorker()];
      const session = await harness.connect(present);
      expect(() => harness.channel.cancel(absent, randomUUID(), 'superseded')).not.toThrow();
      const executionId = randomUUID();
      harness.channel.cancel(present, executionId, 'superseded: consensus was reached without it');
      await received(session, 1, 'the cancel');
      expect(session.received).toEqual([{ kind: 'cancel', executionId, reason: 'superseded: consensus was reached without it' }]);
    });

    it('takes no more offers once the worker disconnected, and takes them again on its next session', async () => {
      const worker = await harness.newWorker();
      const first = await harness.connect(worker);
      expect(harness.channel.offer(worker, assignment('before'))).toBe(true);
      await received(first, 1, 'the offer before the disconnect');
      await first.disconnect();
      expect(harness.channel.offer(worker, assignment('after'))).toBe(false);
      expect(() => harness.channel.cancel(worker, randomUUID(), 'superseded')).not.toThrow();
      const second = await harness.connect(worker);
      const again = assignment('again');
      expect(harness.channel.offer(worker, again)).toBe(true);
      await received(second, 1, 'the offer on the next session');
      expect(second.received).toEqual([{ kind: 'execution', assignment: again }]);
      expect(first.received).toHaveLength(1);
    });

    it('stops offering to a session whose connection dropped without a close, once it notices', async () => {
      const worker = await harness.newWorker();
      const session = await harness.connect(worker);
      session.drop();
      await until(() => !harness.channel.offer(worker, assignment('probe')), 'offers to the dropped session to return false', 5_000, { intervalMs: 20 });
    });

    it('replaces an older session by a newer one: the older is closed and sent nothing, and its close leaves the newer one in place', async () => {
      const worker = await harness.newWorker();
      const older = await harness.connect(worker);
      let olderClosed = false;
      void older.closed.then(() => (olderClosed = true));
      const newer = await harness.connect(worker);
      await until(() => olderClosed, 'the older session to be closed', 5_000);
      const first = assignment('to the newer session');
      expect(harness.channel.offer(worker, first)).toBe(true);
      // The older session's close may be processed after it was replaced: the newer one must survive it.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const second = assignment('still to the newer session');
      expect(harness.channel.offer(worker, second)).toBe(true);
      await received(newer, 2, 'both offers on the newer session');
      expect(executions(newer)).toEqual([first, second]);
      expect(older.received).toEqual([]);
    });

    it('announces every new session (when the coordinator re-offers) and passes acknowledgements on with the node id', async () => {
      const [a, b] = [await harness.newWorker(), await harness.newWorker()];
      const sa = await harness.connect(a);
      await harness.connect(b);
      expect(connected).toEqual([a, b]);
      await sa.disconnect();
      const again = await harness.connect(a);
      expect(connected).toEqual([a, b, a]);
      const executionId = randomUUID();
      again.ack(executionId);
      await until(() => acknowledged.length > 0, 'the acknowledgement', 5_000);
      expect(acknowledged).toEqual([{ nodeId: a, executionId }]);
    });
  });
}

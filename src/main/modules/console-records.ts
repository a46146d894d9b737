/**
 * What the inference module keeps for the console's REST routes beside the tracker: the system
 * events since boot (`/api/v1/events`), each zone's latest RegionalSummary (`/api/v1/zones`), and the
 * decision records "why this node" is recomputed from (`/api/v1/inference/:id/explain`). All of it is
 * fed by the tracker's listeners or one bus subscription; nothing here is on the routing path.
 */
import { Counter } from 'prom-client';
import { topics } from '../../contracts/topics.ts';
import type { Consumer } from '../../bus/ports.ts';
import type { InferenceTracker } from '../../inference/tracker.ts';
import { DecisionLog } from '../../inference/decision-log.ts';
import type { InferenceProfileConfig } from '../../inference/profile.ts';
import type { ArcMetrics } from '../../api/metrics.ts';
import { EventLog } from '../../api/event-log.ts';
import type { RecordStore } from '../../store/ports.ts';
import type { BusEngines } from '../engines.ts';

export interface ConsoleRecords {
  readonly events: EventLog;
  /** Absent where the process has no store. */
  readonly decisions: DecisionLog | undefined;
  readonly placement: InferenceProfileConfig | undefined;
  stop(): Promise<void>;
}

export interface ConsoleRecordOptions {
  readonly metrics: ArcMetrics;
  readonly records: RecordStore | undefined;
  readonly placement?: InferenceProfileConfig;
}

/** Adds its listeners to the tracker (call before the tracker starts) and subscribes to the summaries. */
export async function startConsoleRecords(engines: BusEngines, tracker: InferenceTracker, options: ConsoleRecordOptions): Promise<ConsoleRecords> {
  const { bus, clock, logger, instanceId } = engines;
  const { metrics } = options;
  const events = new EventLog(clock.now());
  tracker.addListener(events.listener());
  tracker.addListener(metrics.zones.listener());
  let decisions: DecisionLog | undefined;
  if (options.records) {
    const dropped = new Counter({ name: 'arcnet_decision_records_dropped_total', help: 'Routing decision records dropped unwritten because the store fell behind', registers: [metrics.registry] });
    decisions = new DecisionLog({ records: options.records, logger, instanceId, onDropped: (count) => dropped.inc(count) });
    tracker.addListener(decisions.listener());
    decisions.start();
  }
  // Its own group from the newest record: the latest summary of each zone from now on (one a minute).
  const summaries: Consumer = await bus.subscribe(`${instanceId}-zone-summaries`, [topics.regionalSummary], 'RegionalSummary', (summary) => metrics.zones.summary(summary), { startAt: 'latest' });
  return {
    events,
    decisions,
    placement: options.placement,
    stop: async () => {
      await summaries.close();
      await decisions?.stop();
    },
  };
}

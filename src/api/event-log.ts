/**
 * The system events (`arc.event.system`) this server has seen since it started, newest first, for
 * `GET /api/v1/events`: a ring of the last 5,000, fed by the tracker's event listener (which reads the
 * topic from its newest record at start-up). Older events are on the bus for its retention; this is
 * what a console lists and filters, not an archive, and the answer says since when it holds them.
 */
import type { Severity, SystemEvent } from '../contracts/messages.ts';
import type { TrackerListener } from '../inference/tracker.ts';

export const EVENT_LOG_CAPACITY = 5_000;

export interface EventFilter {
  readonly severity?: Severity;
  readonly geozone?: string;
  /** Case-insensitive, over the message and the kind. */
  readonly q?: string;
  readonly limit: number;
}

export interface EventPage {
  /** When this log started listening: no event before it is here. */
  readonly since: number;
  /** Events held now (at most the capacity), and how many older ones the ring has let go. */
  readonly held: number;
  readonly dropped: number;
  readonly events: SystemEvent[];
}

export class EventLog {
  private readonly ring: (SystemEvent | undefined)[];
  private next = 0;
  private size = 0;
  private droppedCount = 0;
  readonly since: number;

  constructor(since: number, capacity = EVENT_LOG_CAPACITY) {
    this.since = since;
    this.ring = new Array<SystemEvent | undefined>(capacity);
  }

  add(event: SystemEvent): void {
    if (this.size === this.ring.length) this.droppedCount++;
    else this.size++;
    this.ring[this.next] = event;
    this.next = (this.next + 1) % this.ring.length;
  }

  listener(): TrackerListener {
    return { event: (event) => this.add(event) };
  }

  /** Newest first (in arrival order, which is the bus's order for one partition), filtered. */
  query(filter: EventFilter): EventPage {
    const needle = filter.q?.toLowerCase();
    const events: SystemEvent[] = [];
    for (let i = 1; i <= this.size && events.length < filter.limit; i++) {
      const event = this.ring[(this.next - i + this.ring.length) % this.ring.length]!;
      if (filter.severity !== undefined && event.severity !== filter.severity) continue;
      if (filter.geozone !== undefined && event.geozone !== filter.geozone) continue;
      if (needle !== undefined && !event.message.toLowerCase().includes(needle) && !event.kind.toLowerCase().includes(needle)) continue;
      events.push(event);
    }
    return { since: this.since, held: this.size, dropped: this.droppedCount, events };
  }
}

/**
 * The live status line of `arcnet up`: nodes online per zone, requests/s, routing p50/p99,
 * rejections. Redrawn in place on a terminal; a plain line every 10 s otherwise (logs, CI).
 */
import type { EmbeddedSystem } from '../main/embedded.ts';
import { colour } from './format.ts';

export function statusLine(system: EmbeddedSystem): string {
  const zones = system.config.geozones.map((zone) => {
    let online = 0;
    let total = 0;
    for (const node of system.aggregator.registry.all()) {
      if (node.geozone !== zone) continue;
      total++;
      if (node.status !== 'offline') online++;
    }
    return `${zone} ${online}/${total}`;
  });
  const m = system.metrics;
  const [p50, p99] = m.decisionSamples.percentiles(50, 99);
  const ms = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '-' : v < 1 ? `${(v * 1000).toFixed(0)}µs` : `${v.toFixed(2)}ms`);
  const agents = system.gateway.sessions > 0 ? ` | agents ${system.gateway.sessions}` : '';
  return [
    `nodes ${zones.join(' ')}`,
    `${m.requestRate.perSecond().toFixed(1)} req/s`,
    `route p50 ${ms(p50)} p99 ${ms(p99)}`,
    `done ${m.totals.completed} failed ${m.totals.failed}`,
    `rejected ${m.totals.rejected > 0 ? colour(String(m.totals.rejected), 'yellow') : '0'}`,
  ].join(' | ') + agents;
}

export function startStatusLine(system: EmbeddedSystem, stream: NodeJS.WriteStream = process.stdout): () => void {
  const tty = Boolean(stream.isTTY);
  const timer = setInterval(
    () => {
      const line = statusLine(system);
      if (tty) stream.write(`\r\x1b[2K${line}`);
      else stream.write(`${new Date().toISOString()} ${line}\n`);
    },
    tty ? 1_000 : 10_000,
  );
  timer.unref();
  return () => {
    clearInterval(timer);
    if (tty) stream.write('\n');
  };
}

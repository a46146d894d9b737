/** Seed 004's stat cards: nodes, resources, jobs. */
import { integer } from '../../lib/format.ts';
import { readStats, STAT_LABELS, type StatName } from './stats.ts';

export function StatCards({ stats }: { stats: unknown }) {
  const figures = readStats(stats);
  return (
    <div className="stat-cards">
      {(Object.keys(STAT_LABELS) as StatName[]).map((name) => (
        <div key={name} className={`card stat-card stat-${name}`} data-testid="stat-card" data-stat={name} data-value={figures[name] ?? ''}>
          <span className="stat-value">{integer(figures[name])}</span>
          <span className="stat-label">{STAT_LABELS[name]}</span>
        </div>
      ))}
    </div>
  );
}

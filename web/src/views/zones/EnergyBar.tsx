/** A zone's nodes by energy source: a stacked bar and the counts in words. */
const SOURCES = ['cogen', 'grid', 'battery'] as const;

export function EnergyBar({ energy }: { energy: Readonly<Record<string, number>> }) {
  const total = SOURCES.reduce((sum, source) => sum + (energy[source] ?? 0), 0);
  return (
    <span className="energy-cell">
      <span className="stack" aria-hidden="true">
        {SOURCES.map((source) => (
          <span key={source} className={`energy-${source}`} style={{ width: `${total > 0 ? ((energy[source] ?? 0) / total) * 100 : 0}%` }} />
        ))}
      </span>
      <span className="energy-text">{SOURCES.map((source) => `${source} ${energy[source] ?? 0}`).join(' · ')}</span>
    </span>
  );
}

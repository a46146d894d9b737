/** A candidate's weighted score terms as small bars, scaled to the largest term on the panel. */
export function TermBars({ terms, scale }: { terms: Readonly<Record<string, number>>; scale: number }) {
  return (
    <ul className="terms">
      {Object.entries(terms).map(([name, value]) => (
        <li key={name} data-term={name} data-value={value}>
          <span className="term-name">{name}</span>
          <span className="term-bar" aria-hidden="true">
            <span className={value < 0 ? 'negative' : ''} style={{ width: `${scale > 0 ? Math.min(100, (Math.abs(value) / scale) * 100) : 0}%` }} />
          </span>
          <span className="term-value num">{value.toFixed(1)}</span>
        </li>
      ))}
    </ul>
  );
}

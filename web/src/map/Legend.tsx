/** What the map's colours and rings mean. */
export function Legend() {
  return (
    <ul className="legend" aria-label="Legend">
      <li><span className="swatch energy-cogen" />cogen</li>
      <li><span className="swatch energy-grid" />grid</li>
      <li><span className="swatch energy-battery" />battery</li>
      <li><span className="swatch status-offline" />offline</li>
      <li><span className="ring status-busy" />busy / reserved</li>
      <li><span className="ring gpu" />ring: GPU use</li>
      <li><span className="line priority-critical" />critical</li>
      <li><span className="line priority-normal" />normal</li>
      <li><span className="line priority-background" />background</li>
      <li><span className="line dashed" />forwarded</li>
      <li><span className="cross">✕</span>rejected</li>
      <li><span className="line hpc" />HPC transfer</li>
    </ul>
  );
}

/**
 * One placement decision, inference or job: how many nodes each filter removed, then the best
 * candidates with their score terms, the chosen one marked.
 */
import { nodeHref } from '../../shell/route.ts';
import { TermBars } from './TermBars.tsx';

export interface DecisionCandidate {
  id: string;
  name: string;
  geozone?: string;
  score: number;
  terms: Readonly<Record<string, number>>;
  chosen: boolean;
}

interface DecisionProps {
  filters: readonly { name: string; removed: number }[];
  candidates: readonly DecisionCandidate[];
}

export function Decision({ filters, candidates }: DecisionProps) {
  const scale = Math.max(0, ...candidates.flatMap((c) => Object.values(c.terms).map(Math.abs)));
  return (
    <>
      <h3>Filters</h3>
      <table className="data compact">
        <thead><tr><th>Filter</th><th className="num">Removed</th></tr></thead>
        <tbody>
          {filters.map((filter) => (
            <tr key={filter.name} data-filter={filter.name} data-removed={filter.removed} className={filter.removed > 0 ? 'removed' : ''}>
              <td>{filter.name}</td>
              <td className="num">{filter.removed}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Candidates</h3>
      {candidates.length === 0 && <p className="muted">No node passed every filter.</p>}
      <ol className="candidates">
        {candidates.map((candidate) => (
          <li key={candidate.id} data-candidate={candidate.id} data-score={candidate.score} data-chosen={String(candidate.chosen)} className={candidate.chosen ? 'chosen' : ''}>
            <div className="candidate-head">
              <a href={nodeHref(candidate.id)}>{candidate.name || candidate.id.slice(0, 8)}</a>
              {candidate.geozone && <span className="badge">{candidate.geozone}</span>}
              {candidate.chosen && <span className="badge chosen-badge">chosen</span>}
              <span className="spacer" />
              <strong className="num">{candidate.score.toFixed(1)}</strong>
            </div>
            <TermBars terms={candidate.terms} scale={scale} />
          </li>
        ))}
      </ol>
    </>
  );
}

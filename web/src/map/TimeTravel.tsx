/** The time slider: live, or the mesh at a past moment of the last hour (asOf / knownAt). */
import type { TimeMode } from './history.ts';
import { dateTime } from '../lib/format.ts';

interface TimeTravelProps {
  mode: TimeMode;
  at: number;
  min: number;
  max: number;
  loading: boolean;
  error: string | null;
  onMode: (mode: TimeMode) => void;
  onAt: (at: number) => void;
}

export function TimeTravel({ mode, at, min, max, loading, error, onMode, onAt }: TimeTravelProps) {
  const minutesAgo = Math.round((max - at) / 60_000);
  return (
    <div className="time-travel" role="group" aria-label="Time travel">
      <label>
        <span className="sr-only">Time mode</span>
        <select data-testid="time-mode" value={mode} onChange={(e) => onMode(e.target.value as TimeMode)}>
          <option value="live">live</option>
          <option value="asOf">asOf: as it was</option>
          <option value="knownAt">knownAt: as known then</option>
        </select>
      </label>
      <input
        type="range"
        data-testid="time-slider"
        aria-label="Moment to show"
        min={min}
        max={max}
        step={1000}
        value={at}
        disabled={mode === 'live'}
        onChange={(e) => onAt(Number(e.target.value))}
      />
      <span className="time-label" aria-live="polite">
        {mode === 'live' ? 'now' : `${dateTime(new Date(at).toISOString())} (${minutesAgo} min ago)`}
        {loading && ' · loading…'}
        {error && <span className="error-text"> · {error}</span>}
      </span>
    </div>
  );
}

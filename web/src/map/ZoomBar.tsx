/** Zoom to one geozone, or back to the whole map. */
interface ZoomBarProps {
  zones: readonly string[];
  current: string;
  onZoom: (zone: string) => void;
}

export function ZoomBar({ zones, current, onZoom }: ZoomBarProps) {
  return (
    <div className="zoom-bar" role="group" aria-label="Zoom to a zone">
      {['all', ...zones].map((zone) => (
        <button key={zone} type="button" data-zoom-zone={zone} aria-pressed={current === zone} onClick={() => onZoom(zone)}>
          {zone === 'all' ? 'All zones' : zone}
        </button>
      ))}
    </div>
  );
}

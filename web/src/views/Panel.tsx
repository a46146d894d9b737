/** A side panel over the map, closed by its button or Esc (the console's keyboard handler). */
import { useEffect, useRef, type ReactNode } from 'react';

interface PanelProps {
  title: string;
  onClose: () => void;
  children: ReactNode;
}

export function Panel({ title, onClose, children }: PanelProps) {
  const ref = useRef<HTMLElement>(null);
  useEffect(() => {
    // Keyboard users land in the panel they opened.
    ref.current?.focus();
  }, []);
  return (
    <aside className="panel" ref={ref} tabIndex={-1} aria-label={title}>
      <header className="panel-head">
        <h2>{title}</h2>
        <button type="button" className="close" onClick={onClose} aria-label="Close (Esc)">✕</button>
      </header>
      <div className="panel-body">{children}</div>
    </aside>
  );
}

/**
 * A telemetry history chart (uPlot): GPU utilisation and battery level over the node's bitemporal
 * history versions. uPlot draws thousands of points in a millisecond and weighs 50 KB, which is
 * why it was chosen over a general charting library.
 */
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  label: string;
  /** A CSS custom property holding the colour, e.g. `--chart-gpu`. */
  colorVar: string;
  values: (number | null)[];
}

interface HistoryChartProps {
  title: string;
  /** Seconds since the epoch. */
  times: number[];
  series: ChartSeries[];
}

export function HistoryChart({ title, times, series }: HistoryChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const labels = series.map((s) => s.label).join('|');

  useEffect(() => {
    const element = box.current!;
    const style = getComputedStyle(document.documentElement);
    const axis = { stroke: style.getPropertyValue('--muted').trim(), grid: { stroke: style.getPropertyValue('--border').trim(), width: 1 }, ticks: { show: false } };
    const plot = new uPlot(
      {
        width: Math.max(200, element.clientWidth),
        height: 160,
        scales: { y: { range: [0, 100] } },
        axes: [axis, { ...axis, values: (_u, ticks) => ticks.map((t) => `${t} %`) }],
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: style.getPropertyValue(s.colorVar).trim() || '#58a6ff', width: 1.5, value: (_u: uPlot, v: number | null) => (v === null ? '–' : `${v.toFixed(0)} %`) }))],
        legend: { show: true },
      },
      [times, ...series.map((s) => s.values)],
      element,
    );
    chart.current = plot;
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(200, element.clientWidth), height: 160 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.destroy();
      chart.current = null;
    };
    // Rebuilt only when the series change, not when their data does (the effect below).
  }, [labels]);

  useEffect(() => {
    chart.current?.setData([times, ...series.map((s) => s.values)]);
  }, [times, series]);

  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} className="chart-box" role="img" aria-label={`${title}: ${times.length} points`} />
    </figure>
  );
}

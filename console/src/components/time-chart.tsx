import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const PALETTE = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2', '#65a30d', '#dc2626'];
const DASHES = [[], [6, 3], [2, 2], [8, 2, 2, 2]];

export interface Series {
  readonly label: string;
  readonly values: Array<number | null>;
}

/**
 * A time series chart (uPlot, canvas). Series differ in dash pattern as well as colour, and the
 * legend names them; the table beside the chart carries the same numbers for screen readers.
 */
export function TimeChart({ title, times, series, range }: { title: string; times: number[]; series: Series[]; range: readonly [number, number] }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const dark = matchMedia('(prefers-color-scheme: dark)').matches || document.documentElement.dataset['theme'] === 'dark';
    const axis = { stroke: dark ? '#cbd5e1' : '#334155', grid: { stroke: dark ? '#334155' : '#e2e8f0' } };
    const plot = new uPlot(
      {
        width: Math.max(280, el.clientWidth),
        height: 240,
        series: [
          {},
          ...series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length] ?? '#2563eb', width: 2, dash: DASHES[i % DASHES.length] ?? [] })),
        ],
        axes: [axis, axis],
        // The chosen range, not the data's: one busy minute in a day shows as one minute.
        scales: { x: { time: true, range: (): [number, number] => [range[0], range[1]] } },
      },
      [times, ...series.map((s) => s.values)],
      el,
    );
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 240 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [times, series, range[0], range[1]]);
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}: chart; the table below has the numbers`} />
    </figure>
  );
}

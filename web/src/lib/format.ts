/** Number and time formatting shared by the views: one way to print a percentage or an age. */

export const percent = (fraction: number | null | undefined, digits = 0): string =>
  fraction === null || fraction === undefined || Number.isNaN(fraction) ? '–' : `${(fraction * 100).toFixed(digits)} %`;

export const fixed = (value: number | null | undefined, digits = 1): string =>
  value === null || value === undefined || Number.isNaN(value) ? '–' : value.toFixed(digits);

export const integer = (value: number | null | undefined): string =>
  value === null || value === undefined || Number.isNaN(value) ? '–' : Math.round(value).toLocaleString('en-US');

export const ms = (value: number | null | undefined): string =>
  value === null || value === undefined ? '–' : value < 10 ? `${value.toFixed(2)} ms` : `${Math.round(value)} ms`;

export function clock(iso: string | null | undefined): string {
  if (!iso) return '–';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleTimeString('en-GB', { hour12: false });
}

export function dateTime(iso: string | null | undefined): string {
  if (!iso) return '–';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : `${date.toISOString().slice(0, 10)} ${date.toLocaleTimeString('en-GB', { hour12: false })}`;
}

export const shortId = (id: string | null | undefined): string => (id ? id.slice(0, 8) : '–');

/** Bytes in the unit that keeps three digits or so (1,000-based, as dataset sizes are given in GB). */
export function bytes(value: number | null | undefined): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = value;
  let unit = 0;
  while (Math.abs(v) >= 1000 && unit < units.length - 1) {
    v /= 1000;
    unit++;
  }
  return `${unit === 0 ? Math.round(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[unit]}`;
}

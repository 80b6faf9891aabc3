/** Percentile of an unsorted sample (nearest rank), in the sample's unit. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export function fmt(ms: number, digits = 3): string {
  return Number.isFinite(ms) ? ms.toFixed(digits) : 'n/a';
}

/** Order statistics for benchmark samples; inputs are milliseconds unless a caller says otherwise. */

/** Returns the value at quantile `q` (0..1) by linear interpolation between the closest ranks. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) throw new RangeError("quantile of no samples");

  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);

  return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - lower);
}

export function median(values: number[]): number {
  return quantile(values, 0.5);
}

export function p99(values: number[]): number {
  return quantile(values, 0.99);
}

/** Rounds to `digits` significant digits, so results.json stays readable. */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;

  return Number(value.toPrecision(digits));
}

/** Times one call of `fn` in milliseconds. */
export async function timed<T>(
  fn: () => Promise<T>,
): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await fn();

  return { ms: performance.now() - started, value };
}

/** Returns true when BENCH_QUICK=1 selects the short iteration mode. */
export function quickMode(): boolean {
  return Deno.env.get("BENCH_QUICK") === "1";
}

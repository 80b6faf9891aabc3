/** One reading of a monotonic counter; value null when the scrape did not carry it. */
export interface CounterReading {
  readonly value: number | null;
  readonly atMs: number;
}

/**
 * Tokens per second between two readings of a monotonic counter. A drop means the engine
 * restarted and the counter began again from 0, so the increase is the new value itself (as
 * Prometheus' rate() treats resets). Null when either value is missing or time did not advance.
 */
export function counterRate(prev: CounterReading | undefined, next: CounterReading): number | null {
  if (prev === undefined || prev.value === null || next.value === null) return null;
  const seconds = (next.atMs - prev.atMs) / 1000;
  if (!(seconds > 0)) return null;
  const increase = next.value >= prev.value ? next.value - prev.value : next.value;
  return increase / seconds;
}

export interface TokenRates {
  readonly promptTokensPerSecond: number | null;
  readonly generationTokensPerSecond: number | null;
}

interface Totals {
  readonly promptTokensTotal: number | null;
  readonly generationTokensTotal: number | null;
}

/**
 * Rates from successive EngineSamples. A missing value does not replace the last good reading, so
 * after a failed scrape the next rate spans the whole gap instead of being lost.
 */
export class TokenRateTracker {
  private prompt: CounterReading | undefined;
  private generation: CounterReading | undefined;

  update(sample: Totals, atMs: number): TokenRates {
    const prompt: CounterReading = { value: sample.promptTokensTotal, atMs };
    const generation: CounterReading = { value: sample.generationTokensTotal, atMs };
    const rates = {
      promptTokensPerSecond: counterRate(this.prompt, prompt),
      generationTokensPerSecond: counterRate(this.generation, generation),
    };
    if (prompt.value !== null && (this.prompt === undefined || atMs > this.prompt.atMs)) this.prompt = prompt;
    if (generation.value !== null && (this.generation === undefined || atMs > this.generation.atMs)) {
      this.generation = generation;
    }
    return rates;
  }

  /** Forget the baselines, e.g. when the engine behind the probe changes. */
  reset(): void {
    this.prompt = undefined;
    this.generation = undefined;
  }
}

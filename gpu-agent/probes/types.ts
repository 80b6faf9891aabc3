/**
 * The normalised shapes every probe produces. `null` always means "this source did not say":
 * a scheduler must never read an unknown as 0 (0 free memory or 0% busy are both real answers).
 */

/** A MIG GPU instance: a slice of a physical GPU with its own memory and compute. */
export interface MigInstance {
  /** NVML's GPU instance id (DCGM's `GPU_I_ID`), unique within the parent GPU. */
  readonly gpuInstanceId: number;
  /** The instance profile, e.g. `1g.10gb`; empty when the source did not say. */
  readonly profile: string;
}

/**
 * One physical GPU, from nvidia-smi or DCGM, or one MIG instance of it (`mig` set): then `index`,
 * `uuid` and `name` are the parent GPU's, and memory and utilisation the instance's own.
 */
export interface GpuSample {
  readonly index: number;
  readonly uuid: string;
  readonly name: string;
  readonly memoryTotalBytes: number | null;
  readonly memoryUsedBytes: number | null;
  /** 0..1 */
  readonly utilization: number | null;
  readonly temperatureC: number | null;
  readonly powerWatts: number | null;
  readonly mig?: MigInstance;
}

export const EngineKind = {
  Vllm: 'vllm',
  Sglang: 'sglang',
  LlamaCpp: 'llamacpp',
  Tgi: 'tgi',
  Ollama: 'ollama',
} as const;
export type EngineKind = (typeof EngineKind)[keyof typeof EngineKind];

/** One model server's load, summed over its models, engines and data-parallel ranks. */
export interface EngineSample {
  readonly engine: EngineKind;
  /** Requests being decoded now; null where the engine does not expose it (Ollama). */
  readonly running: number | null;
  /** Requests queued behind them; null where the engine does not expose it. */
  readonly waiting: number | null;
  /** 0..1 */
  readonly kvCacheUsage: number | null;
  /** Monotonic counters; feed successive readings to token-rate.ts. */
  readonly promptTokensTotal: number | null;
  readonly generationTokensTotal: number | null;
}

export const MIB = 1024 * 1024;

/** A percentage reading as a 0..1 ratio; null stays null. */
export function percentToRatio(percent: number | null): number | null {
  return percent === null ? null : percent / 100;
}

import type { EngineStats, GpuStats, LoadReport } from '../../proto/agent-protocol.js';

/** Bounds beyond which a reported value is not believed. */
export const LIMITS = {
  maxGpus: 64,
  maxRequests: 1_000_000,
  maxTemperatureC: 150,
  minTemperatureC: -40,
  maxPowerW: 5_000,
  maxMemoryBytes: 16 * 2 ** 40,
  maxClockSkewMs: 5 * 60_000,
  /** NVML's GPU instance ids are small; anything past this is not an instance id. */
  maxGpuInstanceId: 255,
} as const;

export interface CleanReport {
  readonly atMs: number;
  readonly gpus: readonly GpuStats[];
  readonly engine: Required<Pick<EngineStats, 'running_requests' | 'waiting_requests'>> & Omit<EngineStats, 'running_requests' | 'waiting_requests'>;
}

/**
 * Reports are never trusted blindly: a value that is not a finite number, negative, or absurd is
 * clamped (counts, ratios) or dropped to "unknown" (temperatures, power, memory), and each such
 * fix is named in `problems` for the log line and the counter.
 */
export function sanitizeReport(report: LoadReport, now: number): { clean: CleanReport; problems: string[] } {
  const problems: string[] = [];
  let atMs = Number(report.timestamp_ms);
  if (!Number.isFinite(atMs) || Math.abs(now - atMs) > LIMITS.maxClockSkewMs) {
    problems.push('timestamp');
    atMs = now;
  }
  const gpus = report.gpus ?? [];
  if (gpus.length > LIMITS.maxGpus) problems.push('too_many_gpus');
  const cleanGpus = gpus.slice(0, LIMITS.maxGpus).map((g, i) => sanitizeGpu(g, i, problems));
  const e = report.engine ?? { running_requests: 0, waiting_requests: 0 };
  const engine: CleanReport['engine'] = {
    running_requests: count(e.running_requests, 'running_requests', problems),
    waiting_requests: count(e.waiting_requests, 'waiting_requests', problems),
  };
  const kv = ratio(e.kv_cache_usage, 'kv_cache_usage', problems);
  if (kv !== undefined) engine.kv_cache_usage = kv;
  const prompt = counter(e.prompt_tokens_total, 'prompt_tokens_total', problems);
  if (prompt !== undefined) engine.prompt_tokens_total = prompt;
  const gen = counter(e.generation_tokens_total, 'generation_tokens_total', problems);
  if (gen !== undefined) engine.generation_tokens_total = gen;
  if (e.engine_unreachable === true) engine.engine_unreachable = true;
  return { clean: { atMs, gpus: cleanGpus, engine }, problems };
}

function sanitizeGpu(g: GpuStats, i: number, problems: string[]): GpuStats {
  const out: GpuStats = { index: Number.isInteger(g.index) ? g.index : i, uuid: String(g.uuid ?? '').slice(0, 128), name: String(g.name ?? '').slice(0, 128) };
  const util = ratio(g.utilization, `gpus[${i}].utilization`, problems);
  if (util !== undefined) out.utilization = util;
  const total = range(g.memory_total_bytes, 0, LIMITS.maxMemoryBytes, `gpus[${i}].memory_total_bytes`, problems);
  const used = range(g.memory_used_bytes, 0, LIMITS.maxMemoryBytes, `gpus[${i}].memory_used_bytes`, problems);
  if (total !== undefined) out.memory_total_bytes = total;
  if (used !== undefined) out.memory_used_bytes = total !== undefined && used > total ? (problems.push(`gpus[${i}].memory_used_bytes`), total) : used;
  const temp = range(g.temperature_celsius, LIMITS.minTemperatureC, LIMITS.maxTemperatureC, `gpus[${i}].temperature_celsius`, problems);
  if (temp !== undefined) out.temperature_celsius = temp;
  const power = range(g.power_watts, 0, LIMITS.maxPowerW, `gpus[${i}].power_watts`, problems);
  if (power !== undefined) out.power_watts = power;
  const gi = range(g.mig_gpu_instance_id, 0, LIMITS.maxGpuInstanceId, `gpus[${i}].mig_gpu_instance_id`, problems);
  if (gi !== undefined && Number.isInteger(gi)) {
    out.mig_gpu_instance_id = gi;
    out.mig_profile = String(g.mig_profile ?? '').slice(0, 32);
  }
  return out;
}

/** Request counts: clamped into [0, maxRequests]; not a number → 0. */
function count(v: number | undefined, name: string, problems: string[]): number {
  const n = Number(v ?? 0);
  if (!Number.isFinite(n) || n < 0 || n > LIMITS.maxRequests) {
    problems.push(name);
    return Number.isFinite(n) ? Math.min(Math.max(0, n), LIMITS.maxRequests) : 0;
  }
  return n;
}

/** Ratios: clamped into [0, 1]; not a number → unknown. */
function ratio(v: number | undefined, name: string, problems: string[]): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Number.isFinite(v)) {
    problems.push(name);
    return undefined;
  }
  if (v < 0 || v > 1) {
    problems.push(name);
    return Math.min(1, Math.max(0, v));
  }
  return v;
}

/** Physical readings: outside [min, max] or not a number → unknown (never a made-up value). */
function range(v: number | undefined, min: number, max: number, name: string, problems: string[]): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Number.isFinite(v) || v < min || v > max) {
    problems.push(name);
    return undefined;
  }
  return v;
}

/** Monotonic counters: finite and ≥ 0, else unknown. */
function counter(v: number | undefined, name: string, problems: string[]): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Number.isFinite(v) || v < 0) {
    problems.push(name);
    return undefined;
  }
  return v;
}

import type { Sample } from './prom-text.js';
import { MIB, percentToRatio, type GpuSample } from './types.js';

/**
 * dcgm-exporter's default counters as GpuSamples. Framebuffer fields are in MiB; the total is
 * free + used + reserved, which is what nvidia-smi reports as memory.total (reserved is the
 * driver's share, absent on older exporters, where free + used is the best we have).
 *
 * MIG: series with a `GPU_I_ID` label describe one GPU instance, not the GPU, and are left out;
 * a GPU in MIG mode therefore reads null where DCGM gives only per-instance values.
 */
interface Fields {
  index: number;
  uuid: string;
  name: string;
  values: Map<string, number>;
}

const WANTED = new Set([
  'DCGM_FI_DEV_FB_FREE',
  'DCGM_FI_DEV_FB_USED',
  'DCGM_FI_DEV_FB_RESERVED',
  'DCGM_FI_DEV_GPU_UTIL',
  'DCGM_FI_DEV_GPU_TEMP',
  'DCGM_FI_DEV_POWER_USAGE',
]);

export function dcgmGpuSamples(samples: readonly Sample[]): GpuSample[] {
  const byGpu = new Map<number, Fields>();
  for (const s of samples) {
    if (!WANTED.has(s.name) || Number.isNaN(s.value)) continue;
    const { labels } = s;
    if (labels['GPU_I_ID'] !== undefined && labels['GPU_I_ID'] !== '') continue;
    const index = Number(labels['gpu']);
    if (labels['gpu'] === undefined || !Number.isInteger(index)) continue;
    let gpu = byGpu.get(index);
    if (!gpu) {
      gpu = { index, uuid: labels['UUID'] ?? labels['uuid'] ?? '', name: labels['modelName'] ?? '', values: new Map() };
      byGpu.set(index, gpu);
    }
    gpu.values.set(s.name, s.value);
  }
  return [...byGpu.values()].sort((a, b) => a.index - b.index).map(toGpuSample);
}

function toGpuSample({ index, uuid, name, values }: Fields): GpuSample {
  const get = (field: string): number | null => values.get(field) ?? null;
  const free = get('DCGM_FI_DEV_FB_FREE');
  const used = get('DCGM_FI_DEV_FB_USED');
  const total = free === null || used === null ? null : free + used + (get('DCGM_FI_DEV_FB_RESERVED') ?? 0);
  return {
    index,
    uuid,
    name,
    memoryTotalBytes: total === null ? null : total * MIB,
    memoryUsedBytes: used === null ? null : used * MIB,
    utilization: percentToRatio(get('DCGM_FI_DEV_GPU_UTIL')),
    temperatureC: get('DCGM_FI_DEV_GPU_TEMP'),
    powerWatts: get('DCGM_FI_DEV_POWER_USAGE'),
  };
}

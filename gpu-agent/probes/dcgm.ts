import type { Sample } from './prom-text.js';
import { MIB, percentToRatio, type GpuSample } from './types.js';

/**
 * dcgm-exporter's default counters as GpuSamples. Framebuffer fields are in MiB; the total is
 * free + used + reserved, which is what nvidia-smi reports as memory.total (reserved is the
 * driver's share, absent on older exporters and on MIG instances, where free + used is the best
 * we have).
 *
 * MIG: series with a `GPU_I_ID` label describe one GPU instance; each instance becomes its own
 * sample with `mig` set, while `index`, `uuid` and `name` stay its parent GPU's (that is what
 * dcgm-exporter's `gpu`, `UUID` and `modelName` labels hold). DCGM does not support
 * `DCGM_FI_DEV_GPU_UTIL` on instances, so their utilisation is `DCGM_FI_PROF_GR_ENGINE_ACTIVE`
 * (already a ratio); temperature and power are the parent's, repeated on each instance.
 *
 * Kubernetes: with pod mapping on, dcgm-exporter adds `pod`, `namespace` and `container` (or the
 * old `pod_name`, `pod_namespace`, `container_name`) to the series of GPUs and instances attached
 * to a pod. Given `pod`, only those attached to it are kept, but only when the page carries pod
 * labels at all: an exporter without pod mapping cannot say, so nothing is dropped.
 */
interface Fields {
  index: number;
  uuid: string;
  name: string;
  mig: { gpuInstanceId: number; profile: string } | undefined;
  values: Map<string, number>;
}

/** The engine's pod, as the downward API names it. */
export interface DcgmPodFilter {
  readonly pod: string;
  /** Without it, a pod of the same name in any namespace matches. */
  readonly namespace?: string | undefined;
}

const WANTED = new Set([
  'DCGM_FI_DEV_FB_FREE',
  'DCGM_FI_DEV_FB_USED',
  'DCGM_FI_DEV_FB_RESERVED',
  'DCGM_FI_DEV_GPU_UTIL',
  'DCGM_FI_DEV_GPU_TEMP',
  'DCGM_FI_DEV_POWER_USAGE',
  'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
]);

type Labels = Readonly<Record<string, string>>;

const podOf = (l: Labels): string | undefined => l['pod'] ?? l['pod_name'];
const namespaceOf = (l: Labels): string | undefined => l['namespace'] ?? l['pod_namespace'];

/** Whether the exporter maps GPUs to pods (some series carry a pod label). */
export function dcgmHasPodLabels(samples: readonly Sample[]): boolean {
  return samples.some((s) => WANTED.has(s.name) && podOf(s.labels) !== undefined);
}

export function dcgmGpuSamples(samples: readonly Sample[], filter?: DcgmPodFilter): GpuSample[] {
  const byEntity = new Map<string, Fields>();
  const byPod = filter !== undefined && dcgmHasPodLabels(samples);
  for (const s of samples) {
    if (!WANTED.has(s.name) || Number.isNaN(s.value)) continue;
    const { labels } = s;
    if (byPod && !attachedTo(labels, filter)) continue;
    const index = Number(labels['gpu']);
    if (labels['gpu'] === undefined || labels['gpu'] === '' || !Number.isInteger(index)) continue;
    const mig = migOf(labels);
    if (mig === null) continue;
    const key = mig === undefined ? `${index}` : `${index}/${mig.gpuInstanceId}`;
    let entity = byEntity.get(key);
    if (!entity) {
      entity = { index, uuid: labels['UUID'] ?? labels['uuid'] ?? '', name: labels['modelName'] ?? '', mig, values: new Map() };
      byEntity.set(key, entity);
    }
    entity.values.set(s.name, s.value);
  }
  return [...byEntity.values()]
    .sort((a, b) => a.index - b.index || (a.mig?.gpuInstanceId ?? -1) - (b.mig?.gpuInstanceId ?? -1))
    .map(toGpuSample);
}

function attachedTo(labels: Labels, filter: DcgmPodFilter): boolean {
  if (podOf(labels) !== filter.pod) return false;
  return filter.namespace === undefined || namespaceOf(labels) === filter.namespace;
}

/** undefined: a whole GPU; null: a `GPU_I_ID` that is not an instance id (the series is skipped). */
function migOf(labels: Labels): Fields['mig'] | null {
  const raw = labels['GPU_I_ID'];
  if (raw === undefined || raw === '') return undefined;
  const gpuInstanceId = Number(raw);
  if (!Number.isInteger(gpuInstanceId) || gpuInstanceId < 0) return null;
  return { gpuInstanceId, profile: labels['GPU_I_PROFILE'] ?? '' };
}

function toGpuSample({ index, uuid, name, mig, values }: Fields): GpuSample {
  const get = (field: string): number | null => values.get(field) ?? null;
  const free = get('DCGM_FI_DEV_FB_FREE');
  const used = get('DCGM_FI_DEV_FB_USED');
  const total = free === null || used === null ? null : free + used + (get('DCGM_FI_DEV_FB_RESERVED') ?? 0);
  const engineActive = get('DCGM_FI_PROF_GR_ENGINE_ACTIVE');
  // A whole GPU: DCGM_FI_DEV_GPU_UTIL, or the profiling ratio where only that is exported.
  const utilization = mig === undefined ? (percentToRatio(get('DCGM_FI_DEV_GPU_UTIL')) ?? engineActive) : engineActive;
  const sample: GpuSample = {
    index,
    uuid,
    name,
    memoryTotalBytes: total === null ? null : total * MIB,
    memoryUsedBytes: used === null ? null : used * MIB,
    utilization,
    temperatureC: get('DCGM_FI_DEV_GPU_TEMP'),
    powerWatts: get('DCGM_FI_DEV_POWER_USAGE'),
  };
  return mig === undefined ? sample : { ...sample, mig };
}

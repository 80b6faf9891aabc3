import { createHash } from 'node:crypto';
import type { SimGpus } from './sim-options.js';
import { escapeLabel } from './sim-metrics.js';

/**
 * A dcgm-exporter `/metrics` page for the simulated GPUs, so that `switchyard agent --dcgm-url`
 * runs its real DCGM path against a simulator. Field names, HELP strings, label order (`gpu`,
 * `UUID`, `pci_bus_id`, `device`, `modelName`, `Hostname`) and number formatting (integers as
 * `%d`, doubles as Go's `%f`) follow dcgm-exporter's default counters.
 *
 * The readings are derived from the batch, not measured: the batch is spread over every GPU
 * (tensor parallel), so all GPUs read alike.
 * - utilisation = running sequences / maxSeqs (`DCGM_FI_DEV_GPU_UTIL` in %, and
 *   `DCGM_FI_PROF_GR_ENGINE_ACTIVE` as a ratio);
 * - framebuffer: a driver reserve, then weights (30 % of the rest) plus a KV pool (60 %) filled
 *   as the KV cache fills, as if vLLM allocated its pool on demand;
 * - temperature and power rise linearly with utilisation from idle to full load.
 */

/** Where the simulator serves the page (beside vLLM's own `/metrics`). */
export const DCGM_PATH = '/dcgm/metrics';

const WEIGHTS_SHARE = 0.3;
const KV_POOL_SHARE = 0.6;
/** The driver's reserve, as a share of the framebuffer (593 MiB of an H100's 81559 MiB). */
const RESERVED_SHARE = 0.0073;
const IDLE_TEMP_C = 33;
const FULL_TEMP_C = 72;
const IDLE_POWER_W = 72;
const FULL_POWER_W = 700;
const SM_CLOCK_MHZ = 1980;

export interface SimGpuIdentity {
  readonly index: number;
  readonly uuid: string;
  readonly pciBusId: string;
}

/** Stable identities for a sim: the same seed and port give the same UUIDs after a restart. */
export function simGpuIdentities(count: number, seed: number, port: number): SimGpuIdentity[] {
  return Array.from({ length: count }, (_, index) => {
    const hex = createHash('sha256').update(`switchyard-sim:${seed}:${port}:${index}`).digest('hex');
    const uuid = `GPU-${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
    const bus = (0x19 + index * 0x22) % 0x100;
    return { index, uuid, pciBusId: `00000000:${bus.toString(16).toUpperCase().padStart(2, '0')}:00.0` };
  });
}

/** What the page is derived from: the batch right now. */
export interface SimLoad {
  readonly running: number;
  readonly maxSeqs: number;
  /** 0..1 */
  readonly kvCacheUsage: number;
}

export interface DcgmReadings {
  /** 0..1 */
  readonly utilization: number;
  readonly fbTotalMiB: number;
  readonly fbUsedMiB: number;
  readonly fbFreeMiB: number;
  readonly fbReservedMiB: number;
  readonly temperatureC: number;
  readonly powerWatts: number;
}

export function dcgmReadings(gpus: SimGpus, load: SimLoad): DcgmReadings {
  const utilization = Math.min(1, Math.max(0, load.running / load.maxSeqs));
  const kv = Math.min(1, Math.max(0, load.kvCacheUsage));
  const fbTotalMiB = Math.round(gpus.memoryGiB * 1024);
  const fbReservedMiB = Math.round(fbTotalMiB * RESERVED_SHARE);
  const usable = fbTotalMiB - fbReservedMiB;
  const fbUsedMiB = Math.round(usable * (WEIGHTS_SHARE + KV_POOL_SHARE * kv));
  return {
    utilization,
    fbTotalMiB,
    fbUsedMiB,
    fbFreeMiB: usable - fbUsedMiB,
    fbReservedMiB,
    temperatureC: Math.round(IDLE_TEMP_C + (FULL_TEMP_C - IDLE_TEMP_C) * utilization),
    powerWatts: IDLE_POWER_W + (FULL_POWER_W - IDLE_POWER_W) * utilization,
  };
}

interface Field {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  readonly value: (r: DcgmReadings) => string;
}

/** Go's `%f`: six decimals. */
const double = (n: number): string => n.toFixed(6);
const int = (n: number): string => String(Math.round(n));

const FIELDS: readonly Field[] = [
  { name: 'DCGM_FI_DEV_SM_CLOCK', help: 'SM clock frequency (in MHz).', type: 'gauge', value: () => int(SM_CLOCK_MHZ) },
  { name: 'DCGM_FI_DEV_GPU_TEMP', help: 'GPU temperature (in C).', type: 'gauge', value: (r) => int(r.temperatureC) },
  { name: 'DCGM_FI_DEV_POWER_USAGE', help: 'Power draw (in W).', type: 'gauge', value: (r) => double(r.powerWatts) },
  { name: 'DCGM_FI_DEV_GPU_UTIL', help: 'GPU utilization (in %).', type: 'gauge', value: (r) => int(r.utilization * 100) },
  { name: 'DCGM_FI_DEV_MEM_COPY_UTIL', help: 'Memory utilization (in %).', type: 'gauge', value: (r) => int(r.utilization * 60) },
  { name: 'DCGM_FI_DEV_FB_FREE', help: 'Framebuffer memory free (in MiB).', type: 'gauge', value: (r) => int(r.fbFreeMiB) },
  { name: 'DCGM_FI_DEV_FB_USED', help: 'Framebuffer memory used (in MiB).', type: 'gauge', value: (r) => int(r.fbUsedMiB) },
  { name: 'DCGM_FI_DEV_FB_RESERVED', help: 'Framebuffer memory reserved (in MiB).', type: 'gauge', value: (r) => int(r.fbReservedMiB) },
  {
    name: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
    help: 'Ratio of time the graphics engine is active.',
    type: 'gauge',
    value: (r) => double(r.utilization),
  },
];

/** The exposition text: one series per GPU for each field. */
export function renderDcgmMetrics(
  gpus: SimGpus,
  identities: readonly SimGpuIdentity[],
  hostname: string,
  load: SimLoad,
): string {
  const readings = dcgmReadings(gpus, load);
  const labels = identities.map(
    (g) =>
      `gpu="${g.index}",UUID="${g.uuid}",pci_bus_id="${g.pciBusId}",device="nvidia${g.index}",` +
      `modelName="${escapeLabel(gpus.name)}",Hostname="${escapeLabel(hostname)}"`,
  );
  const out: string[] = [];
  for (const f of FIELDS) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    const value = f.value(readings);
    for (const l of labels) out.push(`${f.name}{${l}} ${value}`);
  }
  return `${out.join('\n')}\n`;
}

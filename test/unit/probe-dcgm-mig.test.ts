import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { dcgmGpuSamples, dcgmHasPodLabels } from '../../gpu-agent/probes/dcgm.js';
import { parsePromText } from '../../gpu-agent/probes/prom-text.js';
import { MIB } from '../../gpu-agent/probes/types.js';

const samplesOf = (name: string) => parsePromText(readFileSync(`test/fixtures/probes/${name}`, 'utf8'));
const GPU0 = 'GPU-6a1f0c2e-9d4b-4e73-b1a8-3c5d7e9f0a12';
const GPU1 = 'GPU-2b7e4d91-5c3a-4f08-9e6d-81a0c4b2f735';
const ids = (gpus: ReturnType<typeof dcgmGpuSamples>) => gpus.map((g) => (g.mig === undefined ? `${g.index}` : `${g.index}/${g.mig.gpuInstanceId}`));

describe('dcgmGpuSamples in MIG mode', () => {
  it('reports every MIG instance with its memory, engine activity, parent GPU and profile', () => {
    const gpus = dcgmGpuSamples(samplesOf('dcgm-mig.prom'));
    expect(ids(gpus)).toEqual(['0/2', '0/3', '0/11', '0/13', '1/1', '1/2']);
    expect(gpus[0]).toEqual({
      index: 0,
      uuid: GPU0,
      name: 'NVIDIA H100 80GB HBM3',
      memoryTotalBytes: (35614 + 4578) * MIB,
      memoryUsedBytes: 35614 * MIB,
      utilization: 0.874213, // DCGM_FI_PROF_GR_ENGINE_ACTIVE: DCGM_FI_DEV_GPU_UTIL is not supported on instances
      temperatureC: 58,
      powerWatts: 402.118,
      mig: { gpuInstanceId: 2, profile: '3g.40gb' },
    });
    expect(gpus[2]).toMatchObject({ memoryTotalBytes: 9983 * MIB, memoryUsedBytes: 14 * MIB, utilization: 0, mig: { gpuInstanceId: 11, profile: '1g.10gb' } });
    expect(gpus[4]).toMatchObject({ index: 1, uuid: GPU1, utilization: 0.53811, mig: { gpuInstanceId: 1, profile: '3g.40gb' } });
  });

  it('reports whole GPUs and MIG instances side by side; whole GPUs keep DCGM_FI_DEV_GPU_UTIL', () => {
    const gpus = dcgmGpuSamples(samplesOf('dcgm-mig-k8s.prom'));
    expect(ids(gpus)).toEqual(['0/2', '0/3', '0/11', '0/13', '1']);
    expect(gpus[4]).toEqual({
      index: 1,
      uuid: GPU1,
      name: 'NVIDIA H100 80GB HBM3',
      memoryTotalBytes: (5120 + 75846 + 593) * MIB,
      memoryUsedBytes: 75846 * MIB,
      utilization: 0.88,
      temperatureC: 61,
      powerWatts: 588.502,
    });
  });

  it('given the engine\'s pod, keeps only the instances (or GPUs) attached to it', () => {
    const samples = samplesOf('dcgm-mig-k8s.prom');
    expect(dcgmHasPodLabels(samples)).toBe(true);
    expect(ids(dcgmGpuSamples(samples, { pod: 'vllm-llama-0', namespace: 'inference' }))).toEqual(['0/2']);
    // The same pod name in another namespace also matches when the namespace is not given.
    expect(ids(dcgmGpuSamples(samples, { pod: 'vllm-llama-0' }))).toEqual(['0/2', '0/13']);
    expect(ids(dcgmGpuSamples(samples, { pod: 'vllm-qwen-6c9d7b5f4-x2k8p', namespace: 'inference' }))).toEqual(['0/3']);
    expect(ids(dcgmGpuSamples(samples, { pod: 'trainer-0', namespace: 'ml' }))).toEqual(['1']);
    expect(dcgmGpuSamples(samples, { pod: 'vllm-llama-0', namespace: 'ml' })).toEqual([]);
  });

  it('reads the exporter\'s old pod label names too', () => {
    const text = [
      'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",modelName="X",GPU_I_PROFILE="1g.10gb",GPU_I_ID="7",pod_name="p",pod_namespace="ns",container_name="c"} 5',
      'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",modelName="X",GPU_I_PROFILE="1g.10gb",GPU_I_ID="8",pod_name="q",pod_namespace="ns",container_name="c"} 6',
    ].join('\n');
    expect(ids(dcgmGpuSamples(parsePromText(text), { pod: 'p', namespace: 'ns' }))).toEqual(['0/7']);
  });

  it('does not filter a page without pod labels: the exporter cannot say which pod has what', () => {
    const samples = samplesOf('dcgm-mig.prom');
    expect(dcgmHasPodLabels(samples)).toBe(false);
    expect(dcgmGpuSamples(samples, { pod: 'vllm-llama-0', namespace: 'inference' })).toHaveLength(6);
  });

  it('skips a series whose GPU_I_ID is not an instance id', () => {
    const text = 'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",modelName="X",GPU_I_PROFILE="1g.10gb",GPU_I_ID="x"} 5';
    expect(dcgmGpuSamples(parsePromText(text))).toEqual([]);
  });
});

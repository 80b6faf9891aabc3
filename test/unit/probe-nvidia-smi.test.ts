import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { dcgmGpuSamples } from '../../gpu-agent/probes/dcgm.js';
import {
  defaultExecFile,
  NVIDIA_SMI_QUERY_ARGS,
  NvidiaSmiError,
  parseNvidiaSmiCsv,
  parseNvidiaSmiList,
  runNvidiaSmi,
  runNvidiaSmiList,
  type ExecFile,
} from '../../gpu-agent/probes/nvidia-smi.js';
import { parsePromText } from '../../gpu-agent/probes/prom-text.js';

const fixture = (name: string): string => readFileSync(`test/fixtures/probes/${name}`, 'utf8');
const MIB = 1024 * 1024;

describe('parseNvidiaSmiCsv', () => {
  it('reads the 8x H100 query, MiB to bytes and percent to 0..1', () => {
    const gpus = parseNvidiaSmiCsv(fixture('nvidia-smi.csv'));
    expect(gpus).toHaveLength(8);
    expect(gpus[0]).toEqual({
      index: 0,
      uuid: 'GPU-3f2c8e1a-6b4d-7c9e-a1f0-52d8e4b7c901',
      name: 'NVIDIA H100 80GB HBM3',
      memoryTotalBytes: 81559 * MIB,
      memoryUsedBytes: 73512 * MIB,
      utilization: 0.97,
      temperatureC: 64,
      powerWatts: 612.43,
    });
    expect(gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // A real 0 stays 0: only unknowns become null.
    expect(gpus[7]?.memoryUsedBytes).toBe(0);
    expect(gpus[7]?.utilization).toBe(0);
  });

  it('maps [N/A] and [Not Supported] to null, never 0 (MIG mode reports utilization as [N/A])', () => {
    const [mig, geforce, t4] = parseNvidiaSmiCsv(fixture('nvidia-smi-na.csv'));
    expect(mig?.utilization).toBeNull();
    expect(mig?.memoryUsedBytes).toBe(37 * MIB);
    expect(geforce?.powerWatts).toBeNull();
    expect(geforce?.utilization).toBe(0);
    expect(t4).toMatchObject({
      name: 'Tesla T4',
      memoryTotalBytes: null,
      memoryUsedBytes: null,
      utilization: null,
      temperatureC: null,
      powerWatts: null,
    });
  });

  it('keeps a comma inside a GPU name and skips lines that are not GPU rows', () => {
    const text = 'No devices were found\n3, GPU-x, Weird, Name GPU, 100, 50, 10, 40, 70.5\n\n';
    expect(parseNvidiaSmiCsv(text)).toEqual([
      expect.objectContaining({ index: 3, uuid: 'GPU-x', name: 'Weird, Name GPU', powerWatts: 70.5 }),
    ]);
  });
});

describe('parseNvidiaSmiList (MIG)', () => {
  it('reads R470+ MIG UUIDs and a GPU without MIG devices', () => {
    const gpus = parseNvidiaSmiList(fixture('nvidia-smi-L-mig.txt'));
    expect(gpus).toEqual([
      {
        index: 0,
        name: 'NVIDIA A100-SXM4-80GB',
        uuid: 'GPU-a810a1fc-9f46-0e6f-5cef-bf34c2248e12',
        migDevices: [
          { profile: '3g.40gb', index: 0, uuid: 'MIG-b6ba6b2a-1cd4-5f1e-8f3c-9d0e1a2b3c4d' },
          { profile: '3g.40gb', index: 1, uuid: 'MIG-0c7e4f91-22ab-5d3e-9c10-7e6f5a4b3c2d' },
        ],
      },
      { index: 1, name: 'NVIDIA A100-SXM4-80GB', uuid: 'GPU-604c7a18-e7d0-02e0-723a-7578be840651', migDevices: [] },
    ]);
  });

  it('keeps pre-R470 MIG-GPU-<uuid>/<gi>/<ci> UUIDs verbatim', () => {
    const [gpu] = parseNvidiaSmiList(fixture('nvidia-smi-L-mig-pre-r470.txt'));
    expect(gpu?.name).toBe('A100-SXM4-40GB');
    expect(gpu?.migDevices.map((m) => m.uuid)).toEqual([
      'MIG-GPU-2ac434d3-1aca-57a0-597d-1d2effdba9f3/1/0',
      'MIG-GPU-2ac434d3-1aca-57a0-597d-1d2effdba9f3/2/0',
    ]);
  });
});

/** The blocks of nvidia-smi-errors.txt: exit code and what nvidia-smi printed. */
function errorBlocks(): { exitCode: number; output: string }[] {
  return fixture('nvidia-smi-errors.txt')
    .split('\n---\n')
    .map((block) => {
      const lines = block.split('\n').filter((l) => !l.startsWith('#'));
      const exitCode = Number(/^exit=(\d+)/.exec(lines[0] ?? '')?.[1]);
      return { exitCode, output: lines.slice(1).join('\n') };
    });
}

const fakeExec =
  (exitCode: number, stdout: string, stderr = ''): ExecFile =>
  async () => ({ exitCode, stdout, stderr });

describe('runNvidiaSmi', () => {
  it('runs the documented query and parses its output', async () => {
    const calls: (readonly string[])[] = [];
    const exec: ExecFile = async (file, args) => {
      calls.push([file, ...args]);
      return { exitCode: 0, stdout: fixture('nvidia-smi.csv'), stderr: '' };
    };
    const res = await runNvidiaSmi(exec);
    expect(calls).toEqual([['nvidia-smi', ...NVIDIA_SMI_QUERY_ARGS]]);
    expect(res.error).toBeUndefined();
    expect(res.gpus).toHaveLength(8);
  });

  it('no binary on PATH (ENOENT) means no GPUs and no error', async () => {
    const exec: ExecFile = () => Promise.reject(Object.assign(new Error('spawn nvidia-smi ENOENT'), { code: 'ENOENT' }));
    expect(await runNvidiaSmi(exec)).toEqual({ gpus: [], error: undefined });
    expect(await runNvidiaSmiList(exec)).toEqual({ gpus: [], error: undefined });
  });

  it('maps each real failure to its documented meaning', async () => {
    const expected: Record<number, string | undefined> = {
      6: 'not_found',
      9: 'driver_not_loaded',
      15: 'gpu_lost',
      2: 'invalid_argument',
      127: undefined,
    };
    const blocks = errorBlocks();
    expect(blocks.map((b) => b.exitCode).sort()).toEqual(Object.keys(expected).map(Number).sort());
    for (const { exitCode, output } of blocks) {
      const res = await runNvidiaSmi(fakeExec(exitCode, output));
      expect(res.gpus).toEqual([]);
      expect(res.error?.code, `exit ${exitCode}`).toBe(expected[exitCode]);
      if (res.error) {
        expect(res.error).toBeInstanceOf(NvidiaSmiError);
        expect(res.error.exitCode).toBe(exitCode);
        expect(res.error.message).toContain(output.split('\n')[0]);
      }
    }
  });

  it('an undocumented exit code is unknown; a timeout and other spawn failures are errors, not crashes', async () => {
    expect((await runNvidiaSmi(fakeExec(255, '', 'boom'))).error?.code).toBe('unknown');
    const timeout: ExecFile = () => Promise.reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }));
    expect((await runNvidiaSmi(timeout)).error?.code).toBe('timeout');
    const eacces: ExecFile = () => Promise.reject(Object.assign(new Error('EACCES'), { code: 'EACCES' }));
    expect((await runNvidiaSmi(eacces)).error?.code).toBe('spawn_failed');
  });

  it('runNvidiaSmiList runs -L', async () => {
    const res = await runNvidiaSmiList(async (_f, args) => ({
      exitCode: args[0] === '-L' ? 0 : 2,
      stdout: fixture('nvidia-smi-L-mig.txt'),
      stderr: '',
    }));
    expect(res.gpus.map((g) => g.migDevices.length)).toEqual([2, 0]);
  });
});

describe('defaultExecFile', () => {
  const exec = defaultExecFile(5_000);

  it('rejects with ENOENT for a missing binary', async () => {
    await expect(exec('switchyard-no-such-binary', [])).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('resolves with the exit code and output of a failing command', async () => {
    const res = await exec(process.execPath, ['-e', 'console.log("No devices were found"); process.exit(6)']);
    expect(res).toEqual({ exitCode: 6, stdout: 'No devices were found\n', stderr: '' });
  });
});

describe('dcgmGpuSamples', () => {
  it('gives the same shape as nvidia-smi; total = free + used + reserved', () => {
    const gpus = dcgmGpuSamples(parsePromText(fixture('dcgm.prom')));
    const smi = parseNvidiaSmiCsv(fixture('nvidia-smi.csv'));
    expect(gpus).toHaveLength(2);
    expect(gpus[0]).toEqual({
      index: 0,
      uuid: 'GPU-3f2c8e1a-6b4d-7c9e-a1f0-52d8e4b7c901',
      name: 'NVIDIA H100 80GB HBM3',
      memoryTotalBytes: smi[0]?.memoryTotalBytes,
      memoryUsedBytes: 73512 * MIB,
      utilization: 0.97,
      temperatureC: 64,
      powerWatts: 612.433,
    });
    expect(gpus[1]).toMatchObject({ index: 1, memoryTotalBytes: 81559 * MIB, utilization: 0, powerWatts: 145.26 });
  });

  it('leaves a field null when DCGM did not report it; a MIG instance series is its own sample', () => {
    const text = [
      'DCGM_FI_DEV_GPU_TEMP{gpu="1",UUID="GPU-b",modelName="X"} 50',
      'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",modelName="X"} NaN',
      'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",modelName="X"} 10',
      'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",modelName="X",GPU_I_ID="1",GPU_I_PROFILE="3g.40gb"} 99',
    ].join('\n');
    const [a, mig, b] = dcgmGpuSamples(parsePromText(text));
    expect(a).toMatchObject({ index: 0, uuid: 'GPU-a', memoryUsedBytes: 10 * MIB, memoryTotalBytes: null, utilization: null });
    expect(a).not.toHaveProperty('mig');
    expect(mig).toMatchObject({ index: 0, uuid: 'GPU-a', memoryUsedBytes: 99 * MIB, mig: { gpuInstanceId: 1, profile: '3g.40gb' } });
    expect(b).toMatchObject({ index: 1, temperatureC: 50, memoryUsedBytes: null, powerWatts: null });
  });
});

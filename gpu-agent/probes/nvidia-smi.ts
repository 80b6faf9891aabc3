import { execFile } from 'node:child_process';
import { MIB, percentToRatio, type GpuSample } from './types.js';

/** The query the CSV parser expects, column for column. */
export const NVIDIA_SMI_QUERY_ARGS = [
  '--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw',
  '--format=csv,noheader,nounits',
] as const;

/** nvidia-smi's documented exit codes (man nvidia-smi, RETURN VALUE), plus the agent's own failures. */
export const NvidiaSmiErrorCode = {
  InvalidArgument: 'invalid_argument',
  NotSupported: 'not_supported',
  NoPermission: 'no_permission',
  NotFound: 'not_found',
  PowerCable: 'power_cable',
  DriverNotLoaded: 'driver_not_loaded',
  InterruptIssue: 'interrupt_issue',
  NvmlNotFound: 'nvml_not_found',
  NvmlFunctionNotFound: 'nvml_function_not_found',
  InforomCorrupted: 'inforom_corrupted',
  GpuLost: 'gpu_lost',
  Unknown: 'unknown',
  Timeout: 'timeout',
  SpawnFailed: 'spawn_failed',
} as const;
export type NvidiaSmiErrorCode = (typeof NvidiaSmiErrorCode)[keyof typeof NvidiaSmiErrorCode];

const EXIT_CODES: ReadonlyMap<number, readonly [NvidiaSmiErrorCode, string]> = new Map([
  [2, [NvidiaSmiErrorCode.InvalidArgument, 'a supplied argument or flag is invalid']],
  [3, [NvidiaSmiErrorCode.NotSupported, 'the requested operation is not available on the target device']],
  [4, [NvidiaSmiErrorCode.NoPermission, 'the current user may not access this device or perform this operation']],
  [6, [NvidiaSmiErrorCode.NotFound, 'a query to find an object was unsuccessful (no devices found)']],
  [8, [NvidiaSmiErrorCode.PowerCable, "a device's external power cables are not properly attached"]],
  [9, [NvidiaSmiErrorCode.DriverNotLoaded, 'the NVIDIA driver is not loaded']],
  [10, [NvidiaSmiErrorCode.InterruptIssue, 'the NVIDIA kernel detected an interrupt issue with a GPU']],
  [12, [NvidiaSmiErrorCode.NvmlNotFound, 'the NVML shared library could not be found or loaded']],
  [13, [NvidiaSmiErrorCode.NvmlFunctionNotFound, 'the local NVML does not implement this function']],
  [14, [NvidiaSmiErrorCode.InforomCorrupted, 'the infoROM is corrupted']],
  [15, [NvidiaSmiErrorCode.GpuLost, 'a GPU has fallen off the bus or become inaccessible']],
]);

export class NvidiaSmiError extends Error {
  constructor(
    readonly code: NvidiaSmiErrorCode,
    message: string,
    readonly exitCode: number | null = null,
    opts?: ErrorOptions,
  ) {
    super(message, opts);
    this.name = 'NvidiaSmiError';
  }
}

/** The error for a non-zero exit; nvidia-smi's own text (stdout or stderr) is kept in the message. */
export function nvidiaSmiExitError(exitCode: number, output = ''): NvidiaSmiError {
  const [code, meaning] = EXIT_CODES.get(exitCode) ?? [NvidiaSmiErrorCode.Unknown, 'other or internal driver error'];
  const detail = output.trim().split('\n')[0]?.trim();
  return new NvidiaSmiError(code, `nvidia-smi exited ${exitCode}: ${meaning}${detail ? ` (${detail})` : ''}`, exitCode);
}

/** A reading nvidia-smi could not give: `[N/A]`, `[Not Supported]`, `[Unknown Error]`, ... */
function num(field: string | undefined): number | null {
  const v = field?.trim() ?? '';
  return /^[+-]?(?:\d+\.?\d*|\.\d+)$/.test(v) ? Number(v) : null;
}

/** `--query-gpu` CSV (noheader, nounits). Lines that do not fit the query are skipped. */
export function parseNvidiaSmiCsv(text: string): GpuSample[] {
  const gpus: GpuSample[] = [];
  for (const line of text.split(/\r?\n/)) {
    const f = line.split(',').map((s) => s.trim());
    if (f.length < 8) continue;
    // A name could hold a comma; every other column cannot, so take the name from the middle.
    const index = num(f[0]);
    const name = f.slice(2, f.length - 5).join(', ');
    const [total, used, util, temp, power] = f.slice(-5).map(num);
    if (index === null || !Number.isInteger(index)) continue;
    gpus.push({
      index,
      uuid: f[1] ?? '',
      name,
      memoryTotalBytes: total == null ? null : total * MIB,
      memoryUsedBytes: used == null ? null : used * MIB,
      utilization: percentToRatio(util ?? null),
      temperatureC: temp ?? null,
      powerWatts: power ?? null,
    });
  }
  return gpus;
}

export interface MigDevice {
  /** The MIG profile, e.g. `3g.40gb`. */
  readonly profile: string;
  readonly index: number;
  readonly uuid: string;
}

export interface GpuListing {
  readonly index: number;
  readonly name: string;
  readonly uuid: string;
  readonly migDevices: readonly MigDevice[];
}

const GPU_LINE = /^GPU (\d+): (.+?) \(UUID: ([^)\s]+)\)\s*$/;
const MIG_LINE = /^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^)\s]+)\)\s*$/;

/**
 * `nvidia-smi -L`. MIG UUIDs are `MIG-<uuid>` from driver R470 on and `MIG-GPU-<uuid>/<gi>/<ci>`
 * before; both are kept verbatim because CUDA_VISIBLE_DEVICES wants exactly what the driver printed.
 */
export function parseNvidiaSmiList(text: string): GpuListing[] {
  const gpus: { index: number; name: string; uuid: string; migDevices: MigDevice[] }[] = [];
  for (const line of text.split(/\r?\n/)) {
    const g = GPU_LINE.exec(line);
    if (g) {
      gpus.push({ index: Number(g[1]), name: g[2] ?? '', uuid: g[3] ?? '', migDevices: [] });
      continue;
    }
    const m = MIG_LINE.exec(line);
    const owner = gpus.at(-1);
    if (m && owner) owner.migDevices.push({ profile: m[1] ?? '', index: Number(m[2]), uuid: m[3] ?? '' });
  }
  return gpus;
}

export interface ExecResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a binary. Resolves for any exit status; rejects only when it could not run at all, with a
 * Node errno error (`code: 'ENOENT'` when it is not on PATH) or `code: 'ETIMEDOUT'`.
 */
export type ExecFile = (file: string, args: readonly string[]) => Promise<ExecResult>;

export function defaultExecFile(timeoutMs = 10_000): ExecFile {
  return (file, args) =>
    new Promise((resolve, reject) => {
      execFile(file, args, { timeout: timeoutMs, maxBuffer: 4 * MIB, windowsHide: true }, (err, stdout, stderr) => {
        if (err === null) return resolve({ exitCode: 0, stdout, stderr });
        if (typeof err.code === 'number') return resolve({ exitCode: err.code, stdout, stderr });
        if (err.killed) return reject(Object.assign(new Error(`${file} timed out after ${timeoutMs} ms`, { cause: err }), { code: 'ETIMEDOUT' }));
        reject(err);
      });
    });
}

export interface NvidiaSmiResult<T> {
  readonly gpus: T[];
  /** Set when nvidia-smi ran and failed; undefined on success and on a machine without it. */
  readonly error: NvidiaSmiError | undefined;
}

function errnoCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
}

async function run<T>(exec: ExecFile, args: readonly string[], parse: (s: string) => T[]): Promise<NvidiaSmiResult<T>> {
  let res: ExecResult;
  try {
    res = await exec('nvidia-smi', args);
  } catch (err: unknown) {
    const code = errnoCode(err);
    // No binary means a CPU-only node: no GPUs to report, which is not a failure.
    if (code === 'ENOENT') return { gpus: [], error: undefined };
    const kind = code === 'ETIMEDOUT' ? NvidiaSmiErrorCode.Timeout : NvidiaSmiErrorCode.SpawnFailed;
    const message = err instanceof Error ? err.message : String(err);
    return { gpus: [], error: new NvidiaSmiError(kind, `nvidia-smi could not run: ${message}`, null, { cause: err }) };
  }
  // 127 is a shell's "command not found", for an exec that goes through a shell.
  if (res.exitCode === 127) return { gpus: [], error: undefined };
  if (res.exitCode !== 0) return { gpus: [], error: nvidiaSmiExitError(res.exitCode, res.stdout || res.stderr) };
  return { gpus: parse(res.stdout), error: undefined };
}

/** One reading of every GPU on the node. */
export function runNvidiaSmi(exec: ExecFile = defaultExecFile()): Promise<NvidiaSmiResult<GpuSample>> {
  return run(exec, NVIDIA_SMI_QUERY_ARGS, parseNvidiaSmiCsv);
}

/** The GPUs with their MIG devices (`nvidia-smi -L`). */
export function runNvidiaSmiList(exec: ExecFile = defaultExecFile()): Promise<NvidiaSmiResult<GpuListing>> {
  return run(exec, ['-L'], parseNvidiaSmiList);
}

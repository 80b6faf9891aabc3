import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SimStats } from '../../sim/sim-server.js';
import { dropSchema, PG_URL, uniqueName } from './services.js';

/** The built CLI: e2e tests run what users run (`npm test` builds first). */
export const CLI = join(process.cwd(), 'dist/cli/main.js');

export interface RunningProcess {
  readonly proc: ChildProcess;
  readonly url: string;
  /** Every line the process printed so far. */
  readonly output: string[];
  /** SIGTERM, then wait for the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `switchyard <args>` and resolves when it prints a JSON log line whose `msg` is
 * `readyMsg`, taking the `url` from that line. Rejects if the process exits first.
 */
export function startCli(args: string[], readyMsg: string, env: NodeJS.ProcessEnv = {}): Promise<RunningProcess> {
  // Each process gets its own data directory (an embedded Postgres is never shared) and, unless
  // the test says otherwise, its own schema in the machine's Postgres: starting an embedded one
  // costs seconds, the real one nothing. The schema is dropped when the process is stopped.
  const dataDir = mkdtempSync(join(tmpdir(), 'switchyard-data-'));
  const schema = uniqueName('sy_proc');
  const ownSchema = args[0] !== 'sim' && env['DATABASE_URL'] === undefined;
  const proc = spawn(process.execPath, [CLI, ...args], {
    env: {
      ...process.env,
      SWITCHYARD_LOG_LEVEL: 'info',
      SWITCHYARD_DATA_DIR: dataDir,
      ...(ownSchema ? { DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema } : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  let pending = '';
  const exited = once(proc, 'exit');
  const stop = async (): Promise<number | null> => {
    let code = proc.exitCode;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      [code] = (await exited) as [number | null];
    }
    if (ownSchema) await dropSchema(schema);
    return code;
  };
  return new Promise((resolve, reject) => {
    const onLine = (line: string): void => {
      output.push(line);
      if (!line.startsWith('{')) return;
      try {
        const obj = JSON.parse(line) as { msg?: string; url?: string };
        if (obj.msg === readyMsg && typeof obj.url === 'string') resolve({ proc, url: obj.url, output, stop });
      } catch {
        // not a log line
      }
    };
    proc.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        onLine(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    });
    proc.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
    proc.once('exit', (code) => reject(new Error(`switchyard ${args[0] ?? ''} exited (${code ?? 'signal'}) before ready:\n${output.join('\n')}`)));
  });
}

export function startSimProcess(args: string[] = []): Promise<RunningProcess> {
  return startCli(['sim', '--port', '0', ...args], 'sim listening');
}

export function startGatewayProcess(configYaml: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunningProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-test-'));
  const path = join(dir, 'regions.yaml');
  writeFileSync(path, configYaml);
  return startCli(['gateway', '--config', path, '--port', '0', ...args], 'gateway listening', env);
}

/**
 * A local port that refuses connections now, for a process that will listen on it. Picked at
 * random below Linux's ephemeral range (32768–60999): a port the kernel handed out for listen(0)
 * is also what it hands out as the local port of outgoing connections, and under a test suite's
 * load one of those took such a port before the process bound it ("Address already in use").
 * `alsoFree` offsets must be free too (a Redis Cluster's bus port is the port + 10000).
 */
export async function refusedPort(alsoFree: readonly number[] = []): Promise<number> {
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * 12_000);
    if ((await bindable(port)) && (await Promise.all(alsoFree.map((d) => bindable(port + d)))).every(Boolean)) return port;
  }
}

async function bindable(port: number): Promise<boolean> {
  const server = createServer();
  const ok = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (ok) {
    server.close();
    await once(server, 'close');
  }
  return ok;
}

export interface NodeDecl {
  readonly id: string;
  readonly url: string;
  readonly models?: readonly string[];
  readonly tokensPerSecond?: number;
  readonly maxSequences?: number;
}

export interface RegionDecl {
  readonly id: string;
  readonly residency?: string;
  readonly nodes: readonly NodeDecl[];
}

/** A regions.yaml with one cluster per region; `rtt` lists `[a, b, ms]`. */
export function regionsYaml(regions: readonly RegionDecl[], rtt: ReadonlyArray<readonly [string, string, number]> = []): string {
  const lines = ['regions:'];
  for (const r of regions) {
    lines.push(`  - id: ${r.id}`, `    residency: ${r.residency ?? 'eu'}`, '    clusters:', `      - id: ${r.id}-c`, '        nodes:');
    for (const n of r.nodes) {
      lines.push(
        `          - id: ${n.id}`,
        `            url: ${n.url}`,
        '            engine: vllm',
        `            models: [${(n.models ?? ['sim-small']).join(', ')}]`,
        `            capacity: { tokensPerSecond: ${n.tokensPerSecond ?? 1000}, maxSequences: ${n.maxSequences ?? 32} }`,
      );
    }
  }
  if (rtt.length > 0) {
    lines.push('distances:');
    for (const [a, b, ms] of rtt) lines.push(`  - { between: [${a}, ${b}], rttMs: ${ms} }`);
  }
  return lines.join('\n') + '\n';
}

export async function simStats(url: string): Promise<SimStats> {
  const res = await fetch(`${url}/sim/stats`);
  return (await res.json()) as SimStats;
}

/**
 * Polls `probe` until it returns true or `timeoutMs` passes. For state that lives in another
 * process and has no event to await (a sim's counters); each poll is one cheap local request.
 */
export async function eventually(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

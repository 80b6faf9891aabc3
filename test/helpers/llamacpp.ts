import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { refusedPort } from './processes.js';

/**
 * A real llama.cpp `llama-server` for the e2e tests, built by scripts/llama-server.sh from the
 * llama.cpp tree the npm package node-llama-cpp carries, with the tiny random-weight model of
 * scripts/tiny-gguf.py. Both live in a cache outside the repository.
 */

/** Keep in step with NODE_LLAMA_CPP_VERSION and MODEL_NAME in scripts/llama-server.sh. */
export const LLAMACPP_PACKAGE_VERSION = '3.21.1';
const MODEL_NAME = 'tiny-llama-v1.gguf';

/** `$SWITCHYARD_LLAMACPP_DIR`, else the script's default cache directory. */
export function llamaCppDir(): string {
  const explicit = process.env['SWITCHYARD_LLAMACPP_DIR'];
  if (explicit !== undefined && explicit !== '') return explicit;
  const cacheHome = process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return join(cacheHome, 'switchyard', `llama-server-node-llama-cpp-${LLAMACPP_PACKAGE_VERSION}`);
}

export interface LlamaCppBuild {
  readonly binary: string;
  readonly model: string;
}

/** The cached binary and model, or why they cannot be used. */
export function findLlamaCpp(): LlamaCppBuild | { readonly missing: string } {
  const dir = llamaCppDir();
  const binary = join(dir, 'llama-server');
  const model = join(dir, MODEL_NAME);
  if (!existsSync(binary)) return { missing: `no llama-server at ${binary}: run scripts/llama-server.sh (8 to 16 minutes on 2 cores)` };
  if (!existsSync(model)) return { missing: `no model at ${model}: run scripts/llama-server.sh` };
  return { binary, model };
}

export interface LlamaServerOptions {
  /** Sequence slots (`-np`). */
  readonly parallel: number;
  /** Context size of the whole server (`-c`), shared by its slots. */
  readonly contextSize: number;
  /** The model name it serves (`-a`). */
  readonly alias: string;
  /** Reuse a port (a restarted server keeps its address); default: a free one. */
  readonly port?: number;
  readonly extraArgs?: readonly string[];
}

export interface LlamaServer {
  readonly url: string;
  readonly port: number;
  readonly proc: ChildProcess;
  /** Everything it printed (llama-server logs to stderr). */
  readonly output: string[];
  /** SIGKILL: the engine dies as on a crash; resolves once it exited. */
  kill(): Promise<void>;
  /** SIGTERM, then wait for the exit. */
  stop(): Promise<void>;
}

/**
 * Starts llama-server on 127.0.0.1 with `--metrics` and `--slots` (the agent reads both) and
 * resolves once it logged that it is listening with the model loaded.
 */
export async function startLlamaServer(build: LlamaCppBuild, opts: LlamaServerOptions): Promise<LlamaServer> {
  const port = opts.port ?? (await refusedPort());
  const args = [
    '-m', build.model, '--host', '127.0.0.1', '--port', String(port), '-a', opts.alias,
    '-np', String(opts.parallel), '-c', String(opts.contextSize),
    // One thread each: the model is tiny, and CI has two cores for everything.
    '-t', '1', '-tb', '1',
    '--metrics', '--slots', '--no-webui',
    ...(opts.extraArgs ?? []),
  ];
  const proc = spawn(build.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const exited = once(proc, 'exit');
  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      await exited;
    }
  };
  const url = `http://127.0.0.1:${port}`;
  return new Promise((resolve, reject) => {
    let loaded = false;
    const onChunk = (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      output.push(text);
      // "srv    load_model: ..." comes before; "main: model loaded" then "main: server is listening".
      if (/model loaded/.test(text)) loaded = true;
      if (loaded && /listening on/.test(output.join(''))) {
        resolve({ url, port, proc, output, kill: () => kill('SIGKILL'), stop: () => kill('SIGTERM') });
      }
    };
    proc.stdout?.on('data', onChunk);
    proc.stderr?.on('data', onChunk);
    proc.once('error', reject);
    proc.once('exit', (code, signal) => reject(new Error(`llama-server exited (${code ?? signal}) before it was ready:\n${output.join('')}`)));
  });
}

export interface LlamaSlot {
  readonly id: number;
  readonly is_processing: boolean;
}

/** llama-server's /slots: which sequence slots are busy now. */
export async function llamaSlots(server: { url: string }): Promise<LlamaSlot[]> {
  const res = await fetch(`${server.url}/slots`);
  if (res.status !== 200) throw new Error(`/slots answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as LlamaSlot[];
}

/** One value from llama-server's /metrics (its `llamacpp:` names). */
export async function llamaMetric(server: { url: string }, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  if (line === undefined) throw new Error(`llama-server /metrics has no ${name}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

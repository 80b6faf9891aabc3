import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { refusedPort } from './processes.js';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** SIGKILL: a crash (no persistence here, so it comes back empty). */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A `redis-server` of the test's own (a region's Redis), on a free loopback port (or `port`: a
 * restart on the same address) with no persistence; stopped by pid. Its data directory is removed
 * with it.
 */
export async function startRedisServer(opts: { port?: number } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-redis-'));
  const port = opts.port ?? (await refusedPort());
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server on ${port} exited with ${code ?? 'a signal'}: ${out.slice(-500)}`)));
  });
  const end = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: () => end('SIGKILL'),
    async stop() {
      await end('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

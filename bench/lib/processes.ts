import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface Child {
  readonly proc: ChildProcess;
  readonly url: string;
  stop(): Promise<void>;
}

/** Starts `node <script> <args>` and resolves with the `url` of its first JSON line whose msg is `ready`. */
export function startNode(script: string, args: string[], ready: string, env: NodeJS.ProcessEnv = {}): Promise<Child> {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  let pending = '';
  return new Promise((resolve, reject) => {
    proc.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        try {
          const obj = JSON.parse(line) as { msg?: string; url?: string };
          if (obj.msg === ready && obj.url) {
            resolve({
              proc,
              url: obj.url,
              stop: () =>
                new Promise((done) => {
                  if (proc.exitCode !== null) return done();
                  proc.once('exit', () => done());
                  proc.kill('SIGTERM');
                }),
            });
          }
        } catch {
          // not JSON
        }
      }
    });
    proc.once('exit', (code) => reject(new Error(`${script} exited with ${code ?? 'signal'} before ready`)));
  });
}

/** CPU time (user + system) a process has used, in microseconds, from /proc (Linux). */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15 of the full line)
  return (ticks * 1e6) / 100; // USER_HZ is 100 on Linux
}

import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface Child {
  readonly proc: ChildProcess;
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * Starts `node [nodeArgs] <script> <args>` and resolves with the `url` of its first JSON line whose
 * msg is `ready`. `nodeArgs` are Node's own flags (`--cpu-prof`, …).
 */
export function startNode(script: string, args: string[], ready: string, env: NodeJS.ProcessEnv = {}, nodeArgs: readonly string[] = []): Promise<Child> {
  const proc = spawn(process.execPath, [...nodeArgs, script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
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

/** CPU time (µs) per thread of a process, keyed by thread name and id ("node/1234", "V8 Worker/1240"). */
export function threadCpuMicros(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(`${name}/${tid}`, ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100);
    } catch {
      // the thread ended between listing and reading
    }
  }
  return out;
}

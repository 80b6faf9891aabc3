import { Pool } from 'undici';
import { percentile } from './stats.js';

export interface Target {
  readonly name: string;
  readonly pool: Pool;
}

export function target(name: string, url: string, connections = 512): Target {
  return { name, pool: new Pool(url, { connections, keepAliveTimeout: 60_000, pipelining: 1 }) };
}

export interface Shot {
  readonly path: string;
  readonly body: string;
}

/** One request; resolves with ms to the whole body, or to the first body byte with `firstByte`. */
export async function shoot(t: Target, shot: Shot, firstByte = false): Promise<{ ms: number; ok: boolean }> {
  const t0 = performance.now();
  const res = await t.pool.request({ path: shot.path, method: 'POST', headers: { 'content-type': 'application/json' }, body: shot.body });
  let ms = -1;
  for await (const _chunk of res.body) if (ms < 0 && firstByte) ms = performance.now() - t0;
  if (ms < 0) ms = performance.now() - t0;
  return { ms, ok: res.statusCode === 200 };
}

/** Concurrency 1, the targets interleaved request by request so drift hits all alike. */
export async function interleaved(targets: readonly Target[], shot: Shot, n: number, firstByte = false): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < targets.length; j++) {
      const t = targets[(i + j) % targets.length] as Target; // rotate who goes first
      const r = await shoot(t, shot, firstByte);
      if (!r.ok) throw new Error(`${t.name} answered an error`);
      out.get(t.name)?.push(r.ms);
    }
  }
  return out;
}

export interface OpenLoopResult {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly errors: number;
  readonly sent: number;
}

/** Open loop: request i is due at start + i/rate; latency counts from that due time (no coordinated omission). */
export async function openLoop(t: Target, shot: Shot, rate: number, seconds: number): Promise<OpenLoopResult> {
  const total = Math.round(rate * seconds);
  const lat: number[] = [];
  let errors = 0;
  const start = performance.now() + 5;
  const inflight: Promise<void>[] = [];
  let i = 0;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      const now = performance.now();
      while (i < total && start + (i * 1000) / rate <= now) {
        const due = start + (i * 1000) / rate;
        inflight.push(
          t.pool
            .request({ path: shot.path, method: 'POST', headers: { 'content-type': 'application/json' }, body: shot.body })
            .then(async (res) => {
              await res.body.text();
              if (res.statusCode !== 200) errors++;
              lat.push(performance.now() - due);
            })
            .catch(() => {
              errors++;
            }),
        );
        i++;
      }
      if (i < total) setImmediate(pump);
      else resolve();
    };
    pump();
  });
  await Promise.all(inflight);
  return { p50: percentile(lat, 50), p99: percentile(lat, 99), max: percentile(lat, 100), errors, sent: total };
}

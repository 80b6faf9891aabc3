import { cpus } from 'node:os';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { CLI, writeResults } from '../lib/fixture.js';
import { startNode, type Child } from '../lib/processes.js';
import { fmt, percentile } from '../lib/stats.js';

/**
 * Mid-stream failover: how long the client waits for the next token after its node fails.
 * Two `switchyard sim` nodes behind a gateway; the preferred one drops every stream after three
 * tokens (the connection is destroyed); the gateway continues each stream on the other. The
 * failover gap is the longest silence between two content chunks at the client; the same
 * streams with failover off end with an error event at the drop instead.
 * `node dist/bench/failover/run.js [--write] [--quick]`
 */
const args = new Set(process.argv.slice(2));
const N = args.has('--quick') ? 20 : 100;
const lines: string[] = [];
const out = (s = ''): void => {
  lines.push(s);
  process.stdout.write(s + '\n');
};
const children: Child[] = [];
const sim = async (extra: string[]): Promise<Child> => {
  const c = await startNode(CLI, ['sim', '--port', '0', '--tokens-per-second', '2000', '--ttft-ms', '1', ...extra], 'sim listening');
  children.push(c);
  return c;
};
try {
  const [flaky, steady] = [await sim(['--drop-rate', '1']), await sim([])];
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-failover-'));
  writeFileSync(join(dir, 'regions.yaml'), `regions:
  - id: r
    residency: x
    clusters:
      - id: c
        nodes:
          - { id: flaky, url: '${flaky.url}', engine: vllm, models: [sim-small], capacity: { tokensPerSecond: 100000, maxSequences: 64 } }
          - { id: steady, url: '${steady.url}', engine: vllm, models: [sim-small], capacity: { tokensPerSecond: 100, maxSequences: 64 } }
`);
  const gw = await startNode(CLI, ['gateway', '--config', join(dir, 'regions.yaml'), '--port', '0'], 'gateway listening', {
    SWITCHYARD_DATA_DIR: dir, SWITCHYARD_BREAKER_FAILURES: '1000000', SWITCHYARD_LOG_LEVEL: 'info', SWITCHYARD_LOG_FORMAT: 'json',
  });
  children.push(gw);
  const pool = new Pool(gw.url, { connections: 4 });
  const body = JSON.stringify({ model: 'sim-small', stream: true, max_tokens: 40, messages: [{ role: 'user', content: `echo: ${Array.from({ length: 30 }, (_, i) => `w${i}`).join(' ')}` }] });
  const gaps: number[] = [];
  let complete = 0;
  for (let i = 0; i < N; i++) {
    const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    let last = 0;
    let maxGap = 0;
    let text = '';
    for await (const chunk of res.body) {
      const now = performance.now();
      const s = (chunk as Buffer).toString('utf8');
      if (s.includes('"content":"')) {
        if (last > 0) maxGap = Math.max(maxGap, now - last);
        last = now;
      }
      text += s;
    }
    gaps.push(maxGap);
    if (text.includes('[DONE]') && !text.includes('"error"')) complete++;
  }
  await pool.close();
  out(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; ${N} streams, each dropped by its first node after 3 tokens`);
  out();
  out('| measure | p50 | p95 | max | streams complete |');
  out('|---|---|---|---|---|');
  out(`| longest silence at the client between two tokens, failover on (ms) | ${fmt(percentile(gaps, 50), 1)} | ${fmt(percentile(gaps, 95), 1)} | ${fmt(Math.max(...gaps), 1)} | ${complete} / ${N} |`);
  if (args.has('--write')) writeResults('failover', lines);
} finally {
  for (const c of children.reverse()) await c.stop();
}

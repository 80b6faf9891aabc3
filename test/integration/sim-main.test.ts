import { describe, expect, it } from 'vitest';
import { runSim } from '../../sim/main.js';

describe('runSim', () => {
  it('prints one "sim listening" JSON line, serves, and resolves after a stop', async () => {
    const lines: string[] = [];
    let listening: (line: string) => void = () => undefined;
    const firstLine = new Promise<string>((resolve) => {
      listening = resolve;
    });
    const stdout = {
      write(line: string) {
        lines.push(line);
        if (lines.length === 1) listening(line);
        return true;
      },
    };
    const stop = new AbortController();
    const running = runSim(['--port', '0', '--models', 'a,b', '--ttft-ms', '0'], { stdout, signal: stop.signal });

    const first = JSON.parse(await firstLine) as { msg: string; url: string; port: number };
    expect(first.msg).toBe('sim listening');
    expect(first.port).toBeGreaterThan(0);
    expect(first.url).toBe(`http://127.0.0.1:${first.port}`);
    const models = (await (await fetch(`${first.url}/v1/models`)).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toEqual(['a', 'b']);

    stop.abort();
    await running;
    await expect(fetch(`${first.url}/health`)).rejects.toThrow();
    expect(lines.every((l) => l.endsWith('\n'))).toBe(true);
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['sim listening', 'sim stopped']);
  });

  it('rejects bad flags with the flag name before listening', async () => {
    await expect(runSim(['--max-seqs', '0'])).rejects.toThrow(/--max-seqs/);
  });
});

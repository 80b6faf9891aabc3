import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../core/config/config-error.js';
import { parseRegions } from '../../core/config/load-regions.js';
import { loadSettings } from '../../core/config/settings.js';

function problemsOf(yaml: string): string[] {
  try {
    parseRegions(yaml, 'test.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const node = (id: string, extra = ''): string => `
          - id: ${id}
            url: http://127.0.0.1:9000
            engine: vllm
            models: [m]
            capacity: { tokensPerSecond: 100, maxSequences: 4 }${extra}`;

describe('regions.yaml', () => {
  it('parses the shipped file into a frozen topology', () => {
    const topo = parseRegions(readFileSync('regions.yaml', 'utf8'));
    expect([...topo.regions.keys()]).toEqual(['eu-west', 'eu-north']);
    expect(topo.nodes.map((n) => n.id)).toEqual(['eu-west-h100-1', 'eu-west-l4-1', 'eu-north-a100-1', 'eu-north-l4-1']);
    expect(topo.rttMs('eu-west', 'eu-north')).toBe(28);
    expect(topo.rttMs('eu-north', 'eu-west')).toBe(28);
    expect(topo.rttMs('eu-west', 'eu-west')).toBe(0);
    expect(Object.isFrozen(topo.nodes[0])).toBe(true);
    expect(topo.nodes[0]?.sim).toEqual({ ttftMs: 40, seed: 1 });
  });

  it('reports a bad URL with its full path', () => {
    const yaml = `regions:
  - id: r1
    residency: eu
    clusters:
      - id: c0
        nodes: []
      - id: c1
        nodes:${node('a')}${node('b')}
          - id: c
            url: ftp://nowhere
            engine: vllm
            models: [m]
            capacity: { tokensPerSecond: 100, maxSequences: 4 }
`;
    expect(problemsOf(yaml)).toEqual(['regions[0].clusters[1].nodes[2].url: must be an http(s) URL']);
  });

  it('reports every problem at once: duplicates, unknown regions, non-positive capacity', () => {
    const yaml = `regions:
  - id: r1
    residency: eu
    clusters:
      - id: c1
        nodes:${node('a')}${node('a')}
          - id: z
            url: http://x:1
            engine: vllm
            models: [m]
            capacity: { tokensPerSecond: 0, maxSequences: -1 }
  - id: r1
    residency: eu
distances:
  - between: [r1, mars]
    rttMs: 10
`;
    expect(problemsOf(yaml)).toEqual([
      'regions[0].clusters[0].nodes[1].id: duplicate node id "a" (first at regions[0].clusters[0].nodes[0].id)',
      'regions[0].clusters[0].nodes[2].capacity.tokensPerSecond: must be a positive number',
      'regions[0].clusters[0].nodes[2].capacity.maxSequences: must be a positive integer',
      'regions[1].id: duplicate region id "r1" (first at regions[0].id)',
      'distances[0].between[1]: unknown region "mars"',
    ]);
  });

  it('reports schema errors with paths: missing fields, unknown engine, unknown keys', () => {
    const yaml = `regions:
  - id: r1
    clusters:
      - id: c1
        nodes:
          - id: a
            url: http://x:1
            engine: triton
            models: [m]
            capacity: { tokensPerSecond: 1, maxSequences: 1 }
            colour: blue
`;
    const problems = problemsOf(yaml);
    expect(problems).toContain('regions[0].residency: expected required property');
    expect(problems.some((p) => p.startsWith('regions[0].clusters[0].nodes[0].engine:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('regions[0].clusters[0].nodes[0].colour:'))).toBe(true);
  });

  it('reports YAML syntax errors', () => {
    expect(problemsOf('regions: [\n')[0]).toMatch(/^: YAML:/);
  });
});

describe('settings', () => {
  it('uses defaults, then env, then flags', () => {
    expect(loadSettings({}).port).toBe(8080);
    expect(loadSettings({ SWITCHYARD_PORT: '9000' }).port).toBe(9000);
    expect(loadSettings({ SWITCHYARD_PORT: '9000' }, { port: '9100' }).port).toBe(9100);
    expect(loadSettings({}).host).toBe('127.0.0.1');
  });

  it('names the variable or flag at fault', () => {
    try {
      loadSettings({ SWITCHYARD_PORT: 'abc', SWITCHYARD_RETRY_ATTEMPTS: '0' }, { 'log-level': 'loud' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems.map((p) => p.path)).toEqual(['SWITCHYARD_PORT', '--log-level', 'SWITCHYARD_RETRY_ATTEMPTS']);
    }
  });
});

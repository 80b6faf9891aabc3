import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The module table of the README ("may import") is the architecture: imports run one way, so a
 * newcomer can read core without the gateway, and the sim stays a standalone program. This test
 * holds the code to it; cli/ and bench/ may import anything.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  core: [],
  proto: ['core'],
  scheduler: ['proto', 'core'],
  gateway: ['scheduler', 'core'],
  'gpu-agent': ['proto', 'core'],
  sim: [],
  console: [],
};

const IMPORT = /(?:^|\s)(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

function importsOf(module: string): Array<{ file: string; spec: string }> {
  const found: Array<{ file: string; spec: string }> = [];
  for (const entry of readdirSync(module, { recursive: true, encoding: 'utf8' })) {
    if (!/\.tsx?$/.test(entry)) continue;
    const file = join(module, entry);
    for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) found.push({ file, spec: (m[1] ?? m[2]) as string });
  }
  return found;
}

describe('module boundaries (README: "may import")', () => {
  it.each(Object.entries(MAY_IMPORT))('%s imports only itself and %j', (module, allowed) => {
    const imports = importsOf(module);
    expect(imports.length).toBeGreaterThan(0);
    const crossing = imports
      .filter(({ spec }) => spec.startsWith('.'))
      .map(({ file, spec }) => ({ file, spec, target: normalize(join(dirname(file), spec)).split('/')[0] as string }))
      .filter(({ target }) => target !== module && !allowed.includes(target));
    expect(crossing).toEqual([]);
  });

  it('the sim uses Node built-ins only, so it runs anywhere without our dependencies', () => {
    const packages = importsOf('sim').filter(({ spec }) => !spec.startsWith('.') && !spec.startsWith('node:'));
    expect(packages).toEqual([]);
  });

  it('the README table says the same', () => {
    const readme = readFileSync('README.md', 'utf8');
    for (const [module, allowed] of Object.entries(MAY_IMPORT)) {
      const row = readme.split('\n').find((line) => line.startsWith(`| [\`${module}/\`]`));
      expect(row, module).toBeDefined();
      const mayImport = (row as string).split('|').at(-2)?.trim() ?? '';
      for (const other of Object.keys(MAY_IMPORT)) {
        if (other === module) continue;
        expect(mayImport.split(/,\s*/).includes(other), `${module} may import ${other}`).toBe(allowed.includes(other));
      }
    }
  });
});

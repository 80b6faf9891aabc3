import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/**
 * Switchyard runs on Node 20 (package.json engines, and what CI has): no installed package may
 * declare that it needs a newer Node. cookie@2 (through fastify's light-my-request) did; it is
 * pinned to 1.1.1 by an npm override (same stringifySetCookie, Node >= 18).
 */
describe('installed packages', () => {
  it('all accept Node 20', () => {
    const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { version?: string; engines?: { node?: string } | string[] }> };
    const needsNewer = Object.entries(lock.packages)
      .filter(([, p]) => {
        const node = Array.isArray(p.engines) ? undefined : p.engines?.node;
        // ">=22", "^22 || >=24", ">= 21.0.0": every alternative starts above 20.
        return node !== undefined && node.split('||').every((alt) => /^\s*(>=?|\^|~)?\s*v?(2[1-9]|[3-9]\d)/.test(alt));
      })
      .map(([name, p]) => `${name}@${p.version ?? '?'}`);
    expect(needsNewer).toEqual([]);
  });
});

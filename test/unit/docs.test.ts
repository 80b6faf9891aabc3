import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KNOBS } from '../../core/config/settings.js';

describe('docs/configuration.md', () => {
  it('documents every setting with its flag and variable', () => {
    const doc = readFileSync('docs/configuration.md', 'utf8');
    const missing = KNOBS.filter((k) => !doc.includes(`\`--${k.flag}\``) || !doc.includes(`\`${k.env}\``)).map((k) => k.env);
    expect(missing).toEqual([]);
  });
});

import { readFileSync } from 'node:fs';

/** The package version, read lazily (never at import time) from package.json. */
export function packageVersion(): string {
  try {
    const url = new URL('../../package.json', import.meta.url); // dist/core/ → package root
    const fallback = new URL('../package.json', import.meta.url); // core/ when run from source
    for (const candidate of [url, fallback]) {
      try {
        const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'switchyard' && typeof pkg.version === 'string') return pkg.version;
      } catch {
        // try the next location
      }
    }
  } catch {
    // fall through
  }
  return '0.0.0-unknown';
}

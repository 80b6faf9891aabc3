import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's root directory (where package.json is), found from a module's URL, so that data
 * files (migrations/, proto/) resolve alike from the sources and from the build in dist/.
 */
export function packageRoot(fromUrl: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(fromUrl));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json')) && !dir.endsWith('dist')) return dir;
    dir = dirname(dir);
  }
  throw new Error('package root not found');
}

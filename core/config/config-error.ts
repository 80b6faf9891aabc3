/** A configuration problem at a path such as `regions[0].clusters[1].nodes[2].url`. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * Thrown once, with every problem found, so an operator fixes the file in one pass. The CLI
 * prints the problems and exits with code 2, without a stack trace.
 */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(`${source}: ${problems.length} configuration problem(s)\n` + problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
  }
}

export function formatProblem(p: ConfigProblem): string {
  return p.path === '' ? `  ${p.message}` : `  ${p.path}: ${p.message}`;
}

/** JSON pointer (`/regions/0/clusters/1/url`) to the dotted form operators read (`regions[0].clusters[1].url`). */
export function pointerToPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(part) ? `[${part}]` : out === '' ? part : `.${part}`;
  }
  return out;
}

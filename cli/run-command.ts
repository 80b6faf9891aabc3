import { parseArgs } from 'node:util';
import { ConfigError } from '../core/config/config-error.js';
import { KNOBS, loadSettings, type Settings } from '../core/config/settings.js';

/** Exit codes: 0 done, 1 runtime failure, 2 bad configuration or usage. */
export const EXIT_CONFIG = 2;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Flags every long-running command accepts: one per settings knob. */
export function settingsFromArgv(argv: readonly string[], env: NodeJS.ProcessEnv): Settings {
  const options: Record<string, { type: 'string' }> = {};
  for (const knob of KNOBS) options[knob.flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return loadSettings(env, values);
}

/**
 * Runs a command and turns configuration and usage errors into a readable message and exit
 * code 2, without a stack trace; anything else is a crash with exit code 1.
 */
export async function runCommand(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard: invalid configuration\n${err.message}\n`);
      process.exitCode = EXIT_CONFIG;
      return;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`switchyard: ${err.message}\nRun 'switchyard help' for usage.\n`);
      process.exitCode = EXIT_CONFIG;
      return;
    }
    process.stderr.write(`switchyard: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}

/** Resolves on the first SIGTERM or SIGINT; a second one exits at once. */
export function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const handler = (signal: NodeJS.Signals): void => {
      if (seen) process.exit(130);
      seen = true;
      resolve(signal);
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
  });
}

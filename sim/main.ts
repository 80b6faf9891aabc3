import { pathToFileURL } from 'node:url';
import { parseSimArgs } from './sim-options.js';
import type { SimLogger } from './sim-server.js';
import { startSim } from './sim-server.js';

/** Where runSim writes its JSON lines and what stops it besides SIGTERM/SIGINT (tests). */
export interface RunSimIo {
  readonly stdout?: { write(line: string): unknown };
  readonly signal?: AbortSignal;
}

/** One JSON object per line, pino-shaped enough for `jq` and the e2e helpers. */
function jsonLineLogger(out: { write(line: string): unknown }): SimLogger {
  return {
    info(obj, msg) {
      out.write(`${JSON.stringify({ level: 30, time: Date.now(), name: 'sim', ...obj, msg })}\n`);
    },
  };
}

/**
 * `switchyard sim ...`: parse flags, listen, print `{"msg":"sim listening","url":...,"port":...}`,
 * and resolve once SIGTERM or SIGINT has stopped the server, so the process exits 0. Bad flags
 * reject with an Error naming the flag.
 */
export async function runSim(argv: readonly string[], io: RunSimIo = {}): Promise<void> {
  const options = parseSimArgs(argv);
  const log = jsonLineLogger(io.stdout ?? process.stdout);
  const sim = await startSim(options, log);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      io.signal?.removeEventListener('abort', stop);
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    io.signal?.addEventListener('abort', stop, { once: true });
    if (io.signal?.aborted === true) stop();
  });
  await sim.close();
  log.info({ port: sim.port }, 'sim stopped');
}

// Lets `node dist/sim/main.js --port 8001` run without the CLI.
const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  runSim(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`switchyard sim: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  });
}

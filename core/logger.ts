import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { isColorSupported, prettyFactory } from 'pino-pretty';

export type { Logger };

/** `auto`: pretty lines on a terminal, JSON lines otherwise (a pipe, a file, a log collector). */
export type LogFormat = 'auto' | 'json' | 'pretty';

export const LOG_FORMATS: readonly LogFormat[] = ['auto', 'json', 'pretty'];

export function isLogFormat(value: string): value is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(value);
}

export interface LoggerSettings {
  readonly level: string;
  /** Name of the process role (gateway, sim, …), on every line. */
  readonly name: string;
  /** Default `auto`. */
  readonly format?: LogFormat;
}

/**
 * One pino logger per process. Authorization headers and API keys are redacted at the source so
 * that no code path can leak them; prompts and completions are never passed to the logger at all.
 * Redaction happens before formatting, so pretty lines are redacted too.
 */
export function createLogger(settings: LoggerSettings, destination?: NodeJS.WritableStream): Logger {
  const options: LoggerOptions = {
    name: settings.name,
    level: settings.level,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["x-api-key"]',
        'headers.authorization',
        'apiKey',
        'key',
        'token',
      ],
      censor: '[redacted]',
    },
  };
  const out = destination ?? process.stdout;
  if (usePretty(settings.format ?? 'auto', out)) return pino(options, prettyDestination(out));
  return destination ? pino(options, destination as DestinationStream) : pino(options);
}

function usePretty(format: LogFormat, out: NodeJS.WritableStream): boolean {
  if (format !== 'auto') return format === 'pretty';
  return isTerminal(out);
}

function isTerminal(out: NodeJS.WritableStream): boolean {
  return (out as { isTTY?: boolean }).isTTY === true;
}

/**
 * pino's own pretty printer, called in the logging call itself rather than in a worker-thread
 * transport: a line is written before `log.info` returns, so the last lines of a process that
 * exits are never lost. One line per event (an error's stack still takes its own lines).
 */
function prettyDestination(out: NodeJS.WritableStream): DestinationStream {
  const format = prettyFactory({
    singleLine: true,
    // Colours only on a terminal, and not where NO_COLOR asks for none (colorette's rule).
    colorize: isTerminal(out) && isColorSupported,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,name,module',
    messageFormat: '{if module}{module}: {end}{msg}',
  });
  return { write: (line: string) => void out.write(format(line)) };
}

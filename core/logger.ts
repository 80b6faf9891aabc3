import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export interface LoggerSettings {
  readonly level: string;
  /** Name of the process role (gateway, sim, …), on every line. */
  readonly name: string;
}

/**
 * One pino logger per process. Authorization headers and API keys are redacted at the source so
 * that no code path can leak them; prompts and completions are never passed to the logger at all.
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
  return destination ? pino(options, destination as pino.DestinationStream) : pino(options);
}

import { Writable } from 'node:stream';
import { stripVTControlCharacters } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../core/config/settings.js';
import { ConfigError } from '../../core/config/config-error.js';
import { createLogger, type LogFormat } from '../../core/logger.js';

/** A stdout stand-in that keeps what is written, a terminal or not. */
function output(isTTY: boolean): { stream: Writable & { isTTY: boolean }; text(): string } {
  const chunks: string[] = [];
  const stream = Object.assign(
    new Writable({
      write(chunk: Buffer | string, _enc, cb) {
        chunks.push(chunk.toString());
        cb();
      },
    }),
    { isTTY },
  );
  return { stream, text: () => chunks.join('') };
}

function logTwice(isTTY: boolean, format?: LogFormat): string {
  const out = output(isTTY);
  const log = createLogger({ name: 'switchyard', level: 'info', ...(format === undefined ? {} : { format }) }, out.stream);
  log.child({ module: 'services' }).info({ applied: ['a', 'b'], apiKey: 'sk-secret' }, 'migrations applied');
  log.warn({ headers: { authorization: 'Bearer sk-secret' } }, 'auth is off');
  return out.text();
}

describe('createLogger', () => {
  it('writes one readable line per event on a terminal, written before the call returns, keys redacted', () => {
    const lines = logTwice(true).trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    const plain = lines.map((l) => stripVTControlCharacters(l));
    expect(plain[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: services: migrations applied \{"applied":\["a","b"\],"apiKey":"\[redacted\]"\}$/);
    expect(plain[1]).toMatch(/^\[[\d:.]+\] WARN: auth is off \{"headers":\{"authorization":"\[redacted\]"\}\}$/);
    expect(lines.join('\n')).not.toContain('sk-secret');
  });

  it('writes JSON lines when the destination is not a terminal, or when json is asked for', () => {
    for (const text of [logTwice(false), logTwice(true, 'json'), logTwice(false, 'auto')]) {
      const events = text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(events.map((e) => e['msg'])).toEqual(['migrations applied', 'auth is off']);
      expect(events[0]).toMatchObject({ level: 30, name: 'switchyard', module: 'services', apiKey: '[redacted]' });
    }
  });

  it('writes pretty lines into a pipe when pretty is asked for', () => {
    const lines = logTwice(false, 'pretty').trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\[[\d:.]+\] INFO: services: migrations applied /);
  });
});

describe('SWITCHYARD_LOG_FORMAT', () => {
  it('is auto by default, takes json or pretty, and refuses anything else with its path', () => {
    expect(loadSettings({}).logFormat).toBe('auto');
    expect(loadSettings({ SWITCHYARD_LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(loadSettings({}, { 'log-format': 'pretty' }).logFormat).toBe('pretty');
    expect(() => loadSettings({ SWITCHYARD_LOG_FORMAT: 'text' })).toThrow(ConfigError);
    expect(() => loadSettings({ SWITCHYARD_LOG_FORMAT: 'text' })).toThrow(/SWITCHYARD_LOG_FORMAT: must be one of auto, json, pretty/);
  });
});

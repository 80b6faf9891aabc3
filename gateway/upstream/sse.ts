/**
 * Server-sent events, handled as bytes. The relay forwards each complete event as one write, so
 * a client sees exactly the events the engine sent (never two merged, never one split), and only
 * events that carry a usage object are ever decoded.
 */

const LF2 = Buffer.from('\n\n');
const CRLF2 = Buffer.from('\r\n\r\n');

/** Splits a byte stream into complete events (each including its terminating blank line). */
export class SseSplitter {
  private pending: Buffer | undefined;

  /** Calls `onEvent` for every event completed by `chunk`; keeps the incomplete tail. */
  push(chunk: Buffer, onEvent: (event: Buffer) => void): void {
    let buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = undefined;
    for (;;) {
      const lf = buf.indexOf(LF2);
      const crlf = buf.indexOf(CRLF2);
      let end: number;
      if (lf !== -1 && (crlf === -1 || lf < crlf)) end = lf + 2;
      else if (crlf !== -1) end = crlf + 4;
      else break;
      onEvent(buf.subarray(0, end));
      if (end === buf.length) return;
      buf = buf.subarray(end);
    }
    if (buf.length > 0) this.pending = buf;
  }

  /** Bytes of an event the stream ended in the middle of, if any. */
  rest(): Buffer | undefined {
    return this.pending;
  }
}

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens?: number;
}

/** Cheap pre-check: does this event (or body) carry a usage object, not `"usage": null`? */
export function hasUsageObject(buf: Buffer): boolean {
  return buf.indexOf('"usage":{') !== -1 || buf.indexOf('"usage": {') !== -1;
}

/** The `data:` payload of an event as parsed JSON, or undefined for `[DONE]`, comments, bad JSON. */
export function parseEventData(event: Buffer): unknown {
  const text = event.toString('utf8');
  let data = '';
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith('data:')) data += line.slice(line[5] === ' ' ? 6 : 5);
  }
  if (data === '' || data === '[DONE]') return undefined;
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}

/**
 * Usage from a parsed chunk or body, if it has valid token counts: chat and completions' own, or
 * the Responses API's (`input_tokens`/`output_tokens`, in a response or a `response.completed` event).
 */
export function usageOf(value: unknown): Usage | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as { usage?: unknown; response?: { usage?: unknown } };
  const usage = v.usage ?? v.response?.usage;
  if (typeof usage !== 'object' || usage === null) return undefined;
  const u = usage as Record<string, unknown>;
  const prompt = u['prompt_tokens'] ?? u['input_tokens'];
  const completion = u['completion_tokens'] ?? u['output_tokens'] ?? 0; // embeddings report no completion tokens
  if (typeof prompt !== 'number' || typeof completion !== 'number') return undefined;
  return { prompt_tokens: prompt, completion_tokens: completion };
}

/** A chunk whose only content is usage (`"choices": []`): OpenAI's include_usage trailer. */
export function isUsageOnlyChunk(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const choices = (value as { choices?: unknown }).choices;
  return Array.isArray(choices) && choices.length === 0 && usageOf(value) !== undefined;
}

/** Finds the usage object of a complete JSON body without parsing the whole body (embeddings are large). */
export function extractUsage(body: Buffer): Usage | undefined {
  let at = body.lastIndexOf('"usage":');
  if (at === -1) return undefined;
  at = body.indexOf('{', at);
  if (at === -1) return undefined;
  let depth = 0;
  for (let i = at; i < body.length; i++) {
    const c = body[i];
    if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) {
      try {
        return usageOf({ usage: JSON.parse(body.subarray(at, i + 1).toString('utf8')) });
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** An OpenAI-style error event, as the SDKs raise it mid-stream. */
export function errorEvent(message: string, code: string): string {
  return `data: ${JSON.stringify({ error: { message, type: 'server_error', param: null, code } })}\n\n`;
}

import type { InferenceBody } from './schemas.js';

const USAGE_OPTION = Buffer.from('"stream_options":{"include_usage":true},');

/**
 * The body of a stream as the engine gets it: asking for usage (so that tokens are counted from
 * the engine's own numbers). When the client sent no `stream_options`, the option is spliced into
 * the raw bytes right after the opening brace, so the client's JSON is not serialised again (a
 * long conversation is hundreds of KB); otherwise the parsed body is re-serialised with it set.
 * The body was validated as a JSON object with `model` and `messages`/`prompt`, so it has members
 * after the brace and the trailing comma is right.
 */
export function bodyAskingForUsage(raw: Buffer, body: InferenceBody): Buffer | string {
  // Not when it is there as null: the engine would read the client's (later) null over ours.
  if (body.stream_options === undefined) {
    const brace = raw.indexOf(0x7b); // '{': only whitespace may come before it
    if (brace !== -1) return Buffer.concat([raw.subarray(0, brace + 1), USAGE_OPTION, raw.subarray(brace + 1)]);
  }
  return JSON.stringify({ ...body, stream_options: { ...body.stream_options, include_usage: true } });
}

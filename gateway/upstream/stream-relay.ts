import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { networkReason } from './proxy.js';
import { errorEvent, hasUsageObject, isUsageOnlyChunk, parseEventData, SseSplitter, usageOf, type Usage } from './sse.js';

export interface RelayOptions {
  /** The client asked for `stream_options.include_usage`; otherwise the usage trailer is dropped. */
  readonly clientWantsUsage: boolean;
  /** Called once, when the first event is written to the client. */
  readonly onFirstEvent: () => void;
}

export interface RelayResult {
  readonly usage: Usage | undefined;
  /** Events written to the client. */
  readonly events: number;
  /** Why the stream ended early, as a metric reason; undefined when it ended cleanly. */
  readonly failure: string | undefined;
}

/**
 * Relays an upstream SSE body to the client event by event. Each complete event is one write,
 * flushed as it arrives; backpressure from a slow client pauses reading from the engine. A failure
 * after the first byte ends the stream with an OpenAI-style error event, which the SDKs raise.
 */
export async function relaySse(
  upstream: Dispatcher.ResponseData['body'],
  res: ServerResponse,
  opts: RelayOptions,
): Promise<RelayResult> {
  const splitter = new SseSplitter();
  let usage: Usage | undefined;
  let events = 0;
  let blocked = false;
  const onEvent = (event: Buffer): void => {
    if (hasUsageObject(event)) {
      const data = parseEventData(event);
      usage = usageOf(data) ?? usage;
      if (!opts.clientWantsUsage && isUsageOnlyChunk(data)) return;
    }
    if (events++ === 0) opts.onFirstEvent();
    if (!res.write(event)) blocked = true;
  };
  try {
    for await (const chunk of upstream) {
      splitter.push(chunk as Buffer, onEvent);
      if (blocked) {
        blocked = false;
        await once(res, 'drain');
      }
    }
  } catch (error) {
    const reason = res.destroyed ? 'client_closed' : networkReason(error);
    if (!res.destroyed) {
      const message = reason === 'idle_timeout' ? 'The model server stopped sending tokens.' : 'The model server connection was lost mid-stream.';
      res.end(errorEvent(message, reason === 'idle_timeout' ? 'upstream_timeout' : 'upstream_error'));
    }
    return { usage, events, failure: reason };
  }
  if (splitter.rest() !== undefined && !res.destroyed) {
    // The engine closed inside an event: forwarding half an event would corrupt the client's parse.
    res.end(errorEvent('The model server ended the stream inside an event.', 'upstream_error'));
    return { usage, events, failure: 'truncated' };
  }
  res.end();
  return { usage, events, failure: undefined };
}

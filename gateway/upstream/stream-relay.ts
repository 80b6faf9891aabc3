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
  /** Why the upstream body was destroyed on purpose (its node was declared down), if it was. */
  readonly endedBy?: () => string | undefined;
  /** Rewrites an event before it is written (a continued stream's leg); undefined drops it. */
  readonly rewrite?: ((event: Buffer) => Buffer | undefined) | undefined;
  /** Sees every event written (kept to continue the stream elsewhere if this leg fails). */
  readonly onWritten?: ((event: Buffer) => void) | undefined;
  /** On a failure, return it without ending the client's stream: the caller may continue it. */
  readonly keepOpenOnFailure?: boolean;
}

export interface RelayResult {
  readonly usage: Usage | undefined;
  /** Events written to the client. */
  readonly events: number;
  /** Why the stream ended early, as a metric reason; undefined when it ended cleanly. */
  readonly failure: string | undefined;
}

/** The error event a client gets for each way a stream can fail after its first byte. */
const FAILURE_EVENTS: Record<string, string> = {
  idle_timeout: errorEvent('The model server stopped sending tokens.', 'upstream_timeout'),
  node_down: errorEvent('The node serving this stream was declared down (failed health checks, or its agent lost the engine).', 'upstream_unavailable'),
  dropped: errorEvent('The model server connection was lost mid-stream.', 'upstream_error'),
  truncated: errorEvent('The model server ended the stream inside an event.', 'upstream_error'),
};

/** Ends a client's stream with the error event for `reason`. */
export function endWithFailure(res: ServerResponse, reason: string): void {
  res.end(FAILURE_EVENTS[reason] ?? FAILURE_EVENTS['dropped']);
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
  const onEvent = (raw: Buffer): void => {
    const event = opts.rewrite === undefined ? raw : opts.rewrite(raw);
    if (event === undefined) return;
    if (hasUsageObject(event)) {
      const data = parseEventData(event);
      usage = usageOf(data) ?? usage;
      if (!opts.clientWantsUsage && isUsageOnlyChunk(data)) return;
    }
    if (events++ === 0) opts.onFirstEvent();
    opts.onWritten?.(event);
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
    const reason = res.destroyed ? 'client_closed' : (opts.endedBy?.() ?? networkReason(error));
    if (!res.destroyed && opts.keepOpenOnFailure !== true) endWithFailure(res, reason);
    return { usage, events, failure: reason };
  }
  if (splitter.rest() !== undefined && !res.destroyed) {
    // The engine closed inside an event: forwarding half an event would corrupt the client's parse.
    if (opts.keepOpenOnFailure !== true) endWithFailure(res, 'truncated');
    return { usage, events, failure: 'truncated' };
  }
  res.end();
  return { usage, events, failure: undefined };
}

import type { ServerResponse } from 'node:http';

/** Where a writer's events go: a client's HTTP response, or a background response's event log. */
export interface EventSink {
  event(frame: string, type: string, sequence: number): void;
}

/** The sink that writes each event straight to a client. */
export function toClient(res: ServerResponse): EventSink {
  return {
    event(frame) {
      res.write(frame);
    },
  };
}

/**
 * Writes the Responses API's server-sent events in the order the official SDKs expect:
 * response.created (and response.queued for a background response), response.in_progress,
 * response.output_item.added, response.content_part.added, response.output_text.delta…,
 * response.output_text.done, response.content_part.done, response.output_item.done, then
 * response.completed (or response.incomplete); on failure an `error` event and response.failed.
 * Every event carries `type` and a `sequence_number`, counted from the one given (a background run continues its log).
 */
export class ResponseEventWriter {
  constructor(
    private readonly sink: EventSink,
    private sequence = 0,
  ) {}

  private send(type: string, payload: Record<string, unknown>): void {
    const sequence = this.sequence++;
    this.sink.event(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence, ...payload })}\n\n`, type, sequence);
  }

  /** A foreground response: created and running at once. */
  started(response: Record<string, unknown>): void {
    this.send('response.created', { response });
    this.inProgress(response);
  }

  /** A background response, accepted and waiting for a worker. */
  queued(response: Record<string, unknown>): void {
    this.send('response.created', { response });
    this.send('response.queued', { response });
  }

  inProgress(response: Record<string, unknown>): void {
    this.send('response.in_progress', { response });
  }

  textStarted(itemId: string): void {
    this.send('response.output_item.added', {
      output_index: 0,
      item: { id: itemId, type: 'message', status: 'in_progress', role: 'assistant', content: [] },
    });
    this.send('response.content_part.added', {
      item_id: itemId,
      output_index: 0,
      content_index: 0,
      part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
    });
  }

  delta(itemId: string, text: string): void {
    this.send('response.output_text.delta', { item_id: itemId, output_index: 0, content_index: 0, delta: text, logprobs: [] });
  }

  textDone(itemId: string, text: string): void {
    const part = { type: 'output_text', text, annotations: [], logprobs: [] };
    this.send('response.output_text.done', { item_id: itemId, output_index: 0, content_index: 0, text, logprobs: [] });
    this.send('response.content_part.done', { item_id: itemId, output_index: 0, content_index: 0, part });
    this.send('response.output_item.done', {
      output_index: 0,
      item: { id: itemId, type: 'message', status: 'completed', role: 'assistant', content: [part] },
    });
  }

  finished(response: Record<string, unknown>): void {
    this.send(response['status'] === 'incomplete' ? 'response.incomplete' : 'response.completed', { response });
  }

  failed(response: Record<string, unknown>, code: string, message: string): void {
    this.send('error', { code, message, param: null });
    this.send('response.failed', { response });
  }
}

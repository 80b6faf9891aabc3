import type { ServerResponse } from 'node:http';

/**
 * Writes the Responses API's server-sent events in the order the official SDKs expect:
 * response.created, response.in_progress, response.output_item.added, response.content_part.added,
 * response.output_text.delta…, response.output_text.done, response.content_part.done,
 * response.output_item.done, then response.completed (or response.incomplete); on failure an
 * `error` event and response.failed. Every event carries `type` and a `sequence_number`.
 */
export class ResponseEventWriter {
  private sequence = 0;

  constructor(private readonly res: ServerResponse) {}

  private send(type: string, payload: Record<string, unknown>): void {
    this.res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.sequence++, ...payload })}\n\n`);
  }

  started(response: Record<string, unknown>): void {
    this.send('response.created', { response });
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

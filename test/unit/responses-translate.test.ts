import { describe, expect, it } from 'vitest';
import type { StoredResponse } from '../../core/storage/response-store.js';
import { chatBody, inputItemsPage, parseResponsesRequest, toResponseObject } from '../../gateway/responses/translate.js';

const fails = (body: unknown): { param: string | null; message: string } => {
  try {
    parseResponsesRequest(body);
  } catch (e) {
    return e as { param: string | null; message: string };
  }
  throw new Error('expected a 400');
};

describe('parseResponsesRequest', () => {
  it('a string input is one user message; sampling fields map to chat completions', () => {
    const r = parseResponsesRequest({ model: 'm', input: 'hi', max_output_tokens: 7, temperature: 0.2, top_p: 0.9, user: 'u1', metadata: { a: 'b' } });
    expect(r).toMatchObject({ model: 'm', input: [{ role: 'user', content: 'hi' }], stream: false, background: false, store: true, metadata: { a: 'b' } });
    expect(r.params).toEqual({ max_tokens: 7, temperature: 0.2, top_p: 0.9, user: 'u1' });
  });

  it('message items with text parts; developer becomes system; text.format json maps to response_format', () => {
    const r = parseResponsesRequest({
      model: 'm',
      input: [
        { role: 'developer', content: 'be brief' },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'a' }, { type: 'input_text', text: 'b' }] },
        { role: 'assistant', content: [{ type: 'output_text', text: 'c' }] },
      ],
      text: { format: { type: 'json_object' } },
      tools: [],
      tool_choice: 'auto',
    });
    expect(r.input).toEqual([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'ab' },
      { role: 'assistant', content: 'c' },
    ]);
    expect(r.params['response_format']).toEqual({ type: 'json_object' });
  });

  it('refuses what it cannot serve, naming the field', () => {
    expect(fails({ model: 'm', input: 'x', tools: [{ type: 'web_search' }] }).param).toBe('tools');
    expect(fails({ model: 'm', input: 'x', frobnicate: 1 }).param).toBe('frobnicate');
    expect(fails({ model: 'm', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] }).param).toBe('input[0].content[0]');
    expect(fails({ model: 'm', input: [{ type: 'function_call_output', call_id: 'c', output: 'o' }] }).param).toBe('input[0].type');
    expect(fails({ model: 'm', input: 'x', background: true, store: false }).param).toBe('store');
    expect(fails({ model: 'm', input: 'x', max_output_tokens: 0 }).param).toBe('max_output_tokens');
    expect(fails({ input: 'x' }).param).toBe('model');
    expect(fails({ model: 'm', input: [] }).param).toBe('input');
  });
});

const stored = (over: Partial<StoredResponse> = {}): StoredResponse => ({
  id: 'resp_1', conversationId: 'resp_0', createdAt: 1, status: 'completed', model: 'm', instructions: 'sys', input: [{ role: 'user', content: 'now' }],
  previousResponseId: 'resp_0', outputText: 'answer', messageId: 'msg_1', usage: { input_tokens: 3, output_tokens: 2 }, error: null,
  incompleteReason: null, background: false, store: true, metadata: {}, params: { max_tokens: 9 }, tenant: '', priority: 'standard', nodeId: 'n1',
  ...over,
});

describe('chat translation', () => {
  it('instructions first, then the earlier turns, then this input; usage requested on streams', () => {
    const body = chatBody(stored(), [{ role: 'user', content: 'before' }, { role: 'assistant', content: 'reply' }], true);
    expect(body).toMatchObject({
      model: 'm',
      max_tokens: 9,
      stream: true,
      stream_options: { include_usage: true },
      messages: [
        { role: 'system', content: 'sys' },
        { role: 'user', content: 'before' },
        { role: 'assistant', content: 'reply' },
        { role: 'user', content: 'now' },
      ],
    });
  });

  it('the API object carries the text as an output message, usage with totals, and the status', () => {
    const o = toResponseObject(stored());
    expect(o).toMatchObject({ id: 'resp_1', object: 'response', status: 'completed', previous_response_id: 'resp_0', max_output_tokens: 9 });
    expect(o['output']).toEqual([
      { type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'answer', annotations: [], logprobs: [] }] },
    ]);
    expect(o['usage']).toMatchObject({ input_tokens: 3, output_tokens: 2, total_tokens: 5 });
    expect(toResponseObject(stored({ status: 'queued', outputText: null, usage: null }))['output']).toEqual([]);
  });
});

describe('inputItemsPage', () => {
  const r = stored({
    id: 'resp_abc',
    input: [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
      { role: 'user', content: 'bye' },
    ],
  });
  const ids = (page: Record<string, unknown>): string[] => (page['data'] as Array<{ id: string }>).map((i) => i.id);

  it('lists this request input newest first, with text parts by role', () => {
    const page = inputItemsPage(r, {});
    expect(ids(page)).toEqual(['msg_abc0003', 'msg_abc0002', 'msg_abc0001', 'msg_abc0000']);
    expect(page).toMatchObject({ object: 'list', first_id: 'msg_abc0003', last_id: 'msg_abc0000', has_more: false });
    expect((page['data'] as unknown[])[1]).toEqual({
      id: 'msg_abc0002',
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text: 'hello', annotations: [] }],
    });
    expect((page['data'] as unknown[])[0]).toMatchObject({ role: 'user', content: [{ type: 'input_text', text: 'bye' }] });
  });

  it('pages with limit and after/before, in either order', () => {
    const first = inputItemsPage(r, { order: 'asc', limit: '3' });
    expect(ids(first)).toEqual(['msg_abc0000', 'msg_abc0001', 'msg_abc0002']);
    expect(first['has_more']).toBe(true);
    const rest = inputItemsPage(r, { order: 'asc', limit: '3', after: 'msg_abc0002' });
    expect(ids(rest)).toEqual(['msg_abc0003']);
    expect(rest['has_more']).toBe(false);
    expect(ids(inputItemsPage(r, { before: 'msg_abc0001' }))).toEqual(['msg_abc0003', 'msg_abc0002']);
    const empty = inputItemsPage(r, { after: 'msg_abc0000' });
    expect(empty).toMatchObject({ data: [], first_id: null, last_id: null, has_more: false });
  });

  it('refuses a bad limit, order or cursor naming the parameter', () => {
    const param = (query: Record<string, unknown>): unknown => {
      try {
        inputItemsPage(r, query);
      } catch (e) {
        return (e as { param: unknown }).param;
      }
      return 'no error';
    };
    expect(param({ limit: '0' })).toBe('limit');
    expect(param({ limit: '101' })).toBe('limit');
    expect(param({ limit: 'x' })).toBe('limit');
    expect(param({ order: 'up' })).toBe('order');
    expect(param({ after: 'msg_other' })).toBe('after');
  });
});

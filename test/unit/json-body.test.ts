import { Type } from '@sinclair/typebox';
import type { FastifySchemaValidationError } from 'fastify';
import { describe, expect, it } from 'vitest';
import type { SwitchyardError } from '../../core/errors.js';
import { parseJsonBody } from '../../gateway/plugins/json-body.js';
import { strictBodyValidators, validationError } from '../../gateway/plugins/validation.js';
import { ChatCompletionBody, CompletionBody } from '../../gateway/routes/v1/schemas.js';

function refusal(buf: Buffer, required = true): SwitchyardError {
  try {
    parseJsonBody(buf, required);
  } catch (err) {
    return err as SwitchyardError;
  }
  throw new Error('expected a refusal');
}

describe('parseJsonBody', () => {
  it('parses well-formed UTF-8 JSON, escaped surrogate pairs included', () => {
    expect(parseJsonBody(Buffer.from('{"a":"café ☕ \\ud83d\\ude00"}'), true)).toEqual({ a: 'café ☕ 😀' });
  });

  it('refuses bytes that are not UTF-8 before parsing', () => {
    for (const bytes of [[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80] /* an encoded surrogate */, [0xe2, 0x82]]) {
      const err = refusal(Buffer.concat([Buffer.from('{"a":"'), Buffer.from(bytes), Buffer.from('"}')]));
      expect({ code: err.code, status: err.status }).toEqual({ code: 'invalid_json', status: 400 });
      expect(err.message).toContain('UTF-8');
    }
  });

  it('refuses lone surrogate escapes, in values and keys, however deep', () => {
    for (const text of ['"\\ud800"', '{"a":["x","\\udc00y"]}', '{"\\uD800":1}', `${'['.repeat(5000)}"\\ud83d"${']'.repeat(5000)}`]) {
      expect(refusal(Buffer.from(text)).code).toBe('invalid_json');
    }
    // An escaped backslash followed by "ud800" is plain text.
    expect(parseJsonBody(Buffer.from('"\\\\ud800"'), true)).toBe('\\ud800');
  });

  it('an empty body is no body where none is needed, and a clear 400 where one is', () => {
    expect(parseJsonBody(Buffer.alloc(0), false)).toBeUndefined();
    expect(refusal(Buffer.alloc(0), true).message).toBe('Request body is empty; expected a JSON object.');
    expect(refusal(Buffer.from(' '), false).message).toBe('Request body is not valid JSON.');
  });
});

describe('validators: bodies strict, query strings coerced', () => {
  const compile = strictBodyValidators()({}, { customOptions: {} });
  const Query = Type.Object({ limit: Type.Integer({ minimum: 1 }), on: Type.Boolean() });

  it('a query string "5" is the integer 5; a body "5" is refused', () => {
    const query = compile({ schema: Query, method: 'GET', url: '/x', httpPart: 'querystring' });
    const q: Record<string, unknown> = { limit: '5', on: 'true' };
    expect(query(q)).toBe(true);
    expect(q).toEqual({ limit: 5, on: true });
    const body = compile({ schema: Query, method: 'POST', url: '/x', httpPart: 'body' });
    const b: Record<string, unknown> = { limit: '5', on: true };
    expect(body(b)).toBe(false);
    expect(b['limit']).toBe('5');
  });

  function check(schema: object, data: unknown): SwitchyardError {
    const validate = compile({ schema, method: 'POST', url: '/x', httpPart: 'body' });
    expect(validate(data)).toBe(false);
    return validationError(validate.errors as FastifySchemaValidationError[], 'body', data);
  }
  const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

  it.each([
    [{ ...chat, model: 42 }, 'model', "Invalid type for 'model': expected a string, but got an integer instead."],
    [{ ...chat, max_tokens: '10' }, 'max_tokens', "Invalid type for 'max_tokens': expected an integer or null, but got a string instead."],
    [{ ...chat, max_tokens: 1.5 }, 'max_tokens', "Invalid type for 'max_tokens': expected an integer or null, but got a decimal number instead."],
    [{ ...chat, max_tokens: 0 }, 'max_tokens', "Invalid value for 'max_tokens': must be >= 1."],
    [{ ...chat, stream: 'yes' }, 'stream', "Invalid type for 'stream': expected a boolean or null, but got a string instead."],
    [{ ...chat, messages: [{ content: 'x' }] }, 'messages[0].role', "'messages[0].role' is a required property."],
    [{ ...chat, messages: [] }, 'messages', "Invalid value for 'messages': must NOT have fewer than 1 items."],
    [[chat], null, 'Invalid type for the request body: expected an object, but got an array instead.'],
  ])('chat %j → %s', (data, param, message) => {
    const err = check(ChatCompletionBody, data);
    expect({ param: err.param, message: err.message, status: err.status, code: err.code }).toEqual({ param, message, status: 400, code: 'invalid_request' });
  });

  it('a union of arrays: a wrong type is named, a wrong element is not called a wrong type', () => {
    expect(check(CompletionBody, { model: 'm', prompt: 42 }).message).toBe("Invalid type for 'prompt': expected a string or an array, but got an integer instead.");
    const mixed = check(CompletionBody, { model: 'm', prompt: [1, 'a'] });
    expect(mixed.param).toBe('prompt');
    expect(mixed.message).toBe("Invalid value for 'prompt': it matches none of the allowed forms.");
  });

  it('a union of literals lists the allowed values', () => {
    const schema = Type.Object({ groupBy: Type.Union([Type.Literal('tenant'), Type.Literal('model')]) });
    expect(check(schema, { groupBy: 'x' }).message).toBe('Invalid value for \'groupBy\': expected one of "tenant", "model".');
  });
});

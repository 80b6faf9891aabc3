import { AjvCompiler, type ValidatorFactory } from '@fastify/ajv-compiler';
import type { FastifyError, FastifySchemaValidationError } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';

/**
 * Fastify's own ajv compiler, twice: request bodies are JSON and keep their types (`"model": 42`
 * is a 400, never the model "42"; `"stream": "yes"` is not `true`), while query strings, path
 * parameters and headers are text and are still coerced to the schema's types.
 */
export function strictBodyValidators(): ValidatorFactory {
  const pool = AjvCompiler();
  return (externalSchemas, options) => {
    const coercing = pool(externalSchemas, options);
    const ajv = options?.mode === 'JTD' ? undefined : options;
    const strict = pool(externalSchemas, { ...ajv, customOptions: { ...ajv?.customOptions, coerceTypes: false } });
    return (route) => (route.httpPart === 'body' ? strict(route) : coercing(route));
  };
}

/**
 * A failed schema check as OpenAI words it: `param` names the field (`messages[0].role`), and a
 * value of the wrong type says what was expected and what came. With a union (`max_tokens`:
 * integer or null) ajv reports each alternative; they are read together.
 */
export function validationError(errors: readonly FastifySchemaValidationError[], part: FastifyError['validationContext'], data: unknown): SwitchyardError {
  const first = errors[0];
  const whole = `the request ${part ?? 'body'}`;
  if (first === undefined) return new SwitchyardError(ErrorCode.InvalidRequest, `Invalid value for ${whole}.`);
  const at = first.instancePath;
  const path = pathOf(at);
  const missing = first.params['missingProperty'];
  if (typeof missing === 'string') {
    const param = paramOf([...path, missing]);
    return new SwitchyardError(ErrorCode.InvalidRequest, `'${param}' is a required property.`, { param });
  }
  const param = path.length === 0 ? null : paramOf(path);
  const name = param === null ? whole : `'${param}'`;
  // What the alternatives said about this value itself, and what they said about what is inside it.
  const here = errors.filter((e) => e.instancePath === at && e.keyword !== 'anyOf' && e.keyword !== 'oneOf');
  const inside = errors.filter((e) => e.instancePath.startsWith(`${at}/`));
  if (inside.length === 0 && here.length > 0 && here.every((e) => e.keyword === 'type')) {
    const expected = [...new Set(here.flatMap((e) => String(e.params['type']).split(',')))];
    const got = jsonType(valueAt(data, path));
    return new SwitchyardError(ErrorCode.InvalidRequest, `Invalid type for ${name}: expected ${expected.map(withArticle).join(' or ')}, but got ${withArticle(got)} instead.`, { param });
  }
  if (inside.length === 0 && here.length > 0 && here.every((e) => e.keyword === 'const' || e.keyword === 'enum')) {
    const allowed = here.flatMap((e) => (e.keyword === 'const' ? [e.params['allowedValue']] : (e.params['allowedValues'] as unknown[])));
    return new SwitchyardError(ErrorCode.InvalidRequest, `Invalid value for ${name}: expected one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}.`, { param });
  }
  // One alternative of the right type that failed on its own terms (`max_tokens: 0`) says why.
  const reasons = [...here.filter((e) => e.keyword !== 'type'), ...inside];
  const only = reasons.length === 1 ? reasons[0] : here.length === 0 ? first : undefined;
  if (only !== undefined) {
    const deeper = pathOf(only.instancePath);
    const where = deeper.length === 0 ? whole : `'${paramOf(deeper)}'`;
    return new SwitchyardError(ErrorCode.InvalidRequest, `Invalid value for ${where}: ${only.message ?? 'not allowed'}.`, { param: deeper.length === 0 ? null : paramOf(deeper) });
  }
  return new SwitchyardError(ErrorCode.InvalidRequest, `Invalid value for ${name}: it matches none of the allowed forms.`, { param });
}

function pathOf(instancePath: string): string[] {
  return instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** `['messages', '0', 'role']` → `messages[0].role`, as OpenAI names nested fields. */
function paramOf(path: readonly string[]): string {
  return path.reduce((out, seg) => (/^\d+$/.test(seg) ? `${out}[${seg}]` : out === '' ? seg : `${out}.${seg}`), '');
}

function valueAt(data: unknown, path: readonly string[]): unknown {
  let at = data;
  for (const seg of path) {
    if (typeof at !== 'object' || at === null) return undefined;
    at = (at as Record<string, unknown>)[seg];
  }
  return at;
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'decimal number';
  return typeof v;
}

function withArticle(type: string): string {
  if (type === 'null') return 'null';
  if (type === 'number') return 'a number';
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

import type { EngineKind } from '../../core/config/regions-schema.js';
import { parseEventData } from './sse.js';

/**
 * What it takes to continue a stream on another node after its node failed mid-generation: the
 * text the client already has, resent as the start of the answer, and the first leg's identity
 * (id, created, model, system_fingerprint) stamped on every later chunk, so the client sees one
 * stream. The first leg's events are kept as the buffers already written (no parsing on the
 * happy path) and read only when a failover happens.
 */
export class StreamLegs {
  private readonly written: Buffer[] = [];
  /** Text and token count of earlier legs that were continued already. */
  private carriedText = '';
  private carriedTokens = 0;
  private identity: Record<string, unknown> | undefined;
  failovers = 0;

  constructor(private readonly kind: 'chat' | 'completion') {}

  /** Keeps an event of the current leg. */
  keep(event: Buffer): void {
    this.written.push(event);
  }

  /**
   * Reads the current leg: the text and tokens it delivered, and whether it can be continued
   * (a tool call cut in the middle of its arguments cannot). Then starts the next leg.
   */
  cut(): { text: string; tokens: number; continuable: boolean } {
    let text = '';
    let tokens = 0;
    let toolCall = false;
    for (const event of this.written) {
      const data = parseEventData(event) as Chunk | undefined;
      if (data === undefined || typeof data !== 'object' || data === null) continue;
      this.identity ??= { id: data.id, created: data.created, model: data.model, system_fingerprint: data.system_fingerprint };
      const choice = data.choices?.[0];
      const piece = this.kind === 'chat' ? choice?.delta?.content : choice?.text;
      if (typeof piece === 'string' && piece !== '') {
        text += piece;
        tokens++;
      }
      if (choice?.delta?.tool_calls !== undefined) toolCall = true;
    }
    this.written.length = 0;
    this.carriedText += text;
    this.carriedTokens += tokens;
    return { text: this.carriedText, tokens: this.carriedTokens, continuable: !toolCall };
  }

  /**
   * Rewrites an event of a continuing leg: the first leg's identity, no second role chunk, and
   * a usage that sums the legs (prompt as the client sent it, completion over every leg).
   */
  rewrite(event: Buffer): Buffer | undefined {
    const data = parseEventData(event) as Chunk | undefined;
    if (data === undefined || typeof data !== 'object' || data === null) return event; // [DONE]
    const choice = data.choices?.[0];
    if (choice?.delta?.role !== undefined && (choice.delta.content ?? '') === '' && choice.delta.tool_calls === undefined && choice.finish_reason == null) {
      return undefined;
    }
    Object.assign(data, this.identity);
    if (data.usage != null) {
      const completion = (data.usage.completion_tokens ?? 0) + this.carriedTokens;
      const prompt = Math.max(0, (data.usage.prompt_tokens ?? 0) - this.carriedTokens);
      data.usage = { ...data.usage, prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
    }
    return Buffer.from(`data: ${JSON.stringify(data)}\n\n`);
  }
}

interface Chunk {
  id?: string;
  created?: number;
  model?: string;
  system_fingerprint?: string;
  choices?: Array<{ delta?: { role?: string; content?: string | null; tool_calls?: unknown }; text?: string; finish_reason?: string | null }>;
  usage?: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number } | null;
}

/** Engines that continue a final assistant message, and how they are asked to. */
const CONTINUES: ReadonlySet<EngineKind> = new Set(['vllm', 'sglang', 'sim', 'llamacpp']);

export function canContinue(engine: EngineKind): boolean {
  return CONTINUES.has(engine);
}

/**
 * The body that continues `body` after `text` (`tokens` of it) on an engine of `kind`, or
 * undefined where continuing would change the meaning or the engine cannot: n > 1, logprobs,
 * an engine without continuation, nothing left to generate.
 */
export function continuationBody(path: string, body: Record<string, unknown>, text: string, tokens: number, engine: EngineKind): string | undefined {
  if (!CONTINUES.has(engine)) return undefined;
  if (typeof body['n'] === 'number' && body['n'] > 1) return undefined;
  if (body['logprobs'] === true || typeof body['logprobs'] === 'number' || body['top_logprobs'] !== undefined) return undefined;
  const out: Record<string, unknown> = { ...body, stream: true, stream_options: { include_usage: true } };
  for (const field of ['max_tokens', 'max_completion_tokens'] as const) {
    const max = body[field];
    if (typeof max === 'number') {
      if (max - tokens <= 0) return undefined;
      out[field] = max - tokens;
    }
  }
  if (path === '/v1/chat/completions') {
    const messages = Array.isArray(body['messages']) ? body['messages'] : [];
    out['messages'] = [...messages, { role: 'assistant', content: text }];
    // vLLM and SGLang continue the final message with these, and so does llama.cpp's server
    // (which also continues a trailing assistant message by itself). Streamed, every one of them
    // sends only the new tokens (checked against llama-server: its non-streamed answer repeats the
    // given text first, its stream does not), so the legs join with nothing to cut.
    out['continue_final_message'] = true;
    out['add_generation_prompt'] = false;
    return JSON.stringify(out);
  }
  if (path === '/v1/completions' && typeof body['prompt'] === 'string') {
    out['prompt'] = body['prompt'] + text;
    return JSON.stringify(out);
  }
  return undefined;
}

/**
 * How much of a node's capacity one prompt token takes, in output tokens. Prefill is
 * compute-bound and processes a whole prompt in one batched pass, while decode produces one token
 * per sequence per step (memory-bound): a prompt token costs a GPU roughly a tenth of an output
 * token. Placement and the ledger's token budget count work this way, so requests with long
 * histories (which mostly hit the prefix cache anyway) do not fill a node's budget at a fraction
 * of its sequence slots. Rate limits and fair share still count every token.
 */
export const PROMPT_TOKEN_WORK = 0.1;

/** A request's load on a node in output-token equivalents (see PROMPT_TOKEN_WORK). */
export function workTokens(promptTokens: number, outputTokens: number): number {
  return Math.ceil(outputTokens + promptTokens * PROMPT_TOKEN_WORK);
}

export interface CostEstimate {
  readonly promptTokens: number;
  readonly outputTokens: number;
  /** Prompt plus output: what rate limits and fair share charge. */
  readonly tokens: number;
  /** Output plus a tenth of the prompt: what placement and the ledger charge. */
  readonly work: number;
}

/**
 * What a request will cost in tokens before the engine has seen it: the prompt estimated from the
 * body's size, plus the output it may generate. Both estimates are reconciled with the engines'
 * real usage: per model, the bytes of request body per prompt token and the mean completion
 * length are learned (EWMA), so the estimate follows the model's tokenizer and its traffic.
 */
export class CostEstimator {
  private readonly models = new Map<string, { bytesPerToken: number; meanOutput: number; outputs: number }>();

  /**
   * @param defaultMaxTokens output assumed when a request sets no max_tokens and the model has no
   *   history yet (SWITCHYARD_DEFAULT_MAX_TOKENS).
   */
  constructor(private readonly defaultMaxTokens: number) {}

  /** Prompt estimate plus `maxTokens`, or the model's learned mean output, or the default. */
  estimate(model: string, bodyBytes: number, maxTokens: number | null | undefined): CostEstimate {
    const m = this.models.get(model);
    const promptTokens = Math.ceil(bodyBytes / (m?.bytesPerToken ?? 4));
    // A mean needs some history before it replaces the configured default.
    const outputTokens =
      maxTokens !== undefined && maxTokens !== null ? maxTokens : m !== undefined && m.outputs >= 20 ? Math.ceil(m.meanOutput) : this.defaultMaxTokens;
    return { promptTokens, outputTokens, tokens: promptTokens + outputTokens, work: workTokens(promptTokens, outputTokens) };
  }

  /** Feeds the real usage of a finished request back into the model's estimates. */
  observe(model: string, bodyBytes: number, promptTokens: number, completionTokens: number, hadMaxTokens: boolean): void {
    let m = this.models.get(model);
    if (m === undefined) {
      m = { bytesPerToken: 4, meanOutput: this.defaultMaxTokens, outputs: 0 };
      this.models.set(model, m);
    }
    if (promptTokens > 0 && bodyBytes > 0) {
      // Clamped: JSON overhead and multi-byte scripts stay within 1–16 bytes per token.
      const ratio = Math.min(16, Math.max(1, bodyBytes / promptTokens));
      m.bytesPerToken += 0.1 * (ratio - m.bytesPerToken);
    }
    if (!hadMaxTokens) {
      m.meanOutput = m.outputs === 0 ? completionTokens : m.meanOutput + 0.05 * (completionTokens - m.meanOutput);
      m.outputs++;
    }
  }
}

import { Pool } from 'undici';
import { SseSplitter, parseEventData } from '../../gateway/upstream/sse.js';

export interface FidelityResult {
  readonly streams: number;
  readonly ok: number;
  readonly lost: number;
  readonly merged: number;
  readonly wrongText: number;
  readonly failed: number;
  readonly seconds: number;
  /** Why streams failed: HTTP status and error code, or the client's error, with counts. */
  readonly failures: ReadonlyMap<string, number>;
}

interface Chunk {
  choices?: Array<{ delta?: { content?: string | null } }>;
}

/**
 * `streams` concurrent streaming chats through the gateway against a real sim. A stream is correct
 * when it carries exactly as many content events as the sim generates tokens for that prompt (it
 * sends one event per token: fewer means lost or merged events) and their concatenation equals the
 * sim's plain answer.
 */
export async function streamFidelity(
  gatewayUrl: string,
  simUrl: string,
  streams: number,
  maxTokens: number,
  /** Called with +1 when a stream's headers arrive and -1 when it ends: how many are open. */
  onOpen: (delta: 1 | -1) => void = () => undefined,
  /** Where the expected answers come from: the same sim, or another with the same seed (faster). */
  expectedFrom: string = simUrl,
): Promise<FidelityResult> {
  const prompts = Array.from({ length: 8 }, (_, i) => `prompt number ${i} about GPUs`);
  const sim = new Pool(expectedFrom, { connections: 8 });
  const expected = await Promise.all(
    prompts.map(async (p) => {
      const res = await sim.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'sim-small', messages: [{ role: 'user', content: p }], max_tokens: maxTokens }) });
      const body = (await res.body.json()) as { choices: Array<{ message: { content: string } }>; usage: { completion_tokens: number } };
      // The sim may stop before max_tokens; one event per generated token either way.
      return { text: body.choices[0]?.message.content ?? '', tokens: body.usage.completion_tokens };
    }),
  );
  await sim.close();
  const gw = new Pool(gatewayUrl, { connections: streams, keepAliveTimeout: 60_000 });
  let ok = 0, lost = 0, merged = 0, wrongText = 0, failed = 0;
  const failures = new Map<string, number>();
  const fail = (why: string): void => {
    failed++;
    failures.set(why, (failures.get(why) ?? 0) + 1);
  };
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: streams }, async (_, i) => {
      // Clients arrive over time (1,000 every 100 ms), not all in one instant.
      if (i >= 1000) await new Promise((r) => setTimeout(r, Math.floor(i / 1000) * 100));
      const prompt = prompts[i % prompts.length] as string;
      try {
        const res = await gw.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'sim-small', stream: true, messages: [{ role: 'user', content: prompt }], max_tokens: maxTokens }) });
        if (res.statusCode !== 200) {
          const text = await res.body.text();
          fail(`HTTP ${res.statusCode} ${/"code":"([^"]+)"/.exec(text)?.[1] ?? ''}`.trim());
          return;
        }
        onOpen(1);
        const splitter = new SseSplitter();
        let contentEvents = 0;
        let multi = false;
        let text = '';
        try {
          for await (const c of res.body) {
            splitter.push(c as Buffer, (ev) => {
              if ((ev.toString().match(/^data:/gm) ?? []).length > 1) multi = true; // two events glued into one
              const data = parseEventData(ev) as Chunk | undefined;
              const content = data?.choices?.[0]?.delta?.content;
              if (content) {
                contentEvents++;
                text += content;
              }
            });
          }
        } finally {
          onOpen(-1);
        }
        const want = expected[i % prompts.length] as { text: string; tokens: number };
        if (multi) merged++;
        else if (contentEvents !== want.tokens) lost++;
        else if (text !== want.text) wrongText++;
        else ok++;
      } catch (err) {
        fail(((err as { code?: string }).code ?? (err as Error).message).slice(0, 80));
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await gw.close();
  return { streams, ok, lost, merged, wrongText, failed, seconds, failures };
}

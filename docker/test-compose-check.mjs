// The user-side checks of docker/test-compose.sh, run on the host against the published ports:
//   node docker/test-compose-check.mjs sdk      the openai SDK against both regions' gateways
//   node docker/test-compose-check.mjs targets  every Prometheus target scraped and up
// Exits non-zero with a message on the first check that fails.
/* global process, console, fetch, setTimeout, URL */
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { parse } from 'yaml';

const MODEL = 'llama-3.1-8b-instruct';
const GATEWAYS = { 'eu-west': 'http://127.0.0.1:8080/v1', 'eu-north': 'http://127.0.0.1:8081/v1' };
const PROMETHEUS = 'http://127.0.0.1:9090';
// Every target docker/prometheus/prometheus.yml lists.
const EXPECTED_TARGETS = parse(readFileSync(new URL('prometheus/prometheus.yml', import.meta.url), 'utf8'))
  .scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets.map((t) => `${c.job_name} ${t}`)))
  .sort();

const fail = (message) => {
  console.error(`FAIL ${message}`);
  process.exit(1);
};
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` (an external system: nothing to await but its answers) until it returns a value. */
async function eventually(what, probe, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) fail(`${what} (waited ${timeoutMs / 1000} s)${last ? `: ${last.message}` : ''}`);
    await delay(500);
  }
}

async function sdk() {
  for (const [region, baseURL] of Object.entries(GATEWAYS)) {
    const client = new OpenAI({ baseURL, apiKey: 'unused-auth-none', maxRetries: 0, timeout: 30_000 });
    const models = await client.models.list();
    if (!models.data.some((m) => m.id === MODEL)) fail(`${region}: ${MODEL} not in /v1/models (${models.data.map((m) => m.id).join(', ')})`);

    const chat = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `Hello from ${region}` }], max_tokens: 16 });
    const text = chat.choices[0]?.message?.content ?? '';
    if (text.length === 0) fail(`${region}: empty chat completion`);

    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Stream please' }], max_tokens: 16, stream: true });
    let chunks = 0;
    let streamed = '';
    for await (const chunk of stream) {
      chunks += 1;
      streamed += chunk.choices[0]?.delta?.content ?? '';
    }
    if (streamed.length === 0) fail(`${region}: the stream carried no text (${chunks} chunks)`);

    const created = await client.responses.create({ model: MODEL, input: `A background job in ${region}`, background: true });
    const done = await eventually(`${region}: background response ${created.id} completed`, async () => {
      const r = await client.responses.retrieve(created.id);
      if (r.status === 'failed' || r.status === 'cancelled' || r.status === 'incomplete') fail(`${region}: background response ${r.id} ${r.status}: ${JSON.stringify(r.error)}`);
      return r.status === 'completed' ? r : undefined;
    });
    if (done.output_text.length === 0) fail(`${region}: background response ${done.id} completed with no text`);
    // The operator console (on with the admin API), built into the image.
    const page = await fetch(new URL('/console', baseURL));
    if (!page.ok || !(page.headers.get('content-type') ?? '').startsWith('text/html')) fail(`${region}: /console answered ${page.status} ${page.headers.get('content-type')}`);
    console.log(`ok ${region} (${baseURL}): /console, models, chat "${text.slice(0, 24)}…", stream ${chunks} chunks, background ${done.id} completed`);
  }
}

async function targets() {
  const up = await eventually(`Prometheus scrapes its ${EXPECTED_TARGETS.length} targets, all up`, async () => {
    const res = await fetch(`${PROMETHEUS}/api/v1/targets?state=active`);
    const body = await res.json();
    const active = body.data.activeTargets;
    const seen = active.map((t) => `${t.labels.job} ${t.labels.instance}`).sort();
    const down = active.filter((t) => t.health !== 'up').map((t) => `${t.labels.job} ${t.labels.instance} ${t.health} ${t.lastError}`);
    if (seen.join() !== EXPECTED_TARGETS.join()) throw new Error(`targets ${seen.join(', ')}; expected ${EXPECTED_TARGETS.join(', ')}`);
    if (down.length > 0) throw new Error(`not up: ${down.join('; ')}`);
    return active;
  }, 90_000);
  for (const t of up) console.log(`ok target ${t.labels.job} ${t.labels.instance} ${t.health}`);
}

const mode = process.argv[2];
if (mode === 'sdk') await sdk();
else if (mode === 'targets') await targets();
else fail(`usage: node docker/test-compose-check.mjs sdk|targets`);

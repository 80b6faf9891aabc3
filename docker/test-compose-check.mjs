// The user-side checks of docker/test-compose.sh, run on the host against the published ports:
//   node docker/test-compose-check.mjs sdk      the openai SDK against both regions' gateways
//   node docker/test-compose-check.mjs regions  the regions stand alone: each gateway sees its own
//                                              region's node fresh, forwarding, responses across regions
//   node docker/test-compose-check.mjs targets  every Prometheus target scraped and up
// Exits non-zero with a message on the first check that fails.
/* global process, console, fetch, setTimeout, URL */
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { parse } from 'yaml';

const MODEL = 'llama-3.1-8b-instruct';
const GATEWAYS = { 'eu-west': 'http://127.0.0.1:8080/v1', 'eu-north': 'http://127.0.0.1:8081/v1' };
const PROMETHEUS = 'http://127.0.0.1:9090';
const ADMIN_TOKEN = process.env.SWITCHYARD_ADMIN_TOKEN || 'change-me-admin-token';
// Which node serves which region (docker/register-nodes.sh).
const NODE_OF = { 'eu-west': 'sim-1', 'eu-north': 'sim-2' };
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

const origin = (region) => new URL(GATEWAYS[region]).origin;

/**
 * The regions stand alone (docs/multi-region.md): each gateway sees its own region's node through
 * its own Redis (the other region's node is registered, in Postgres, but never fresh there), a
 * request naming the other region is forwarded to its gateway and served there, and a response
 * kept in one region is read, and continued, through the other's gateway.
 */
async function regions() {
  for (const [region, node] of Object.entries(NODE_OF)) {
    const other = Object.entries(NODE_OF).find(([r]) => r !== region)[1];
    const nodes = await eventually(`${region}: GET /admin/v1/nodes shows ${node} fresh`, async () => {
      const res = await fetch(`${origin(region)}/admin/v1/nodes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      if (!res.ok) throw new Error(`GET /admin/v1/nodes: ${res.status} ${await res.text()}`);
      const byId = new Map((await res.json()).data.map((n) => [n.id, n]));
      if (!byId.has(other)) throw new Error(`${other} not listed (the registry is global): ${[...byId.keys()].join(', ')}`);
      if (byId.get(node)?.live?.fresh !== true) throw new Error(`${node}: live ${JSON.stringify(byId.get(node)?.live ?? null)}`);
      return byId;
    });
    // The other region's agent reports to the other region's scheduler and Redis only.
    if (nodes.get(other).live?.fresh === true) fail(`${region}'s gateway sees ${other} (${nodes.get(other).region}) fresh: its reports reached this region's Redis`);
    console.log(`ok ${region}: /admin/v1/nodes lists ${[...nodes.keys()].join(', ')}; ${node} fresh, ${other} not fresh here (${JSON.stringify(nodes.get(other).live?.fresh ?? null)})`);
  }

  // Served at home, or forwarded to the region named by x-switchyard-region.
  const chat = async (region, headers, stream = false) => {
    const res = await fetch(`${GATEWAYS[region]}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer unused-auth-none', ...headers },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: `To ${headers['x-switchyard-region'] ?? region}` }], max_tokens: 8, stream }),
    });
    const body = await res.text();
    if (!res.ok) fail(`${region} ${JSON.stringify(headers)}: ${res.status} ${body}`);
    if (stream && !body.includes('data: [DONE]')) fail(`${region} ${JSON.stringify(headers)}: the stream did not end with [DONE]: ${body.slice(-200)}`);
    return { region: res.headers.get('x-switchyard-region'), node: res.headers.get('x-switchyard-node') };
  };
  for (const [region, node] of Object.entries(NODE_OF)) {
    const home = await chat(region, {});
    if (home.region !== region || home.node !== node) fail(`${region} with no header: served by ${home.region}/${home.node}, not ${region}/${node}`);
  }
  for (const stream of [false, true]) {
    const served = await chat('eu-west', { 'x-switchyard-region': 'eu-north' }, stream);
    if (served.region !== 'eu-north' || served.node !== NODE_OF['eu-north']) {
      fail(`eu-west with x-switchyard-region: eu-north${stream ? ' (stream)' : ''}: served by ${served.region}/${served.node}, not eu-north/sim-2`);
    }
  }
  const metrics = await (await fetch(`${origin('eu-west')}/metrics`)).text();
  const forwarded = metrics.split('\n').find((l) => l.startsWith('switchyard_region_forwarded_total{') && l.includes('region="eu-north"') && l.includes('outcome="served"'));
  if (forwarded === undefined || !(Number(forwarded.split(' ').pop()) >= 2)) fail(`eu-west's /metrics: ${forwarded ?? 'no switchyard_region_forwarded_total{region="eu-north",outcome="served"}'}`);
  console.log(`ok each gateway serves its own region (sim-1, sim-2); eu-west with x-switchyard-region: eu-north is served by eu-north/sim-2, plain and streamed (${forwarded})`);

  // A response kept in eu-west's Redis: read, and continued, through eu-north's gateway.
  const west = new OpenAI({ baseURL: GATEWAYS['eu-west'], apiKey: 'unused-auth-none', maxRetries: 0, timeout: 30_000 });
  const north = new OpenAI({ baseURL: GATEWAYS['eu-north'], apiKey: 'unused-auth-none', maxRetries: 0, timeout: 30_000 });
  // Short answers: cut at max_output_tokens, they end `incomplete` (reason max_output_tokens).
  const finished = (r) => r.status === 'completed' || (r.status === 'incomplete' && r.incomplete_details?.reason === 'max_output_tokens');
  const created = await west.responses.create({ model: MODEL, input: 'Remember me in eu-west', max_output_tokens: 16 });
  if (!created.id.endsWith('eu-west') || !finished(created)) fail(`a response created on eu-west: ${created.id} ${created.status} (want an id ending with eu-west, finished)`);
  const read = await north.responses.retrieve(created.id);
  if (read.id !== created.id || read.status !== created.status || read.output_text !== created.output_text) {
    fail(`eu-north's gateway returned ${JSON.stringify({ id: read.id, status: read.status, text: read.output_text })} for ${created.id} (${JSON.stringify(created.output_text)})`);
  }
  // eu-north reads the earlier turn from eu-west's gateway (an unknown previous_response_id is a 404).
  const next = await north.responses.create({ model: MODEL, input: 'And now in eu-north', previous_response_id: created.id, max_output_tokens: 16 });
  if (!next.id.endsWith('eu-north') || !finished(next)) fail(`the next turn through eu-north: ${next.id} ${next.status}`);
  const items = await north.responses.inputItems.list(next.id);
  if (items.data.length === 0) fail(`the next turn ${next.id}: no input items`);
  console.log(`ok ${created.id} created on eu-west, retrieved through eu-north's gateway; continued there as ${next.id}`);
  // For the Redis check that follows (docker/test-compose.sh): where each response is kept.
  console.log(`responses eu-west=${created.id} eu-north=${next.id}`);
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
else if (mode === 'regions') await regions();
else if (mode === 'targets') await targets();
else fail(`usage: node docker/test-compose-check.mjs sdk|regions|targets`);

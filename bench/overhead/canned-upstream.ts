import { createServer } from 'node:http';

/**
 * An upstream that answers at once with a fixed OpenAI body, so that what the benchmark measures
 * is the gateway and nothing else. (The simulator's batch scheduler ticks every 5 ms: its jitter
 * would hide differences of a tenth of a millisecond. The chunk-fidelity run uses the real sim.)
 * Streams: `STREAM_EVENTS` events, each its own write, the first at once.
 */
const STREAM_EVENTS = 16;
const completion = JSON.stringify({
  id: 'chatcmpl-bench', object: 'chat.completion', created: 1, model: 'bench',
  choices: [{ index: 0, message: { role: 'assistant', content: 'benchmark answer with a handful of words' }, finish_reason: 'stop', logprobs: null }],
  usage: { prompt_tokens: 12, completion_tokens: 8, total_tokens: 20 },
});
const chunk = (i: number): string =>
  `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench","choices":[{"index":0,"delta":{"content":" w${i}"},"finish_reason":null}]}\n\n`;
const usage = 'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":16,"total_tokens":28}}\n\n';

const server = createServer((req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    return;
  }
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => {
    const stream = Buffer.concat(parts).includes('"stream":true');
    if (!stream) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(completion) }).end(completion);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const next = (): void => {
      if (i < STREAM_EVENTS) {
        res.write(chunk(i++));
        setImmediate(next);
      } else {
        res.write(usage);
        res.end('data: [DONE]\n\n');
      }
    };
    next();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  process.stdout.write(JSON.stringify({ msg: 'upstream listening', url: `http://127.0.0.1:${port}` }) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));

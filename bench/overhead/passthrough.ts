import Fastify from 'fastify';
import { Pool } from 'undici';

/**
 * The anchor: the least a Fastify + undici proxy can do (parse JSON, forward, relay the body).
 * No validation, routing, retries or metrics; the gateway's overhead is judged against this.
 */
const upstream = process.argv[2];
if (!upstream) throw new Error('usage: passthrough <upstream-url>');
const pool = new Pool(upstream, { connections: 256, keepAliveTimeout: 60_000 });
const app = Fastify({ logger: false });
app.post('/v1/chat/completions', async (request, reply) => {
  const res = await pool.request({
    path: '/v1/chat/completions', method: 'POST',
    headers: { 'content-type': 'application/json' }, body: JSON.stringify(request.body),
  });
  reply.code(res.statusCode).header('content-type', res.headers['content-type'] ?? 'application/json');
  return reply.send(res.body);
});
await app.listen({ host: '127.0.0.1', port: 0 });
const a = app.server.address();
process.stdout.write(JSON.stringify({ msg: 'passthrough listening', url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}` }) + '\n');
process.on('SIGTERM', () => void app.close().then(() => pool.close()).then(() => process.exit(0)));

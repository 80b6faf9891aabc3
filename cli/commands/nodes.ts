import { parseArgs } from 'node:util';
import { AdminClient } from '../admin-client.js';
import { UsageError } from '../run-command.js';

interface NodeJson {
  id: string;
  source: string;
  region: string;
  cluster: string;
  url: string;
  engine: string;
  models: string[];
  capacity: { tokensPerSecond: number; maxSequences: number };
  draining: boolean;
  live: { healthy: boolean; inflight: number } | null;
  join_token?: string | null;
}

/** Also printed by `switchyard nodes --help`. */
export const HELP = `usage: switchyard nodes <register|list|show|drain|resume|remove> [flags]
  register --id ID --region R --cluster C --url http://host:8000 --engine vllm|sglang|llamacpp|tgi|ollama|openai
           --models a,b --tokens-per-second N --max-sequences N [--rotate-token]
           (an id registered already is updated and keeps its join token unless --rotate-token)
  list | show ID | drain ID | resume ID | remove ID
common: --url-admin (SWITCHYARD_URL, default http://127.0.0.1:8080), --admin-token (SWITCHYARD_ADMIN_TOKEN), --json`;

/** `switchyard nodes …`: the node registry over the admin API of a running gateway. */
export async function nodesCommand(argv: readonly string[]): Promise<void> {
  const [sub, ...rest] = argv;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        'url-admin': { type: 'string' }, 'admin-token': { type: 'string' }, json: { type: 'boolean' }, id: { type: 'string' },
        region: { type: 'string' }, cluster: { type: 'string' }, url: { type: 'string' }, engine: { type: 'string' },
        models: { type: 'string' }, 'tokens-per-second': { type: 'string' }, 'max-sequences': { type: 'string' },
        'rotate-token': { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${HELP}`);
  }
  const { values: v, positionals } = parsed;
  const client = new AdminClient(v['url-admin'] ?? process.env['SWITCHYARD_URL'] ?? 'http://127.0.0.1:8080', v['admin-token'] ?? process.env['SWITCHYARD_ADMIN_TOKEN']);
  const print = (x: unknown, text: string): void => void process.stdout.write(v.json === true ? JSON.stringify(x) + '\n' : text);
  const id = positionals[0];
  const needId = (): string => {
    if (id === undefined) throw new UsageError(`nodes ${sub ?? ''} needs a node id\n${HELP}`);
    return encodeURIComponent(id);
  };
  switch (sub) {
    case 'register': {
      for (const f of ['id', 'region', 'cluster', 'url', 'engine', 'models', 'tokens-per-second', 'max-sequences'] as const) {
        if (v[f] === undefined) throw new UsageError(`nodes register needs --${f}\n${HELP}`);
      }
      const node = await client.call<NodeJson>('POST', '/nodes', {
        id: v.id, region: v.region, cluster: v.cluster, url: v.url, engine: v.engine,
        models: String(v.models).split(',').map((m) => m.trim()).filter(Boolean),
        capacity: { tokensPerSecond: Number(v['tokens-per-second']), maxSequences: Number(v['max-sequences']) },
        ...(v['rotate-token'] === true ? { rotate_token: true } : {}),
      });
      print(
        node,
        node.join_token == null
          ? `${node.id} was registered already: updated in ${node.region}/${node.cluster}; its join token is unchanged (--rotate-token issues a new one)\n`
          : `registered ${node.id} in ${node.region}/${node.cluster}\njoin token: ${node.join_token}\n(shown once: give it to the node's agent as SWITCHYARD_JOIN_TOKEN)\n`,
      );
      return;
    }
    case 'list': {
      const list = await client.call<{ data: NodeJson[] }>('GET', '/nodes');
      const rows = list.data.map((n) => [n.id, n.source, n.region, n.engine, n.models.join(','), `${n.capacity.tokensPerSecond}/${n.capacity.maxSequences}`,
        n.draining ? 'draining' : 'active', n.live === null ? '-' : n.live.healthy ? 'healthy' : 'unhealthy'].join('\t'));
      print(list.data, ['id\tsource\tregion\tengine\tmodels\ttok/s/seqs\tstate\tlive', ...rows].join('\n') + '\n');
      return;
    }
    case 'show': {
      const node = await client.call<NodeJson>('GET', `/nodes/${needId()}`);
      print(node, JSON.stringify(node, null, 2) + '\n');
      return;
    }
    case 'drain':
    case 'resume': {
      const node = await client.call<NodeJson>('POST', `/nodes/${needId()}/${sub}`);
      print(node, `${node.id}: ${node.draining ? 'draining' : 'active'}\n`);
      return;
    }
    case 'remove': {
      await client.call('DELETE', `/nodes/${needId()}`);
      print({ id, deleted: true }, `removed ${id ?? ''}\n`);
      return;
    }
    default:
      throw new UsageError(sub === undefined ? HELP : `unknown nodes command '${sub}'\n${HELP}`);
  }
}

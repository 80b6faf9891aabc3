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
export const HELP = `usage: switchyard nodes <register|list|show|drain|resume|remove|bootstrap-token> [flags]
  register --id ID --region R --cluster C --url http://host:8000 --engine vllm|sglang|llamacpp|tgi|ollama|openai
           --models a,b --tokens-per-second N --max-sequences N [--rotate-token]
           (an id registered already is updated and keeps its join token unless --rotate-token)
  list | show ID | drain ID | resume ID | remove ID
  bootstrap-token create --region R --cluster C [--expires 24h|7d|30m|2030-01-01T00:00:00Z] [--max-uses N]
                         [--description TEXT]   (the token is shown once: agents join with --bootstrap-token)
  bootstrap-token list | bootstrap-token revoke ID
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
        'rotate-token': { type: 'boolean' }, expires: { type: 'string' }, 'max-uses': { type: 'string' }, description: { type: 'string' },
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
    case 'bootstrap-token':
      return bootstrapTokenCommand(client, positionals, v, print);
    default:
      throw new UsageError(sub === undefined ? HELP : `unknown nodes command '${sub}'\n${HELP}`);
  }
}

interface BootstrapTokenJson {
  id: string;
  region: string;
  cluster: string;
  description: string;
  state: string;
  expires_at: string | null;
  max_uses: number | null;
  uses: number;
  token?: string;
}

type Print = (x: unknown, text: string) => void;

async function bootstrapTokenCommand(client: AdminClient, positionals: readonly string[], v: Record<string, string | boolean | undefined>, print: Print): Promise<void> {
  const [action, id] = positionals;
  switch (action) {
    case 'create': {
      for (const f of ['region', 'cluster'] as const) if (typeof v[f] !== 'string') throw new UsageError(`nodes bootstrap-token create needs --${f}\n${HELP}`);
      const body: Record<string, unknown> = { region: v['region'], cluster: v['cluster'] };
      if (typeof v['description'] === 'string') body['description'] = v['description'];
      if (typeof v['expires'] === 'string') Object.assign(body, parseExpires(v['expires']));
      if (typeof v['max-uses'] === 'string') {
        const n = Number(v['max-uses']);
        if (!Number.isInteger(n) || n < 1) throw new UsageError('--max-uses must be a positive integer');
        body['max_uses'] = n;
      }
      const t = await client.call<BootstrapTokenJson>('POST', '/bootstrap-tokens', body);
      print(t, `created bootstrap token ${t.id} for ${t.region}/${t.cluster} (expires: ${t.expires_at ?? 'never'}, max uses: ${t.max_uses ?? 'unlimited'})\n` +
        `token: ${t.token ?? ''}\n(shown once: give it to agents as SWITCHYARD_BOOTSTRAP_TOKEN, e.g. in a Kubernetes Secret)\n`);
      return;
    }
    case 'list': {
      const list = await client.call<{ data: BootstrapTokenJson[] }>('GET', '/bootstrap-tokens');
      const rows = list.data.map((t) => [t.id, `${t.region}/${t.cluster}`, t.state, `${t.uses}/${t.max_uses ?? '-'}`, t.expires_at ?? 'never', t.description].join('\t'));
      print(list.data, ['id\tregion/cluster\tstate\tuses\texpires\tdescription', ...rows].join('\n') + '\n');
      return;
    }
    case 'revoke': {
      if (id === undefined) throw new UsageError(`nodes bootstrap-token revoke needs a token id\n${HELP}`);
      const t = await client.call<BootstrapTokenJson>('DELETE', `/bootstrap-tokens/${encodeURIComponent(id)}`);
      print(t, `revoked ${t.id}: no more nodes join with it (nodes that joined stay)\n`);
      return;
    }
    default:
      throw new UsageError(`nodes bootstrap-token needs create, list or revoke\n${HELP}`);
  }
}

/** `--expires 24h` (s, m, h, d) or an ISO time. */
export function parseExpires(text: string): { expires_in_s: number } | { expires_at: string } {
  const m = /^(\d+)([smhd])$/.exec(text);
  if (m !== null) return { expires_in_s: Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'] };
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) throw new UsageError(`--expires must be a duration (30m, 24h, 7d) or a time (2030-01-01T00:00:00Z), not '${text}'`);
  return { expires_at: at.toISOString() };
}

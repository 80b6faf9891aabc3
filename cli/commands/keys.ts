import { parseArgs } from 'node:util';
import { AdminClient } from '../admin-client.js';
import { UsageError } from '../run-command.js';

interface KeyJson {
  id: string;
  tenant: string;
  name: string;
  key_prefix: string;
  limits: { requestsPerMinute: number; tokensPerMinute: number; maxConcurrent: number };
  models: string[];
  priority: string;
  created_at: string;
  revoked_at: string | null;
  key?: string;
}

/** Also printed by `switchyard keys --help`. */
export const HELP = `usage: switchyard keys <create|list|revoke> [flags]
  create --tenant T --name N [--rpm 600] [--tpm 200000] [--concurrency 32] [--models a,b|*] [--priority interactive|standard|batch]
  list [--tenant T]
  revoke <key-id>
common: --url (SWITCHYARD_URL, default http://127.0.0.1:8080), --admin-token (SWITCHYARD_ADMIN_TOKEN), --json`;

/** `switchyard keys …`: API keys over the admin API of a running gateway. */
export async function keysCommand(argv: readonly string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest);
  const client = new AdminClient(
    str(values['url']) ?? process.env['SWITCHYARD_URL'] ?? 'http://127.0.0.1:8080',
    str(values['admin-token']) ?? process.env['SWITCHYARD_ADMIN_TOKEN'],
  );
  const json = values['json'] === true;
  switch (sub) {
    case 'create': {
      const tenant = str(values['tenant']);
      const name = str(values['name']);
      if (tenant === undefined || name === undefined) throw new UsageError(`keys create needs --tenant and --name\n${HELP}`);
      const created = await client.call<KeyJson>('POST', '/keys', {
        tenant,
        name,
        limits: {
          requestsPerMinute: int(values['rpm'], 'rpm', 600),
          tokensPerMinute: int(values['tpm'], 'tpm', 200_000),
          maxConcurrent: int(values['concurrency'], 'concurrency', 32),
        },
        models: (str(values['models']) ?? '*').split(',').map((m) => m.trim()).filter(Boolean),
        priority: str(values['priority']) ?? 'standard',
      });
      if (json) process.stdout.write(JSON.stringify(created) + '\n');
      else process.stdout.write(`created ${created.id} for tenant ${created.tenant}\nkey: ${created.key ?? ''}\n(shown once: store it now)\n`);
      return;
    }
    case 'list': {
      const tenant = str(values['tenant']);
      const list = await client.call<{ data: KeyJson[] }>('GET', tenant === undefined ? '/keys' : `/keys?tenant=${encodeURIComponent(tenant)}`);
      if (json) {
        process.stdout.write(JSON.stringify(list.data) + '\n');
        return;
      }
      const rows = list.data.map((k) =>
        [k.id, k.tenant, k.name, `${k.key_prefix}…`, `${k.limits.requestsPerMinute}/${k.limits.tokensPerMinute}/${k.limits.maxConcurrent}`, k.models.join(','), k.priority, k.revoked_at === null ? 'active' : 'revoked'].join('\t'),
      );
      process.stdout.write(['id\ttenant\tname\tprefix\trpm/tpm/concurrent\tmodels\tpriority\tstatus', ...rows].join('\n') + '\n');
      return;
    }
    case 'revoke': {
      const id = positionals[0];
      if (id === undefined) throw new UsageError(`keys revoke needs a key id\n${HELP}`);
      await client.call('DELETE', `/keys/${encodeURIComponent(id)}`);
      process.stdout.write(`revoked ${id}\n`);
      return;
    }
    default:
      throw new UsageError(sub === undefined ? HELP : `unknown keys command '${sub}'\n${HELP}`);
  }
}

function parse(args: string[]): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        url: { type: 'string' }, 'admin-token': { type: 'string' }, json: { type: 'boolean' }, tenant: { type: 'string' },
        name: { type: 'string' }, rpm: { type: 'string' }, tpm: { type: 'string' }, concurrency: { type: 'string' },
        models: { type: 'string' }, priority: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function int(v: unknown, flag: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${flag} must be a whole number >= 0 (0 = unlimited)`);
  return n;
}

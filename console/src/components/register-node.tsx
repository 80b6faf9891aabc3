import { useState } from 'preact/hooks';
import { admin } from '../api.js';
import { Notice, errorText } from './notice.js';
import { SecretOnce } from './secret-once.js';

const ENGINES = ['vllm', 'sglang', 'llamacpp', 'tgi', 'ollama', 'openai'];

interface Registered {
  readonly id: string;
  readonly url: string;
  readonly join_token: string | null;
}

/** Quotes a shell word when it needs it. */
function sh(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Registers a node and shows its join token once, with the exact `switchyard agent` command. */
export function RegisterNode({ regions }: { regions: string[] }) {
  const [result, setResult] = useState<{ node: Registered; command: string | undefined } | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [scheduler, setScheduler] = useState(localStorage.getItem('switchyard-scheduler') ?? `${location.hostname}:50051`);

  const submit = (e: Event): void => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const value = (k: string): string => String(form.get(k) ?? '').trim();
    setError(undefined);
    setResult(undefined);
    localStorage.setItem('switchyard-scheduler', scheduler);
    admin
      .post<Registered>('/nodes', {
        id: value('id'),
        region: value('region'),
        cluster: value('cluster'),
        url: value('url'),
        engine: value('engine'),
        models: value('models').split(',').map((m) => m.trim()).filter((m) => m !== ''),
        capacity: { tokensPerSecond: Number(value('tps')), maxSequences: Number(value('seqs')) },
        ...(form.get('rotate') === 'on' ? { rotate_token: true } : {}),
      })
      .then(
        (node) => {
          const command =
            node.join_token === null
              ? undefined
              : ['switchyard', 'agent', '--scheduler', scheduler, '--node-id', node.id, '--join-token', node.join_token, '--engine-url', node.url].map(sh).join(' ');
          setResult({ node, command });
        },
        (err: unknown) => setError(errorText(err)),
      );
  };

  return (
    <section aria-labelledby="register-title" class="card">
      <h2 id="register-title">Register a node</h2>
      {error !== undefined && <Notice kind="error">{error}</Notice>}
      {result !== undefined && (
        <div>
          <Notice kind="success">
            {result.node.id} is registered.
            {result.command === undefined ? ' It was registered before, so it keeps its join token (tick "new join token" to issue one).' : ' Its join token is shown once: start the agent on the node now.'}
          </Notice>
          {result.command !== undefined && <SecretOnce label="Run on the GPU node, beside its model server:" value={result.command} />}
        </div>
      )}
      <form class="grid-form" onSubmit={submit}>
        <label>
          Node id <input name="id" required pattern="[a-z0-9][a-z0-9._-]{0,62}" />
        </label>
        <label>
          Region{' '}
          <select name="region" required>
            {regions.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <label>
          Cluster <input name="cluster" required pattern="[a-z0-9][a-z0-9._-]{0,62}" />
        </label>
        <label>
          Model server URL <input name="url" type="url" required placeholder="http://10.0.0.7:8000" />
        </label>
        <label>
          Engine{' '}
          <select name="engine">
            {ENGINES.map((e) => (
              <option key={e}>{e}</option>
            ))}
          </select>
        </label>
        <label>
          Models (comma-separated) <input name="models" required />
        </label>
        <label>
          Tokens per second <input name="tps" type="number" min="1" step="any" required value="1000" />
        </label>
        <label>
          Max sequences <input name="seqs" type="number" min="1" step="1" required value="32" />
        </label>
        <label>
          Scheduler address agents reach <input name="scheduler" required value={scheduler} onInput={(e) => setScheduler(e.currentTarget.value)} />
        </label>
        <label class="check">
          <input name="rotate" type="checkbox" /> New join token (if already registered)
        </label>
        <div>
          <button type="submit" class="primary">
            Register
          </button>
        </div>
      </form>
    </section>
  );
}

import { useCallback, useEffect, useState } from 'preact/hooks';
import { admin, type List } from '../api.js';
import { ConfirmButton } from '../components/confirm-button.js';
import { Notice, errorText } from '../components/notice.js';
import { SecretOnce } from '../components/secret-once.js';
import { TenantsSection } from '../components/tenants-section.js';
import type { ApiKey, Tenant } from '../types.js';

const when = (iso: string | undefined | null): string => (iso === undefined || iso === null ? 'never' : new Date(iso).toLocaleString());

export function KeysPage() {
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [tenants, setTenants] = useState<Tenant[]>([]);
  const [lastUsed, setLastUsed] = useState<Map<string, string>>(new Map());
  const [created, setCreated] = useState<{ id: string; key: string } | undefined>();
  const [message, setMessage] = useState<{ kind: 'error' | 'success'; text: string } | undefined>();

  const load = useCallback(() => {
    Promise.all([
      admin.get<List<ApiKey>>('/keys'),
      admin.get<List<Tenant>>('/tenants'),
      admin.get<List<{ id: string; last_used_at: string }>>('/keys/last-used'),
    ]).then(
      ([k, t, l]) => {
        setKeys(k.data);
        setTenants(t.data);
        setLastUsed(new Map(l.data.map((x) => [x.id, x.last_used_at])));
      },
      (err: unknown) => setMessage({ kind: 'error', text: errorText(err) }),
    );
  }, []);
  useEffect(load, [load]);

  const create = (e: Event): void => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const value = (k: string): string => String(form.get(k) ?? '').trim();
    const models = value('models').split(',').map((m) => m.trim()).filter((m) => m !== '');
    setMessage(undefined);
    setCreated(undefined);
    admin
      .post<ApiKey & { key: string }>('/keys', {
        tenant: value('tenant'),
        name: value('name'),
        limits: { requestsPerMinute: Number(value('rpm')), tokensPerMinute: Number(value('tpm')), maxConcurrent: Number(value('concurrency')) },
        ...(models.length === 0 ? {} : { models }),
        priority: value('priority'),
      })
      .then(
        (k) => {
          setCreated({ id: k.id, key: k.key });
          load();
        },
        (err: unknown) => setMessage({ kind: 'error', text: errorText(err) }),
      );
  };

  const revoke = (id: string): void => {
    admin.delete(`/keys/${id}`).then(
      () => {
        setMessage({ kind: 'success', text: `${id} revoked: every gateway refuses it within about two seconds.` });
        load();
      },
      (err: unknown) => setMessage({ kind: 'error', text: errorText(err) }),
    );
  };

  return (
    <>
      <h1>Keys and tenants</h1>
      {message !== undefined && <Notice kind={message.kind}>{message.text}</Notice>}
      <section class="card" aria-labelledby="create-key-title">
        <h2 id="create-key-title">Create an API key</h2>
        {created !== undefined && (
          <>
            <Notice kind="success">Key {created.id} created. Its secret is shown once: copy it now.</Notice>
            <SecretOnce label="API key" value={created.key} />
          </>
        )}
        <form class="grid-form" onSubmit={create}>
          <label>
            Tenant <input name="tenant" required list="tenant-ids" pattern="[A-Za-z0-9][A-Za-z0-9._-]{0,63}" />
          </label>
          <datalist id="tenant-ids">
            {tenants.map((t) => (
              <option key={t.id} value={t.id} />
            ))}
          </datalist>
          <label>
            Name <input name="name" required maxLength={200} />
          </label>
          <label>
            Requests per minute <input name="rpm" type="number" min="0" required value="600" />
          </label>
          <label>
            Tokens per minute <input name="tpm" type="number" min="0" required value="200000" />
          </label>
          <label>
            Concurrent requests <input name="concurrency" type="number" min="0" required value="32" />
          </label>
          <label>
            Models (comma-separated; empty: all) <input name="models" />
          </label>
          <label>
            Priority{' '}
            <select name="priority">
              <option value="interactive">interactive</option>
              <option value="standard" selected>
                standard
              </option>
              <option value="batch">batch</option>
            </select>
          </label>
          <div>
            <button type="submit" class="primary">
              Create key
            </button>
          </div>
        </form>
      </section>
      <section aria-labelledby="keys-title">
        <h2 id="keys-title">API keys</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">Tenant</th>
                <th scope="col">Limits (rpm / tpm / concurrent)</th>
                <th scope="col">Models</th>
                <th scope="col">Priority</th>
                <th scope="col">Last used</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => (
                <tr key={k.id} data-key={k.id}>
                  <th scope="row">
                    {k.name}
                    <span class="muted small">
                      {k.id} · {k.key_prefix}…
                    </span>
                  </th>
                  <td>{k.tenant}</td>
                  <td class="num">
                    {k.limits.requestsPerMinute} / {k.limits.tokensPerMinute} / {k.limits.maxConcurrent}
                  </td>
                  <td>{k.models.join(', ')}</td>
                  <td>{k.priority}</td>
                  <td>{when(lastUsed.get(k.id))}</td>
                  <td>
                    {k.revoked_at !== null ? (
                      <span class="badge badge-bad">Revoked {when(k.revoked_at)}</span>
                    ) : (
                      <ConfirmButton danger label="Revoke" question={`Revoke ${k.name}?`} onConfirm={() => revoke(k.id)} />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {keys.length === 0 && <p class="muted">No keys yet.</p>}
      </section>
      <TenantsSection tenants={tenants} onChanged={load} />
    </>
  );
}

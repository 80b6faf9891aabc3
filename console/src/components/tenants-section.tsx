import { useState } from 'preact/hooks';
import { admin } from '../api.js';
import { Notice, errorText } from './notice.js';
import type { Tenant } from '../types.js';

/** Tenants with their fair-share weights; create or update one. */
export function TenantsSection({ tenants, onChanged }: { tenants: Tenant[]; onChanged: () => void }) {
  const [error, setError] = useState<string | undefined>();
  const submit = (e: Event): void => {
    e.preventDefault();
    const formEl = e.currentTarget as HTMLFormElement;
    const form = new FormData(formEl);
    const name = String(form.get('name') ?? '').trim();
    setError(undefined);
    admin.post('/tenants', { id: String(form.get('id') ?? '').trim(), ...(name === '' ? {} : { name }), weight: Number(form.get('weight')) }).then(
      () => {
        formEl.reset();
        onChanged();
      },
      (err: unknown) => setError(errorText(err)),
    );
  };
  return (
    <section aria-labelledby="tenants-title">
      <h2 id="tenants-title">Tenants</h2>
      {error !== undefined && <Notice kind="error">{error}</Notice>}
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Tenant</th>
              <th scope="col">Name</th>
              <th scope="col">Weight (fair share)</th>
            </tr>
          </thead>
          <tbody>
            {tenants.map((t) => (
              <tr key={t.id}>
                <th scope="row">{t.id}</th>
                <td>{t.name ?? ''}</td>
                <td class="num">{t.weight ?? 1}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <form class="grid-form" onSubmit={submit} aria-label="Add or update a tenant">
        <label>
          Tenant id <input name="id" required pattern="[A-Za-z0-9][A-Za-z0-9._-]{0,63}" />
        </label>
        <label>
          Name <input name="name" maxLength={200} />
        </label>
        <label>
          Weight <input name="weight" type="number" min="0.001" max="1000" step="any" required value="1" />
        </label>
        <div>
          <button type="submit">Save tenant</button>
        </div>
      </form>
    </section>
  );
}

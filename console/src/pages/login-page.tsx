import { useState } from 'preact/hooks';
import { session } from '../api.js';
import { Notice, errorText } from '../components/notice.js';

export function LoginPage({ notice, onLoggedIn }: { notice?: string | undefined; onLoggedIn: () => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = (e: Event): void => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    session.login(token).then(
      () => {
        setToken('');
        onLoggedIn();
      },
      (err: unknown) => {
        setError(errorText(err));
        setBusy(false);
      },
    );
  };
  return (
    <main id="main" class="login">
      <h1>Switchyard console</h1>
      {notice !== undefined && <Notice kind="info">{notice}</Notice>}
      {error !== undefined && <Notice kind="error">{error}</Notice>}
      <form onSubmit={submit}>
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autoComplete="off" required value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <p class="hint">The value of SWITCHYARD_ADMIN_TOKEN. It is exchanged for a session cookie and never stored by this page.</p>
        <button type="submit" class="primary" disabled={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}

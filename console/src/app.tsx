import { useEffect, useState } from 'preact/hooks';
import { session, whenSessionEnds } from './api.js';
import { Header } from './components/header.js';
import { LoginPage } from './pages/login-page.js';
import { FleetPage } from './pages/fleet-page.js';
import { KeysPage } from './pages/keys-page.js';
import { UsagePage } from './pages/usage-page.js';
import { QueuesPage } from './pages/queues-page.js';

export const PAGES = [
  { path: 'fleet', title: 'Fleet' },
  { path: 'keys', title: 'Keys and tenants' },
  { path: 'usage', title: 'Usage' },
  { path: 'queues', title: 'Queues and jobs' },
] as const;
export type PagePath = (typeof PAGES)[number]['path'];

function currentPage(): PagePath {
  const path = location.hash.replace(/^#\/?/, '');
  return PAGES.find((p) => p.path === path)?.path ?? 'fleet';
}

type State = { kind: 'checking' } | { kind: 'out'; notice?: string } | { kind: 'in' };

/** Session check, then the login page or the page the hash names (`#/fleet`, `#/keys`, …). */
export function App() {
  const [state, setState] = useState<State>({ kind: 'checking' });
  const [page, setPage] = useState<PagePath>(currentPage());

  useEffect(() => {
    whenSessionEnds(() => setState({ kind: 'out', notice: 'Your session has expired or was ended. Log in again to continue.' }));
    session.current().then(
      () => setState({ kind: 'in' }),
      () => setState({ kind: 'out' }),
    );
    const onHash = (): void => setPage(currentPage());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    const title = PAGES.find((p) => p.path === page)?.title ?? '';
    document.title = state.kind === 'in' ? `${title} · Switchyard console` : 'Log in · Switchyard console';
  }, [page, state.kind]);

  if (state.kind === 'checking') return <p class="loading">Loading…</p>;
  if (state.kind === 'out') return <LoginPage notice={state.notice} onLoggedIn={() => setState({ kind: 'in' })} />;
  const logout = (): void => {
    session.logout().finally(() => setState({ kind: 'out', notice: 'You are logged out.' }));
  };
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <Header page={page} onLogout={logout} />
      <main id="main" tabIndex={-1}>
        {page === 'fleet' && <FleetPage />}
        {page === 'keys' && <KeysPage />}
        {page === 'usage' && <UsagePage />}
        {page === 'queues' && <QueuesPage />}
      </main>
    </>
  );
}
